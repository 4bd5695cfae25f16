import json
import math
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from vae_blob_images import blob_images
from safetensors.torch import load_file

from vaesim.training.checkpoint import interrupt_step

from vaesim.training import (
    ImageArray,
    TrainConfig,
    TrainingDiverged,
    TrainingInterrupted,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint,
    read_metrics,
    train,
)


@pytest.fixture(scope="module")
def tiny_dataset():
    return ImageArray(blob_images(48))


def small_config(**overrides) -> TrainConfig:
    options = dict(objective="beta_vae", params={"beta": 4}, steps=4, batch_size=4, checkpoints="every:2", log_every=1, lr=1e-3)
    options.update(overrides)
    return TrainConfig(**options)


def checkpoint_tensors(run_dir, step):
    return load_file(str(run_dir / "checkpoints" / f"step_{step:08d}.safetensors"))


def assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


class Crash(RuntimeError):
    pass


def crash_at(step):
    def callback(finished):
        if finished == step:
            raise Crash(f"simulated crash after step {finished}")

    return callback


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_dataset):
    run_dir = tmp_path_factory.mktemp("reference")
    train(small_config(), run_dir, dataset=tiny_dataset, progress=False, device="cpu")
    return run_dir


def test_run_directory_layout(reference_run):
    assert list_checkpoints(reference_run) == [2, 4]
    assert (reference_run / "DONE").is_file()
    assert TrainConfig.from_dict(json.loads((reference_run / "config.json").read_text())) == small_config()
    metrics = read_metrics(reference_run)
    assert metrics["step"].tolist() == [1, 2, 3, 4]
    kl_columns = [f"kl_dim_{i}" for i in range(10)]
    assert {"loss", "reconstruction", "kl", "elbo", *kl_columns} <= set(metrics.columns)
    np.testing.assert_allclose(metrics[kl_columns].sum(axis=1), metrics["kl"], rtol=1e-5)
    np.testing.assert_allclose(metrics["loss"], metrics["reconstruction"] + 4 * metrics["kl"], rtol=1e-5)
    model, meta = load_checkpoint(reference_run, 2)
    assert meta["step"] == 2 and meta["objective"] == {"name": "beta_vae", "params": {"beta": 4.0}}
    assert meta["losses"]["step"] == 2 and meta["model"] == {"architecture": "conv", "num_channels": 1, "latent_dim": 10}
    assert_same_tensors(model.state_dict(), {k: v for k, v in checkpoint_tensors(reference_run, 2).items() if not k.startswith("optimizer.")})


def test_two_runs_with_the_same_seed_are_identical(reference_run, tiny_dataset, tmp_path):
    train(small_config(), tmp_path / "again", dataset=tiny_dataset, progress=False, device="cpu")
    assert_same_tensors(checkpoint_tensors(reference_run, 4), checkpoint_tensors(tmp_path / "again", 4))
    assert read_metrics(reference_run).equals(read_metrics(tmp_path / "again"))
    train(small_config(seed=1, steps=1, checkpoints=[]), tmp_path / "other", dataset=tiny_dataset, progress=False)
    other = checkpoint_tensors(tmp_path / "other", 1)
    assert not torch.equal(other["encoder.mean.weight"], checkpoint_tensors(reference_run, 2)["encoder.mean.weight"])


def test_resume_after_a_crash_ends_with_identical_weights(reference_run, tiny_dataset, tmp_path):
    run_dir = tmp_path / "crashed"
    with pytest.raises(Crash):
        train(small_config(), run_dir, dataset=tiny_dataset, progress=False, device="cpu", callback=crash_at(3))
    assert list_checkpoints(run_dir) == [2] and not (run_dir / "DONE").exists()
    torch.manual_seed(123)  # a resumed process starts from an unrelated RNG state
    np.random.seed(123)
    train(small_config(), run_dir, dataset=tiny_dataset, progress=False, device="cpu")
    assert_same_tensors(checkpoint_tensors(reference_run, 4), checkpoint_tensors(run_dir, 4))
    resumed = read_metrics(run_dir)
    assert resumed["step"].tolist() == [1, 2, 3, 4]  # no duplicated or lost rows
    assert resumed.equals(read_metrics(reference_run))


def test_a_finished_run_is_not_retrained(reference_run, tiny_dataset):
    before = {p: p.stat().st_mtime_ns for p in reference_run.rglob("*")}
    calls = []
    train(small_config(), reference_run, dataset=tiny_dataset, progress=False, callback=calls.append)
    assert calls == [] and {p: p.stat().st_mtime_ns for p in reference_run.rglob("*")} == before


def test_a_different_config_in_the_same_directory_is_refused(reference_run, tiny_dataset):
    with pytest.raises(ValueError, match=r"different config \(fields \['seed'\] differ\); use a new output directory"):
        train(small_config(seed=9), reference_run, dataset=tiny_dataset, progress=False)


