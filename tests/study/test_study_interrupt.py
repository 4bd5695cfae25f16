"""Ctrl-C on `vaesim study run` with a pool of training workers: exit 130, each run's progress kept, and nothing
printed after the clean message (no multiprocessing "leaked semaphore objects" warning)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

pytestmark = pytest.mark.slow


def test_ctrl_c_during_pooled_training_ends_cleanly(tmp_path):
    spec = {"name": "interrupt", "datasets": ["dsprites-procedural"],
            "objectives": [{"name": "beta_vae", "values": [1, 4]}], "seeds": [0],
            "training": {"steps": 5000, "batch_size": 16, "checkpoints": {"steps": [5000]}, "log_every": 5},
            "probe": {"n": 32}, "layers": ["encoder.mean"], "device": "cpu"}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "study"
    # a terminal's Ctrl-C reaches the whole foreground process group: the runner and its pool's workers
    process = subprocess.Popen([sys.executable, "-m", "vaesim", "study", "run", str(tmp_path / "spec.yaml"),
                                "--out", str(out), "--workers", "2", "--no-progress"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        logs = list(out.glob("runs/*/metrics.jsonl"))
        if len(logs) == 2 and all(log.stat().st_size > 0 for log in logs):
            break
        time.sleep(0.2)
    assert process.poll() is None, "the study ended before it could be interrupted"
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 130, output
    assert output.rstrip().endswith("interrupted: finished work is kept; rerun the same command to resume."), output
    assert "leaked semaphore" not in output and "Traceback" not in output
    assert len(list(out.glob("runs/*/interrupted.json"))) == 2  # both runs saved where they were
