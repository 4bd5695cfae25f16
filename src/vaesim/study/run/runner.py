"""Run a study end to end, resuming wherever it stopped; report its status.

:func:`run_study` validates the spec and its inputs before any work, records
the spec in ``DIR/spec.yaml`` (refusing a directory whose recorded spec
differs in a field that changes outputs, unless ``force``), then runs the
stages in order (probe -> train -> extract -> compare -> store), each stage's
pending tasks through the chosen executor. Finished outputs are never redone;
failures are collected, written to ``DIR/failures.json`` and raised together
as :class:`StudyFailed` at the end.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from vaesim.study import plan as layout
from vaesim.study.budget import check_budget, writable_directory
from vaesim.study.estimate import check_task_memory, plan_cache
from vaesim.models.plugin_table import architecture_table, is_plugin, write_table
from vaesim.study.measures import architecture_modules, record_plugin_dirs
from vaesim.study.run.stopping import STOP_GRACE_S, StopOnSignal, StopRequested
from vaesim.study.plan import STAGES, StudyPlan, plan_study, spec_differences
from vaesim.study.run.executors import EXECUTORS, StageOutcome, TaskFailure, make_executor
from vaesim.study.run.lock import StudyLock, describe, read_running, runner_alive
from vaesim.study.run.progress import StageProgress
from vaesim.study.run.shapes import set_aside_wrong_kinds
from vaesim.study.spec import StudySpec, TaskResources, load_spec, param_name
from vaesim.study.stages.files import discard
from vaesim.study.stages.progress import clear_progress, read_progress
from vaesim.study.stages.progress import describe as describe_progress
from vaesim.study.stages.task import outputs_done
from vaesim.study.store.hashcache import HashCache
from vaesim.study.store.repair import (discard_corrupt_outputs, discard_damaged_sums, discard_stale_store,
                                       repair_damage, repair_run)
from vaesim.study.store.provenance import ProvenanceRecorder, last_command
from vaesim.study.store.verify import lies_under, printable, verify_study
from vaesim.study.summary_cache import CacheReleaser, cache_files, entry_intact
from vaesim.utils import atomic_write_json, atomic_write_text
from vaesim.utils.io import TMP_PREFIX

logger = logging.getLogger(__name__)

SPEC_FILE = "spec.yaml"
FAILURES_FILE = "failures.json"


class StudyFailed(RuntimeError):
    """Some tasks failed (after retries); the others finished. Rerun to retry them."""

    def __init__(self, study_dir: Path, failures: list[TaskFailure]):
        self.study_dir = study_dir
        self.failures = failures
        lines = "\n".join(f"  {f.task_id}: {f.error}" for f in failures)
        super().__init__(f"{len(failures)} task(s) of the study in {study_dir} failed:\n{lines}\n"
                         f"finished work is kept; fix the cause and rerun to retry them")


# -- checks before any work ---------------------------------------------------


def check_executor_options(executor: str, *, workers, address, threads) -> None:
    """Reject option combinations that an executor would ignore (before any work)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
    if executor == "local" and address is not None:
        raise ValueError("--address is for the Ray executor; add --executor ray or drop --address")
    if executor == "ray" and (workers is not None or threads is not None):
        raise ValueError("--workers/--threads are for the local executor; Ray places tasks by the spec's "
                         "resources (num_cpus, num_gpus per stage)")
    for name, value in (("workers", workers), ("threads", threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer (or left out); got {value!r}")


def check_inputs(spec: StudySpec, *, build_objectives: bool = True) -> None:
    """Fail before any work, naming every problem at once: missing dataset files, objective parameters the
    objective rejects (``build_objectives``: builds each objective, which loads torch; an inspecting command,
    ``study plan --no-calibrate``, leaves that to ``study run``), runs a study over imported runs lacks."""
    missing = missing_data_problems(spec.datasets, spec.data_root)
    problems = list(missing)
    if build_objectives:
        from vaesim.models import make_objective
    for i, objective in enumerate(spec.objectives if build_objectives else []):
        name = param_name(objective)
        for value in objective.values:
            try:
                make_objective(objective.name, **{name: value, **objective.fixed})
            except (TypeError, ValueError) as error:
                problems.append(f"objectives.{i} ({objective.name}, {name}={value}): {error}")
    if spec.imported is not None:
        from vaesim.study.stages.adopt import imported_problems

        problems.extend(imported_problems(spec))
    if problems:
        error = FileNotFoundError if len(problems) == len(missing) else ValueError
        raise error("the study cannot start:\n" + "\n".join(f"  - {p}" for p in problems))


def missing_data_problems(datasets, root) -> list[str]:
    """One line per dataset (known names only) whose files are missing, with the fix."""
    from vaesim.data import DATASETS, require_files

    problems = []
    for dataset in datasets:
        if isinstance(dataset, str) and dataset in DATASETS:
            try:
                require_files(dataset, root=root)
            except FileNotFoundError as error:
                problems.append(str(error))
    return problems


def load_checked_spec(spec, *, import_plugins: bool = True, build_objectives: bool = True,
                      import_architecture: bool | None = None) -> StudySpec:
    """:func:`load_spec`, then :func:`check_inputs`; an invalid spec's error also lists its missing files.

    ``import_plugins=False, build_objectives=False``: the checks an inspecting command makes (no plug-in code,
    no torch)."""
    try:
        spec = load_spec(spec, import_plugins=import_plugins, import_architecture=import_architecture)
    except ValueError as error:
        raw = _raw_spec(spec)
        root = raw.get("data_root", raw.get("dataset_root")) if raw else None
        missing = missing_data_problems(raw.get("datasets") or [], root) if raw else []
        if missing:
            raise ValueError(str(error) + "".join(f"\n  - {p}" for p in missing)) from None
        raise
    check_inputs(spec, build_objectives=build_objectives)
    return spec


def _raw_spec(spec) -> dict:
    """The spec mapping as written (for listing problems of a spec that does not validate)."""
    import yaml

    from vaesim.study.spec import PRESET_DIR

    path = Path(str(spec))
    if not path.is_file():
        path = PRESET_DIR / f"{spec}.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def prepare_directory(spec: StudySpec, out_dir: Path, *, force: bool) -> None:
    """Record ``spec`` in ``out_dir/spec.yaml``; refuse a conflicting recorded spec unless ``force``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # plug-in modules (measures, the architecture) found beside the spec: workers and reruns find them
    record_plugin_dirs(out_dir, [*spec.plugins, *architecture_modules(spec)])
    if is_plugin(spec.training.architecture):  # its layers, for the commands that only read the study
        write_table(out_dir, architecture_table(spec.training.architecture))
    spec_file = out_dir / SPEC_FILE
    if spec_file.is_file():
        try:
            recorded = load_spec(spec_file)
        except ValueError as error:
            if not force:
                raise ValueError(f"{spec_file}: the study's recorded spec is unreadable ({error}); pass --force to "
                                 f"replace it (derived files are then recomputed; trained runs are kept)") from None
            logger.warning("replacing the unreadable recorded spec %s (--force); derived files are recomputed",
                           spec_file)
            remove_derived(out_dir)
            atomic_write_text(spec_file, spec.to_yaml())
            return
        differences = spec_differences(recorded, spec)
        if differences and not force:
            listing = "\n".join(f"  {line}" for line in differences)
            raise ValueError(
                f"{out_dir} holds a study whose spec differs in fields that change its outputs:\n{listing}\n"
                f"use another --out directory, or pass --force to recompute what changed "
                f"(trained runs are kept and reused where their config is unchanged)"
            )
        if differences:
            logger.warning("spec differs from %s (--force): %s", spec_file, "; ".join(differences))
            remove_stale(out_dir, recorded, spec)
    atomic_write_text(spec_file, spec.to_yaml())


def remove_leftovers(out_dir: Path) -> None:
    """Delete the ``.tmp-*`` files that killed writers left (only run while holding the lock: no writer is live)."""
    removed, size = 0, 0
    for path in out_dir.rglob(TMP_PREFIX + "*"):
        if path.relative_to(out_dir).parts[0] == layout.VARIANTS_DIR:  # a variant's own runner cleans up after itself
            continue
        if path.is_file() and not path.is_symlink():
            size += path.stat().st_size
            path.unlink()
            removed += 1
    if removed:
        logger.info("removed %d temporary file(s) (%.1f MB) left by killed writers", removed, size / 1e6)


def remove_derived(out_dir: Path) -> None:
    """Delete every derived output (probes, summaries, activations, results, run tables); runs are kept."""
    for folder in ("probes", "summaries", "activations", "results"):
        shutil.rmtree(out_dir / folder, ignore_errors=True)
    for name in (layout.RUNS_TABLE, layout.TRAINING_METRICS_TABLE):
        discard(out_dir / name)


def remove_stale(out_dir: Path, old: StudySpec, new: StudySpec) -> None:
    """Delete derived outputs that ``new`` would not produce (runs are content-addressed and kept)."""
    fields = {line.split(":", 1)[0] for line in spec_differences(old, new)}
    changed = {name.split(".", 1)[0] for name in fields}
    if changed & {"probe", "layers", "metrics"}:
        for folder in ("probes", "summaries", "activations", "results"):
            shutil.rmtree(out_dir / folder, ignore_errors=True)
    # Disentanglement tables are addressed by run and step, not by the settings that computed them.
    settings = {name.split(".", 1)[1] for name in fields if name.startswith("disentanglement.")}
    if settings & {"metrics", "protocol_fraction", "seed"}:
        for path in sorted((out_dir / "disentanglement").glob("*")):
            if path.is_dir() and not path.is_symlink() and path.name != "udr":
                shutil.rmtree(path)
    if settings & {"udr_points", "seed"}:
        shutil.rmtree(out_dir / "disentanglement" / "udr", ignore_errors=True)
    keep = {output for task in plan_study(new).all_tasks() for output in task.outputs}
    for folder in ("probes", "summaries", "activations", "results", "disentanglement"):
        base = out_dir / folder
        if base.is_dir():
            for path in base.rglob("*"):
                if path.is_file() and str(path.relative_to(out_dir)) not in keep:
                    path.unlink()
    for name in (layout.RUNS_TABLE, layout.TRAINING_METRICS_TABLE, layout.LATENTS_TABLE):
        discard(out_dir / name)


# -- the runner -------------------------------------------------------------------


def run_study(spec, out_dir, *, executor: str = "local", workers: int | None = None,
              address: str | None = None, progress: bool = True, force: bool = False,
              threads: int | None = None, stop_grace: float | None = None) -> Path:
    """Run every stage of ``spec`` into ``out_dir``, resuming; return ``out_dir``.

    ``spec``: a :class:`StudySpec`, a YAML path or a preset name.
    ``executor``: ``local`` (``workers`` = process-pool size, default
    sequential; ``threads`` = torch/BLAS threads per task, default and
    maximum: the CPUs this process may use (affinity, cgroup quota) // workers) or
    ``ray`` (``address`` of a cluster, default: the Ray instance of this
    process or a new local one; threads follow each stage's ``num_cpus``). ``stop_grace``: on SIGTERM or
    SIGINT, the seconds running tasks get to save or stop (default
    :data:`vaesim.study.run.stopping.STOP_GRACE_S`; then :class:`~vaesim.study.run.stopping.StopRequested`,
    a KeyboardInterrupt carrying the signal, is raised). Raises ValueError /
    FileNotFoundError for bad input before any work, :class:`StudyFailed`
    when some tasks failed (the rest is finished and kept).
    """
    check_executor_options(executor, workers=workers, address=address, threads=threads)
    with StopOnSignal(STOP_GRACE_S if stop_grace is None else stop_grace) as stop:  # SIGTERM as Ctrl-C from here
        try:
            return _run_study(spec, out_dir, executor=executor, workers=workers, address=address,
                              progress=progress, force=force, threads=threads)
        except KeyboardInterrupt as error:
            if stop.signum is not None and getattr(error, "signum", None) is None:  # Ray's wait re-raises it bare
                raise StopRequested(stop.signum) from None
            raise


def _run_study(spec, out_dir, *, executor: str, workers: int | None, address: str | None, progress: bool,
               force: bool, threads: int | None) -> Path:
    spec = load_checked_spec(spec)  # every spec problem and missing data file at once
    out_dir = Path(out_dir)
    writable_directory(out_dir)
    check_budget(spec, out_dir)
    # The lock comes first: a runner that is refused has changed nothing (not even spec.yaml).
    with StudyLock(out_dir, executor):
        remove_leftovers(out_dir)
        plan, _cache_peak = plan_cache(plan_study(spec))  # summaries: planned: which checkpoints are cached
        if executor == "local":
            check_task_memory(plan, out_dir)  # a task that cannot fit is refused now, not killed hours in
        set_aside_wrong_kinds(out_dir, [SPEC_FILE, FAILURES_FILE] + [o for ts in plan.tasks.values() for t in ts
                                                                     for o in t.outputs])
        prepare_directory(spec, out_dir, force=force)
        hashes = HashCache.load(out_dir)  # digests verified at earlier starts: unchanged files are not read again
        repair_damage(out_dir, plan, hashes)
        hashes.save()
        runner = make_executor(executor, workers=workers, address=address,
                               max_retries=spec.resources.max_retries, threads=threads)
        failures: list[TaskFailure] = []
        clear_progress(out_dir)
        meter = StageProgress(progress, out_dir)
        recorder = ProvenanceRecorder(out_dir)
        started = time.perf_counter()
        try:
            for stage in STAGES:
                stage_started = time.perf_counter()
                try:
                    failures += _run_stage(plan, stage, out_dir, runner, meter, hashes)
                except BaseException:  # interrupted: keep the time it ran and the tasks it finished
                    recorder.stage(stage, time.perf_counter() - stage_started, meter.finished, interrupted=True)
                    raise
                recorder.stage(stage, time.perf_counter() - stage_started, meter.ran)
            # each new file read once now, so that the next start and `study status` take its digest from the
            # cache instead of reading the whole store again
            late = verify_study(out_dir, plan, cache=hashes).problems
            for problem in late:
                logger.warning("%s: %s; a rerun %s", printable(problem.path), problem.what, problem.rerun)
        finally:
            meter.close()
            runner.close()
            clear_progress(out_dir)
            hashes.save()  # what the stages' checks read this time
        atomic_write_json(out_dir / FAILURES_FILE, [f.__dict__ for f in failures])
    logger.info("study %s finished in %.1f s with %d failure(s)", out_dir, time.perf_counter() - started,
                len(failures))
    if failures:
        raise StudyFailed(out_dir, failures)
    return out_dir


def _run_stage(plan: StudyPlan, stage: str, out_dir: Path, runner, meter: StageProgress,
               hashes: HashCache | None = None) -> list[TaskFailure]:
    tasks = plan.tasks[stage]
    if stage in ("probe", "compare", "disentangle", "store"):
        discard_corrupt_outputs(out_dir, tasks, hashes)
    if stage == "store":
        discard_stale_store(plan, out_dir)
    if stage == "train":
        discard_damaged_sums(plan, out_dir)
    releaser = None
    if plan.spec.summaries == "planned" and stage in ("extract", "compare"):
        releaser = CacheReleaser(out_dir, plan, [t.task_id for t in plan.tasks["compare"]
                                                 if not outputs_done(out_dir, t)])
    if releaser is not None and stage == "extract":  # a cache entry still read but gone (removed, damaged): again
        rebuild = [t for t in tasks if outputs_done(out_dir, t) and t.cache_file
                   and releaser.needed((t.run_id, t.step)) and not entry_intact(out_dir, t)]
        for task in rebuild:  # discard what is left of the entry
            for name in cache_files(task):
                discard(out_dir / name)
        # the entry's files count as this run's outputs of the task, so that run_task does not skip it
        again = {t.task_id: dataclasses.replace(t, outputs=t.outputs + tuple(cache_files(t))) for t in rebuild}
        pending = [again.get(t.task_id, t) for t in tasks if not outputs_done(out_dir, t) or t.task_id in again]
    else:
        pending = [t for t in tasks if not outputs_done(out_dir, t)]
    if releaser is not None and stage == "compare":
        releaser.release_unneeded()  # entries whose readers all finished in an earlier run
    ready = [t for t in pending if all((out_dir / i).is_file() for i in t.inputs)]
    blocked = [TaskFailure(t.task_id, "not run: an upstream task failed (its inputs are missing)")
               for t in pending if t not in ready]
    meter.start(stage, len(tasks), len(tasks) - len(pending))
    meter.ran = len(ready)
    for failure in blocked:
        meter.advance(failure)
    resources = getattr(plan.spec.resources, stage, TaskResources())  # probe, store: one CPU
    started = time.perf_counter()
    on_done = meter.advance
    if releaser is not None and stage == "compare":
        def on_done(item) -> None:  # a finished task releases the cache entries it was the last reader of
            meter.advance(item)
            if not isinstance(item, TaskFailure):
                releaser.finished(item["task_id"])
    outcome: StageOutcome = runner.run(str(out_dir), ready, resources, on_done)
    meter.stop()
    if releaser is not None and stage == "compare" and releaser.freed:
        logger.info("summary cache: %.1f MB released after the last comparison that read them", releaser.freed / 1e6)
    logger.info("stage %s: ran %d task(s) in %.1f s, %d failed, %d not run", stage, len(ready),
                time.perf_counter() - started, len(outcome.failures), len(blocked))
    failures = blocked + outcome.failures
    corrupt = sorted({r["task_id"] for r in outcome.reports if r.get("status") == "corrupt_checkpoint"})
    if corrupt:
        failures += _repair_and_rerun(plan, out_dir, corrupt, runner, meter)
    return failures


def _repair_and_rerun(plan: StudyPlan, out_dir: Path, corrupt_extract_ids: list[str], runner,
                      meter: StageProgress) -> list[TaskFailure]:
    """Retrain runs with an unreadable checkpoint from their last good one, then extract again."""
    by_id = {t.task_id: t for t in plan.tasks["extract"]}
    first_bad: dict[str, int] = {}
    for task_id in corrupt_extract_ids:
        task = by_id[task_id]
        run_id, step = task.run_id, task.step
        first_bad[run_id] = min(step, first_bad.get(run_id, step))
    for run_id, step in first_bad.items():
        repair_run(out_dir, plan, run_id, step)
    train = [t for t in plan.tasks["train"] if t.run_id in first_bad]
    extract = [t for t in plan.tasks["extract"] if t.run_id in first_bad and not outputs_done(out_dir, t)]
    failures = []
    for stage, tasks in (("train", train), ("extract", extract)):
        meter.start(f"{stage}*", len(tasks), 0)
        outcome = runner.run(str(out_dir), tasks, getattr(plan.spec.resources, stage), meter.advance)
        meter.stop()
        failures += outcome.failures
        failures += [TaskFailure(r["task_id"], "checkpoint still unreadable after retraining")
                     for r in outcome.reports if r.get("status") == "corrupt_checkpoint"]
    return failures


# -- status -----------------------------------------------------------------------


@dataclass
class StudyStatus:
    """Done/total tasks per stage, whether a runner is working now, last run's failures."""

    study_dir: Path
    stages: dict[str, tuple[int, int]]
    running: dict | None
    failures: list[dict]
    stale_runner: dict | None = None  # a running.json whose runner is gone (killed, host down, pid reused)
    corrupt: dict[str, int] = field(default_factory=dict)  # per stage: finished tasks with a corrupt output
    resume_command: str | None = None  # the command that last ran the study (provenance.json; never printed)
    failures_note: str | None = None  # why failures.json could not be read
    problems: list[str] = field(default_factory=list)  # what verify finds outside any task's outputs

    @property
    def complete(self) -> bool:
        return (all(done == total for done, total in self.stages.values()) and not any(self.corrupt.values())
                and not self.problems)

    @property
    def rerun_command(self) -> str:
        """The command that resumes this study, built from this directory (shell-quoted), never from stored text.

        Only which job last ran it is taken from the provenance: a demo is
        resumed with ``vaesim demo``, anything else with ``vaesim study run``.
        """
        out = shlex.quote(str(self.study_dir))
        variant = _variant_command(self.study_dir)
        if variant is not None:  # a variant resumes through `study variant` on its parent (it links the runs)
            return variant
        if (self.resume_command or "").split()[:2] == ["vaesim", "demo"]:
            return f"vaesim demo --out {out}"
        return f"vaesim study run {shlex.quote(str(self.study_dir / SPEC_FILE))} --out {out}"

    def format(self, width: int = 30) -> str:
        """Lines ``stage [#####.....] done/total`` plus the runner and failures (stored text shown escaped)."""
        lines = [f"study {printable(self.study_dir)}"]
        for stage, (done, total) in self.stages.items():
            filled = width if total == 0 else round(width * done / total)
            bad = self.corrupt.get(stage, 0)
            lines.append(f"  {stage:8s} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} done, "
                         f"{total - done} pending" + (f" ({bad} corrupt: a rerun recomputes them)" if bad else ""))
        for problem in self.problems[:10]:
            lines.append(f"  problem: {printable(problem)}")
        if len(self.problems) > 10:
            lines.append(f"  ... {len(self.problems) - 10} more problem(s): `vaesim study verify` lists them all")
        if self.running:
            lines.append(f"  running: {printable(describe(self.running))}")
        else:
            if self.stale_runner:
                lines.append(f"  stale runner record: {printable(describe(self.stale_runner))} is gone")
            lines.append("  complete" if self.complete else
                         f"  not running (rerun `{printable(self.rerun_command)}` to resume)")
        if self.running:
            lines += [f"  now: {printable(describe_progress(record))}" for record in read_progress(self.study_dir)]
        for failure in self.failures:
            lines.append(f"  failed last run: {printable(failure['task_id'])}: {printable(failure['error'])}")
        if self.failures_note:
            lines.append(f"  {printable(self.failures_note)}")
        return "\n".join(lines)


def _variant_command(study_dir: Path) -> str | None:
    """``vaesim study variant PARENT ...`` that resumes the variant in ``study_dir`` (None: not a variant)."""
    study_dir = Path(study_dir)
    try:
        record = json.loads((study_dir / layout.VARIANT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or study_dir.parent.name != layout.VARIANTS_DIR:
        return None
    parent = shlex.quote(str(study_dir.parent.parent))
    name = shlex.quote(study_dir.name)
    if record.get("kind") == "probe" and isinstance(record.get("probe_seed"), int):
        how = f"--probe-seed {record['probe_seed']}"
    elif record.get("kind") == "rerun":
        how = "--rerun"
    else:
        return None
    pairs = record.get("layer_pairs")
    return f"vaesim study variant {parent} {how} --name {name}" + (f" --layer-pairs {pairs}" if pairs in
                                                                     ("all", "matching") else "")


def study_status(out_dir) -> StudyStatus:
    """Done/pending tasks per stage of the study in ``out_dir`` (read from the files)."""
    out_dir = Path(out_dir)
    spec_file = out_dir / SPEC_FILE
    if not spec_file.is_file():
        raise FileNotFoundError(f"{out_dir} is not a study directory (no {SPEC_FILE}); "
                                f"start one with `vaesim study run SPEC --out {shlex.quote(str(out_dir))}`")
    plan = plan_study(load_spec(spec_file, import_plugins=False))  # inspection runs no plug-in code
    info = read_running(out_dir)
    running = info if info and runner_alive(info) else None
    # what `study verify` would find, every output kind, through the hash cache (files unchanged since they
    # were last verified are not read again; the cache is not written: status changes nothing)
    problems = verify_study(out_dir, plan, cache=HashCache.load(out_dir)).problems
    if running is not None:  # a working runner's temporary files are its writes under way, not leftovers
        problems = [p for p in problems if p.fix[:1] != ("delete",)]
    damaged = {p.fix[1] for p in problems if p.fix[:1] == ("redo",)}
    damaged |= {f"train/{p.fix[1]}" for p in problems if p.fix[:1] in (("retrain",), ("sums",), ("config",))}
    shapes = {p.path for p in problems if p.fix[:1] in (("aside",), ("unlink",))}  # wrong kind, unreadable
    if shapes:  # the tasks whose outputs lie there are not trusted either
        damaged |= {t.task_id for t in plan.all_tasks() if any(lies_under(o, shapes) for o in t.outputs)}
    stages, corrupt = {}, {}
    for stage in STAGES:
        tasks = plan.tasks[stage]
        done = [t for t in tasks if outputs_done(out_dir, t)]
        bad = [t for t in done if t.task_id in damaged]
        corrupt[stage] = len(bad)
        done = [t for t in done if t not in bad]
        stages[stage] = (len(done), len(tasks))
    other = [p for p in problems if p.fix[:1] not in (("redo",), ("retrain",), ("sums",), ("config",))]
    stale = info if info is not None and running is None else None
    failures, note = ([], None) if running is not None else read_failures(out_dir)
    return StudyStatus(out_dir, stages, running, failures, stale, corrupt, last_command(out_dir), note,
                       [f"{p.path}: {p.what}" for p in other])


def read_failures(out_dir: Path) -> tuple[list[dict], str | None]:
    """The last run's failures (``[{task_id, error}]``) and a note when ``failures.json`` is not such a list."""
    path = out_dir / FAILURES_FILE
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], None
    except (OSError, ValueError) as error:
        return [], f"{FAILURES_FILE} cannot be read ({error}); the next run writes it again"
    if not (isinstance(records, list) and all(isinstance(r, dict) and {"task_id", "error"} <= set(r) for r in records)):
        return [], f"{FAILURES_FILE} is not a list of failures; the next run writes it again"
    return records, None
