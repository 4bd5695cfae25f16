"""The ``store`` stage: ``runs.parquet``, ``training_metrics.parquet`` and ``latents.parquet`` of the finished runs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from vaesim.study import plan as layout
from vaesim.study.plan import StoreTask
from vaesim.study.stages.checkpoints import METRICS_KEY
from vaesim.study.stages.files import verified, write_table
from vaesim.utils import sha256_file

logger = logging.getLogger(__name__)


def run_metrics(root: Path, run_id: str) -> pd.DataFrame:
    """The training log of a finished run, verified against the SHA-256 recorded after training.

    FileNotFoundError when the run has not finished; ValueError naming the
    file when the log does not match (or is unreadable).
    """
    from vaesim.training import read_metrics

    sums_file = root / layout.checkpoint_sums_path(run_id)
    if not sums_file.is_file():
        raise FileNotFoundError(f"run {run_id} has not finished training (no {sums_file.name})")
    sums = json.loads(sums_file.read_text())
    log = root / layout.run_dir(run_id) / METRICS_KEY
    if METRICS_KEY in sums and sha256_file(log) != sums[METRICS_KEY]:
        raise ValueError(f"training log {log} does not match the SHA-256 recorded after training; "
                         "it was changed or damaged since (`vaesim study verify` lists such files)")
    return read_metrics(root / layout.run_dir(run_id))


def _source(root: Path, run) -> str:
    """Where a run's learned checkpoints came from: ``vaesim`` (trained here) or ``<importer>:<model>``."""
    if run.config.get("source") != "imported":
        return "vaesim"
    try:
        record = json.loads((root / layout.run_dir(run.run_id) / "imported.json").read_text())["run"]["source"]
        return f"{record.get('kind', 'imported')}:{record.get('model', record.get('file', '?'))}"
    except (OSError, ValueError, KeyError, TypeError):
        return "imported"


def store_stage(root: Path, task: StoreTask) -> None:
    """Write ``runs.parquet`` (one row per run) and ``training_metrics.parquet`` (every logged step).

    ``runs.parquet`` columns: run_id, dataset, objective, param_name, param,
    seed, steps, batch_size, lr, latent_dim, checkpoint_steps (comma list),
    then the last logged value of every training metric (loss,
    reconstruction, kl, kl_dim_0.., objective terms, active_dims,
    cka_mean_sample; monitors take their last non-missing value).
    """
    rows, logs, left_out = [], [], []
    for run in task.runs:
        config = run.config
        try:
            metrics = run_metrics(root, run.run_id)
        except (OSError, ValueError) as error:
            left_out.append(f"{run.run_id} ({error})")
            continue
        row = {
            "run_id": run.run_id, "dataset": run.dataset, "objective": run.objective,
            "param_name": run.param_name, "param": float(run.param), "seed": int(run.seed),
            "steps": int(config["steps"]),
            # an adopted run (spec imported:) was trained elsewhere: its batch size and learning rate are its
            # source's (runs/<run_id>/imported.json), not the spec's
            "batch_size": int(config["batch_size"]) if "batch_size" in config else None,
            "lr": float(config["lr"]) if "lr" in config else float("nan"),
            "latent_dim": int(config["latent_dim"]),
            "checkpoint_steps": ",".join(str(s) for s in config["checkpoint_steps"]),
            "source": _source(root, run),
        }
        row.update(final_metrics(metrics))
        rows.append(row)
        log = metrics.copy()
        log.insert(0, "run_id", run.run_id)
        for column in ("dataset", "objective", "param_name", "param", "seed"):
            if column not in log:
                log[column] = getattr(run, column)
        logs.append(log)
    training = pd.concat(logs, ignore_index=True) if logs else pd.DataFrame({"run_id": pd.Series(dtype=str),
                                                                              "step": pd.Series(dtype="int64")})
    write_table(root / layout.TRAINING_METRICS_TABLE, training, checksum=True)
    finished = {row["run_id"] for row in rows}
    write_table(root / layout.LATENTS_TABLE, collect_latents(root, task, finished), checksum=True)
    write_table(root / layout.RUNS_TABLE, pd.DataFrame(rows) if rows else pd.DataFrame({"run_id": pd.Series(dtype=str)}),
                checksum=True)
    if left_out:
        # The tables hold every finished run; the runner rebuilds them once the others finish.
        raise RuntimeError(f"{layout.RUNS_TABLE} and {layout.TRAINING_METRICS_TABLE} hold {len(rows)} of "
                           f"{len(task.runs)} runs; "
                           f"left out: {'; '.join(left_out)}")


def store_is_stale(root: Path, task: StoreTask) -> bool:
    """True when ``runs.parquet`` exists but does not hold exactly the runs that finished training.

    A store written while some runs had failed holds only the finished ones;
    once they finish (or when one went missing) the tables must be rebuilt.
    """
    import pyarrow.parquet as pq

    table = root / layout.RUNS_TABLE
    if not table.is_file():
        return False
    finished = {run.run_id for run in task.runs if (root / layout.checkpoint_sums_path(run.run_id)).is_file()}
    try:
        stored = set(pq.read_table(table, columns=["run_id"]).column("run_id").to_pylist())
    except Exception as error:  # unreadable or truncated: rebuild it
        logger.warning("run table %s is unreadable (%s); it will be rebuilt", table, error)
        return True
    return stored != finished


def collect_latents(root: Path, task: StoreTask, finished: set[str]) -> pd.DataFrame:
    """``latents.parquet``: every verified per-checkpoint latent table, with the run's columns.

    Columns: run_id, dataset, objective, param_name, param, seed, step, dim,
    mean_variance, posterior_variance, kl, mean_cov_sq (NaN for checkpoints
    extracted before vaesim recorded it). A checkpoint whose file is missing
    or fails its checksum is left out with a warning (its extract task has
    not run or will be redone).
    """
    from vaesim.activations import LATENT_COLUMNS

    parts = []
    for run in task.runs:
        if run.run_id not in finished:
            continue
        for step in task.steps:
            path = root / layout.latents_path(run.run_id, step)
            if not verified(path):
                logger.warning("latent statistics %s are missing or corrupt; left out of %s", path,
                               layout.LATENTS_TABLE)
                continue
            frame = pd.read_parquet(path)
            frame = frame.assign(run_id=run.run_id, dataset=run.dataset, objective=run.objective,
                                 param_name=run.param_name, param=float(run.param), seed=int(run.seed), step=int(step))
            parts.append(frame)
    columns = ["run_id", "dataset", "objective", "param_name", "param", "seed", "step", *LATENT_COLUMNS]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    return pd.concat(parts, ignore_index=True).reindex(columns=columns)


def final_metrics(metrics: pd.DataFrame) -> dict:
    """Last logged value of each numeric training metric (last non-missing for sparse monitors)."""
    if metrics.empty:
        return {}
    final = {}
    for column in metrics.columns:
        if column == "step" or not pd.api.types.is_numeric_dtype(metrics[column]):
            continue
        values = metrics[column].dropna()
        final[column] = float(values.iloc[-1]) if len(values) else float("nan")
    final["final_step"] = int(metrics["step"].iloc[-1]) if "step" in metrics else -1
    return final
