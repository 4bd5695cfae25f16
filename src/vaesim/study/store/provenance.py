"""Provenance of a study: which code, on which machine, and how long each stage took.

``DIR/provenance.json`` holds one entry per ``vaesim study run`` session
(a rerun that resumes a study adds a session)::

    {"sessions": [{"started": "2026-11-28T12:00:00+00:00", "command": "vaesim study run quick ...",
                   "environment": {...}, "stages": {"train": {"seconds": 812.4, "tasks": 8}, ...}}]}

:func:`environment` is what a reader needs to rerun it: vaesim, Python,
torch, numpy versions, the git commit of the source when it is a checkout
(and whether it had local changes), and the machine.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
from pathlib import Path

PROVENANCE_FILE = "provenance.json"


def git_commit(path: str | Path | None = None) -> str | None:
    """``<sha>`` (``<sha>+dirty`` with uncommitted changes) of the git checkout holding ``path``, else None."""
    folder = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (sha + "+dirty" if dirty else sha) or None


def environment() -> dict:
    """Versions, git commit and machine of this process (JSON-serialisable)."""
    from vaesim import __version__

    info = {
        "vaesim": __version__,
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    for module in ("torch", "numpy"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:  # pragma: no cover - both are dependencies
            info[module] = None
    if "torch" in sys.modules:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    info["threads"] = thread_settings()
    return info


def thread_settings() -> dict:
    """How this session shared the cores (results do not depend on it; see vaesim.utils.threads)."""
    from vaesim.utils.threads import TASK_TORCH_THREADS, available_cpus

    return {
        "usable_cpus": available_cpus(),
        "task_torch_threads": TASK_TORCH_THREADS,
        "task_blas_threads_per_call": 1,
        "environment": {key: os.environ[key] for key in (
            "VAESIM_CPUS", "VAESIM_WAIT", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "ATEN_CPU_CAPABILITY",
            "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS") if key in os.environ},
    }


def invoking_command() -> str:
    """``vaesim <args>`` when this process is the CLI, else a note that the study ran from Python."""
    import shlex

    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if program == "vaesim" or (program in {"cli.py", "__main__.py"} and "vaesim" in sys.argv[0]):
        return shlex.join(["vaesim", *sys.argv[1:]])
    return "vaesim.study.run_study(...) from Python"


def last_command(study_dir: str | Path) -> str | None:
    """The command of the latest CLI session recorded in the study's provenance, if any.

    None when that command wrote another directory (the study was copied or moved since): rerunning it
    would resume the original, not this copy.
    """
    for session in reversed(read_provenance(study_dir)["sessions"]):
        command = session.get("command", "")
        if command.startswith("vaesim "):
            return command if _writes(command, Path(study_dir)) else None
    return None


def _writes(command: str, study_dir: Path) -> bool:
    """Whether ``command`` (a recorded ``vaesim ...`` line) has ``--out`` pointing at ``study_dir``."""
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    out = next((w.split("=", 1)[1] for w in words if w.startswith("--out=")), None)
    if out is None and "--out" in words and words.index("--out") + 1 < len(words):
        out = words[words.index("--out") + 1]
    if out is None:
        return False
    try:
        return Path(out).expanduser().resolve() == study_dir.resolve()
    except OSError:
        return False


def read_provenance(study_dir: str | Path) -> dict:
    """The study's provenance record; ``{"sessions": []}`` when it has none (a study run before it existed)."""
    path = Path(study_dir) / PROVENANCE_FILE
    if not path.is_file():
        return {"sessions": []}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"sessions": []}
    return record if isinstance(record, dict) and isinstance(record.get("sessions"), list) else {"sessions": []}


class ProvenanceRecorder:
    """Adds one session to ``DIR/provenance.json`` and records each stage's wall time as it finishes."""

    def __init__(self, study_dir: str | Path, command: str | None = None):
        self.study_dir = Path(study_dir)
        self.session = {
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": command if command is not None else invoking_command(),
            "environment": environment(),
            "stages": {},
        }
        record = read_provenance(self.study_dir)
        self.index = len(record["sessions"])
        self._write()

    def stage(self, name: str, seconds: float, tasks: int, *, interrupted: bool = False) -> None:
        """Record that stage ``name`` ran ``tasks`` tasks in ``seconds`` of wall time.

        ``interrupted``: the stage was stopped (Ctrl-C, SIGTERM, an error) after ``seconds``; ``tasks`` is then the
        number it finished, so the time spent before an interruption is not lost from the study's record.
        """
        entry = {"seconds": round(float(seconds), 2), "tasks": int(tasks)}
        if interrupted:
            entry["interrupted"] = True
        self.session["stages"][name] = entry
        self._write()

    def _write(self) -> None:
        from vaesim.utils import atomic_write_json

        record = read_provenance(self.study_dir)
        sessions = record["sessions"][: self.index] + [self.session]
        atomic_write_json(self.study_dir / PROVENANCE_FILE, {"sessions": sessions})
