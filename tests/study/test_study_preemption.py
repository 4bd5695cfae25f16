"""Preemption: SIGTERM sent to the runner's PID only (Kubernetes, Slurm's scancel, systemd, ``kill PID``).

In each stage and under each executor the runner stops by itself: exit 143,
the training under way saved as ``interrupted.*``; a rerun then finishes a
store equal, bit for bit, to an uninterrupted study's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vaesim.study import RESULT_KEY, load_results, load_runs, parse_spec, run_study, study_status

pytestmark = pytest.mark.slow

SPEC = {
    "name": "preempt", "datasets": ["dsprites-procedural"],
    "objectives": [{"name": "beta_vae", "values": [1, 4]}], "seeds": [0],
    "training": {"steps": 600, "batch_size": 16, "checkpoints": {"steps": [300, 600]}, "log_every": 5},
    "probe": {"n": 48}, "layers": ["encoder.fc", "encoder.mean", "encoder.sample", "decoder.fc1", "decoder.fc2"],
    "metrics": ["cka", "procrustes"], "device": "cpu",
}
EXECUTORS = {"pool": ["--workers", "2", "--threads", "1"], "workers-1": ["--workers", "1", "--threads", "1"],
             "ray": ["--executor", "ray"]}


def _table(study: Path) -> pd.DataFrame:
    return load_results(study).sort_values(list(RESULT_KEY)).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "study"
    run_study(parse_spec(SPEC), out, workers=1, threads=1, progress=False)
    return out


def _ready(out: Path, stage: str):
    if stage == "train":  # both runs are training (each has logged a step)
        return lambda: (len(logs := list(out.glob("runs/*/metrics.jsonl"))) == 2
                        and all(log.stat().st_size > 0 for log in logs))
    if stage == "extract":
        return lambda: any(out.glob("summaries/**/*.npz"))
    return lambda: any(out.glob("results/*.parquet"))


def _preempt(spec_path: Path, out: Path, executor: str, stage: str, timeout: float = 240) -> str:
    command = [sys.executable, "-m", "vaesim", "study", "run", str(spec_path), "--out", str(out), "--no-progress",
               *EXECUTORS[executor]]
    # its own session: the signal reaches the runner alone, never a process group
    runner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    ready, deadline = _ready(out, stage), time.monotonic() + timeout
    while not ready():
        if runner.poll() is not None:
            pytest.fail(f"the runner ended before {stage} could be interrupted:\n{runner.stdout.read()[-3000:]}")
        assert time.monotonic() < deadline, f"{stage} never started"
        time.sleep(0.02)
    os.kill(runner.pid, signal.SIGTERM)
    sent = time.monotonic()
    output, _ = runner.communicate(timeout=120)
    assert runner.returncode == 143, output[-3000:]
    assert time.monotonic() - sent < 30, "not within the documented grace time"
    assert "interrupted: finished work is kept" in output and "Traceback" not in output, output[-3000:]
    return output


@pytest.mark.parametrize("executor,stage", [
    ("pool", "train"), ("workers-1", "train"), pytest.param("ray", "train", marks=pytest.mark.ray),
    ("pool", "extract"), pytest.param("ray", "extract", marks=pytest.mark.ray),
    ("pool", "compare"), ("workers-1", "compare"), pytest.param("ray", "compare", marks=pytest.mark.ray),
])
def test_sigterm_to_the_runner_alone_stops_it_and_a_rerun_equals_an_uninterrupted_study(
        reference, tmp_path, executor, stage):
    if executor == "ray":
        pytest.importorskip("ray")
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "study"
    _preempt(spec_path, out, executor, stage)
    status = study_status(out)
    assert not status.complete
    if stage == "train":  # training saved where it was: the rerun resumes from there, not from a checkpoint
        saved = sorted(out.glob("runs/*/interrupted.json"))
        assert len(saved) == (2 if executor in ("pool", "ray") else 1), saved
    # a worker process stopped mid-write (a pool worker; a Ray worker whose cancel or the runner's
    # ray.shutdown lands while it writes, seen once in CI) may leave its temporary file, never an output:
    # the rerun deletes it.
    # The single-process runner removes its own (atomic_path's cleanup runs in the interrupted writer).
    leftovers = list(out.rglob(".tmp*"))
    assert executor in ("pool", "ray") or not leftovers, leftovers
    resumed = subprocess.run([sys.executable, "-m", "vaesim", "study", "run", str(spec_path), "--out", str(out),
                              "--no-progress", "--workers", "1", "--threads", "1"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert study_status(out).complete
    assert not list(out.glob("runs/*/interrupted.json"))
    assert not list(out.rglob(".tmp*")), "the rerun left a temporary file"
    pd.testing.assert_frame_equal(_table(out), _table(reference), check_exact=True)
    runs, expected = load_runs(out), load_runs(reference)
    pd.testing.assert_frame_equal(runs[["run_id", "loss"]], expected[["run_id", "loss"]], check_exact=True)
    metrics = pd.read_parquet(out / "training_metrics.parquet")
    assert not metrics.duplicated(["run_id", "step"]).any()  # no step of a training log twice