class TurnsNaN:
    """Images that become NaN from the ``bad_call``-th batch on."""

    def __init__(self, dataset, bad_call):
        self.dataset, self.bad_call, self.calls = dataset, bad_call, 0
        self.num_channels = dataset.num_channels

    def __len__(self):
        return len(self.dataset)

    def images(self, indices):
        self.calls += 1
        batch = self.dataset.images(indices)
        return batch * np.nan if self.calls >= self.bad_call else batch


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_dataset, tmp_path):
    config = small_config(log_every=3, checkpoints="every:2")
    with pytest.raises(TrainingDiverged, match=r"became nan at step 3 of .*last good checkpoint is step 2"):
        train(config, tmp_path, dataset=TurnsNaN(tiny_dataset, bad_call=3), progress=False)
    assert list_checkpoints(tmp_path) == [2] and not (tmp_path / "DONE").exists()
    tensors, _ = read_checkpoint(tmp_path, 2)
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    assert read_metrics(tmp_path)["step"].max() <= 2


def _linear_cka_float64(x, y):
    x = x - x.mean(0)
    y = y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


@pytest.mark.parametrize("sample_noise", ["shared", "independent"])
def test_posterior_collapse_monitor_logs_cka_and_active_dims(tiny_dataset, tmp_path, sample_noise):
    from vaesim.training.loop import noise_key

    config = small_config(steps=2, monitor_every=2, monitor_size=32, log_every=4, checkpoints=[],
                          sample_noise=sample_noise)
    train(config, tmp_path, dataset=tiny_dataset, progress=False)
    metrics = read_metrics(tmp_path).set_index("step")
    assert metrics.index.tolist() == [1, 2]
    assert math.isnan(metrics.loc[1, "cka_mean_sample"])
    # Recompute at step 2 independently: the probe is fixed by the seed; the noise by torch.Generator(seed)
    # when shared, by the run (its whole config) and the step when independent
    model, _ = load_checkpoint(tmp_path, 2)
    indices = np.sort(np.random.default_rng([config.seed, 7919]).choice(len(tiny_dataset), 32, replace=False))
    noise_seed = config.seed if sample_noise == "shared" else (noise_key(config) + 2) % 2**63
    noise = torch.randn(32, 10, generator=torch.Generator().manual_seed(noise_seed))
    with torch.no_grad():
        out = model(torch.from_numpy(tiny_dataset.images(indices)), noise=noise)
    mean, sample = out.mean.double().numpy(), out.sample.double().numpy()
    assert metrics.loc[2, "cka_mean_sample"] == pytest.approx(_linear_cka_float64(mean, sample), rel=1e-6)
    kl = 0.5 * (mean**2 + np.exp(out.logvar.double().numpy()) - out.logvar.double().numpy() - 1).mean(0)
    assert 0 <= metrics.loc[2, "active_dims"] == int((kl > 0.01).sum())


def test_a_collapsed_mean_is_recorded_as_nan_and_training_finishes(tiny_dataset, tmp_path, caplog):
    # a constant encoder.mean (full collapse) has no defined CKA; the monitor exists to record it
    config = small_config(steps=4, monitor_every=2, monitor_size=16, checkpoints=[4])

    def collapse(model):
        with torch.no_grad():
            model.encoder.mean.weight.zero_()
            model.encoder.mean.bias.fill_(0.5)

    from vaesim.training import loop

    original = loop._Monitor.measure

    def measure(self, model, step=0):
        collapse(model)
        return original(self, model, step)

    caplog.set_level("INFO")
    try:
        loop._Monitor.measure = measure
        train(config, tmp_path, dataset=tiny_dataset, progress=False)
    finally:
        loop._Monitor.measure = original
    metrics = read_metrics(tmp_path).set_index("step")
    assert (tmp_path / "DONE").is_file()
    assert math.isnan(metrics.loc[2, "cka_mean_sample"]) and math.isnan(metrics.loc[4, "cka_mean_sample"])
    assert "posterior-collapse monitor at step 2: cka_mean_sample undefined" in caplog.text


