"""The results store: Parquet files under the study directory, read as one table.

- ``results/<task>.parquet``: similarity rows, one file per compare task,
  columns :data:`RESULT_COLUMNS` (one row per layer pair and metric).
- ``runs.parquet``: one row per run (config and final training metrics).
- ``training_metrics.parquet``: every logged training step of every run.

Files that a later stage trusts carry a ``<file>.sha256`` sidecar written
after the file itself; :func:`verified` checks it, so a truncated or flipped
file is detected, reported and recomputed instead of being read.
"""

from __future__ import annotations

import json

import logging
import os
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vaesim.study.plan import LATENTS_TABLE, RUNS_TABLE, TRAINING_METRICS_TABLE, checksum_path
from vaesim.utils import atomic_path, atomic_write_text, sha256_file

logger = logging.getLogger(__name__)

RESULT_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("comparison", pa.string()),
        ("metric", pa.string()),
        ("a_run", pa.string()),
        ("a_objective", pa.string()),
        ("a_param_name", pa.string()),
        ("a_param", pa.float64()),
        ("a_seed", pa.int64()),
        ("a_step", pa.int64()),
        ("a_epoch", pa.float64()),
        ("a_layer", pa.string()),
        ("b_run", pa.string()),
        ("b_objective", pa.string()),
        ("b_param_name", pa.string()),
        ("b_param", pa.float64()),
        ("b_seed", pa.int64()),
        ("b_step", pa.int64()),
        ("b_epoch", pa.float64()),
        ("b_layer", pa.string()),
        ("n", pa.int64()),
        ("score", pa.float64()),
        ("note", pa.string()),
    ]
)
RESULT_COLUMNS = tuple(RESULT_SCHEMA.names)
# A row is identified by these; a complete study has each combination once.
RESULT_KEY = ("comparison", "metric", "a_run", "a_step", "a_layer", "b_run", "b_step", "b_layer")


# -- checksummed files ----------------------------------------------------


def write_checksum(path: str | os.PathLike) -> None:
    """Write ``path``'s SHA-256 sidecar (after ``path`` itself is in place)."""
    atomic_write_text(checksum_path(str(path)), sha256_file(path) + "\n")


def is_written(path: str | os.PathLike) -> bool:
    """True when ``path`` and its checksum sidecar both exist (not verified)."""
    return Path(path).is_file() and Path(checksum_path(str(path))).is_file()


def verified(path: str | os.PathLike) -> bool:
    """True when ``path`` exists and matches its sidecar; logs a warning naming a bad file."""
    path = Path(path)
    sidecar = Path(checksum_path(str(path)))
    if not path.is_file() or not sidecar.is_file():
        return False
    expected = sidecar.read_text().strip()
    actual = sha256_file(path)
    if actual != expected:
        logger.warning("corrupt file %s: SHA-256 %s does not match its sidecar %s; it will be recomputed",
                       path, actual[:12], expected[:12])
        return False
    return True


def discard(path: str | os.PathLike) -> None:
    """Remove ``path`` and its sidecar (a corrupt or stale output)."""
    for victim in (Path(path), Path(checksum_path(str(path)))):
        victim.unlink(missing_ok=True)


# -- writing ----------------------------------------------------------------


def write_table(path: str | os.PathLike, frame: pd.DataFrame, schema: pa.Schema | None = None,
                *, checksum: bool = False) -> Path:
    """Write ``frame`` as Parquet atomically (and its checksum sidecar if asked).

    Float NaN stays NaN (pandas' conversion would store it as NULL, and
    ``isnan(score)`` in SQL would then find none of the NaN scores). Float
    columns are written without min/max statistics: those skip NaN, and
    DuckDB trusts them to fold ``isnan(score)`` to false.
    """
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    for index, field in enumerate(table.schema):
        if pa.types.is_floating(field.type) and field.name in frame:
            values = pa.array(frame[field.name].to_numpy(dtype=field.type.to_pandas_dtype()), type=field.type,
                              from_pandas=False)
            table = table.set_column(index, field, values)
    plain = [field.name for field in table.schema if not pa.types.is_floating(field.type)]
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, write_statistics=plain)
    if checksum:
        write_checksum(path)
    return Path(path)


def empty_results() -> pd.DataFrame:
    return RESULT_SCHEMA.empty_table().to_pandas()


# -- reading ----------------------------------------------------------------


class CorruptStudyFile(ValueError):
    """A stored file does not match its checksum: readers refuse it rather than return wrong numbers."""


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
    plan = plan_study(load_spec(study_dir / "spec.yaml"))
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
    except (OSError, ValueError, KeyError) as error:
        raise FileNotFoundError(f"{manifest}: the import's manifest is missing or unreadable ({error}); "
                                "rerun `vaesim import` into a new directory") from None
    return [study_dir / name for name in names]


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


def table_path(study_dir: Path, name: str) -> Path:
    """A verified run table (``runs.parquet``, ``training_metrics.parquet``) of the study."""
    path = study_dir / name
    if not is_written(path):
        raise FileNotFoundError(f"{path} does not exist yet (or was left unfinished): the study's store stage "
                                f"has not finished; run `vaesim study run {shlex.quote(str(study_dir / 'spec.yaml'))} "
                                f"--out {shlex.quote(str(study_dir))}` to finish it")
    check_verified([path], study_dir)
    return path


