"""The faster CPU layers compute torch's convolutions: float64 references, gradchecks and state dicts."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vaesim.models import build_vae
from vaesim.models.layers import (
    Conv2d,
    ConvTranspose2d,
    OverlapAddConvTranspose2d,
    TrainingReLU,
    _Convolution,
    _OverlapAddConvTranspose,
    overlap_add_conv_transpose,
    with_torch_layers,
)


@pytest.mark.parametrize("channels_out", [1, 3, 4])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(2, 5, 6, 7), (3, 32, 32, 32), (1, 1, 1, 1)])
def test_overlap_add_is_the_transposed_convolution_in_float64(channels_out, bias, shape):
    """Against torch's conv_transpose2d (k4 s2 p1) in float64: the same sum of products, to 1e-12."""
    generator = torch.Generator().manual_seed(sum(shape) + channels_out)
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    weight = torch.randn(shape[1], channels_out, 4, 4, generator=generator, dtype=torch.float64)
    b = torch.randn(channels_out, generator=generator, dtype=torch.float64) if bias else None
    expected = F.conv_transpose2d(x, weight, b, stride=2, padding=1)
    got = overlap_add_conv_transpose(x, weight, b)
    assert got.shape == expected.shape == (shape[0], channels_out, 2 * shape[2], 2 * shape[3])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12 * float(expected.abs().max()))


def test_overlap_add_in_float32_is_within_rounding_and_keeps_the_layout():
    torch.manual_seed(0)
    x = torch.relu(torch.randn(8, 32, 32, 32)).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(32, 1, 4, 4) * 0.1, torch.randn(1)
    exact = F.conv_transpose2d(x.double(), weight.double(), bias.double(), stride=2, padding=1)
    got = overlap_add_conv_transpose(x, weight, bias)
    assert float((got.double() - exact).abs().max()) <= 1e-6 * float(exact.abs().max())
    assert got.is_contiguous()  # one channel: plain contiguous, the layout oneDNN's backward is fastest with
    rgb = overlap_add_conv_transpose(x, torch.randn(32, 3, 4, 4), None)
    assert rgb.is_contiguous(memory_format=torch.channels_last)


def test_gradients_are_exact_in_float64():
    """torch.autograd.gradcheck (finite differences) through both autograd functions."""
    generator = torch.Generator().manual_seed(1)

    def t(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64, requires_grad=True)

    assert torch.autograd.gradcheck(_OverlapAddConvTranspose.apply, (t(2, 3, 4, 5), t(3, 1, 4, 4), t(1)))
    assert torch.autograd.gradcheck(_OverlapAddConvTranspose.apply, (t(2, 3, 4, 5), t(3, 2, 4, 4), t(2)))
    conv = (t(2, 3, 8, 8), t(4, 3, 4, 4), t(4), (2, 2), (1, 1), (1, 1), False, (0, 0), 1)
    deconv = (t(2, 3, 4, 4), t(3, 4, 4, 4), t(4), (2, 2), (1, 1), (1, 1), True, (0, 0), 1)
    k2 = (t(2, 3, 8, 8), t(4, 3, 2, 2), t(4), (2, 2), (0, 0), (1, 1), False, (0, 0), 1)
    for args in (conv, deconv, k2):
        assert torch.autograd.gradcheck(_Convolution.apply, args)


def _pair(fast: nn.Module, stock: nn.Module):
    stock.load_state_dict(fast.state_dict())
    return fast, stock


