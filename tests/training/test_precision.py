"""``training.precision: bf16-mixed`` (issue 33 item 4): trains, resumes bit-identically, is part of the run's
identity, refuses cleanly where bfloat16 is missing, and leaves "32" runs exactly as before."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from vae_blob_images import blob_images

from vaesim.models import build_vae
from vaesim.models.layers import with_torch_layers
from vaesim.training import (
    ImageArray,
    TrainConfig,
    list_checkpoints,
    read_metrics,
    train,
)
from vaesim.training import loop as training_loop

needs_bf16 = pytest.mark.skipif(not training_loop.bf16_supported(torch.device("cpu")),
                                reason="this CPU has no bfloat16 support (the refusal is tested below)")


@pytest.fixture(scope="module")
def tiny_dataset():
    return ImageArray(blob_images(48))


def config(**overrides) -> TrainConfig:
    options = dict(objective="beta_vae", params={"beta": 4}, steps=6, batch_size=4, checkpoints="every:3",
                   log_every=1, lr=1e-3, precision="bf16-mixed")
    options.update(overrides)
    return TrainConfig(**options)


def tensors(run_dir, step):
    return load_file(str(run_dir / "checkpoints" / f"step_{step:08d}.safetensors"))


def test_vaesim_layers_run_under_autocast_like_torchs_own():
    # the issue: vaesim's faster conv layers raised a RuntimeError under torch.autocast(cpu, bfloat16)
    torch.manual_seed(0)
    model = build_vae(num_channels=1, latent_dim=10).train()
    stock = with_torch_layers(model)
    images = torch.from_numpy(blob_images(8)).float().requires_grad_(False)
    noise = torch.randn(8, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, theirs = model(images, noise), stock(images, noise)
    for name in ("logits", "mean", "logvar"):
        a, b = getattr(ours, name), getattr(theirs, name)
        assert a.dtype == b.dtype == torch.bfloat16
        assert torch.equal(a, b), name  # the same torch modules run under autocast: the same bits
    ours.logits.float().sum().backward()  # and the backward runs
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters() if p.requires_grad)


@needs_bf16
def test_bf16_mixed_trains_with_float32_weights_and_says_so(tiny_dataset, tmp_path):
    run = train(config(), tmp_path / "bf16", dataset=tiny_dataset, progress=False, device="cpu")
    assert json.loads((run / "config.json").read_text())["precision"] == "bf16-mixed"
    assert all(t.dtype == torch.float32 for t in tensors(run, 6).values())  # weights stay float32
    metrics = read_metrics(run)
    assert np.isfinite(metrics["loss"]).all() and list_checkpoints(run) == [3, 6]
    # beside float32 from the same seed: the same run to bfloat16's accuracy (8 bits of mantissa: a step's loss
    # moves by ~2^-8 relative; 6 steps of Adam at lr 1e-3 keep the losses within 3% of each other)
    fp32 = read_metrics(train(config(precision="32"), tmp_path / "fp32", dataset=tiny_dataset, progress=False,
                              device="cpu"))
    assert np.allclose(metrics["loss"], fp32["loss"], rtol=0.03)
    assert not np.array_equal(metrics["loss"], fp32["loss"])  # it did compute in bfloat16


@needs_bf16
def test_bf16_mixed_resumes_bit_identically_from_its_own_checkpoints(tiny_dataset, tmp_path):
    reference = train(config(), tmp_path / "reference", dataset=tiny_dataset, progress=False, device="cpu")

    def crash(finished):
        if finished == 4:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config(), tmp_path / "resumed", dataset=tiny_dataset, progress=False, device="cpu", callback=crash)
    torch.manual_seed(123)
    resumed = train(config(), tmp_path / "resumed", dataset=tiny_dataset, progress=False, device="cpu")
    a, b = tensors(reference, 6), tensors(resumed, 6)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_metrics(resumed).equals(read_metrics(reference))


def test_bf16_mixed_is_refused_in_one_line_where_bfloat16_is_missing(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(training_loop, "bf16_supported", lambda device: False)
    with pytest.raises(ValueError) as error:
        train(config(), tmp_path / "run", dataset=tiny_dataset, progress=False, device="cpu")
    message = str(error.value)
    assert "\n" not in message and "precision='bf16-mixed'" in message and "precision '32'" in message
    assert not (tmp_path / "run").exists()  # refused before any file
    train(config(precision="32", steps=1, checkpoints=[1]), tmp_path / "fp32", dataset=tiny_dataset,
          progress=False, device="cpu")  # float32 still trains


def test_precision_is_part_of_the_run_id_and_32_leaves_ids_and_configs_as_before():
    from vaesim.study import parse_spec, plan_study

    spec = {"name": "p", "datasets": ["dsprites-procedural"], "objectives": [{"name": "beta_vae", "values": [1]}],
            "seeds": [0], "training": {"steps": 10}, "probe": {"n": 16}}
    plain = plan_study(parse_spec(spec)).runs[0]
    explicit = plan_study(parse_spec({**spec, "training": {"steps": 10, "precision": "32"}})).runs[0]
    mixed = plan_study(parse_spec({**spec, "training": {"steps": 10, "precision": "bf16-mixed"}})).runs[0]
    assert plain.run_id == explicit.run_id and "precision" not in plain.config
    assert mixed.run_id != plain.run_id and mixed.config["precision"] == "bf16-mixed"
    assert "precision" not in TrainConfig().to_dict()  # config.json bytes of float32 runs: unchanged
    assert TrainConfig.from_dict(TrainConfig(precision="bf16-mixed").to_dict()).precision == "bf16-mixed"
    with pytest.raises(ValueError, match="precision='bf16' is unknown"):
        TrainConfig(precision="bf16")
    with pytest.raises(Exception, match="precision"):
        parse_spec({**spec, "training": {"steps": 10, "precision": "16-mixed"}})


def test_a_study_asking_for_bf16_where_it_is_missing_is_refused_before_any_file(tmp_path, monkeypatch):
    from vaesim.study import parse_spec, run_study

    monkeypatch.setattr(training_loop, "bf16_supported", lambda device: False)
    spec = parse_spec({"name": "p", "datasets": ["dsprites-procedural"],
                       "objectives": [{"name": "beta_vae", "values": [1]}], "seeds": [0],
                       "training": {"steps": 8, "batch_size": 4, "precision": "bf16-mixed"}, "probe": {"n": 16},
                       "device": "cpu"})
    with pytest.raises(ValueError, match="training.precision: 'bf16-mixed' asked for") as error:
        run_study(spec, tmp_path / "study", progress=False)
    assert "\n" not in str(error.value) and not (tmp_path / "study").exists()
