"""The ``train`` stage: one run trained into ``runs/<run_id>/`` (resumed from its last good checkpoint)."""

from __future__ import annotations

import logging
from pathlib import Path

from vaesim.study import plan as layout
from vaesim.study.plan import TrainTask
from vaesim.study.stages.checkpoints import (
    METRICS_KEY, checked_sums, drop_checkpoints_from, restore_config_file, train_config,
)
from vaesim.study.stages.devices import resolve_device
from vaesim.study.stages.progress import TaskProgress
from vaesim.utils import atomic_write_json, sha256_file

logger = logging.getLogger(__name__)


def run_label(run) -> str:
    """``beta_vae beta=4 seed 0`` (plus the dataset when it is not the procedural default)."""
    label = f"{run.objective} {run.param_name}={run.param:g} seed {run.seed}"
    return label if run.dataset == "dsprites-procedural" else f"{run.dataset} {label}"


def train_stage(root: Path, task: TrainTask) -> None:
    """Train one run into ``runs/<run_id>/`` (resumes from its last checkpoint); record its checksums.

    ``checkpoint-sums.json`` takes each checkpoint's SHA-256 recorded when it
    was saved, after checking the file still matches it: a checkpoint
    damaged after saving (say, while a killed runner left the sums
    unwritten) is a verified mismatch, so it and the later ones are removed
    and the run resumes from the last good one.
    """
    from vaesim.training import list_checkpoints, train
    from vaesim.training.checkpoint_files import interrupt_step

    run_dir = root / layout.run_dir(task.run_id)
    if task.run.config.get("source") == "imported":
        return _adopt_stage(root, task, run_dir)
    config = train_config(task)
    restore_config_file(root, task)
    for attempt in range(2):
        done = [] if (run_dir / layout.DONE_MARKER).is_file() else list_checkpoints(run_dir)
        start = done[-1] if done else 0
        if not (run_dir / layout.DONE_MARKER).is_file():  # an interrupt checkpoint past the scheduled ones
            start = max(start, interrupt_step(run_dir) or 0)
        with TaskProgress(root, task.task_id, run_label(task.run), config.steps, done=start,
                          resumed_from=start or None) as meter:
            last: dict = {}  # the loss of the latest logged row (none before the first one)

            def on_log(row: dict) -> None:
                last["loss"] = row["loss"]
                meter.update(row["step"], **last)

            train(config, run_dir, progress=False, device=resolve_device(task.device),
                  callback=lambda finished: meter.update(finished, **last), on_log=on_log,
                  tensorboard=root / "tensorboard" / task.run_id if task.tensorboard else None)
        sums, damaged = checked_sums(run_dir)
        missing = sorted(set(task.run.steps) - {int(s) for s in sums})
        if damaged is None and not missing:
            break
        first = min([*missing, *([] if damaged is None else [damaged])])
        logger.warning("run %s: checkpoint step %d is missing or not as saved; retraining from the last good "
                       "checkpoint", task.run_id, first)
        drop_checkpoints_from(run_dir, first)
    else:
        raise RuntimeError(f"run {task.run_id}: checkpoint step {first} is missing or damaged again after "
                           f"retraining; check the disk under {run_dir}")
    sums[METRICS_KEY] = sha256_file(run_dir / METRICS_KEY)  # the training log, checked by the store stage
    atomic_write_json(root / layout.checkpoint_sums_path(task.run_id), sums)


def _adopt_stage(root: Path, task: TrainTask, run_dir: Path) -> None:
    """A run of a study over imported runs: adopt its checkpoints (:mod:`vaesim.study.stages.adopt`), record sums."""
    from vaesim.study.stages.adopt import adopt_run

    with TaskProgress(root, task.task_id, run_label(task.run), 1, done=0) as meter:
        adopt_run(root, task)
        meter.update(1)
    sums, damaged = checked_sums(run_dir)
    missing = sorted(set(task.run.steps) - {int(s) for s in sums})
    if damaged is not None or missing:
        raise RuntimeError(f"run {task.run_id}: checkpoint step {damaged if damaged is not None else missing[0]} "
                           f"is missing or damaged right after adopting it; check the disk under {run_dir}")
    sums[METRICS_KEY] = sha256_file(run_dir / METRICS_KEY)
    atomic_write_json(root / layout.checkpoint_sums_path(task.run_id), sums)
