"""``vaesim study verify DIR``: check every file at rest, change nothing.

Every file with a recorded SHA-256 is hashed and compared: checkpoints
(against ``checkpoint-sums.json`` and the hash saved with each checkpoint),
each run's ``metrics.jsonl``, probe files, summaries, activations, results
and the two run tables (against their ``.sha256`` sidecars). Each problem is
reported with what a rerun of ``vaesim study run`` will do about it.

Every problem carries the repair that a rerun makes (:attr:`Problem.fix`);
:func:`vaesim.study.run.runner.run_study` applies exactly those repairs before
its stages run, so what verify promises is what a rerun does.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import stat
from dataclasses import dataclass, field
from pathlib import Path

from vaesim.study import plan as layout
from vaesim.study.plan import RUNS_TABLE, StudyPlan, checksum_path, plan_study
from vaesim.study.spec import load_spec
from vaesim.study.stages.checkpoints import METRICS_KEY, checkpoint_file, config_file_damaged, read_sums
from vaesim.study.stages.files import unreadable, verified
from vaesim.study.store.hashcache import HashCache
from vaesim.study.store.tables import imported_result_files
from vaesim.utils import sha256_file
from vaesim.utils.io import TMP_PREFIX

logger = logging.getLogger(__name__)


@dataclass
class Problem:
    """One file that is not as recorded, what a rerun does about it, and that repair as data.

    ``fix``: ``()`` (nothing is changed), ``("retrain", run_id, step)`` (the
    run's checkpoints from ``step`` on and everything derived from them are
    removed and recomputed), ``("sums", run_id)`` (the run's
    ``checkpoint-sums.json`` is rebuilt from its checkpoints),
    ``("config", run_id)`` (``config.json`` is written again), ``("redo",
    task_id)`` (the task's outputs are discarded and recomputed),
    ``("aside", path)`` (an entry of the wrong kind is renamed out of the
    way, nothing deleted), ``("unlink", path)`` (a symbolic link is removed;
    what it points to is left alone) or ``("delete", path)`` (a temporary file).
    """

    path: str
    what: str
    rerun: str
    fix: tuple = ()


@dataclass
class VerifyReport:
    study_dir: Path
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        lines = [f"study {printable(self.study_dir)}: {self.checked} file(s) checked against their recorded SHA-256"]
        for problem in self.problems:
            lines.append(f"  {printable(problem.path)}: {problem.what}; a rerun {problem.rerun}")
        lines.append("  all files match" if self.ok else f"  {len(self.problems)} problem(s)")
        return "\n".join(lines)


def printable(value) -> str:
    """``value`` as text with control characters escaped (stored strings never drive the terminal)."""
    text = str(value)
    return "".join(ch if ch.isprintable() or ch == " " else ascii(ch)[1:-1] for ch in text)


def _matches(path: Path, expected: str, cache: HashCache | None = None) -> bool | None:
    """True/False for a file that matches/does not match ``expected``; None when it cannot be read now."""
    try:
        return (cache.digest(path) if cache is not None else sha256_file(path)) == expected
    except FileNotFoundError:
        return False
    except OSError:
        return None


def verify_study(study_dir, plan: StudyPlan | None = None, *, cache: HashCache | None = None) -> VerifyReport:
    """Check every file of the study in ``study_dir`` against its recorded checksum (reads only).

    ``cache``: a :class:`~vaesim.study.store.hashcache.HashCache` whose digests are trusted for files whose
    stat is unchanged (``study verify --fast``, the runner's restart check); None reads every byte.
    """
    root = Path(study_dir)
    spec_file = root / "spec.yaml"
    if not spec_file.is_file():
        raise FileNotFoundError(f"{root} is not a study directory (no spec.yaml)")
    plan = plan if plan is not None else plan_study(load_spec(spec_file, import_plugins=False))  # no plug-in code
    report = VerifyReport(root)
    shapes = shape_problems(root, plan)
    report.problems += shapes
    bad = {problem.path for problem in shapes}
    content = VerifyReport(root)
    _verify_runs(root, plan, content, skip=bad, cache=cache)
    _verify_sidecars(root, plan, content, skip=bad, cache=cache)
    report.checked = content.checked
    report.problems += [p for p in content.problems if not lies_under(p.path, bad)]
    leftovers = sorted(p for p in root.rglob(TMP_PREFIX + "*") if p.is_file() and not p.is_symlink()
                       and p.relative_to(root).parts[0] != layout.VARIANTS_DIR)  # a variant is verified on its own
    for path in leftovers:
        rel = str(path.relative_to(root))
        report.problems.append(Problem(rel, "temporary file left by a killed writer", "deletes it", ("delete", rel)))
    return report


def lies_under(path: str, bad: set[str]) -> bool:
    """True when ``path`` (relative to the study) is one of ``bad`` or lies below one of them."""
    if not bad:
        return False
    path = str(path)
    while path:
        if path in bad:
            return True
        path = path.rpartition("/")[0]
    return False


def expected_files(root: Path, plan: StudyPlan) -> set[str]:
    """Every file a finished study of ``plan`` holds, relative to ``root`` (outputs, checkpoints, run files)."""
    files = {output for task in plan.all_tasks() for output in task.outputs}
    for run in plan.runs:
        run_dir = layout.run_dir(run.run_id)
        files |= {f"{run_dir}/{METRICS_KEY}", f"{run_dir}/config.json", f"{run_dir}/{layout.DONE_MARKER}"}
        for step in run.steps:
            weights = checkpoint_file(Path(run_dir), step)
            files |= {str(weights), str(weights.with_suffix(".json"))}
    return files


def shape_problems(root: Path, plan: StudyPlan) -> list[Problem]:
    """Entries of the study where a file or folder of the other kind, or a symbolic link, stands.

    Checked top down: a folder that is wrong hides what lies under it.
    """
    files = expected_files(root, plan)
    folders = set()
    for name in files:
        while "/" in name:
            name = name.rpartition("/")[0]
            folders.add(name)
    problems: list[Problem] = []
    bad: set[str] = set()
    for rel in sorted(files | folders, key=lambda r: (r.count("/"), r)):
        if lies_under(rel.rpartition("/")[0], bad):
            continue
        bad = {p.path for p in problems}
        path = root / rel
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        except OSError as error:
            problems.append(Problem(rel, f"cannot be inspected now ({error.strerror or error})", "leaves it alone"))
            continue
        want_folder = rel in folders
        if stat.S_ISLNK(info.st_mode):
            target = os.readlink(path)
            problems.append(Problem(rel, f"is a symbolic link (to {target}), not the study's own "
                                         f"{'folder' if want_folder else 'file'}",
                                    "removes the link (not what it points to) and recomputes what belongs here",
                                    ("unlink", rel)))
        elif want_folder == stat.S_ISDIR(info.st_mode) and (want_folder or stat.S_ISREG(info.st_mode)) and (
                refused := unreadable(path, want_dir=want_folder)):
            problems.append(Problem(rel, f"is {refused}",
                                    f"renames it to {rel}{DISPLACED}N (nothing is deleted) and recomputes what "
                                    "belongs here", ("aside", rel)))
        elif want_folder != stat.S_ISDIR(info.st_mode) or not (want_folder or stat.S_ISREG(info.st_mode)):
            kind = "folder" if stat.S_ISDIR(info.st_mode) else "file" if stat.S_ISREG(info.st_mode) else "special file"
            problems.append(Problem(rel, f"is a {kind} where the study keeps a {'folder' if want_folder else 'file'}",
                                    f"renames it to {rel}{DISPLACED}N (nothing is deleted) and recomputes what "
                                    "belongs here", ("aside", rel)))
    return problems


DISPLACED = ".displaced-"


def _retrain(run_id: str, step: int) -> tuple:
    return ("retrain", run_id, int(step))


def _verify_runs(root: Path, plan: StudyPlan, report: VerifyReport, *, skip: set[str] = frozenset(),
                 cache: HashCache | None = None) -> None:
    from vaesim.training.checkpoint_files import CorruptCheckpoint, checkpoint_paths, read_meta

    trains = {task.run_id: task for task in plan.tasks["train"]}
    for run in plan.runs:
        if lies_under(layout.run_dir(run.run_id), skip):  # set aside whole: the run is retrained
            continue
        run_dir = root / layout.run_dir(run.run_id)
        sums_file = root / layout.checkpoint_sums_path(run.run_id)
        rel = lambda p: str(p.relative_to(root))  # noqa: E731
        if config_file_damaged(root, trains[run.run_id]):
            report.problems.append(Problem(rel(run_dir / "config.json"), "is not the config of this run",
                                           "writes it again (the run's address fixes its content)",
                                           ("config", run.run_id)))
        if not sums_file.exists():
            if (run_dir / layout.DONE_MARKER).is_file():
                report.problems.append(Problem(rel(sums_file), "is missing (the run finished training)",
                                               "records it again from the checksums saved with the checkpoints",
                                               ("sums", run.run_id)))
            continue  # training not finished: nothing recorded yet
        try:
            sums = read_sums(sums_file)
        except OSError as error:
            report.problems.append(Problem(rel(sums_file), f"cannot be read now ({error})", "leaves it alone"))
            continue
        except ValueError:
            report.problems.append(Problem(rel(sums_file), "is not a checksum record",
                                           "rebuilds it from the checksums saved with the checkpoints",
                                           ("sums", run.run_id)))
            continue
        report.checked += 1
        for step in run.steps:
            path = checkpoint_file(run_dir, step)
            json_path = checkpoint_paths(run_dir, step)[1]
            report.checked += 2
            try:  # the record's check (canonical JSON, its own digest) is remembered while the file is unchanged
                saved = (read_meta(run_dir, step).get("sha256") if cache is None else
                         cache.remember(json_path, lambda: read_meta(run_dir, step).get("sha256")))
            except CorruptCheckpoint as error:
                report.problems.append(Problem(rel(json_path), error.reason,
                                               f"retrains run {run.run_id} from its last good checkpoint",
                                               _retrain(run.run_id, step)))
                continue
            except OSError:
                report.problems.append(Problem(rel(json_path), "cannot be read now", "deletes nothing"))
                continue
            actual = _digest(path, cache)
            if actual is None:
                report.problems.append(Problem(rel(path), "cannot be read now", "deletes nothing"))
            elif actual == "" or (saved is not None and actual != saved):
                report.problems.append(Problem(rel(path), "is missing" if actual == "" else
                                               "does not match the checksum recorded after training",
                                               f"retrains run {run.run_id} from its last good checkpoint",
                                               _retrain(run.run_id, step)))
            elif sums.get(str(step)) != actual:
                report.problems.append(Problem(rel(sums_file), f"does not hold the checksum of step {step}, whose "
                                               "checkpoint matches the checksum saved with it",
                                               "rebuilds it from the checksums saved with the checkpoints",
                                               ("sums", run.run_id)))
        log = run_dir / METRICS_KEY
        if METRICS_KEY in sums:
            report.checked += 1
            ok = _matches(log, sums[METRICS_KEY], cache)
            if ok is None:
                report.problems.append(Problem(rel(log), "cannot be read now", "deletes nothing"))
            elif not ok:
                report.problems.append(Problem(rel(log), "does not match the checksum recorded after training",
                                               f"retrains run {run.run_id} from the start (the log is written "
                                               "by training)", _retrain(run.run_id, 0)))


def _digest(path: Path, cache: HashCache | None = None) -> str | None:
    """SHA-256 of ``path``; ``""`` when it is missing, None when it cannot be read now."""
    try:
        return cache.digest(path) if cache is not None else sha256_file(path)
    except FileNotFoundError:
        return ""
    except OSError:
        return None


def _verify_sidecars(root: Path, plan: StudyPlan, report: VerifyReport, *, skip: set[str] = frozenset(),
                     cache: HashCache | None = None) -> None:
    for task in plan.all_tasks():
        redo = ("redo", task.task_id)
        for output in task.outputs:
            sidecar = layout.checksum_path(output)
            if sidecar not in task.outputs or lies_under(output, skip) or lies_under(sidecar, skip):
                continue  # not a checksummed output, or in the wrong shape (named once, set aside by a rerun)
            path, side = root / output, root / sidecar
            if not path.exists() and not side.exists():
                continue  # not written yet: pending, not a problem
            if not side.is_file():
                report.problems.append(Problem(output, "has no checksum (left unfinished)", f"redoes {task.task_id}",
                                               redo))
                continue
            if not path.is_file():
                report.problems.append(Problem(output, "is missing (its checksum exists)", f"redoes {task.task_id}",
                                               redo))
                continue
            report.checked += 1
            try:
                expected = side.read_text().strip()
            except (OSError, UnicodeDecodeError) as error:
                if isinstance(error, UnicodeDecodeError):
                    report.problems.append(Problem(sidecar, "is not a checksum", f"redoes {task.task_id}", redo))
                else:
                    report.problems.append(Problem(sidecar, f"cannot be read now ({error})", "deletes nothing"))
                continue
            ok = _matches(path, expected, cache)
            if ok is None:
                report.problems.append(Problem(output, "cannot be read now", "deletes nothing"))
            elif not ok:
                report.problems.append(Problem(output, "does not match its checksum", f"recomputes it ({task.task_id})",
                                               redo))
    planned = {Path(task.outputs[0]).name for task in plan.tasks["compare"]}
    folder = root / "results"
    if folder.is_dir():
        for path in sorted(folder.glob("*.parquet")):
            if path.name not in planned and not path.name.startswith("."):
                report.problems.append(Problem(str(path.relative_to(root)), "is not an output of this study's spec",
                                               "ignores it (readers never read it)"))


def verify_imported_store(study_dir: Path):
    """``study verify`` / ``study status`` of a store made by ``vaesim import`` (None for a study directory).

    Checks every results file its ``import.json`` lists and ``runs.parquet`` against their sidecars and
    returns a :class:`VerifyReport` (an import has no plan: nothing is pending).
    """
    files = imported_result_files(study_dir)
    if files is None:
        return None
    report = VerifyReport(study_dir)
    source = "the source files"
    try:
        source = json.loads((study_dir / "import.json").read_text())["source"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    again = (f"cannot recompute an import: run `vaesim import vae-ld {shlex.quote(str(source))} --out "
             f"{shlex.quote(str(study_dir))} --overwrite`")
    for path in files + [study_dir / RUNS_TABLE]:
        report.checked += 1
        if not path.is_file() or not Path(checksum_path(str(path))).is_file():
            report.problems.append(Problem(str(path.relative_to(study_dir)), "missing (or its sidecar)", again))
        elif not verified(path):
            report.problems.append(Problem(str(path.relative_to(study_dir)), "does not match its checksum", again))
    return report
