import pytest
import torch

from vaesim.activations import LayerRecorder
from vaesim.models import DECODER_LAYERS, ENCODER_LAYERS, FC_LAYER_NAMES, LAYER_NAMES, build_vae

CONV_SHAPES = {
    "input": lambda c, d: (c, 64, 64),
    "encoder.conv1": lambda c, d: (32, 32, 32),
    "encoder.conv2": lambda c, d: (32, 16, 16),
    "encoder.conv3": lambda c, d: (64, 8, 8),
    "encoder.conv4": lambda c, d: (64, 4, 4),
    "encoder.fc": lambda c, d: (256,),
    "encoder.mean": lambda c, d: (d,),
    "encoder.logvar": lambda c, d: (d,),
    "encoder.variance": lambda c, d: (d,),
    "encoder.sample": lambda c, d: (d,),
    "decoder.fc1": lambda c, d: (256,),
    "decoder.fc2": lambda c, d: (1024,),
    "decoder.deconv1": lambda c, d: (64, 8, 8),
    "decoder.deconv2": lambda c, d: (32, 16, 16),
    "decoder.deconv3": lambda c, d: (32, 32, 32),
    "decoder.output": lambda c, d: (c, 64, 64),
}


def _record_raw(model, names, x):
    """Unflattened outputs of named modules, via plain forward hooks."""
    seen = {}
    modules = dict(model.named_modules())
    handles = [
        modules[n].register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o.detach())) for n in names
    ]
    out = model(x)
    for h in handles:
        h.remove()
    return seen, out


def test_layer_names_are_the_design_list_in_order():
    assert LAYER_NAMES[0] == "input" and LAYER_NAMES[-1] == "decoder.output"
    assert list(CONV_SHAPES) == list(LAYER_NAMES)
    assert ENCODER_LAYERS == LAYER_NAMES[1:10] and DECODER_LAYERS == LAYER_NAMES[10:]


@pytest.mark.parametrize("channels,latent", [(1, 10), (3, 4)])
def test_every_named_layer_has_the_paper_shape(channels, latent):
    torch.manual_seed(0)
    model = build_vae("conv", channels, latent)
    x = torch.rand(5, channels, 64, 64)
    seen, out = _record_raw(model, LAYER_NAMES, x)
    for name in LAYER_NAMES:
        assert tuple(seen[name].shape) == (5, *CONV_SHAPES[name](channels, latent)), name
    assert out.logits.shape == (5, channels, 64, 64)
    torch.testing.assert_close(seen["decoder.output"], out.logits)
    torch.testing.assert_close(seen["input"], x)


def test_conv_layers_are_post_relu_with_the_paper_kernels():
    model = build_vae()
    kernels = [model.get_submodule(f"encoder.conv{i}")[0] for i in range(1, 5)]
    assert [k.kernel_size for k in kernels] == [(4, 4), (4, 4), (2, 2), (2, 2)]
    assert [k.padding for k in kernels] == [(1, 1), (1, 1), (0, 0), (0, 0)]
    assert [k.out_channels for k in kernels] == [32, 32, 64, 64]
    seen, _ = _record_raw(model, ["encoder.conv1", "encoder.fc", "decoder.deconv2"], torch.rand(4, 1, 64, 64) - 0.5)
    for tensor in seen.values():
        assert tensor.min() >= 0  # recorded after the ReLU


def test_variance_and_sample_layers_follow_the_reparameterisation():
    torch.manual_seed(1)
    model = build_vae(latent_dim=6)
    noise = torch.randn(3, 6, dtype=torch.float32)
    seen, out = _record_raw(model, ["encoder.variance", "encoder.sample"], torch.rand(3, 1, 64, 64))
    torch.testing.assert_close(seen["encoder.variance"], out.logvar.exp())
    fixed = model(torch.rand(3, 1, 64, 64), noise=noise)
    torch.testing.assert_close(fixed.sample, fixed.mean + torch.exp(0.5 * fixed.logvar) * noise)


def test_fully_connected_variant_is_1200_1200():
    model = build_vae("fc", 3, 7)
    seen, out = _record_raw(model, FC_LAYER_NAMES, torch.rand(2, 3, 64, 64))
    assert seen["encoder.fc1"].shape == (2, 1200) and seen["encoder.fc2"].shape == (2, 1200)
    assert seen["decoder.fc3"].shape == (2, 1200)
    assert out.logits.shape == (2, 3, 64, 64) and out.mean.shape == (2, 7)
    assert model.layer_names == FC_LAYER_NAMES


def test_every_layer_name_is_hookable_by_module_name():
    model = build_vae()
    with LayerRecorder(model, LAYER_NAMES) as recorder:
        model(torch.rand(2, 1, 64, 64))
    assert set(recorder.arrays()) == set(LAYER_NAMES)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"architecture": "resnet"}, "architecture 'resnet': is unknown"), ({"latent_dim": 0}, "latent_dim must be a positive")],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_vae(**kwargs)


@pytest.mark.parametrize("architecture", ["conv", "fc"])
def test_default_initialisation_is_glorot_uniform_with_zero_biases(architecture):
    # Keras / disentanglement_lib defaults: U(-a, a), a = sqrt(6 / (fan_in + fan_out)), fans counting the
    # kernel's receptive field; biases 0 (Glorot & Bengio 2010)
    torch.manual_seed(0)
    model = build_vae(architecture, num_channels=1, latent_dim=10)
    checked = 0
    for name, module in model.named_modules():
        if not isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
            continue
        weight = module.weight.detach().double()
        receptive = weight[0, 0].numel() if weight.dim() > 2 else 1
        fan_sum = (weight.shape[0] + weight.shape[1]) * receptive
        bound = (6.0 / fan_sum) ** 0.5
        assert weight.abs().max() <= bound + 1e-12, name
        if weight.numel() >= 4096:  # a uniform's variance a^2 / 3, to sampling error
            assert weight.var().item() == pytest.approx(bound**2 / 3, rel=0.1), name
        assert torch.count_nonzero(module.bias) == 0, name
        checked += 1
    assert checked >= 5
    if architecture == "conv":  # the figure quoted in the issue: encoder.fc weights std 0.0395 (1024 -> 256)
        assert model.encoder.fc[0].weight.std().item() == pytest.approx((6 / 1280 / 3) ** 0.5, rel=0.02)


def test_pytorch_initialisation_stays_available():
    torch.manual_seed(0)
    model = build_vae(init="pytorch")
    assert torch.count_nonzero(model.encoder.fc[0].bias) > 0  # torch's uniform biases
    assert model.encoder.fc[0].weight.std().item() == pytest.approx(1 / (3 * 1024) ** 0.5, rel=0.05)  # Kaiming a=sqrt(5)
    with pytest.raises(ValueError, match="init='he' is unknown"):
        build_vae(init="he")
