"""The work of each task, the same whatever executor runs it.

:func:`run_task` takes a study directory and a task record (one frozen
dataclass per stage, :mod:`vaesim.study.plan`; picklable, so it can travel to
a process pool or a Ray worker) and returns a small report dict. Every output is written atomically, data
file first and its SHA-256 sidecar last, so a killed task leaves nothing that
a later run trusts; a task whose outputs all exist returns at once.

Integrity: the probe set and every summary are verified against their
sidecar when loaded; a mismatch or a load failure is logged as a warning that
names the file, the file is discarded and recomputed (extraction is
deterministic), and never read. A checkpoint that fails to load makes the
extract task report ``corrupt_checkpoint``; the runner then repairs the run
(see :func:`vaesim.study.store.repair.repair_run`).
"""

from __future__ import annotations

import time
from pathlib import Path

from vaesim.study import plan as layout
from vaesim.study.measures import import_study_plugins
from vaesim.study.plan import StoreTask, Task
from vaesim.study.stages.compare import compare_stage
from vaesim.study.stages.disentangle import disentangle_stage
from vaesim.study.stages.extract import extract_stage
from vaesim.study.stages.files import file_exists, is_written, verified
from vaesim.study.stages.probe import probe_stage
from vaesim.study.stages.store import store_is_stale, store_stage
from vaesim.study.stages.train import train_stage
from vaesim.utils.threads import thread_limit


def run_task(study_dir: str, task: Task, torch_threads: int | None = None) -> dict:
    """Run one task (skipping it when its outputs exist); return ``{task_id, status, seconds}``.

    ``status`` is ``done``, ``skipped`` or ``corrupt_checkpoint``.
    ``torch_threads``: when given, the number of threads torch and the BLAS
    behind numpy use in this task (executors share the cores between
    concurrent tasks this way).
    """
    root = Path(study_dir)
    start = time.perf_counter()
    import_study_plugins(root)  # plug-in similarity measures named in the spec
    if outputs_done(root, task) and not (isinstance(task, StoreTask) and store_is_stale(root, task)):
        return {"task_id": task.task_id, "status": "skipped", "seconds": 0.0}
    with thread_limit(torch_threads):
        status = STAGE_FUNCTIONS[task.stage](root, task) or "done"
    return {"task_id": task.task_id, "status": status, "seconds": time.perf_counter() - start}


def outputs_done(root: Path, task: Task) -> bool:
    """True when every output of ``task`` exists (checksummed outputs with their sidecar)."""
    return all(file_exists(root / output) for output in task.outputs)


def corrupt_outputs(root: Path, task: Task, cache=None) -> list[Path]:
    """Outputs of ``task`` that exist with a sidecar but do not match it (hashes every checksummed output, or
    takes an unchanged file's digest from ``cache``, a :class:`vaesim.study.store.hashcache.HashCache`)."""
    checked = [root / o for o in task.outputs if layout.checksum_path(o) in task.outputs]
    return [path for path in checked if is_written(path) and not verified(path, cache)]


STAGE_FUNCTIONS = {
    "probe": probe_stage,
    "train": train_stage,
    "extract": extract_stage,
    "compare": compare_stage,
    "disentangle": disentangle_stage,
    "store": store_stage,
}