def load_results(study_dir: str | os.PathLike, *, comparison: str | None = None) -> pd.DataFrame:
    """Every similarity row of a study as one DataFrame (columns :data:`RESULT_COLUMNS`).

    ``comparison`` keeps one comparison type (``within_run``, ``seeds``,
    ``params``, ``objectives``, ``factors``). Raises FileNotFoundError when
    ``study_dir`` is not a study directory.
    """
    study_dir = _study_dir(study_dir)
    files = result_files(study_dir)
    if comparison is not None:
        files = [f for f in files if f.name.startswith(comparison + "__")]
    check_verified(files, study_dir)
    if not files:
        return empty_results()
    frames = [pq.read_table(f, schema=RESULT_SCHEMA).to_pandas() for f in files]
    return pd.concat(frames, ignore_index=True)


def load_runs(study_dir: str | os.PathLike) -> pd.DataFrame:
    """``runs.parquet``: one row per run (FileNotFoundError before the store stage ran)."""
    return pd.read_parquet(table_path(_study_dir(study_dir), RUNS_TABLE))


def load_training_metrics(study_dir: str | os.PathLike) -> pd.DataFrame:
    """``training_metrics.parquet``: every logged step of every run (column ``run`` names the run)."""
    return pd.read_parquet(table_path(_study_dir(study_dir), TRAINING_METRICS_TABLE))


def load_latents(study_dir: str | os.PathLike) -> pd.DataFrame:
    """``latents.parquet``: per run, recorded checkpoint and latent dimension (mean_variance, posterior_variance, kl)."""
    return pd.read_parquet(table_path(_study_dir(study_dir), LATENTS_TABLE))


def _layers_view(con) -> None:
    """The ``layers`` view: ``layer``, ``position`` (0 = input) in network order, to sort by (``ORDER BY position``)."""
    from vaesim.models.names import NETWORK_ORDER

    con.register("layers_order", pd.DataFrame({"layer": list(NETWORK_ORDER), "position": range(len(NETWORK_ORDER))}))
    con.execute("CREATE VIEW layers AS SELECT * FROM layers_order")


def query(study_dir: str | os.PathLike, sql: str) -> pd.DataFrame:
    """Run DuckDB ``sql`` over the study; views ``results``, ``runs``, ``training_metrics``, ``latents``,
    ``disentanglement``, and ``layers`` (each layer name's ``position`` in network order, to sort by).

    Example: ``query(d, "SELECT a_layer, avg(score) FROM results WHERE
    comparison = 'within_run' GROUP BY a_layer")``.

    Every file behind the views is verified against its checksum first
    (:class:`CorruptStudyFile` otherwise). The SQL then runs sandboxed: after
    the views are created, DuckDB's external access is turned off except for
    exactly those files (``allowed_paths``) and the configuration is locked,
    so the SQL cannot read, write, attach or install anything else
    (``read_csv('/etc/passwd')``, ``COPY ... TO``, ``ATTACH``, ``INSTALL``
    fail with a permission error).
    """
    import duckdb

    study_dir = _study_dir(study_dir)
    files = [str(f) for f in result_files(study_dir)]
    tables = {view: study_dir / name for view, name in (("runs", RUNS_TABLE), ("training_metrics", TRAINING_METRICS_TABLE),
                                                        ("latents", LATENTS_TABLE))
              if is_written(study_dir / name)}
    check_verified([Path(f) for f in files] + list(tables.values()), study_dir)
    con = duckdb.connect()
    try:
        from vaesim.study.disentangle import DISENTANGLEMENT_SCHEMA, disentanglement_files

        scores = [str(f) for f in disentanglement_files(study_dir)]
        try:
            if files:
                con.execute(f"CREATE VIEW results AS SELECT * FROM read_parquet({_sql_list(files)}, "
                            "union_by_name=true)")
            else:
                con.register("results_empty", empty_results())
                con.execute("CREATE VIEW results AS SELECT * FROM results_empty")
            if scores:  # the disentangle stage's tables (one row per run, step, metric, value)
                con.execute(f"CREATE VIEW disentanglement AS SELECT * FROM read_parquet({_sql_list(scores)})")
            else:
                con.register("disentanglement_empty", DISENTANGLEMENT_SCHEMA.empty_table().to_pandas())
                con.execute("CREATE VIEW disentanglement AS SELECT * FROM disentanglement_empty")
            for view, path in tables.items():
                con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet({_sql_list([str(path)])})")
            _layers_view(con)
            allowed = files + scores + [str(path) for path in tables.values()]
            con.execute(f"SET allowed_paths = {_sql_list(allowed)}")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        except duckdb.Error as error:
            raise ValueError(f"query: the study's tables in {study_dir} could not be opened ({error}); "
                             f"run `vaesim study verify {shlex.quote(str(study_dir))}`") from None
        try:
            return con.execute(sql).df()
        except duckdb.Error as error:
            raise ValueError(f"query failed: {error}; the views are results, runs, training_metrics, latents, "
                             f"disentanglement (results columns: {', '.join(RESULT_COLUMNS)}); files outside the study "
                             "cannot be read or written from a query") from None
    finally:
        con.close()


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _study_dir(study_dir: str | os.PathLike) -> Path:
    path = Path(study_dir)
    if not (path / "spec.yaml").is_file():
        raise FileNotFoundError(
            f"{path} is not a study directory (no spec.yaml); create one with `vaesim study run SPEC --out {shlex.quote(str(path))}`"
        )
    return path


def duplicated_keys(results: pd.DataFrame) -> int:
    """Number of rows whose :data:`RESULT_KEY` repeats another row's (0 in a sound store)."""
    return int(results.duplicated(list(RESULT_KEY)).sum())


def finite_scores(results: pd.DataFrame) -> np.ndarray:
    """Boolean mask of rows with a finite score."""
    return np.isfinite(results["score"].to_numpy(dtype=float))
