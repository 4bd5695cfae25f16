"""Variants of a study: the same study measured another way, for the report's robustness labels.

A variant lives inside its study, in ``DIR/variants/NAME/``, as a study
directory of its own (spec, stages, store), with ``variant.json`` saying how
it was made. Two kinds:

- ``probe``: a second probe set. The spec is the study's with another
  ``probe.seed`` (other images, and other eps for the sampled layers) and no
  disentangle stage (those scores do not use the probe set). The study's
  trained runs are hard-linked in (no copy, no training: the run ids are the
  same, so the train stage finds them done); only extract, compare and store
  run. A verdict that changes on other images is a verdict about the probe set.
  It compares only the layer pairs the verdicts read (``comparisons.layer_pairs:
  matching``, the same scores as ``all`` for those pairs) unless told otherwise.
- ``rerun``: the whole study again, in the environment of the command that
  makes it (thread settings, ``ATEN_CPU_CAPABILITY``, another machine...),
  recorded in ``variant.json``. vaesim trains each run on one torch thread and
  its results do not depend on ``VAESIM_CPUS`` (tested), so a rerun that only
  changes the thread count reproduces the store; one that changes the CPU
  kernels (``ATEN_CPU_CAPABILITY``) or the machine changes summation order,
  which through training acts as a partial re-seed.

:func:`study_variants` lists them; ``vaesim report`` recomputes every verdict
on each finished one (:mod:`vaesim.report.robustness`).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from vaesim.study.plan import VARIANT_FILE, VARIANTS_DIR
from vaesim.utils import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

KINDS = ("probe", "rerun")


@dataclass(frozen=True)
class Variant:
    """One variant directory of a study and how it was made (``record``: its ``variant.json``)."""

    name: str
    path: Path
    record: dict

    @property
    def kind(self) -> str:
        return str(self.record.get("kind", "?"))

    def describe(self) -> str:
        """How the variant was made, in words (for the report)."""
        if self.kind == "probe":
            return (f"a second probe set ({self.record.get('n', '?')} other images drawn with probe seed "
                    f"{self.record.get('probe_seed', '?')}; the same trained checkpoints, extract and compare only, "
                    f"{self.record.get('layer_pairs', 'all')} layer pairs)")
        env = self.record.get("environment") or {}
        settings = ", ".join(f"{key}={value}" for key, value in env.items() if value is not None) or "no setting"
        return (f"a rerun of the whole study (training included) with {settings}, threads per task "
                f"{self.record.get('threads', 'default')}, on {self.record.get('machine', '?')}")


def variant_dir(study_dir: str | os.PathLike, name: str) -> Path:
    return Path(study_dir) / VARIANTS_DIR / name


def check_name(name: str) -> str:
    """``name`` when it is a plain folder name (letters, digits, ``-_.=``); ValueError otherwise."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.=")
    if not name or name.startswith(".") or not set(name) <= allowed or len(name) > 100:
        raise ValueError(f"variant name: expected a plain folder name of letters, digits and -_.= (at most 100); "
                         f"got {name!r}")
    return name


def variant_spec(parent, kind: str, *, probe_seed: int | None = None, layer_pairs: str | None = None):
    """The spec of a variant of the study spec ``parent`` (:class:`~vaesim.study.spec.StudySpec`).

    ``layer_pairs``: the variant's ``comparisons.layer_pairs``; default ``matching`` for a probe set (the
    verdicts read only those pairs), the study's own for a rerun.
    """
    if layer_pairs not in (None, "all", "matching"):
        raise ValueError(f"--layer-pairs: expected all or matching; got {layer_pairs!r}")
    if kind == "probe":
        if probe_seed is None or probe_seed == parent.probe.seed:
            raise ValueError(f"--probe-seed: a second probe set needs a seed other than the study's own "
                             f"({parent.probe.seed}); got {probe_seed!r}")
        probe = parent.probe.model_copy(update={"seed": probe_seed})
        comparisons = parent.comparisons.model_copy(update={"layer_pairs": layer_pairs or "matching"})
        return parent.model_copy(update={"probe": probe, "disentanglement": None, "comparisons": comparisons,
                                         "name": f"{parent.name}-probe-seed-{probe_seed}"})
    if kind == "rerun":
        comparisons = parent.comparisons.model_copy(
            update={"layer_pairs": layer_pairs or parent.comparisons.layer_pairs})
        return parent.model_copy(update={"name": f"{parent.name}-rerun", "comparisons": comparisons})
    raise ValueError(f"variant kind: expected one of {', '.join(KINDS)}; got {kind!r}")


def link_runs(study_dir: Path, target: Path) -> int:
    """Hard-link every file of the study's ``runs/`` into ``target/runs/`` (copied where links fail); return the
    number of files newly placed. Files already there are left alone (a resumed variant)."""
    source = study_dir / "runs"
    placed = 0
    for folder, _, names in os.walk(source):
        rel = Path(folder).relative_to(source)
        if any(part.startswith(".") for part in rel.parts):
            continue
        (target / "runs" / rel).mkdir(parents=True, exist_ok=True)
        for name in names:
            src, dst = Path(folder) / name, target / "runs" / rel / name
            if name.startswith(".") or os.path.lexists(dst) or not src.is_file() or src.is_symlink():
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
            placed += 1
    return placed


