"""Repairs: what ``vaesim study verify`` finds, a rerun fixes, before any stage runs.

:func:`repair_damage` applies the fix each :class:`~vaesim.study.store.verify.Problem` carries (set aside,
unlink, rebuild a checksum record, rewrite a config, discard a task's outputs, retrain a run from its last good
checkpoint); the ``discard_*`` functions are the checks each stage makes of its own outputs before it runs;
:func:`repair_run` removes a run's checkpoints from a damaged step on and everything derived from them. Both
verify and repair read digests through the same hash cache (:mod:`vaesim.study.store.hashcache`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from vaesim.study import plan as layout
from vaesim.study.measures import plugin_path
from vaesim.study.plan import StudyPlan, Task
from vaesim.study.stages.checkpoints import drop_checkpoints_from, read_sums, restore_config_file
from vaesim.study.stages.files import discard
from vaesim.study.stages.store import store_is_stale
from vaesim.study.stages.task import corrupt_outputs
from vaesim.study.store.hashcache import HashCache
from vaesim.study.store.verify import DISPLACED, lies_under, printable, shape_problems, verify_study

__all__ = ["apply_fix", "discard_corrupt_outputs", "discard_damaged_sums", "discard_stale_store", "repair_damage",
           "repair_run"]

logger = logging.getLogger(__name__)


def repair_damage(out_dir: Path, plan: StudyPlan, cache: HashCache | None = None) -> None:
    """Make the repairs that ``vaesim study verify`` lists, before any stage runs (one warning per problem).

    Entries of the wrong kind and links go first (renamed aside, unlinked), then
    every file is checked against its recorded checksum
    (:func:`vaesim.study.store.verify.verify_study`) and each problem's ``fix`` is
    applied: damaged checkpoints (weights or JSON) and training logs retrain
    their run from the last good checkpoint, damaged outputs are discarded so
    their task runs again. The stages then recompute exactly what was removed.
    ``cache``: digests of files unchanged since an earlier start are taken from it, not read again
    (:mod:`vaesim.study.store.hashcache`).
    """
    shaped = set()
    for problem in shape_problems(out_dir, plan):
        apply_fix(out_dir, plan, problem, {})
        shaped.add(problem.path)
    retrain: dict[str, int] = {}
    for problem in verify_study(out_dir, plan, cache=cache).problems:  # the wrong shapes were named once above
        apply_fix(out_dir, plan, problem, retrain, quiet=lies_under(problem.path, shaped))
    for run_id, step in retrain.items():
        repair_run(out_dir, plan, run_id, step)


def apply_fix(out_dir: Path, plan: StudyPlan, problem, retrain: dict[str, int], *, quiet: bool = False) -> None:
    if not problem.fix:
        logger.warning("%s: %s; left as it is", printable(problem.path), problem.what)
        return
    kind, *args = problem.fix
    if kind != "delete" and not quiet:  # temporary leftovers are counted by remove_leftovers
        logger.warning("%s: %s; it %s", printable(problem.path), problem.what, problem.rerun)
    if kind == "retrain":
        run_id, step = args
        retrain[run_id] = min(step, retrain.get(run_id, step))
    elif kind == "redo":
        task = next(t for t in plan.all_tasks() if t.task_id == args[0])
        for output in task.outputs:
            (out_dir / output).unlink(missing_ok=True)
    elif kind == "sums":
        (out_dir / layout.checkpoint_sums_path(args[0])).unlink(missing_ok=True)
    elif kind == "config":
        restore_config_file(out_dir, next(t for t in plan.tasks["train"] if t.run_id == args[0]))
    elif kind in ("unlink", "delete"):
        (out_dir / args[0]).unlink(missing_ok=True)
    elif kind == "aside":
        path = out_dir / args[0]
        number = 1
        while (target := path.with_name(f"{path.name}{DISPLACED}{number}")).exists() or target.is_symlink():
            number += 1
        path.rename(target)


def discard_corrupt_outputs(out_dir: Path, tasks: list[Task], cache: HashCache | None = None) -> None:
    """A task with an output that does not match its checksum loses all its outputs, so it runs again.

    Checked for the small outputs (probe files, results, store tables) on
    every run; summaries are verified when a compare task loads them,
    checkpoints when an extract task does.
    """
    for task in tasks:
        if corrupt_outputs(out_dir, task, cache):
            logger.warning("task %s: an output does not match its checksum; its outputs are discarded and "
                           "recomputed", task.task_id)
            for output in task.outputs:
                (out_dir / output).unlink(missing_ok=True)


def discard_damaged_sums(plan: StudyPlan, out_dir: Path) -> None:
    """A ``checkpoint-sums.json`` that is not a sums record of every planned step is removed (never a checkpoint).

    Its train task then runs again: training is already done, so it only
    checks the checkpoints against the checksums recorded when they were
    saved and writes the record again. A record that cannot be read now
    (permissions, I/O error) is left alone.
    """
    for task in plan.tasks["train"]:
        path = out_dir / layout.checkpoint_sums_path(task.run_id)
        try:
            sums = read_sums(path)
        except FileNotFoundError:
            continue
        except OSError as error:
            logger.warning("cannot read %s (%s); left as it is", path, error)
            continue
        except ValueError:
            sums = {}
        if not all(str(step) in sums for step in task.run.steps):
            logger.warning("%s is damaged; it will be rebuilt from the checkpoints' recorded checksums", path)
            path.unlink()


def discard_stale_store(plan: StudyPlan, out_dir: Path) -> None:
    """Run tables that do not hold exactly the finished runs are discarded, so the store runs again.

    (A store written while some runs had failed holds only the finished ones.)
    """
    for task in plan.tasks["store"]:
        if store_is_stale(out_dir, task):
            for output in task.outputs:
                (out_dir / output).unlink(missing_ok=True)


def repair_run(out_dir: Path, plan: StudyPlan, run_id: str, bad_step: int) -> None:
    """Remove checkpoints of ``run_id`` from ``bad_step`` on, and everything derived from them.

    The training run then resumes from its last good checkpoint and writes
    them again; summaries and results that used the removed checkpoints are
    discarded so no number from the old files survives.
    """
    logger.warning("run %s: checkpoint step %d is damaged; retraining from the last good checkpoint",
                   run_id, bad_step)
    run_dir = out_dir / layout.run_dir(run_id)
    (out_dir / layout.checkpoint_sums_path(run_id)).unlink(missing_ok=True)
    drop_checkpoints_from(run_dir, bad_step)
    stale = set()
    for step in plan.run(run_id).steps:
        if step >= bad_step:
            for rel in (layout.summary_path(run_id, step), layout.activations_path(run_id, step),
                        layout.latents_path(run_id, step), layout.resampled_path(run_id, step),
                        plugin_path(layout.summary_path(run_id, step)), layout.disentanglement_path(run_id, step)):
                discard(out_dir / rel)
                stale.add(rel)
    for task in plan.tasks.get("disentangle", []):  # UDR of a group that contains this run
        if layout.checkpoint_sums_path(run_id) in task.inputs and getattr(task, "step", -1) >= bad_step:
            discard(out_dir / task.outputs[0])
    for task in plan.tasks["compare"]:
        if stale & set(task.inputs):
            discard(out_dir / task.outputs[0])
    for name in (layout.RUNS_TABLE, layout.TRAINING_METRICS_TABLE, layout.LATENTS_TABLE):
        discard(out_dir / name)