@pytest.mark.parametrize("make", [
    lambda: _pair(Conv2d(32, 32, 4, stride=2, padding=1), nn.Conv2d(32, 32, 4, stride=2, padding=1)),
    lambda: _pair(Conv2d(32, 64, 2, stride=2, padding=0), nn.Conv2d(32, 64, 2, stride=2, padding=0)),
    lambda: _pair(ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)),
    lambda: _pair(OverlapAddConvTranspose2d(32, 1, 4, stride=2, padding=1),
                  nn.ConvTranspose2d(32, 1, 4, stride=2, padding=1)),
    lambda: _pair(OverlapAddConvTranspose2d(32, 3, 4, stride=2, padding=1),
                  nn.ConvTranspose2d(32, 3, 4, stride=2, padding=1)),
], ids=["conv-k4", "conv-k2", "deconv", "output-1ch", "output-3ch"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_modules_match_torch_modules_in_float32(make, channels_last):
    """Output and every gradient within float32 rounding of torch's own module (1e-5 of the scale);
    state dicts are interchangeable."""
    torch.manual_seed(2)
    fast, stock = make()
    assert fast.state_dict().keys() == stock.state_dict().keys()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    fast, stock = fast.to(memory_format=layout), stock.to(memory_format=layout)
    size = 8 if fast.in_channels == 64 else 16
    x = torch.randn(16, fast.in_channels, size, size).contiguous(memory_format=layout)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = fast(xa), stock(xb)
    assert float((ya - yb).detach().abs().max()) <= 1e-5 * float(yb.detach().abs().max())
    grad = torch.randn_like(yb)
    ya.backward(grad)
    yb.backward(grad)
    pairs = [("input", xa.grad, xb.grad), ("weight", fast.weight.grad, stock.weight.grad),
             ("bias", fast.bias.grad, stock.bias.grad)]
    for name, got, expected in pairs:
        assert float((got - expected).abs().max()) <= 1e-5 * float(expected.abs().max()), name


def test_the_fast_forms_run_where_they_were_measured_to_pay():
    x = torch.randn(2, 32, 32, 32, requires_grad=True)
    one, three = OverlapAddConvTranspose2d(32, 1, 4, 2, 1), OverlapAddConvTranspose2d(32, 3, 4, 2, 1)
    assert one(x).grad_fn.name() == "_OverlapAddConvTransposeBackward"
    assert three(x).grad_fn.name() == "_ConvolutionBackward"  # RGB: oneDNN's forward was faster
    conv = Conv2d(32, 32, 4, 2, 1)
    assert conv(x).grad_fn.name() == "_ConvolutionBackward"
    # images in (no input gradient): torch's own backward measured faster
    assert conv(x.detach()).grad_fn.name() == "ConvolutionBackward0"
    with torch.no_grad():
        assert conv(x).grad_fn is None


def test_training_relu_is_in_place_only_in_training_mode():
    relu = TrainingReLU()
    x = torch.randn(4, 8)
    kept = x.clone()
    y = relu.eval()(x)
    assert torch.equal(x, kept) and torch.equal(y, x.clamp_min(0))
    y = relu.train()(x)
    assert y.data_ptr() == x.data_ptr() and torch.equal(y, kept.clamp_min(0))


def test_extraction_hooks_see_the_conv_output_before_the_relu_in_eval_mode():
    """A hook on the convolution itself (inside the conv + ReLU block) records its own output: the
    in-place ReLU is off outside training."""
    torch.manual_seed(3)
    model = build_vae().eval()
    seen = {}
    handle = model.encoder.conv1[0].register_forward_hook(lambda m, i, o: seen.setdefault("conv", o))
    with torch.no_grad():
        model(torch.rand(4, 1, 64, 64))
    handle.remove()
    assert float(seen["conv"].min()) < 0  # not rectified afterwards


def test_one_training_step_of_the_model_matches_torch_modules():
    """The whole network, training mode: loss and every parameter gradient of vaesim's layers as close to the
    float64 gradient of the same network in torch's stock layers as torch's own float32 layers are (within
    2x their error), or within 1e-5 of each gradient's scale. torch's float32 error depends on the CPU's
    kernels: the output bias gradient (a sum of 131,072 terms) was 1.4e-4 off with torch's AVX2 kernels while
    vaesim's was 1e-7 off."""
    torch.manual_seed(4)
    fast = build_vae().to(memory_format=torch.channels_last)
    stock = with_torch_layers(build_vae())
    stock.load_state_dict(fast.state_dict())
    exact = with_torch_layers(build_vae()).double()
    exact.load_state_dict(fast.state_dict())
    images = (torch.rand(32, 1, 64, 64) > 0.8).float()
    noise = torch.randn(32, 10)
    losses = []
    for model, dtype in ((fast, torch.float32), (stock, torch.float32), (exact, torch.float64)):
        model.train()
        target = images.to(dtype)
        out = model(target.contiguous(memory_format=torch.channels_last), noise.to(dtype))
        loss = F.binary_cross_entropy_with_logits(out.logits, target, reduction="sum") / 32
        loss.backward()
        losses.append(float(loss.detach()))
    assert losses[0] == pytest.approx(losses[2], rel=1e-6) and losses[1] == pytest.approx(losses[2], rel=1e-6)
    stock_grads, exact_grads = dict(stock.named_parameters()), dict(exact.named_parameters())
    for name, param in fast.named_parameters():
        reference = exact_grads[name].grad
        scale = float(reference.abs().max())
        torch_error = float((stock_grads[name].grad.double() - reference).abs().max())
        error = float((param.grad.double() - reference).abs().max())
        assert error <= max(2 * torch_error, 1e-5 * scale) + 1e-12, (name, error, torch_error, scale)


def test_with_torch_layers_is_the_same_network_in_torch_modules():
    torch.manual_seed(6)
    model = build_vae()
    stock = with_torch_layers(model)
    vaesim_types = (Conv2d, ConvTranspose2d, TrainingReLU)
    assert not any(isinstance(m, vaesim_types) for m in stock.modules())
    assert any(isinstance(m, vaesim_types) for m in model.modules())  # the original is untouched
    assert type(stock.decoder.output) is nn.ConvTranspose2d and type(stock.encoder.conv1[0]) is nn.Conv2d
    assert type(stock.encoder.conv1[1]) is nn.ReLU
    assert stock.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(stock.state_dict().values(), model.state_dict().values()))
    assert stock.decoder.output.weight is not model.decoder.output.weight  # a copy
    x, noise = torch.rand(4, 1, 64, 64), torch.randn(4, 10)
    with torch.no_grad():
        expected, got = stock.eval()(x, noise).logits, model.eval()(x, noise).logits
    assert float((got - expected).abs().max()) <= 1e-5 * float(expected.abs().max())


def test_devices_other_than_cpu_run_torchs_own_layers():
    """CUDA (and any non-CPU device) keeps cuDNN's kernels: checked on the meta device, which has no CPU code."""
    x = torch.empty(2, 32, 32, 32, device="meta", requires_grad=True)
    output = OverlapAddConvTranspose2d(32, 1, 4, 2, 1, device="meta")
    conv = Conv2d(32, 32, 4, 2, 1, device="meta")
    deconv = ConvTranspose2d(32, 32, 4, 2, 1, device="meta")
    assert output(x).grad_fn.name() == "ConvolutionBackward0" and output(x).shape == (2, 1, 64, 64)
    assert conv(x).grad_fn.name() == "ConvolutionBackward0"
    assert deconv(x).grad_fn.name() == "ConvolutionBackward0"
