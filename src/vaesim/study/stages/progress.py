"""Live progress inside tasks, through small files any executor can write.

A running task (in this process, a local worker process or a Ray worker; all
of them write the study directory) keeps ``DIR/.progress/<task>.json`` up to
date, at most once per ``interval`` seconds::

    {"task": "train/<run_id>", "what": "beta_vae beta=4 seed 0", "unit": "step", "done": 120, "total": 800,
     "rate": 3.1, "eta": 219.4, "fields": {"loss": 412.3}, "resumed_from": 0, "updated": 1764331200.0}

and removes it when it ends. The runner's progress line reads the files
(:func:`read_progress`) and shows the current run, step, loss, rate and ETA
(:func:`describe`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)

PROGRESS_DIR = ".progress"
STALE_SECONDS = 600.0  # a file not updated for this long belongs to a task that died


def progress_path(root: str | Path, task_id: str) -> Path:
    return Path(root) / PROGRESS_DIR / (task_id.replace("/", "__") + ".json")


class TaskProgress:
    """Progress of one task: ``update(done, **fields)`` as it goes, ``close()`` at the end (also as a context)."""

    def __init__(self, root: str | Path, task_id: str, what: str, total: int, *, unit: str = "step",
                 done: int = 0, resumed_from: int | None = None, interval: float = 1.0):
        self.path = progress_path(root, task_id)
        self.record = {"task": task_id, "what": what, "unit": unit, "done": int(done), "total": int(total),
                       "rate": None, "eta": None, "fields": {}, "resumed_from": resumed_from}
        self.interval = interval
        self._start_time = time.monotonic()
        self._start_done = int(done)
        self._last_write = -float("inf")
        self._write()

    def update(self, done: int, *, total: int | None = None, **fields) -> None:
        """Record ``done`` units (and e.g. ``loss=...``; ``total`` when the work turns out larger); written when
        ``interval`` has passed (:meth:`flush` writes at once, before a long step)."""
        if total is not None:
            self.record["total"] = int(total)
        self.record["done"] = int(done)
        self.record["fields"].update({k: float(v) for k, v in fields.items()})
        now = time.monotonic()
        elapsed = now - self._start_time
        if elapsed > 0 and done > self._start_done:
            rate = (done - self._start_done) / elapsed
            self.record["rate"] = rate
            self.record["eta"] = max(0.0, (self.record["total"] - done) / rate)
        if now - self._last_write >= self.interval:
            self._write()

    def flush(self) -> None:
        """Write the record now (what a reader sees during the long step that follows)."""
        self._write()

    def close(self) -> None:
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> "TaskProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write(self) -> None:
        from vaesim.utils import atomic_write_json

        self.record["updated"] = time.time()
        try:
            atomic_write_json(self.path, self.record, indent=None)
        except OSError as error:  # progress is a convenience: never fail a task for it
            logger.debug("progress file %s not written: %s", self.path, error)
        self._last_write = time.monotonic()


def read_progress(root: str | Path) -> list[dict]:
    """The progress records of the tasks running now, oldest task first (stale or unreadable files skipped)."""
    folder = Path(root) / PROGRESS_DIR
    if not folder.is_dir():
        return []
    records = []
    now = time.time()
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and now - float(record.get("updated", 0)) < STALE_SECONDS:
            records.append(record)
    return records


def clear_progress(root: str | Path) -> None:
    """Remove leftover progress files (of tasks killed before they could remove their own)."""
    folder = Path(root) / PROGRESS_DIR
    if folder.is_dir():
        for path in folder.glob("*"):
            path.unlink(missing_ok=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def describe(record: dict) -> str:
    """One line: ``beta_vae beta=4 seed 0: step 120/800, loss 412.3, 3.1 steps/s, ETA 3m39s``."""
    unit = record.get("unit", "step")
    parts = [f"{unit} {record.get('done', 0)}/{record.get('total', '?')}"]
    parts += [f"{name} {value:.4g}" for name, value in record.get("fields", {}).items()]
    if record.get("rate"):
        parts.append(f"{record['rate']:.3g} {unit}s/s")
    if record.get("eta") is not None:
        parts.append(f"ETA {_duration(record['eta'])}")
    return f"{record.get('what', record.get('task', '?'))}: " + ", ".join(parts)