def test_validation_split_holds_out_fixed_examples_and_logs_their_elbo(tiny_dataset, tmp_path):
    from vaesim.training.loop import split_indices

    train_part, held = split_indices(48, 0.25)
    assert len(held) == 12 and len(train_part) == 36 and not set(train_part) & set(held)
    assert np.array_equal(held, split_indices(48, 0.25)[1])  # the same examples for every run
    with pytest.raises(ValueError, match="leaves 0 held out"):
        split_indices(48, 0.001)

    class Recording:
        num_channels = 1

        def __init__(self):
            self.batches = []

        def __len__(self):
            return len(tiny_dataset)

        def images(self, indices):
            self.batches.append(np.asarray(indices))
            return tiny_dataset.images(indices)

    recording = Recording()
    config = small_config(steps=30, batch_size=8, validation_split=0.25, log_every=10, checkpoints=[30])
    train(config, tmp_path, dataset=recording, progress=False)
    trained = np.concatenate([b for b in recording.batches if len(b) == 8])
    assert len(trained) == 30 * 8 and not set(trained.tolist()) & set(held.tolist())
    metrics = read_metrics(tmp_path)
    for column in ("val_reconstruction", "val_kl", "val_elbo"):
        assert metrics[column].notna().all()
    assert np.allclose(metrics["val_elbo"], metrics["val_reconstruction"] + metrics["val_kl"])
    with pytest.raises(ValueError, match="validation_split must be a fraction"):
        small_config(validation_split=1.0)


def test_every_objective_trains_through_the_one_loop(tiny_dataset, tmp_path):
    expected_terms = {
        "annealed_vae": {"capacity"},
        "beta_tc_vae": {"tc"},
        "dip_vae_i": {"dip_off_diagonal", "dip_diagonal"},
        "dip_vae_ii": {"dip_off_diagonal", "dip_diagonal"},
    }
    for objective, terms in expected_terms.items():
        config = small_config(objective=objective, params={}, steps=1, checkpoints=[])
        train(config, tmp_path / objective, dataset=tiny_dataset, progress=False)
        metrics = read_metrics(tmp_path / objective)
        assert terms <= set(metrics.columns) and np.isfinite(metrics["loss"]).all(), objective


