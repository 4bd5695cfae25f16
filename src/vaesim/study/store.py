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

import logging
import os
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
    """Write ``frame`` as Parquet atomically (and its checksum sidecar if asked)."""
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    if checksum:
        write_checksum(path)
    return Path(path)


def empty_results() -> pd.DataFrame:
    return RESULT_SCHEMA.empty_table().to_pandas()


# -- reading ----------------------------------------------------------------


def result_files(study_dir: str | os.PathLike) -> list[Path]:
    """Finished results files (temporary ``.tmp-*`` files of a running job excluded)."""
    folder = Path(study_dir) / "results"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith(".") and is_written(p))


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
    if not files:
        return empty_results()
    frames = [pq.read_table(f, schema=RESULT_SCHEMA).to_pandas() for f in files]
    return pd.concat(frames, ignore_index=True)


def load_runs(study_dir: str | os.PathLike) -> pd.DataFrame:
    """``runs.parquet``: one row per run (FileNotFoundError before the store stage ran)."""
    path = _study_dir(study_dir) / RUNS_TABLE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist yet: the study's store stage has not run; "
                                f"run `vaesim study run SPEC --out {study_dir}` to finish it")
    return pd.read_parquet(path)


def load_training_metrics(study_dir: str | os.PathLike) -> pd.DataFrame:
    """``training_metrics.parquet``: every logged step of every run (column ``run`` names the run)."""
    path = _study_dir(study_dir) / TRAINING_METRICS_TABLE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist yet: run the study to its store stage first")
    return pd.read_parquet(path)


def load_latents(study_dir: str | os.PathLike) -> pd.DataFrame:
    """``latents.parquet``: per run, recorded checkpoint and latent dimension (mean_variance, posterior_variance, kl)."""
    path = _study_dir(study_dir) / LATENTS_TABLE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist yet: run the study to its store stage first")
    return pd.read_parquet(path)


def query(study_dir: str | os.PathLike, sql: str) -> pd.DataFrame:
    """Run DuckDB ``sql`` over the study; views ``results``, ``runs``, ``training_metrics``, ``latents``,
    ``disentanglement``.

    Example: ``query(d, "SELECT a_layer, avg(score) FROM results WHERE
    comparison = 'within_run' GROUP BY a_layer")``.
    """
    import duckdb

    study_dir = _study_dir(study_dir)
    con = duckdb.connect()
    try:
        files = [str(f) for f in result_files(study_dir)]
        if files:
            con.execute(f"CREATE VIEW results AS SELECT * FROM read_parquet({_sql_list(files)}, union_by_name=true)")
        else:
            con.register("results_empty", empty_results())
            con.execute("CREATE VIEW results AS SELECT * FROM results_empty")
        from vaesim.study.disentangle import DISENTANGLEMENT_SCHEMA, disentanglement_files

        scores = [str(f) for f in disentanglement_files(study_dir)]
        if scores:  # the disentangle stage's tables (one row per run, step, metric, value)
            con.execute(f"CREATE VIEW disentanglement AS SELECT * FROM read_parquet({_sql_list(scores)})")
        else:
            con.register("disentanglement_empty", DISENTANGLEMENT_SCHEMA.empty_table().to_pandas())
            con.execute("CREATE VIEW disentanglement AS SELECT * FROM disentanglement_empty")
        for view, name in (("runs", RUNS_TABLE), ("training_metrics", TRAINING_METRICS_TABLE),
                           ("latents", LATENTS_TABLE)):
            path = study_dir / name
            if path.is_file():
                con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet({_sql_list([str(path)])})")
        try:
            return con.execute(sql).df()
        except duckdb.Error as error:
            raise ValueError(f"query failed: {error}; the views are results, runs, training_metrics, latents, "
                             f"disentanglement "
                             f"(results columns: {', '.join(RESULT_COLUMNS)})") from None
    finally:
        con.close()


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _study_dir(study_dir: str | os.PathLike) -> Path:
    path = Path(study_dir)
    if not (path / "spec.yaml").is_file():
        raise FileNotFoundError(
            f"{path} is not a study directory (no spec.yaml); create one with `vaesim study run SPEC --out {path}`"
        )
    return path


def duplicated_keys(results: pd.DataFrame) -> int:
    """Number of rows whose :data:`RESULT_KEY` repeats another row's (0 in a sound store)."""
    return int(results.duplicated(list(RESULT_KEY)).sum())


def finite_scores(results: pd.DataFrame) -> np.ndarray:
    """Boolean mask of rows with a finite score."""
    return np.isfinite(results["score"].to_numpy(dtype=float))
