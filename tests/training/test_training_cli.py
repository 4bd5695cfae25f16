import numpy as np
import pytest

from vaesim.cli import main
from vaesim.training import list_checkpoints, read_metrics
from vaesim.training import loop as training_loop


def test_vaesim_train_runs_on_a_named_dataset_and_then_does_nothing(tmp_path, capsys):
    args = ["train", "--dataset", "dsprites-procedural", "--objective", "beta_tc_vae", "--param", "4",
            "--set", "sampling=stratified", "--steps", "2", "--batch-size", "4", "--checkpoints", "every:1",
            "--log-every", "1", "--out", str(tmp_path), "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    assert "finished (2 steps)" in capsys.readouterr().out
    assert list_checkpoints(tmp_path) == [1, 2]
    assert np.isfinite(read_metrics(tmp_path)["tc"]).all()
    assert main(args) == 0
    assert "already finished, nothing to do" in capsys.readouterr().out


def test_vaesim_train_init_and_validation_split(tmp_path, capsys):
    import json

    args = ["train", "--steps", "2", "--batch-size", "4", "--checkpoints", "2", "--log-every", "1",
            "--init", "pytorch", "--validation-split", "0.1", "--out", str(tmp_path), "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["init"], config["validation_split"]) == ("pytorch", 0.1)
    assert np.isfinite(read_metrics(tmp_path)["val_elbo"]).all()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--objective", "vae"], "--objective 'vae' is unknown; valid objectives: beta_vae, annealed_vae, beta_tc_vae"),
        (["--objective", "annealed_vae", "--set", "beta=2"], "has no parameter 'beta'; valid parameters: c_max, gamma, iteration_threshold"),
        (["--set", "beta"], "expected NAME=VALUE"),
        (["--checkpoints", "weekly:2"], "unknown kind 'weekly'"),
        (["--validation-split", "1.5"], "validation_split must be a fraction in [0, 1), got 1.5"),
        (["--param", "-3"], "--param: beta=-3 for beta_vae; objective parameters are regularisation strengths"),
        (["--param", "nan"], "--param: beta=nan for beta_vae"),
        (["--objective", "annealed_vae", "--set", "gamma=-1"], "--set gamma: gamma=-1 for annealed_vae"),
    ],
)
def test_vaesim_train_rejects_bad_input_with_the_valid_choices(tmp_path, capsys, extra, message):
    assert main(["train", "--out", str(tmp_path), "--steps", "1", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "checkpoints").exists()  # refused before any training


def test_vaesim_train_exits_non_zero_on_nan(tmp_path, capsys, monkeypatch):
    class AllNaN:
        num_channels = 1

        def __len__(self):
            return 8

        def images(self, indices):
            return np.full((len(indices), 1, 64, 64), np.nan, np.float32)

    monkeypatch.setattr(training_loop, "load_dataset", lambda config: AllNaN())
    code = main(["train", "--steps", "2", "--batch-size", "2", "--out", str(tmp_path), "--no-progress"])
    assert code == 1
    assert "training diverged: the loss became nan at step 1" in capsys.readouterr().err


def test_a_non_numeric_param_names_the_option(tmp_path, capsys):
    """Issue 10 item 13: `--param abc` said only "could not convert string to float"."""
    from vaesim.cli import main

    assert main(["train", "--param", "abc", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaesim: error: --param 'abc': expected a number") and err.count("\n") == 1


def test_vaesim_train_says_it_resumes_without_verbose(tmp_path, capsys):
    args = ["train", "--steps", "2", "--batch-size", "4", "--checkpoints", "every:1", "--out", str(tmp_path),
            "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    # as if killed after step 1: the step-2 checkpoint and DONE were never written
    (tmp_path / "DONE").unlink()
    for path in (tmp_path / "checkpoints").glob("step_00000002.*"):
        path.unlink()
    capsys.readouterr()
    assert main(args) == 0
    captured = capsys.readouterr()
    assert f"{tmp_path}: resuming from step 1 of 2" in captured.err
    assert "finished (2 steps)" in captured.out


def test_vaesim_train_in_a_log_writes_plain_lines_and_a_short_run_few_checkpoints(tmp_path, capsys, monkeypatch):
    """Without a terminal: no tqdm frames, a plain progress line (here every step); 100 steps: 2 checkpoints."""
    from vaesim.training import commands

    monkeypatch.setattr(commands, "LINE_EVERY", 0.0)
    args = ["train", "--steps", "3", "--batch-size", "4", "--log-every", "1", "--out", str(tmp_path / "run"),
            "--device", "cpu"]
    assert main(args) == 0  # capsys: stderr is not a terminal
    err = capsys.readouterr().err
    assert "\r" not in err and "it/s" not in err
    lines = [line for line in err.splitlines() if line.startswith("step ")]
    assert [line.split(",")[0] for line in lines] == ["step 1/3", "step 2/3", "step 3/3"]
    assert "loss " in lines[-1] and lines[-1].endswith("steps/s")
    assert list_checkpoints(tmp_path / "run") == [0, 3]  # not 11 checkpoints for a short run
    assert commands.default_checkpoints(100) == "0" and commands.default_checkpoints(500) == "0,log:5"
    assert commands.default_checkpoints(300_000) == commands.DEFAULT_CHECKPOINTS


def test_vaesim_train_without_steps_says_it_trains_the_papers_budget(tmp_path, capsys, monkeypatch):
    seen = {}

    def fake_train(config, out, **kwargs):
        seen["steps"] = config.steps
        return out

    monkeypatch.setattr(training_loop, "train", fake_train)
    assert main(["train", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert seen["steps"] == 300_000
    assert "--steps not given: training the paper's 300,000 steps (hours on a CPU)" in capsys.readouterr().err


def test_vaesim_train_stopped_by_sigterm_exits_143_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import signal
    from pathlib import Path

    def stopped(config, out, **kwargs):
        raise training_loop.TrainingInterrupted(signal.SIGTERM, 5, Path(out))

    monkeypatch.setattr(training_loop, "train", stopped)
    assert main(["train", "--steps", "10", "--out", str(tmp_path / "run"), "--no-progress"]) == 143
    assert "interrupted: finished work is kept; rerun the same command to resume." in capsys.readouterr().err
