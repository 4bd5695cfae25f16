"""The per-step metrics log ``metrics.jsonl``: one JSON object per logged step.

Rows are appended while training and fsynced before each checkpoint is
written. A killed run may leave rows past its last checkpoint (or a cut-off
last line); :func:`truncate_metrics` drops them on resume so no step appears
twice.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pandas as pd

from vaesim.utils import atomic_write_text

METRICS_FILE = "metrics.jsonl"
logger = logging.getLogger(__name__)


def _parse_rows(path: Path) -> list[dict]:
    """Rows of a metrics log. Only the last line can be cut off by a kill (it is then ignored);
    an unreadable line before it is corruption: ValueError naming the file and the line."""
    rows = []
    if not path.is_file():
        return rows
    text = path.read_text()
    lines = text.splitlines()
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
            rows.append(row)
        except ValueError as error:
            if number - 1 == last and not text.endswith("\n"):
                logger.warning("%s: line %d is cut off (a killed run); ignored", path, number)
                continue
            raise ValueError(f"{path}: line {number} is not a metrics row ({error}); the log is corrupt "
                             "(only a last line without its newline can be cut off by a kill)") from None
    return rows


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """The metrics log of ``run_dir`` as a DataFrame, one row per logged step, sorted by step."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no metrics log {path}; train the run first (vaesim train --out {run_dir})")
    frame = pd.DataFrame(_parse_rows(path))
    return frame.sort_values("step", kind="stable").reset_index(drop=True) if len(frame) else frame


def truncate_metrics(run_dir: str | Path, last_step: int) -> None:
    """Keep only rows with ``step <= last_step`` (atomically rewritten)."""
    path = Path(run_dir) / METRICS_FILE
    rows = [] if last_step < 0 else [row for row in _parse_rows(path) if row.get("step", -1) <= last_step]
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


class MetricsWriter:
    """Append-only writer; :meth:`sync` flushes and fsyncs (called before every checkpoint)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self._handle = open(self.path, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self._handle.write(json.dumps(row) + "\n")

    def sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.flush()
            self._handle.close()
