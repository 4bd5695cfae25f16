"""Reading the store: every table of a study as pandas, each file verified against its checksum first.

- ``results/<task>.parquet``: similarity rows, one file per compare task,
  columns :data:`vaesim.study.schema.RESULT_COLUMNS` (one row per layer pair
  and metric): :func:`load_results`;
- ``runs.parquet``: one row per run (config and final training metrics):
  :func:`load_runs`;
- ``training_metrics.parquet``: every logged training step of every run:
  :func:`load_training_metrics`;
- ``latents.parquet``: per run, checkpoint and latent dimension:
  :func:`load_latents`;
- ``disentanglement/**.parquet``: disentanglement metrics and UDR:
  :func:`load_disentanglement`.

A file that does not match its ``.sha256`` sidecar is refused
(:class:`CorruptStudyFile`), never read; the stages write them
(:mod:`vaesim.study.stages.files`).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from vaesim.study.plan import LATENTS_TABLE, RUNS_TABLE, TRAINING_METRICS_TABLE
from vaesim.study.schema import DISENTANGLEMENT_SCHEMA, RESULT_SCHEMA
from vaesim.study.stages.files import is_written, verified

logger = logging.getLogger(__name__)


class CorruptStudyFile(ValueError):
    """A stored file does not match its checksum: readers refuse it rather than return wrong numbers."""


def empty_results() -> pd.DataFrame:
    return RESULT_SCHEMA.empty_table().to_pandas()


def planned_result_files(study_dir: str | os.PathLike) -> list[Path]:
    """The results file of every compare task of the study's recorded spec (written or not).

    A store made by ``vaesim import`` (its spec.yaml says ``imported_from``)
    has no plan: its files are the ones its ``import.json`` lists.
    """
    from vaesim.study.plan import plan_study
    from vaesim.study.spec import load_spec

    study_dir = Path(study_dir)
    imported = imported_result_files(study_dir)
    if imported is not None:
        return imported
    plan = plan_study(load_spec(study_dir / "spec.yaml", import_plugins=False))
    return [study_dir / task.outputs[0] for task in plan.tasks["compare"]]


def imported_result_files(study_dir: Path) -> list[Path] | None:
    """The results files an imported store's ``import.json`` lists, or None for a study directory."""
    import yaml

    try:
        recorded = yaml.safe_load((study_dir / "spec.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not (isinstance(recorded, dict) and "imported_from" in recorded):
        return None
    manifest = study_dir / "import.json"
    try:
        names = json.loads(manifest.read_text())["results_files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise FileNotFoundError(f"{manifest}: the import's manifest is missing or unreadable ({error}); "
                                "rerun `vaesim import` into a new directory") from None
    if not (isinstance(names, list) and all(isinstance(name, str) and name for name in names)):
        raise ValueError(f"{manifest}: results_files must be a list of paths inside the store; got {names!r:.200}; "
                         "rerun `vaesim import` into a new directory")
    files = [study_dir / name for name in names]
    check_inside(files, study_dir)
    return files


def result_files(study_dir: str | os.PathLike) -> list[Path]:
    """Finished results files of the study's plan (with their sidecar; not verified).

    Other ``*.parquet`` files in ``results/`` (left by an older spec, or put
    there by hand) are not part of the study and are ignored with a warning.
    """
    folder = Path(study_dir) / "results"
    if not folder.is_dir():
        return []
    planned = planned_result_files(study_dir)
    extra = sorted(set(folder.glob("*.parquet")) - set(planned))
    extra = [p for p in extra if not p.name.startswith(".")]
    if extra:
        logger.warning("%d file(s) in %s are not outputs of this study's spec and are ignored: %s", len(extra),
                       folder, ", ".join(p.name for p in extra[:5]) + (" ..." if len(extra) > 5 else ""))
    return sorted(p for p in planned if is_written(p))


def check_verified(paths: list[Path], study_dir: Path) -> None:
    """Raise :class:`CorruptStudyFile` naming every path that does not match its checksum."""
    corrupt = [p for p in paths if not verified(p)]
    if corrupt:
        listing = ", ".join(str(p) for p in corrupt[:5]) + (f" and {len(corrupt) - 5} more" if len(corrupt) > 5 else "")
        raise CorruptStudyFile(
            f"{len(corrupt)} stored file(s) do not match their checksum: {listing}; their numbers are not read. "
            f"Run `vaesim study verify {shlex.quote(str(study_dir))}` for the full list and `vaesim study run "
            f"{shlex.quote(str(Path(study_dir) / 'spec.yaml'))} --out {shlex.quote(str(study_dir))}` to recompute them")


def check_inside(paths: list[Path], study_dir: Path) -> None:
    """ValueError naming every path that leads outside ``study_dir`` (``..``, absolute, or through a symlink)."""
    root = resolved(study_dir)
    outside = [p for p in paths if not resolved(p).is_relative_to(root)]
    if outside:
        listing = ", ".join(f"{p} -> {resolved(p)}" for p in outside[:5])
        raise ValueError(f"{study_dir}: {len(outside)} stored file(s) lead outside the study directory ({listing}); "
                         "a study's tables must lie inside it (a symlink or an import.json entry pointing elsewhere is "
                         "refused); copy the files into the study or query that other study itself")


def resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def study_directory(study_dir: str | os.PathLike) -> Path:
    """``study_dir`` as a Path; FileNotFoundError unless it holds a ``spec.yaml``."""
    path = Path(study_dir)
    if not (path / "spec.yaml").is_file():
        raise FileNotFoundError(
            f"{path} is not a study directory (no spec.yaml); create one with `vaesim study run SPEC --out {shlex.quote(str(path))}`"
        )
    return path


def table_path(study_dir: Path, name: str) -> Path:
    """A verified run table (``runs.parquet``, ``training_metrics.parquet``) of the study."""
    path = study_dir / name
    if not is_written(path):
        raise FileNotFoundError(f"{path} does not exist yet (or was left unfinished): the study's store stage "
                                f"has not finished; run `vaesim study run {shlex.quote(str(study_dir / 'spec.yaml'))} "
                                f"--out {shlex.quote(str(study_dir))}` to finish it")
    check_inside([path], study_dir)
    check_verified([path], study_dir)
    return path


def load_results(study_dir: str | os.PathLike, *, comparison: str | None = None) -> pd.DataFrame:
    """Every similarity row of a study as one DataFrame (columns :data:`vaesim.study.schema.RESULT_COLUMNS`).

    ``comparison`` keeps one comparison type (``within_run``, ``seeds``,
    ``params``, ``objectives``, ``factors``). Raises FileNotFoundError when
    ``study_dir`` is not a study directory.
    """
    study_dir = study_directory(study_dir)
    files = result_files(study_dir)
    if comparison is not None:
        files = [f for f in files if f.name.startswith(comparison + "__")]
    check_inside(files, study_dir)
    check_verified(files, study_dir)
    if not files:
        return empty_results()
    frames = [pq.read_table(f, schema=RESULT_SCHEMA).to_pandas() for f in files]
    return pd.concat(frames, ignore_index=True)


def load_runs(study_dir: str | os.PathLike) -> pd.DataFrame:
    """``runs.parquet``: one row per run (FileNotFoundError before the store stage ran)."""
    return pd.read_parquet(table_path(study_directory(study_dir), RUNS_TABLE))


def load_training_metrics(study_dir: str | os.PathLike) -> pd.DataFrame:
    """``training_metrics.parquet``: every logged step of every run (column ``run`` names the run)."""
    return pd.read_parquet(table_path(study_directory(study_dir), TRAINING_METRICS_TABLE))


def load_latents(study_dir: str | os.PathLike) -> pd.DataFrame:
    """``latents.parquet``: per run, recorded checkpoint and latent dimension (mean_variance, posterior_variance, kl)."""
    return pd.read_parquet(table_path(study_directory(study_dir), LATENTS_TABLE))


def disentanglement_files(study_dir: str | Path) -> list[Path]:
    """Written (checksummed) disentanglement tables of a study."""
    folder = Path(study_dir) / "disentanglement"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith(".") and is_written(p))


def load_disentanglement(study_dir: str | Path) -> pd.DataFrame:
    """Every disentanglement and UDR row of a study (empty table with the schema when none).

    Each table is checked against its checksum sidecar first: :class:`CorruptStudyFile`
    names a table that does not match.
    """
    files = disentanglement_files(study_dir)
    if not files:
        return DISENTANGLEMENT_SCHEMA.empty_table().to_pandas()
    check_inside(files, Path(study_dir))
    check_verified(files, Path(study_dir))  # a table edited after its sidecar was written is refused, not read
    return pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)

