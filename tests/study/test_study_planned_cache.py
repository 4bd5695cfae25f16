"""Spec ``summaries: planned`` (issue 33, item 1): summaries computed once, on disk only while a comparison needs them.

Against ``keep`` (every summary stored) and ``cache`` (each compare task recomputes the summaries it reads):
the results files are the same bytes; extraction summarises each checkpoint once and no compare task
summarises a cached checkpoint again; every entry is gone once its last reader finished; the cap decides
which checkpoints are cached and the rest are recomputed as with ``cache``; a resumed study rebuilds an
entry that an unfinished comparison still needs.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import pytest

from study_tiny import TINY

from vaesim.study import parse_spec, run_study
from vaesim.study import plan as layout
from vaesim.study.estimate import calibrate, estimate, format_plan, plan_cache
from vaesim.study.plan import plan_study
from vaesim.study.stages import compare as compare_module
from vaesim.study.summary_cache import cache_files, checkpoint_users, read_checkpoints, selected_checkpoints

pytestmark = pytest.mark.slow


def _small(summaries: str, **extra) -> dict:
    spec = copy.deepcopy(TINY)
    spec["objectives"] = [{"name": "beta_vae", "values": [1, 8]}]
    spec["summaries"] = summaries
    spec["comparisons"] = {"noise_floor": "every"}  # the resampled entries are cached and released too
    spec.update(extra)
    return spec


def _results(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "results").glob("*.parquet"))}


def _entries(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "summaries").rglob("step_*.npz"))


class Recorder:
    """Counts the in-memory summarising of compare tasks and checks each cached read against the plan."""

    def __init__(self, monkeypatch):
        self.computed: list[tuple[str, int, bool]] = []
        original = compare_module.checkpoint_summaries

        def counting(root, task, *, resampled=False, only=None):
            self.computed.append((task.run_id, task.step, resampled))
            return original(root, task, resampled=resampled, only=only)

        monkeypatch.setattr(compare_module, "checkpoint_summaries", counting)


@pytest.fixture(scope="module")
def keep_study(tmp_path_factory) -> Path:
    return run_study(parse_spec(_small("keep")), tmp_path_factory.mktemp("keep") / "study", progress=False)


def test_planned_cache_gives_keeps_results_summarises_each_checkpoint_once_and_leaves_no_entry(
        keep_study, tmp_path, monkeypatch):
    spec = parse_spec(_small("planned"))
    plan, peak = plan_cache(plan_study(spec))
    assert selected_checkpoints(plan) == set(checkpoint_users(plan))  # the default cap holds them all
    recorder = Recorder(monkeypatch)
    released_while_needed = []
    from vaesim.study.summary_cache import CacheReleaser

    original_release = CacheReleaser.release

    def release(self, checkpoint):  # no entry may go while a compare task that reads it has no results yet
        for task in plan.tasks["compare"]:
            if checkpoint in read_checkpoints(task) and not (self.out_dir / layout.results_path(task.task_id)).is_file():
                released_while_needed.append((checkpoint, task.task_id))
        return original_release(self, checkpoint)

    monkeypatch.setattr(CacheReleaser, "release", release)
    out = run_study(spec, tmp_path / "planned", progress=False)
    assert _results(out) == _results(keep_study)  # the same bytes as stored summaries
    assert recorder.computed == []  # every compare task read the entries extraction wrote
    assert released_while_needed == []
    assert _entries(out) == []  # every entry removed after its last reader
    assert _entries(keep_study)  # (keep stores them)
    # the plan priced the cache: its peak is the entries' bytes on disk (the same files keep stores)
    stored = sum(p.stat().st_size for p in (keep_study / "summaries").rglob("step_*.npz"))
    assert 0.5 * stored <= peak <= 1.5 * stored, (peak, stored)


def test_a_cap_below_the_entries_caches_the_first_readers_and_recomputes_the_rest_with_the_same_results(
        keep_study, tmp_path, monkeypatch):
    _full, peak = plan_cache(plan_study(parse_spec(_small("planned"))))
    cap_gb = peak / 2 / 1e9
    spec = parse_spec(_small("planned", summaries_cap_gb=cap_gb))
    plan, capped_peak = plan_cache(plan_study(spec))
    cached = selected_checkpoints(plan)
    users = checkpoint_users(plan)
    assert 0 < len(cached) < len(users) and capped_peak <= cap_gb * 1e9
    calibration = calibrate(plan)
    text = format_plan(plan, estimate(plan, calibration), calibration)
    assert f"summary cache: {len(cached)} of {len(users)} compared checkpoints" in text
    assert f"the other {len(users) - len(cached)} are summarised by each compare task that reads them" in text
    recorder = Recorder(monkeypatch)
    out = run_study(spec, tmp_path / "capped", progress=False)
    assert _results(out) == _results(keep_study)
    computed = {(run, step) for run, step, _resampled in recorder.computed}
    assert computed == set(users) - cached  # exactly the checkpoints beyond the cap
    # each of them once per compare task that reads it (plus its noise-floor recording)
    main = [(run, step) for run, step, resampled in recorder.computed if not resampled]
    assert len(main) == sum(len(users[c]) for c in computed)
    assert _entries(out) == []


def test_a_resumed_study_rebuilds_an_entry_an_unfinished_comparison_needs_and_releases_it(
        keep_study, tmp_path, monkeypatch):
    spec = parse_spec(_small("planned"))
    out = run_study(spec, tmp_path / "resumed", progress=False)
    plan, _ = plan_cache(plan_study(spec))
    task = next(t for t in plan.tasks["compare"] if t.comparison == "seeds")
    for name in task.outputs:  # as if this comparison had not finished
        (out / name).unlink()
    extract = {(t.run_id, t.step): t for t in plan.tasks["extract"]}
    recorder = Recorder(monkeypatch)
    rebuilt = []
    from vaesim.study.stages import extract as extract_module

    original = extract_module.extract_stage

    def extracting(root, extract_task):
        rebuilt.append((extract_task.run_id, extract_task.step))
        return original(root, extract_task)

    monkeypatch.setattr("vaesim.study.stages.task.STAGE_FUNCTIONS", {
        **__import__("vaesim.study.stages.task", fromlist=["STAGE_FUNCTIONS"]).STAGE_FUNCTIONS,
        "extract": extracting})
    run_study(spec, out, progress=False)
    assert sorted(rebuilt) == sorted(read_checkpoints(task))  # only the entries the unfinished task reads
    assert recorder.computed == []  # ... which it then read from disk
    assert _results(out) == _results(keep_study)
    assert _entries(out) == []
    assert all(not (out / name).exists() for c in read_checkpoints(task) for name in cache_files(extract[c]))


def test_summaries_computed_in_a_compare_task_and_spilled_to_disk_give_the_same_results_and_leave_nothing(
        keep_study, tmp_path, monkeypatch):
    # every recomputed summary spilled to a temporary file of its task and memory-mapped back (issue 33,
    # item 3: the paper's tasks would hold 20 checkpoints' 5.2 GB summaries in memory)
    monkeypatch.setattr(compare_module, "SPILL_MIN_BYTES", 0)
    spilled = []
    original = compare_module.Spill.mapped

    def mapped(self, summaries):
        out = original(self, summaries)
        spilled.append(all(isinstance(s.row_norms, np.memmap) for s in out.values()))
        return out

    monkeypatch.setattr(compare_module.Spill, "mapped", mapped)
    out = run_study(parse_spec(_small("cache")), tmp_path / "spilled", progress=False)
    assert spilled and all(spilled)
    assert _results(out) == _results(keep_study)
    assert not list(out.rglob(".tmp-*"))  # each task deleted its spill files