def environment() -> dict:
    """The thread and kernel settings of this process (what a rerun records): the variables provenance.json
    records, torch's version and the CPU kernels it dispatches to."""
    from vaesim.study.store.provenance import thread_settings

    env = dict(thread_settings()["environment"])
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError):  # pragma: no cover - torch is a dependency
        pass
    return env


def make_variant(study_dir, kind: str, *, name: str | None = None, probe_seed: int | None = None,
                 workers: int | None = None, threads: int | None = None, progress: bool = True,
                 layer_pairs: str | None = None) -> Path:
    """Make (or resume) a variant of the finished study in ``study_dir`` and run it; return its directory.

    ``kind``: ``probe`` (``probe_seed`` required: a second probe set on the
    same checkpoints) or ``rerun`` (everything again, in this process's
    environment). ``name`` defaults to ``probe-seed-K`` / ``rerun``. The
    variant runs with the local executor (``workers``, ``threads``). ``layer_pairs``: see :func:`variant_spec`.
    """
    from vaesim.study.run.runner import SPEC_FILE, run_study, study_status
    from vaesim.study.spec import load_spec
    from vaesim.study.store.provenance import invoking_command

    study_dir = Path(study_dir)
    if not (study_dir / SPEC_FILE).is_file():
        raise FileNotFoundError(f"{study_dir} is not a study directory (no {SPEC_FILE}); a variant is made of a "
                                f"finished study")
    parent = load_spec(study_dir / SPEC_FILE, import_plugins=False)
    spec = variant_spec(parent, kind, probe_seed=probe_seed, layer_pairs=layer_pairs)
    name = check_name(name or (f"probe-seed-{probe_seed}" if kind == "probe" else "rerun"))
    target = variant_dir(study_dir, name)
    record = {"kind": kind, "name": name, "parent": parent.name, "n": parent.probe.n,
              "layer_pairs": spec.comparisons.layer_pairs, "command": invoking_command()}
    if kind == "probe":
        status = study_status(study_dir)
        done, total = status.stages["train"]
        if done < total:
            raise ValueError(f"{study_dir}: {total - done} of {total} runs are not trained yet; finish the study "
                             f"(`vaesim study run {shlex.quote(str(study_dir / SPEC_FILE))} --out "
                             f"{shlex.quote(str(study_dir))}`) before a second probe set is recorded on its "
                             f"checkpoints")
        record["probe_seed"] = probe_seed
    else:
        record.update(environment=environment(), threads=threads, machine=f"{platform.node()} "
                      f"({platform.machine()}, {os.cpu_count()} CPUs)")
    existing = target / VARIANT_FILE
    if existing.is_file():
        old = json.loads(existing.read_text(encoding="utf-8"))
        if old.get("kind") != kind or old.get("probe_seed") != record.get("probe_seed"):
            raise ValueError(f"{target} holds another variant ({old.get('kind')}, probe seed "
                             f"{old.get('probe_seed')}); choose another --name")
        if old.get("layer_pairs", "all") != record["layer_pairs"]:
            raise ValueError(f"{target} compares layer pairs {old.get('layer_pairs', 'all')!r}; resume it with "
                             f"--layer-pairs {old.get('layer_pairs', 'all')}, or choose another --name")
        if kind == "rerun" and old.get("environment") != record.get("environment"):
            raise ValueError(f"{target} is a rerun made with {old.get('environment')}; this process has "
                             f"{record['environment']}: resume it in the same environment, or choose another --name")
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_json(existing, record)
    if kind == "probe":
        placed = link_runs(study_dir, target)
        logger.info("variant %s: %d checkpoint file(s) of %s linked in (no training)", name, placed, study_dir)
    if not (target / SPEC_FILE).is_file():
        atomic_write_text(target / SPEC_FILE, spec.to_yaml())
    run_study(spec, target, workers=workers, threads=threads, progress=progress)
    return target


def study_variants(study_dir) -> tuple[list[Variant], list[str]]:
    """(finished variants of the study, one line per variant that is not used and why), by name."""
    from vaesim.study.run.runner import study_status

    base = Path(study_dir) / VARIANTS_DIR
    found, skipped = [], []
    if not base.is_dir():
        return found, skipped
    for path in sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink()):
        try:
            record = json.loads((path / VARIANT_FILE).read_text(encoding="utf-8"))
            if not isinstance(record, dict) or record.get("kind") not in KINDS:
                kind = record.get("kind") if isinstance(record, dict) else record
                raise ValueError(f"not a variant record (kind: {kind!r})")
            status = study_status(path)
        except (OSError, ValueError) as error:
            skipped.append(f"{path.name}: not used ({error})")
            continue
        if not status.complete:
            damaged = sum(status.corrupt.values()) + len(status.problems)
            pending = sum(total - done for done, total in status.stages.values()) - sum(status.corrupt.values())
            why = []
            if damaged:
                why.append(f"{damaged} file problem(s): an output that fails its checksum or a damaged file; "
                           "`vaesim study verify` on it lists them")
            if pending:
                why.append(f"{pending} task(s) not finished")
            skipped.append(f"{path.name}: not used ({'; '.join(why)}; `{status.rerun_command}` "
                           f"{'repairs' if damaged else 'finishes'} it)")
            continue
        found.append(Variant(path.name, path, record))
    return found, skipped
