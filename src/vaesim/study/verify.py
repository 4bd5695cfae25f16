"""``vaesim study verify DIR``: check every file at rest, change nothing.

Every file with a recorded SHA-256 is hashed and compared: checkpoints
(against ``checkpoint-sums.json`` and the hash saved with each checkpoint),
each run's ``metrics.jsonl``, probe files, summaries, activations, results
and the two run tables (against their ``.sha256`` sidecars). Each problem is
reported with what a rerun of ``vaesim study run`` will do about it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from vaesim.study import plan as layout
from vaesim.study.plan import StudyPlan, plan_study
from vaesim.study.spec import load_spec
from vaesim.utils import sha256_file
from vaesim.utils.io import TMP_PREFIX

logger = logging.getLogger(__name__)


@dataclass
class Problem:
    """One file that is not as recorded, and what a rerun does about it."""

    path: str
    what: str
    rerun: str


@dataclass
class VerifyReport:
    study_dir: Path
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        lines = [f"study {self.study_dir}: {self.checked} file(s) checked against their recorded SHA-256"]
        for problem in self.problems:
            lines.append(f"  {problem.path}: {problem.what}; a rerun {problem.rerun}")
        lines.append("  all files match" if self.ok else f"  {len(self.problems)} problem(s)")
        return "\n".join(lines)


def _matches(path: Path, expected: str) -> bool | None:
    """True/False for a file that matches/does not match ``expected``; None when it cannot be read now."""
    try:
        return sha256_file(path) == expected
    except FileNotFoundError:
        return False
    except OSError:
        return None


def verify_study(study_dir) -> VerifyReport:
    """Check every file of the study in ``study_dir`` against its recorded checksum (reads only)."""
    root = Path(study_dir)
    spec_file = root / "spec.yaml"
    if not spec_file.is_file():
        raise FileNotFoundError(f"{root} is not a study directory (no spec.yaml)")
    plan = plan_study(load_spec(spec_file))
    report = VerifyReport(root)
    _verify_runs(root, plan, report)
    _verify_sidecars(root, plan, report)
    leftovers = sorted(p for p in root.rglob(TMP_PREFIX + "*") if p.is_file())
    for path in leftovers:
        report.problems.append(Problem(str(path.relative_to(root)), "temporary file left by a killed writer",
                                       "deletes it"))
    return report


def _verify_runs(root: Path, plan: StudyPlan, report: VerifyReport) -> None:
    from vaesim.study.stages import METRICS_KEY, checkpoint_file, read_sums
    from vaesim.training.checkpoint_files import recorded_sha256

    for run in plan.runs:
        run_dir = root / layout.run_dir(run.run_id)
        sums_file = root / layout.checkpoint_sums_path(run.run_id)
        rel = lambda p: str(p.relative_to(root))  # noqa: E731
        if not sums_file.exists():
            continue  # training not finished: nothing recorded yet
        try:
            sums = read_sums(sums_file)
        except OSError as error:
            report.problems.append(Problem(rel(sums_file), f"cannot be read now ({error})", "leaves it alone"))
            continue
        except ValueError:
            report.problems.append(Problem(rel(sums_file), "is not a checksum record",
                                           "rebuilds it from the checksums saved with the checkpoints"))
            continue
        report.checked += 1
        for step in run.steps:
            path = checkpoint_file(run_dir, step)
            expected = sums.get(str(step))
            ok = _matches(path, expected) if expected else False
            report.checked += 1
            if ok is None:
                report.problems.append(Problem(rel(path), "cannot be read now", "deletes nothing"))
                continue
            try:
                saved = recorded_sha256(run_dir, step)
            except (OSError, ValueError):
                saved = None
            if not ok or (saved is not None and saved != expected):
                report.problems.append(Problem(rel(path), "does not match the checksum recorded after training",
                                               f"retrains run {run.run_id} from its last good checkpoint"))
        log = run_dir / METRICS_KEY
        if METRICS_KEY in sums:
            report.checked += 1
            ok = _matches(log, sums[METRICS_KEY])
            if ok is False:
                report.problems.append(Problem(rel(log), "does not match the checksum recorded after training",
                                               "leaves this run out of the run tables and reports it"))


def _verify_sidecars(root: Path, plan: StudyPlan, report: VerifyReport) -> None:
    for task in plan.all_tasks():
        for output in task.outputs:
            sidecar = layout.checksum_path(output)
            if sidecar not in task.outputs:
                continue
            path, side = root / output, root / sidecar
            if not path.exists() and not side.exists():
                continue  # not written yet: pending, not a problem
            if not side.is_file():
                report.problems.append(Problem(output, "has no checksum (left unfinished)", f"redoes {task.task_id}"))
                continue
            if not path.is_file():
                report.problems.append(Problem(output, "is missing (its checksum exists)", f"redoes {task.task_id}"))
                continue
            report.checked += 1
            try:
                expected = side.read_text().strip()
            except OSError as error:
                report.problems.append(Problem(sidecar, f"cannot be read now ({error})", "deletes nothing"))
                continue
            ok = _matches(path, expected)
            if ok is None:
                report.problems.append(Problem(output, "cannot be read now", "deletes nothing"))
            elif not ok:
                report.problems.append(Problem(output, "does not match its checksum", f"recomputes it ({task.task_id})"))
    planned = {Path(task.outputs[0]).name for task in plan.tasks["compare"]}
    folder = root / "results"
    if folder.is_dir():
        for path in sorted(folder.glob("*.parquet")):
            if path.name not in planned and not path.name.startswith("."):
                report.problems.append(Problem(str(path.relative_to(root)), "is not an output of this study's spec",
                                               "ignores it (readers never read it)"))
