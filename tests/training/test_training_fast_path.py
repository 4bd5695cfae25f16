"""The fast training path learns what the stock path learns, to float32 rounding.

The stock path is the network built from torch's own layers (``nn.Conv2d``,
``nn.ConvTranspose2d``, ``nn.ReLU``) in the NCHW layout with torch's default
(per-tensor) Adam: the training path before issue 11. The fast path is the
default: channels_last, vaesim's layers (vaesim.models.layers) and the fused
Adam kernel.
"""

import logging

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from vae_blob_images import blob_images

import vaesim.training.loop as loop
from vaesim.models import build_vae, layers
from vaesim.training import ImageArray, TrainConfig, train
from vaesim.training.loop import _make_adam, _use_channels_last

STEPS = 50
LR = 1e-4
ENVELOPE_DRAWS = 3
ENVELOPE_MARGIN = 2.0
# The fraction of weights more than lr/2 apart counts Adam steps that went the other way. A path with its own
# rounding at every step flips more of them than one perturbation of the initial weights does: under 2x the largest
# draw on an AMD EPYC, 2.7x on an Intel Xeon (both AVX-512; the bug below: 6.5x there), while the learned function
# stayed inside the draws' own envelope on both (0.65x on the Xeon). Stated bound: 4x.
BEYOND_MARGIN = 4.0
#: how much further from the float64 gradient the compiled step may be than the eager float32 step
COMPILED_MARGIN = 4.0
#: The tolerance. Training this network is chaotic at float32 rounding: moving the stock path's nonzero
#: initial weights by one ulp (half of them, at random) moves its weights after 50 Adam steps at lr 1e-4 by
#: up to 21 lr, with 7% of them beyond lr / 2 (measured, 1 thread). Adam's g / sqrt(v) turns a
#: rounding-level change of a near-zero gradient (zero biases make exact-zero ReLU inputs common) into a
#: step of up to lr, and later steps compound it. Any reordering of float32 sums does the same (channels_last
#: alone: 1.1 lr; vaesim's layers alone: 2.5 lr; the fused Adam kernel alone: 23 lr; all together: 6.7 lr,
#: 0.18% beyond lr / 2). So "equal to float32 tolerance" is stated as: no further from the stock path, in
#: max |difference| and in the fraction of weights beyond lr / 2, than the stock path is from itself after
#: that one-ulp change, measured in the same test; the per-step maths is held to 1e-5 of each gradient's scale
#: in tests/models/test_layers.py and below (Adam).
#: One perturbation is one draw from a chaotic process, and another CPU (AVX2 vs AVX-512) rounds each path
#: differently: on an Intel Xeon the fast path's worst was 28.1 lr against a one-ulp envelope of 23.8 lr. So
#: the envelope is measured as a distribution: ENVELOPE_DRAWS independent one-ulp perturbations of the stock
#: path, and the bound is the largest of them times ENVELOPE_MARGIN (stated margin: the spread between draws
#: on one machine is already ~1.5x).
#: The weights are a weak witness under that chaos: an output layer with its kernel transposed (a real bug)
#: also stays within 21 lr. The learned function is a sharp one: relative difference of the logits on a fixed
#: probe batch, measured 9e-5 for the fast path, 1.2e-3 for the one-ulp envelope, 5e-3 for the transposed
#: kernel. Both are checked.


def _weights(run_dir):
    return load_file(str(run_dir / "checkpoints" / f"step_{STEPS:08d}.safetensors"))


def _stock_layers(monkeypatch):
    """Make vaesim's layers compute exactly as torch's modules do (their forward and autograd)."""
    monkeypatch.setattr(layers.Conv2d, "forward", nn.Conv2d.forward)
    monkeypatch.setattr(layers.ConvTranspose2d, "forward", nn.ConvTranspose2d.forward)
    monkeypatch.setattr(layers.OverlapAddConvTranspose2d, "forward", nn.ConvTranspose2d.forward)
    monkeypatch.setattr(layers.TrainingReLU, "forward", nn.ReLU.forward)
    monkeypatch.setattr(loop, "_make_adam", lambda model, config, device: torch.optim.Adam(
        model.parameters(), lr=config.lr, betas=config.adam_betas, eps=config.adam_eps))


def _one_ulp_init(monkeypatch, draw=1):
    build = loop.build_vae

    def perturbed(*args, **kwargs):
        model = build(*args, **kwargs)
        generator = torch.Generator().manual_seed(draw)
        with torch.no_grad():
            for p in model.parameters():
                flip = (torch.rand(p.shape, generator=generator) < 0.5) & (p != 0)
                p.copy_(torch.where(flip, torch.nextafter(p, torch.full_like(p, float("inf"))), p))
        return model

    monkeypatch.setattr(loop, "build_vae", perturbed)


