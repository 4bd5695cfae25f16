"""The Ray executor and kill -9 resumption, both checked against the uninterrupted local run."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from study_tiny import TINY

from vaesim.study import RESULT_KEY, load_results, load_runs, parse_spec, run_study, study_status

pytestmark = pytest.mark.slow


def sorted_results(study_dir) -> pd.DataFrame:
    return load_results(study_dir).sort_values(list(RESULT_KEY)).reset_index(drop=True)


@pytest.mark.ray
def test_ray_executor_matches_local(finished_tiny, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = run_study(parse_spec(copy.deepcopy(TINY)), tmp_path / "ray", executor="ray", progress=False)
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(sorted_results(out), sorted_results(finished_tiny), check_exact=False, rtol=1e-9)
    assert len(load_runs(out)) == 8


def _start(spec_path: Path, out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "vaesim.cli", "study", "run", str(spec_path), "--out", str(out),
               "--threads", "1", "--no-progress"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_when(process: subprocess.Popen, ready, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"runner ended before the kill point: {process.stderr.read()}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def test_kill_during_training_and_comparisons_then_resume(finished_tiny, tmp_path):
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "killed"

    # 1. kill -9 once some run has written a checkpoint past the initial one
    runner = _start(spec_path, out)
    _kill_when(runner, lambda: any(out.glob("runs/*/checkpoints/step_00000010.safetensors")))
    status = study_status(out)
    assert status.stages["train"][0] < status.stages["train"][1]

    # 2. rerun, kill -9 once the first comparison results are stored
    runner = _start(spec_path, out)
    _kill_when(runner, lambda: any(out.glob("results/*.parquet")))
    status = study_status(out)
    assert status.stages["compare"][0] < status.stages["compare"][1]
    assert status.stages["train"][0] == status.stages["train"][1]

    # 3. rerun to the end
    done = subprocess.run([sys.executable, "-m", "vaesim.cli", "study", "run", str(spec_path), "--out", str(out),
                           "--threads", "1", "--no-progress"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert study_status(out).complete

    resumed, reference = sorted_results(out), sorted_results(finished_tiny)
    assert not resumed.duplicated(list(RESULT_KEY)).any()
    assert len(resumed) == len(reference)
    pd.testing.assert_frame_equal(resumed, reference, check_exact=False, rtol=1e-9)
    # no step of any run's training log appears twice
    metrics = pd.read_parquet(out / "training_metrics.parquet")
    assert not metrics.duplicated(["run_id", "step"]).any()


def _pool_workers(parent: int) -> list[int]:
    """Pids of the process-pool workers (spawned ``spawn_main`` children) of ``parent``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_pool_workers_exit_when_the_runner_is_killed(tmp_path):
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "orphans"
    command = [sys.executable, "-m", "vaesim.cli", "study", "run", str(spec_path), "--out", str(out),
               "--workers", "2", "--threads", "1", "--no-progress"]
    # two pool workers whatever this machine's CPU count (VAESIM_CPUS=1 would cut --workers 2 to one process)
    env = {**os.environ, "VAESIM_CPUS": "2"}
    runner = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while len(workers) < 2:
        assert runner.poll() is None, f"runner ended early: {runner.stderr.read()}"
        assert time.monotonic() < deadline, "the pool never started"
        time.sleep(0.1)
        workers = _pool_workers(runner.pid)
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in workers if _alive(pid)]
    for pid in left:  # do not leave them behind if the check fails
        os.kill(pid, signal.SIGKILL)
    assert left == [], "pool workers outlived the killed runner"
