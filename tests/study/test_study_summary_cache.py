"""Spec ``summaries: cache``: no summary is stored, every comparison recomputes them, the results are the same.

Issue 18, item 3: the paper's study would store 9-10 TB of layer summaries; as a cache recomputed from the
checkpoints by each compare task they cost no disk, and the results files are bit-identical to a study that
stores them. A study's disk use never exceeds what its plan printed.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import time
from pathlib import Path

import pytest

from study_tiny import TINY

from vaesim.study import parse_spec, run_study
from vaesim.study.estimate import calibrate, estimate
from vaesim.study.plan import plan_study


def _small(summaries: str) -> dict:
    spec = copy.deepcopy(TINY)
    spec["objectives"] = [{"name": "beta_vae", "values": [1, 8]}]
    spec["summaries"] = summaries
    return spec


def _results(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "results").glob("*.parquet"))}


def _bytes_under(root: Path) -> int:
    total = 0
    for path in root.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:  # a temporary file renamed away between listing and stat
            continue
    return total


class PeakDisk:
    """Largest total size of the files under ``root``, sampled every ``interval`` s while the block runs."""

    def __init__(self, root: Path, interval: float = 0.05):
        self.root, self.interval, self.peak, self._stop = root, interval, 0, threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.is_set():
            if self.root.exists():
                self.peak = max(self.peak, _bytes_under(self.root))
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _bytes_under(self.root))


@pytest.mark.slow
def test_cached_summaries_give_the_stored_summaries_results_and_use_the_disk_the_plan_printed(tmp_path):
    keep = run_study(parse_spec(_small("keep")), tmp_path / "keep", progress=False)
    spec = parse_spec(_small("cache"))
    plan = plan_study(spec)
    planned = sum(stage.bytes for stage in estimate(plan, calibrate(plan)))
    with PeakDisk(tmp_path / "cache") as disk:
        cache = run_study(spec, tmp_path / "cache", progress=False)
    assert _results(keep) and _results(cache) == _results(keep)  # the same numbers, bit for bit
    assert [p.parent.name for p in (cache / "summaries").rglob("*.npz")] == ["factors"]  # only the probe factors
    assert list((keep / "summaries").rglob("*.npz"))
    assert 0 < disk.peak <= planned, (disk.peak, planned)
    # and the stored-summary study is within its own (larger) plan too
    planned_keep = sum(stage.bytes for stage in estimate(plan_study(parse_spec(_small("keep"))), calibrate(plan)))
    assert planned_keep > planned
    assert _bytes_under(keep) <= planned_keep
