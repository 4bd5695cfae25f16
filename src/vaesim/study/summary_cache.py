"""Spec ``summaries: planned``: each checkpoint's layer summaries computed once, on disk only while needed.

With ``keep`` every checkpoint's summaries stay on disk (the paper's would take
9-10 TB); with ``cache`` each compare task recomputes the summaries of every
checkpoint it reads (a checkpoint read by four tasks is recorded and
summarised four times: 70-75% of a ``within_run`` task's time). ``planned``
sits between them:

- the plan lists, for each checkpoint, the compare tasks that read its
  summaries (:func:`checkpoint_users`);
- checkpoints are taken in the order of their first reader, while their
  summary files fit the cap (``summaries_cap_gb``: :func:`cache_selection`);
  their extract task writes the summaries as a cache entry (a checksummed
  file like ``keep``'s, but not an output of the task);
- a compare task reads a checkpoint's entry when it is there and intact, and
  computes the summaries in memory otherwise (a checkpoint beyond the cap, a
  damaged or removed entry): the numbers are the same either way, bit for bit;
- the runner removes a checkpoint's entry as soon as no unfinished compare
  task reads it (:class:`CacheReleaser`), also at the start of a resumed
  compare stage; a failed task keeps its entries for the rerun.

The cache's peak disk is at most the sum of the selected checkpoints' files
(everything is extracted before the first comparison), which the plan prints.
Pure planning here; file removal only in :meth:`CacheReleaser.release`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from collections.abc import Callable, Iterable

from vaesim.study import plan as layout
from vaesim.study.measures import plugin_metrics, plugin_path
from vaesim.study.plan import CompareTask, ExtractTask, StudyPlan

logger = logging.getLogger(__name__)

Checkpoint = tuple[str, int]  # (run_id, step)


def read_checkpoints(task: CompareTask) -> set[Checkpoint]:
    """The checkpoints whose summaries ``task`` reads (a ``factors`` task reads only the a side)."""
    sides = {(a, s) for a, s, _b, _t in task.pairs}
    if task.comparison != "factors":
        sides |= {(b, t) for _a, _s, b, t in task.pairs}
    return sides


def checkpoint_users(plan: StudyPlan) -> dict[Checkpoint, list[str]]:
    """``{(run_id, step): [compare task id, ...]}`` in the plan's compare order."""
    users: dict[Checkpoint, list[str]] = {}
    for task in plan.tasks["compare"]:
        for checkpoint in sorted(read_checkpoints(task)):
            users.setdefault(checkpoint, []).append(task.task_id)
    return users


def cache_files(task: ExtractTask) -> list[str]:
    """Paths (relative to the study) of the cache entry ``task`` writes: summaries, noise-floor and plug-in files,
    each with its checksum."""
    files = [layout.summary_path(task.run_id, task.step)]
    if task.resample:
        files.append(layout.resampled_path(task.run_id, task.step))
    if plugin_metrics(task.metrics):
        files.append(plugin_path(layout.summary_path(task.run_id, task.step)))
    return [name for path in files for name in (path, layout.checksum_path(path))]


def entry_intact(out_dir: Path, task: ExtractTask) -> bool:
    """Whether ``task``'s cache entry is on disk and every file of it matches its checksum."""
    from vaesim.study.stages.files import is_written, verified

    files = [name for name in cache_files(task) if not name.endswith(".sha256")]
    return all(is_written(Path(out_dir) / name) and verified(Path(out_dir) / name) for name in files)


def cache_selection(plan: StudyPlan, entry_bytes: Callable[[ExtractTask], int], cap_bytes: float
                    ) -> tuple[frozenset[Checkpoint], int]:
    """The checkpoints whose summaries are cached, and their total bytes (the cache's peak disk).

    Checkpoints are taken in the order of their first reader in the plan's compare order, while their entries
    (``entry_bytes(extract task)``) fit ``cap_bytes``; a checkpoint no compare task reads is never cached.
    """
    users = checkpoint_users(plan)
    by_checkpoint = {(t.run_id, t.step): t for t in plan.tasks["extract"]}
    first_use = {checkpoint: index for index, checkpoint in
                 enumerate(c for task in plan.tasks["compare"] for c in sorted(read_checkpoints(task)))}
    chosen, total = [], 0
    for checkpoint in sorted(users, key=lambda c: first_use[c]):
        size = entry_bytes(by_checkpoint[checkpoint])
        if total + size <= cap_bytes:
            chosen.append(checkpoint)
            total += size
    return frozenset(chosen), total


def with_cache(plan: StudyPlan, selected: Iterable[Checkpoint]) -> StudyPlan:
    """``plan`` whose extract tasks of the ``selected`` checkpoints write their summaries as cache entries."""
    selected = set(selected)
    extract = [dataclasses.replace(t, cache_file=(t.run_id, t.step) in selected) for t in plan.tasks["extract"]]
    return dataclasses.replace(plan, tasks={**plan.tasks, "extract": extract})


def selected_checkpoints(plan: StudyPlan) -> frozenset[Checkpoint]:
    """The checkpoints whose extract task writes a cache entry (after :func:`with_cache`)."""
    return frozenset((t.run_id, t.step) for t in plan.tasks["extract"] if t.cache_file)


class CacheReleaser:
    """Removes a checkpoint's cache entry once no unfinished compare task reads it (runner side, one process)."""

    def __init__(self, out_dir: Path, plan: StudyPlan, pending: Iterable[str]):
        self.out_dir = Path(out_dir)
        self._extract = {(t.run_id, t.step): t for t in plan.tasks["extract"]}
        pending = set(pending)
        self._left: dict[Checkpoint, set[str]] = {
            checkpoint: {task_id for task_id in users if task_id in pending}
            for checkpoint, users in checkpoint_users(plan).items()}
        self._reads = {task.task_id: read_checkpoints(task) for task in plan.tasks["compare"]}
        self.freed = 0

    def needed(self, checkpoint: Checkpoint) -> bool:
        """Whether an unfinished compare task still reads ``checkpoint``."""
        return bool(self._left.get(checkpoint))

    def finished(self, task_id: str) -> None:
        """A compare task's results are written: release the entries it was the last reader of."""
        for checkpoint in self._reads.get(task_id, ()):
            left = self._left.get(checkpoint)
            if left is not None and task_id in left:
                left.discard(task_id)
                if not left:
                    self.release(checkpoint)

    def release_unneeded(self) -> None:
        """Remove every entry no unfinished compare task reads (a resumed or finished compare stage)."""
        for checkpoint in self._extract:
            if not self.needed(checkpoint):
                self.release(checkpoint)

    def release(self, checkpoint: Checkpoint) -> None:
        task = self._extract.get(checkpoint)
        if task is None:
            return
        for name in cache_files(task):
            path = self.out_dir / name
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            self.freed += size
            logger.debug("released summary cache entry %s", name)
