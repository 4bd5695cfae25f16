"""The fast training path (channels_last) learns what the plain NCHW path learns, to float32 rounding."""

import pytest
import torch
from safetensors.torch import load_file
from vae_blob_images import blob_images

from vaesim.training import ImageArray, TrainConfig, train
from vaesim.training.loop import _make_adam, _use_channels_last
from vaesim.models import build_vae

STEPS = 50
#: weights after 50 Adam steps at lr 1e-4: |fast - plain| <= ATOL = 2 lr everywhere, and all but a
#: 1e-4 fraction within lr / 2. Measured (1 thread): default Glorot init (zero biases) max 1.1e-4 with
#: 14 of 690,517 weights beyond lr / 2; torch's default init max 1.2e-5. The two layouts sum the same
#: products in a different order (float32 rounding, ~1e-7 relative per operation); Adam's g / sqrt(v)
#: can turn a rounding-level change of a near-zero gradient (zero biases make exact-zero ReLU inputs
#: common) into a step of up to lr, so the bound is stated in units of lr rather than of float32 epsilon.
LR = 1e-4
ATOL = 2 * LR
RTOL = 0.0
MAX_FRACTION_BEYOND_HALF_LR = 1e-4


def _weights(run_dir):
    return load_file(str(run_dir / "checkpoints" / f"step_{STEPS:08d}.safetensors"))


@pytest.fixture(scope="module")
def both_paths(tmp_path_factory):
    dataset = ImageArray(blob_images(256, seed=3))
    config = TrainConfig(objective="beta_vae", params={"beta": 4}, steps=STEPS, batch_size=64, lr=LR,
                         checkpoints=[STEPS], log_every=10, monitor_every=0, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for name, channels_last in (("plain", False), ("fast", True)):
            run_dir = tmp_path_factory.mktemp(name)
            train(config, run_dir, dataset=dataset, progress=False, device="cpu", channels_last=channels_last)
            out[name] = _weights(run_dir)
    finally:
        torch.set_num_threads(threads)
    return out


def test_weights_after_50_steps_match_the_nchw_path(both_paths):
    plain, fast = both_paths["plain"], both_paths["fast"]
    assert plain.keys() == fast.keys()
    moved = beyond = total = 0
    for name in plain:
        if name.startswith("optimizer."):
            continue
        a, b = plain[name], fast[name]
        assert a.shape == b.shape and a.is_contiguous() and b.is_contiguous(), name
        torch.testing.assert_close(b, a, atol=ATOL, rtol=RTOL, msg=name)
        moved += int(not torch.equal(a, b))
        beyond += int(((a - b).abs() > LR / 2).sum())
        total += a.numel()
    assert moved > 0  # the layouts really differ (else this test could not fail)
    assert beyond <= MAX_FRACTION_BEYOND_HALF_LR * total


def test_fast_path_is_chosen_for_conv_on_cpu_and_cuda_only():
    conv, fc = build_vae("conv", 1, 10), build_vae("fc", 1, 10)
    assert _use_channels_last(conv, torch.device("cpu"), None)
    assert _use_channels_last(conv, torch.device("cuda"), None)
    assert not _use_channels_last(fc, torch.device("cpu"), None)
    assert not _use_channels_last(conv, torch.device("mps"), None)
    assert not _use_channels_last(conv, torch.device("cpu"), False)
    config = TrainConfig(objective="beta_vae", steps=1)
    assert not _make_adam(conv, config, torch.device("cpu")).defaults.get("fused")


def test_compiled_forward_has_the_eager_loss_gradients_and_random_stream():
    """The training loop's compiled forward (opt-in): one step's loss and every gradient within float32
    rounding of eager (1e-6 of the gradient's scale), and the same eps (drawn eagerly from torch's generator,
    so the RNG state after the step is eager's too). Over 50 Adam steps the rounding-level differences grow
    like any reordering of sums (measured: max 11 lr, 0.8% of weights beyond lr / 2), so the bound is stated
    per step."""
    import torch.nn.functional as F

    from vaesim.training.loop import _Forward

    torch.manual_seed(0)
    model = build_vae("conv", 1, 10).to(memory_format=torch.channels_last)
    images = (torch.rand(32, 1, 64, 64) > 0.8).float().contiguous(memory_format=torch.channels_last)

    def step(forward):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(123)
        out = forward(images)
        loss = F.binary_cross_entropy_with_logits(out.logits, images, reduction="sum") / 32 + (
            0.5 * (out.mean.square() + out.logvar.exp() - out.logvar - 1).sum(1).mean())
        loss.backward()
        return float(loss.detach()), out.sample.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}, \
            torch.get_rng_state()

    eager = step(_Forward(model, compile=False))
    forward = _Forward(model, compile=True)
    compiled = step(forward)
    assert forward.compiled is not None  # really compiled (no fallback)
    assert compiled[0] == pytest.approx(eager[0], rel=1e-6)
    torch.testing.assert_close(compiled[1], eager[1], rtol=1e-5, atol=1e-6)  # same eps
    for name, grad in eager[2].items():
        scale = float(grad.abs().max())
        assert float((compiled[2][name] - grad).abs().max()) <= 1e-6 * scale + 1e-12, name
    assert torch.equal(compiled[3], eager[3])


def test_a_failing_compiler_falls_back_to_eager_with_a_warning(tmp_path, monkeypatch, caplog):
    """torch.compile raising at the first call (no C++ compiler, say): the run warns, trains eagerly and
    ends with exactly the eager run's weights."""
    dataset = ImageArray(blob_images(64, seed=4))
    config = TrainConfig(architecture="fc", objective="beta_vae", steps=3, batch_size=16, checkpoints=[3],
                         log_every=1, seed=0)

    def broken(model, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("no working C++ compiler")
        return call

    train(config, tmp_path / "eager", dataset=dataset, progress=False, device="cpu", compile=False)
    monkeypatch.setattr(torch, "compile", broken)
    with caplog.at_level("WARNING", logger="vaesim.training.loop"):
        train(config, tmp_path / "fallback", dataset=dataset, progress=False, device="cpu", compile=True)
    assert "torch.compile failed (RuntimeError: no working C++ compiler); training eagerly" in caplog.text
    eager = load_file(str(tmp_path / "eager" / "checkpoints" / "step_00000003.safetensors"))
    fallback = load_file(str(tmp_path / "fallback" / "checkpoints" / "step_00000003.safetensors"))
    assert eager.keys() == fallback.keys() and all(torch.equal(eager[k], fallback[k]) for k in eager)


def test_compile_follows_the_environment_when_not_given(monkeypatch):
    from vaesim.training.loop import _use_compile

    monkeypatch.delenv("VAESIM_COMPILE", raising=False)
    assert not _use_compile(None)
    monkeypatch.setenv("VAESIM_COMPILE", "1")
    assert _use_compile(None) and not _use_compile(False)
    monkeypatch.setenv("VAESIM_COMPILE", "0")
    assert not _use_compile(None) and _use_compile(True)