@pytest.mark.slow
def test_factor_vae_resumes_with_its_discriminator_and_optimiser(tiny_dataset, tmp_path):
    config = small_config(objective="factor_vae", params={"gamma": 10}, steps=3, checkpoints=[1])
    train(config, tmp_path / "a", dataset=tiny_dataset, progress=False)
    with pytest.raises(Crash):
        train(config, tmp_path / "b", dataset=tiny_dataset, progress=False, callback=crash_at(2))
    train(config, tmp_path / "b", dataset=tiny_dataset, progress=False)
    a, b = checkpoint_tensors(tmp_path / "a", 3), checkpoint_tensors(tmp_path / "b", 3)
    assert any(k.startswith("objective.discriminator.") for k in a)
    assert any(k.startswith("optimizer.objective.state.") for k in a)
    assert_same_tensors(a, b)
    assert {"tc", "discriminator_loss"} <= set(read_metrics(tmp_path / "a").columns)


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from vae_blob_images import blob_images
    from vaesim.training import ImageArray, TrainConfig, train

    def die(step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGKILL)

    config = TrainConfig.from_dict({config!r})
    train(config, sys.argv[1], dataset=ImageArray(blob_images(48)), progress=False, device="cpu", callback=die)
    """
)


@pytest.mark.slow
def test_resume_after_kill_9_matches_an_uninterrupted_run(reference_run, tmp_path):
    script = KILL_SCRIPT.format(tests=os.path.dirname(__file__), config=small_config().to_dict())
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    assert list_checkpoints(tmp_path) == [2]
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 4, "loss": 1')  # as if the kill had cut a line off
    train(small_config(), tmp_path, dataset=ImageArray(blob_images(48)), progress=False, device="cpu")
    assert_same_tensors(checkpoint_tensors(reference_run, 4), checkpoint_tensors(tmp_path, 4))
    assert read_metrics(tmp_path).equals(read_metrics(reference_run))


def test_collapsed_encoder_trains_to_the_end_with_nan_monitor(tiny_dataset, tmp_path, monkeypatch, caplog):
    """Issue 10 item 1: a constant encoder mean made the monitor raise and the run never finish."""
    from vaesim.training import loop

    def collapsed_vae(*args, **kwargs):
        model = build_vae(*args, **kwargs)
        with torch.no_grad():
            model.encoder.mean.weight.zero_()  # mean = bias: the same for every image (full collapse)
        model.encoder.mean.weight.requires_grad_(False)
        return model

    from vaesim.models.architectures import build_vae

    monkeypatch.setattr(loop, "build_vae", collapsed_vae)
    config = small_config(steps=4, monitor_every=2, monitor_size=32, log_every=4, checkpoints=[0, 4])
    train(config, tmp_path, dataset=tiny_dataset, progress=False)
    assert (tmp_path / "DONE").is_file()
    metrics = read_metrics(tmp_path).set_index("step")
    assert metrics.loc[[2, 4], "cka_mean_sample"].isna().all()
    assert "zero variance" in metrics.loc[4, "monitor_note"]
    assert (metrics.loc[[2, 4], "active_dims"] >= 0).all()
    assert "posterior-collapse monitor" in caplog.text


def test_metrics_log_cut_off_last_line_is_ignored_but_a_bad_middle_line_is_an_error(tmp_path, caplog):
    rows = [json.dumps({"step": s, "loss": 1.0 / s}) for s in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text(rows[0] + "\n" + rows[1] + "\n" + rows[2][:7])
    assert read_metrics(tmp_path)["step"].tolist() == [1, 2]
    assert "line 3 is cut off" in caplog.text
    (tmp_path / "metrics.jsonl").write_text(rows[0] + "\n" + '{"step": 2, "lo\x00' + "\n" + rows[2] + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 2 is not a metrics row"):
        read_metrics(tmp_path)


def interrupt_at(step, signum):
    def callback(finished):
        if finished == step:
            os.kill(os.getpid(), signum)

    return callback


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_then_resumed_run_records_exactly_the_uninterrupted_checkpoints(tiny_dataset, tmp_path, signum):
    config = small_config(steps=6, checkpoints="every:4", log_every=2)  # scheduled: 4, 6; interrupted after 5
    reference, run_dir = tmp_path / "reference", tmp_path / "interrupted"
    train(config, reference, dataset=tiny_dataset, progress=False, device="cpu")
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN under a shell's background job
    with pytest.raises(TrainingInterrupted) as stopped:
        train(config, run_dir, dataset=tiny_dataset, progress=False, device="cpu", callback=interrupt_at(5, signum))
    assert stopped.value.step == 5 and stopped.value.signum == signum
    assert list_checkpoints(run_dir) == [4] and not (run_dir / "DONE").exists()  # not mistaken for a scheduled one
    assert interrupt_step(run_dir) == 5
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored

    calls = []
    torch.manual_seed(123)  # a resumed process starts from an unrelated RNG state
    np.random.seed(123)
    train(config, run_dir, dataset=tiny_dataset, progress=False, device="cpu", callback=calls.append)
    assert calls == [6]  # resumed after step 5, not from the scheduled checkpoint 4
    assert interrupt_step(run_dir) is None and not (run_dir / "interrupted.safetensors").exists()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == \
        sorted(p.name for p in (reference / "checkpoints").iterdir())
    for name in sorted(p.name for p in (reference / "checkpoints").iterdir()):
        assert (run_dir / "checkpoints" / name).read_bytes() == (reference / "checkpoints" / name).read_bytes(), name
    assert (run_dir / "metrics.jsonl").read_bytes() == (reference / "metrics.jsonl").read_bytes()


def test_a_stale_interrupt_checkpoint_behind_the_scheduled_ones_is_dropped(tiny_dataset, tmp_path):
    config = small_config(steps=6, checkpoints="every:2", log_every=1)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(config, run_dir, dataset=tiny_dataset, progress=False, device="cpu",
              callback=interrupt_at(3, signal.SIGINT))
    with pytest.raises(Crash):  # killed hard after the next scheduled checkpoint, before the interrupt file is gone
        train(config, run_dir, dataset=tiny_dataset, progress=False, device="cpu", callback=crash_at(5))
    assert list_checkpoints(run_dir) == [2, 4] and interrupt_step(run_dir) is None
    calls = []
    train(config, run_dir, dataset=tiny_dataset, progress=False, device="cpu", callback=calls.append)
    assert calls == [5, 6]


def test_tensorboard_gets_every_logged_row_and_nothing_else_changes(reference_run, tiny_dataset, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, board = tmp_path / "run", tmp_path / "board"
    train(small_config(), run_dir, dataset=tiny_dataset, progress=False, device="cpu", tensorboard=board)
    assert (run_dir / "metrics.jsonl").read_bytes() == (reference_run / "metrics.jsonl").read_bytes()
    for name in sorted(p.name for p in (reference_run / "checkpoints").iterdir()):
        assert (run_dir / "checkpoints" / name).read_bytes() == (reference_run / "checkpoints" / name).read_bytes()
    events = EventAccumulator(str(board))
    events.Reload()
    metrics = read_metrics(reference_run)
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/reconstruction", "train/kl", "train/elbo", "kl_per_dim/0", "kl_per_dim/9"} <= tags
    for tag, column in (("train/loss", "loss"), ("train/kl", "kl"), ("kl_per_dim/3", "kl_dim_3")):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == metrics["step"].tolist()
        assert [s.value for s in scalars] == [float(np.float32(v)) for v in metrics[column]]  # stored as float32


def test_tensorboard_without_the_package_is_one_clear_error(tmp_path, monkeypatch, capsys):
    from vaesim.cli import main

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    assert main(["train", "--steps", "2", "--batch-size", "4", "--out", str(tmp_path / "run"), "--tensorboard",
                 "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["vaesim: error: TensorBoard logging needs the tensorboard package: "
                   "pip install 'vaesim[tensorboard]' (or leave TensorBoard logging off)"]
    assert not (tmp_path / "run").exists()  # said before any work