def _swapped_taps(monkeypatch):
    """A bug of the kind the overlap-add could have: the kernel's rows and columns swapped."""
    forward = layers.overlap_add_conv_transpose
    monkeypatch.setattr(layers, "overlap_add_conv_transpose",
                        lambda x, weight, bias: forward(x, weight.transpose(2, 3), bias))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    dataset = ImageArray(blob_images(256, seed=3))
    config = TrainConfig(objective="beta_vae", params={"beta": 4}, steps=STEPS, batch_size=64, lr=LR,
                         checkpoints=[STEPS], log_every=10, monitor_every=0, seed=0)
    variants = {
        "stock": (False, [_stock_layers]),
        "stock_one_ulp": (False, [_stock_layers, _one_ulp_init]),
        **{f"stock_one_ulp_{draw}": (False, [_stock_layers, lambda mp, draw=draw: _one_ulp_init(mp, draw)])
           for draw in range(2, ENVELOPE_DRAWS + 1)},
        "fast": (None, []),
        "fast_nchw": (False, []),
        "swapped_taps": (None, [_swapped_taps]),
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        for name, (channels_last, patches) in variants.items():
            with pytest.MonkeyPatch.context() as monkeypatch:
                for patch in patches:
                    patch(monkeypatch)
                run_dir = tmp_path_factory.mktemp(name)
                train(config, run_dir, dataset=dataset, progress=False, device="cpu", channels_last=channels_last)
            out[name] = _weights(run_dir)
    finally:
        torch.set_num_threads(threads)
    return out


def _logits(weights):
    """Logits (128, 1, 64, 64) of the model ``weights`` on a fixed probe batch, eps = 0, eval mode."""
    from vaesim.training.checkpoint import model_state

    model = build_vae().eval()
    model.load_state_dict(model_state(weights))
    probe = torch.from_numpy(ImageArray(blob_images(128, seed=9)).images(range(128)))
    with torch.no_grad():
        return model(probe, noise=torch.zeros(128, 10)).logits


def _function_distance(a, b):
    """||logits(a) - logits(b)|| / ||logits(b)|| on the probe batch."""
    la, lb = _logits(a), _logits(b)
    return float((la - lb).norm() / lb.norm())


def _distance(a, b):
    """(max |a - b| over every weight, fraction of weights with |a - b| > lr / 2, how many differ)."""
    assert a.keys() == b.keys()
    worst, beyond, moved, total = 0.0, 0, 0, 0
    for name in a:
        if name.startswith("optimizer."):
            continue
        assert a[name].shape == b[name].shape and a[name].is_contiguous() and b[name].is_contiguous(), name
        difference = (a[name] - b[name]).abs()
        worst = max(worst, float(difference.max()))
        beyond += int((difference > LR / 2).sum())
        moved += int(not torch.equal(a[name], b[name]))
        total += difference.numel()
    return worst, beyond / total, moved


def _one_ulp_draws(runs):
    return [runs[name] for name in runs if name.startswith("stock_one_ulp")]


@pytest.mark.parametrize("path", ["fast", "fast_nchw"])
def test_weights_after_50_steps_are_within_the_float32_envelope_of_the_stock_path(runs, path):
    draws = [_distance(runs["stock"], draw) for draw in _one_ulp_draws(runs)]
    assert len(draws) == ENVELOPE_DRAWS and all(d[0] > 0 for d in draws)  # the envelope is measured, not zero
    worst_bound = ENVELOPE_MARGIN * max(d[0] for d in draws)
    beyond_bound = BEYOND_MARGIN * max(d[1] for d in draws)
    worst, beyond, moved = _distance(runs["stock"], runs[path])
    assert moved > 0  # the paths really differ (else this test could not fail)
    assert worst <= worst_bound, (worst / LR, worst_bound / LR)
    assert beyond <= beyond_bound, (beyond, beyond_bound)
    function_bound = ENVELOPE_MARGIN * max(_function_distance(draw, runs["stock"]) for draw in _one_ulp_draws(runs))
    assert _function_distance(runs[path], runs["stock"]) <= function_bound


def test_a_wrong_overlap_add_lands_outside_the_envelope(runs):
    """The check can fail: the same path with the output layer's kernel rows and columns swapped learns
    another function (its weights alone would not tell: see the tolerance's comment)."""
    envelope = max(_function_distance(draw, runs["stock"]) for draw in _one_ulp_draws(runs))
    bug = _function_distance(runs["swapped_taps"], runs["stock"])
    if bug <= ENVELOPE_MARGIN * envelope and torch.backends.cpu.get_cpu_capability() != "AVX512":
        # measured 2026-12-08 on an AMD EPYC without AVX-512 (torch's AVX2 kernels): the one-ulp envelope is
        # 2.5e-3 (1.2e-3 on the AVX-512 machines) and the bug 3.2e-3, so the 2x bound cannot see this bug there
        pytest.xfail(f"no power on {torch.backends.cpu.get_cpu_capability()} kernels: bug {bug:.2e} within "
                     f"{ENVELOPE_MARGIN:g} x the one-ulp envelope {envelope:.2e}")
    # the bound the fast path is held to rejects this bug
    assert bug > ENVELOPE_MARGIN * envelope


def test_fused_adam_step_equals_the_per_tensor_step_to_rounding():
    """From the same weights, Adam state and gradients, one step of the fused kernel lands within one ulp of
    each weight plus 1e-6 of the update of torch's per-tensor Adam."""
    torch.manual_seed(5)
    model = build_vae()
    reference = torch.optim.Adam(model.parameters(), lr=LR)
    for _ in range(3):  # a nonzero, uneven Adam state
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 10.0 ** float(torch.randint(-6, 1, ()))
        reference.step()
    twin = build_vae()
    twin.load_state_dict(model.state_dict())
    fused = torch.optim.Adam(twin.parameters(), lr=LR, fused=True)
    state = {k: v.clone() if torch.is_tensor(v) else v for k, v in reference.state_dict()["state"].items()}
    fused.load_state_dict({"state": {k: {n: t.clone() for n, t in v.items()} for k, v in state.items()},
                           "param_groups": [{**reference.state_dict()["param_groups"][0], "fused": True}]})
    assert fused.param_groups[0]["fused"]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for a, b in zip(model.parameters(), twin.parameters()):
        a.grad = torch.randn_like(a) * 10.0 ** float(torch.randint(-6, 1, ()))
        b.grad = a.grad.clone()
    reference.step()
    fused.step()
    eps = torch.finfo(torch.float32).eps
    with torch.no_grad():
        for (name, a), b in zip(model.named_parameters(), twin.parameters()):
            assert not torch.equal(a, before[name]), name  # the step moved every tensor
            bound = eps * a.abs() + 1e-6 * (a - before[name]).abs()
            assert bool(((a - b).abs() <= bound).all()), name


def test_fast_path_is_chosen_for_conv_on_cpu_and_cuda_only():
    conv, fc = build_vae("conv", 1, 10), build_vae("fc", 1, 10)
    assert _use_channels_last(conv, torch.device("cpu"), None)
    assert _use_channels_last(conv, torch.device("cuda"), None)
    assert not _use_channels_last(fc, torch.device("cpu"), None)
    assert not _use_channels_last(conv, torch.device("mps"), None)
    assert not _use_channels_last(conv, torch.device("cpu"), False)
    config = TrainConfig(objective="beta_vae", steps=1)
    assert _make_adam(conv, config, torch.device("cpu")).defaults.get("fused")
    assert not _make_adam(conv, config, torch.device("mps")).defaults.get("fused")


def test_compiled_forward_has_the_eager_loss_gradients_and_random_stream(caplog):
    """The training loop's compiled forward (opt-in): one step's loss and every gradient as close to the
    float64 gradient as eager float32 is, and the same eps (drawn eagerly from torch's generator, so the RNG
    state after the step is eager's too).

    Tolerance from a float64 reference, not from one CPU's rounding: the same step is run on a float64 copy
    of the model; the compiled gradient's distance from it may be at most COMPILED_MARGIN times eager's own
    distance from it (plus 1e-6 of the gradient's scale for layers where eager happens to be near exact).
    Both are float32 evaluations of the same sums in different orders, so their errors are of the same size
    on any CPU (measured ratio 0.5-1.5 here). Over 50 Adam steps the rounding-level differences grow like any
    reordering of sums (see the tolerance's comment above), so the bound is stated per step."""
    import copy

    import torch.nn.functional as F

    from vaesim.training.loop import _Forward

    caplog.set_level(logging.WARNING, logger="torch")  # no pages of empty inductor DEBUG records on failure
    torch.manual_seed(0)
    model = build_vae("conv", 1, 10).to(memory_format=torch.channels_last)
    reference = copy.deepcopy(model).double()
    images = (torch.rand(32, 1, 64, 64) > 0.8).float().contiguous(memory_format=torch.channels_last)

    def step(forward, net, inputs):
        net.zero_grad(set_to_none=True)
        torch.manual_seed(123)
        out = forward(inputs)
        loss = F.binary_cross_entropy_with_logits(out.logits, inputs, reduction="sum") / 32 + (
            0.5 * (out.mean.square() + out.logvar.exp() - out.logvar - 1).sum(1).mean())
        loss.backward()
        return float(loss.detach()), out.sample.detach(), {k: p.grad.clone() for k, p in net.named_parameters()}, \
            torch.get_rng_state()

    exact = step(_Forward(reference, compile=False), reference, images.double())
    eager = step(_Forward(model, compile=False), model, images)
    forward = _Forward(model, compile=True)
    with caplog.at_level(logging.WARNING, logger="vaesim.training.loop"):
        compiled = step(forward, model, images)
    if forward.compiled is None:  # it failed to build (ATEN_CPU_CAPABILITY=default: torch 2.13's inductor emits
        # at::vec code without its header) or the first-batch check refused its numbers (=avx2 on an AVX-512
        # CPU): vaesim trains eagerly there (the two fallback tests below), and there is nothing compiled to test
        pytest.skip(f"torch.compile is not usable on this machine, vaesim falls back to eager: "
                    f"{caplog.text.strip().splitlines()[0]}")
    assert compiled[0] == pytest.approx(exact[0], rel=1e-5)
    torch.testing.assert_close(compiled[1], eager[1], rtol=1e-5, atol=1e-6)  # same eps
    for name, grad in exact[2].items():
        scale = float(grad.abs().max())
        eager_error = float((eager[2][name].double() - grad).abs().max())
        compiled_error = float((compiled[2][name].double() - grad).abs().max())
        assert compiled_error <= COMPILED_MARGIN * eager_error + 1e-6 * scale + 1e-12, (name, compiled_error,
                                                                                        eager_error)
    assert torch.equal(compiled[3], eager[3])


def _eager_and_fallback_weights(tmp_path, monkeypatch, caplog, fake_compile):
    """Train 3 steps eagerly, then with ``torch.compile`` replaced by ``fake_compile``; both final weights."""
    dataset = ImageArray(blob_images(64, seed=4))
    config = TrainConfig(architecture="fc", objective="beta_vae", steps=3, batch_size=16, checkpoints=[3],
                         log_every=1, seed=0)
    train(config, tmp_path / "eager", dataset=dataset, progress=False, device="cpu", compile=False)
    monkeypatch.setattr(torch, "compile", fake_compile)
    with caplog.at_level("WARNING", logger="vaesim.training.loop"):
        train(config, tmp_path / "fallback", dataset=dataset, progress=False, device="cpu", compile=True)
    eager = load_file(str(tmp_path / "eager" / "checkpoints" / "step_00000003.safetensors"))
    fallback = load_file(str(tmp_path / "fallback" / "checkpoints" / "step_00000003.safetensors"))
    return eager, fallback


def test_a_failing_compiler_falls_back_to_eager_with_a_warning(tmp_path, monkeypatch, caplog):
    """torch.compile raising at the first call (no C++ compiler, say): the run warns, trains eagerly and
    ends with exactly the eager run's weights."""
    def broken(model, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("no working C++ compiler")
        return call

    eager, fallback = _eager_and_fallback_weights(tmp_path, monkeypatch, caplog, broken)
    assert "torch.compile failed (RuntimeError: no working C++ compiler); training eagerly" in caplog.text
    assert eager.keys() == fallback.keys() and all(torch.equal(eager[k], fallback[k]) for k in eager)


def test_a_compiler_that_computes_wrongly_falls_back_to_eager_with_a_warning(tmp_path, monkeypatch, caplog):
    """torch.compile that builds but returns wrong numbers (torch 2.13's inductor under
    ATEN_CPU_CAPABILITY=avx2 on an AVX-512 CPU returns logits of 1e36): the first batch is checked against
    eager, the run warns, trains eagerly and ends with exactly the eager run's weights."""
    def wrong(model, **kwargs):
        def call(images, noise):
            out = model(images, noise)
            return out._replace(logits=out.logits * 1e30)  # VAEOutput is a NamedTuple
        return call

    eager, fallback = _eager_and_fallback_weights(tmp_path, monkeypatch, caplog, wrong)
    assert "torch.compile's forward disagrees with eager (logits: max |compiled - eager|" in caplog.text
    assert eager.keys() == fallback.keys() and all(torch.equal(eager[k], fallback[k]) for k in eager)


def test_compile_follows_the_environment_when_not_given(monkeypatch):
    from vaesim.training.loop import _use_compile

    monkeypatch.delenv("VAESIM_COMPILE", raising=False)
    assert not _use_compile(None)
    monkeypatch.setenv("VAESIM_COMPILE", "1")
    assert _use_compile(None) and not _use_compile(False)
    monkeypatch.setenv("VAESIM_COMPILE", "0")
    assert not _use_compile(None) and _use_compile(True)
