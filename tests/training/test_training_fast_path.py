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
