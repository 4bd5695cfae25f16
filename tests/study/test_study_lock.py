"""One runner per study directory: the lock race, a refused --force, stale records (issue 10 items 2 and 3)."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from study_tiny import TINY

from vaesim.cli import main
from vaesim.study import study_status
from vaesim.study.run.lock import RUNNING_FILE, StudyLock, StudyLocked, process_start_ticks

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _tree(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` and its bytes (running.json and the lock file aside)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in {RUNNING_FILE, ".lock"}}


# A runner whose stages only sleep: it holds the directory for about a second per stage.
RACER = textwrap.dedent("""
    import sys, time, pathlib
    from vaesim.study.run import runner
    runner._run_stage = lambda plan, stage, out_dir, r, meter, *rest: time.sleep(0.4) or []
    go = pathlib.Path(sys.argv[2])
    while not go.exists():
        time.sleep(0.001)
    try:
        runner.run_study(sys.argv[1] + "/spec.yaml", sys.argv[1], progress=False)
        print("RAN")
    except ValueError as error:
        print("REFUSED", error)
""")


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(3))
def test_two_runners_started_together_exactly_one_runs(finished_tiny, tmp_path, trial):
    study = tmp_path / "study"
    study.mkdir()
    (study / "spec.yaml").write_bytes((finished_tiny / "spec.yaml").read_bytes())
    go = tmp_path / "go"
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(study), str(go)], env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(8)  # both import vaesim and wait at the starting line
    go.touch()
    outputs = [racer.communicate(timeout=120)[0] for racer in racers]
    assert sorted(o.split()[0] for o in outputs) == ["RAN", "REFUSED"], outputs
    assert "is being run by pid" in next(o for o in outputs if o.startswith("REFUSED"))
    assert not (study / RUNNING_FILE).exists()  # the winner removed its record


HOLDER = textwrap.dedent("""
    import sys
    from vaesim.study.run.lock import StudyLock
    with StudyLock(sys.argv[1], "local"):
        print("locked", flush=True)
        sys.stdin.read()  # hold until the test closes stdin
""")


@pytest.mark.slow
def test_refused_force_run_changes_nothing(tiny_copy, tmp_path, capsys):
    changed = copy.deepcopy(TINY)
    changed["probe"]["n"] = 48  # a change that makes --force delete probes/, summaries/ and results/
    spec_path = tmp_path / "changed.yaml"
    spec_path.write_text(yaml.safe_dump(changed))
    before = _tree(tiny_copy)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tiny_copy)], env=_env(), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = main(["study", "run", str(spec_path), "--out", str(tiny_copy), "--force", "--no-progress"])
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert code == 2
    assert "is being run by pid" in capsys.readouterr().err
    assert _tree(tiny_copy) == before  # spec.yaml, probes, summaries, results: all untouched


def test_a_killed_runner_does_not_block_the_next(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], env=_env(), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(StudyLocked, match=f"pid {holder.pid} on {socket.gethostname()}"):
        StudyLock(tmp_path).acquire()
    holder.kill()
    holder.wait(timeout=30)
    assert study_status_running(tmp_path) is None
    with StudyLock(tmp_path):
        assert json.loads((tmp_path / RUNNING_FILE).read_text())["pid"] == os.getpid()


def study_status_running(study: Path):
    from vaesim.study.run.lock import read_running, runner_alive

    info = read_running(study)
    return info if info and runner_alive(info) else None


def _record(study: Path, **fields) -> None:
    now = time.time()
    info = {"pid": 1, "host": socket.gethostname(), "executor": "local", "started": now, "heartbeat": now}
    info.update(fields)
    (study / RUNNING_FILE).write_text(json.dumps(info))


def test_a_reused_pid_does_not_block_the_study(finished_tiny, tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    (study / "spec.yaml").write_bytes((finished_tiny / "spec.yaml").read_bytes())
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # The recorded runner died; its pid now belongs to an unrelated process started later.
        _record(study, pid=other.pid, start_ticks=process_start_ticks(other.pid) - 1000)
        status = study_status(study)
        assert status.running is None and "stale runner record" in status.format()
        with StudyLock(study):
            pass
    finally:
        other.kill()
        other.wait()


def test_another_hosts_record_counts_while_its_heartbeat_is_fresh(finished_tiny, tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    (study / "spec.yaml").write_bytes((finished_tiny / "spec.yaml").read_bytes())
    _record(study, host="node-7", pid=4242)
    assert study_status(study).running["host"] == "node-7"
    with pytest.raises(StudyLocked, match="pid 4242 on node-7"):
        StudyLock(study).acquire()
    assert json.loads((study / RUNNING_FILE).read_text())["host"] == "node-7"  # left as it was
    # The node died: no heartbeat for an hour. Status says so, and a new runner takes over.
    _record(study, host="node-7", pid=4242, heartbeat=time.time() - 3600, started=time.time() - 7200)
    status = study_status(study)
    assert status.running is None and "node-7" in status.format() and "stale" in status.format()
    with StudyLock(study):
        assert json.loads((study / RUNNING_FILE).read_text())["host"] == socket.gethostname()


def test_a_runner_refused_before_the_holder_publishes_its_record_still_names_the_holder(tmp_path):
    """The race of the two-runner test made deterministic: the holder has the flock but writes running.json
    only 0.5 s later; the refused runner waits for the record and names the holder's pid."""
    import fcntl
    import threading

    study = tmp_path / "study"
    study.mkdir()
    fd = os.open(study / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    record = {"pid": 4242, "host": socket.gethostname(), "executor": "local", "started": time.time(),
              "heartbeat": time.time()}
    late = threading.Timer(0.5, lambda: (study / RUNNING_FILE).write_text(json.dumps(record)))
    late.start()
    try:
        start = time.monotonic()
        with pytest.raises(StudyLocked, match="is being run by pid 4242 on"):
            StudyLock(study).acquire()
        assert 0.4 < time.monotonic() - start < 5
    finally:
        late.cancel()
        os.close(fd)
