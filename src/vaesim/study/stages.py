"""The work of each task, the same whatever executor runs it.

:func:`run_task` takes a study directory and a task record (one frozen
dataclass per stage, :mod:`vaesim.study.plan`; picklable, so it can travel to
a process pool or a Ray worker) and returns a small report dict. Every output is written atomically, data
file first and its SHA-256 sidecar last, so a killed task leaves nothing that
a later run trusts; a task whose outputs all exist returns at once.

Integrity: the probe set and every summary are verified against their
sidecar when loaded; a mismatch or a load failure is logged as a warning that
names the file, the file is discarded and recomputed (extraction is
deterministic), and never read. A checkpoint that fails to load makes the
extract task report ``corrupt_checkpoint``; the runner then repairs the run
(see :func:`vaesim.study.runner.repair_runs`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vaesim.study import plan as layout
from vaesim.study.plan import FACTORS_LAYER, CompareTask, ExtractTask, ProbeTask, StoreTask, Task, TrainTask
from vaesim.study.store import RESULT_SCHEMA, discard, is_written, verified, write_checksum, write_table
from vaesim.utils import atomic_path, atomic_write_json, sha256_file

logger = logging.getLogger(__name__)


def run_task(study_dir: str, task: Task, torch_threads: int | None = None) -> dict:
    """Run one task (skipping it when its outputs exist); return ``{task_id, status, seconds}``.

    ``status`` is ``done``, ``skipped`` or ``corrupt_checkpoint``.
    ``torch_threads``: when given, the number of threads torch and the BLAS
    behind numpy use in this task (executors share the cores between
    concurrent tasks this way).
    """
    root = Path(study_dir)
    start = time.perf_counter()
    if outputs_done(root, task) and not (isinstance(task, StoreTask) and store_is_stale(root, task)):
        return {"task_id": task.task_id, "status": "skipped", "seconds": 0.0}
    with thread_limit(torch_threads):
        status = STAGE_FUNCTIONS[task.stage](root, task) or "done"
    return {"task_id": task.task_id, "status": status, "seconds": time.perf_counter() - start}


@contextlib.contextmanager
def thread_limit(threads: int | None):
    """Limit torch and BLAS threads to ``threads`` inside the block (no change when None)."""
    if threads is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        with threadpool_limits(limits=max(1, int(threads))):
            yield
    finally:
        torch.set_num_threads(previous)


def outputs_done(root: Path, task: Task) -> bool:
    """True when every output of ``task`` exists (checksummed outputs with their sidecar)."""
    return all((root / output).is_file() for output in task.outputs)


def corrupt_outputs(root: Path, task: Task) -> list[Path]:
    """Outputs of ``task`` that exist with a sidecar but do not match it (hashes every checksummed output)."""
    checked = [root / o for o in task.outputs if layout.checksum_path(o) in task.outputs]
    return [path for path in checked if is_written(path) and not verified(path)]


# -- probe ------------------------------------------------------------------


def probe_stage(root: Path, task: ProbeTask) -> None:
    """Draw the study's probe set of one dataset; summarise its ground-truth factors.

    Writes ``probes/<dataset>.npz`` (``ProbeSet.save``), ``probes/<dataset>.json``
    (dataset size, factor names) and ``summaries/factors/<dataset>.npz``: the
    factor indices as one (n, F) float64 "layer" named ``factors``.
    """
    from vaesim.data import get_dataset, make_probe_set
    from vaesim.similarity import save_summaries, summarise

    dataset_name = task.dataset
    dataset = get_dataset(dataset_name, root=task.dataset_root)
    probe = make_probe_set(dataset, task.n, task.seed)
    probe_file = root / layout.probe_path(dataset_name)
    with atomic_path(probe_file) as tmp:
        probe.save(tmp)
    write_checksum(probe_file)
    factors = np.asarray(probe.factors, dtype=np.float64)  # (n, F)
    factors_file = root / layout.factors_summary_path(dataset_name)
    save_summaries(factors_file, {FACTORS_LAYER: summarise(factors, name=FACTORS_LAYER, metrics=task.metrics,
                                                                   device=array_device(task.device))})
    write_checksum(factors_file)
    atomic_write_json(
        root / layout.probe_info_path(dataset_name),
        {
            "dataset": dataset_name,
            "dataset_size": len(dataset),
            "factor_names": list(dataset.factor_names),
            "factor_sizes": [int(s) for s in dataset.factor_sizes],
            "n": int(task.n),
            "seed": int(task.seed),
        },
    )
    write_checksum(root / layout.probe_info_path(dataset_name))


def load_probe(root: Path, dataset: str):
    """The study's probe set of ``dataset``, verified (recomputed if corrupt)."""
    from vaesim.data import ProbeSet

    path = root / layout.probe_path(dataset)
    if not verified(path):
        raise FileNotFoundError(
            f"probe set {path} is missing or corrupt; rerun `vaesim study run` to recompute it"
        )
    return ProbeSet.load(path)


def probe_images(probe) -> np.ndarray:
    """Probe images as float32 (n, C, 64, 64) in [0, 1]."""
    return probe.images


# -- train ------------------------------------------------------------------


def train_config(task: TrainTask):
    """The :class:`vaesim.training.TrainConfig` of a train task's run config."""
    from vaesim.training import TrainConfig

    config = task.run.config
    return TrainConfig(
        dataset=config["dataset"],
        dataset_root=task.dataset_root,
        objective=config["objective"],
        params=dict(config["params"]),
        seed=config["seed"],
        steps=config["steps"],
        batch_size=config["batch_size"],
        lr=config["lr"],
        adam_betas=tuple(config["adam_betas"]),
        adam_eps=config["adam_eps"],
        checkpoints=list(config["checkpoint_steps"]),
        latent_dim=config["latent_dim"],
        architecture=config["architecture"],
        reconstruction=config["reconstruction"],
        log_every=config["log_every"],
        monitor_every=config["monitor_every"],
    )


def train_stage(root: Path, task: TrainTask) -> None:
    """Train one run into ``runs/<run_id>/`` (resumes from its last checkpoint); record its checksums.

    ``checkpoint-sums.json`` takes each checkpoint's SHA-256 recorded when it
    was saved, after checking the file still matches it: a checkpoint
    damaged after saving (say, while a killed runner left the sums
    unwritten) is a verified mismatch, so it and the later ones are removed
    and the run resumes from the last good one.
    """
    from vaesim.training import train

    run_dir = root / layout.run_dir(task.run_id)
    for attempt in range(2):
        train(train_config(task), run_dir, progress=False, device=resolve_device(task.device))
        sums, damaged = checked_sums(run_dir)
        if not damaged:
            break
        logger.warning("run %s: checkpoint step %d does not match the SHA-256 recorded when it was saved; "
                       "retraining from the last good checkpoint", task.run_id, damaged)
        drop_checkpoints_from(run_dir, damaged)
    else:
        raise RuntimeError(f"run {task.run_id}: checkpoint step {damaged} is damaged again after retraining; "
                           f"check the disk under {run_dir}")
    missing = sorted(set(task.run.steps) - {int(s) for s in sums})
    if missing:
        raise RuntimeError(f"run {task.run_id} finished without checkpoints at steps {missing}")
    sums[METRICS_KEY] = sha256_file(run_dir / METRICS_KEY)  # the training log, checked by the store stage
    atomic_write_json(root / layout.checkpoint_sums_path(task.run_id), sums)


def checked_sums(run_dir: Path) -> tuple[dict[str, str], int | None]:
    """``({step: sha256}, first damaged step or None)`` of a run's checkpoints.

    A checkpoint saved before checksums were recorded with it is hashed as it is.
    """
    from vaesim.training import list_checkpoints
    from vaesim.training.checkpoint import recorded_sha256

    sums, damaged = {}, None
    for step in list_checkpoints(run_dir):
        actual = sha256_file(checkpoint_file(run_dir, step))
        recorded = recorded_sha256(run_dir, step)
        if recorded is not None and recorded != actual:
            damaged = step if damaged is None else min(damaged, step)
        sums[str(step)] = recorded or actual
    return sums, damaged


def drop_checkpoints_from(run_dir: Path, step: int) -> None:
    """Remove the checkpoints of a run from ``step`` on and its DONE marker (training then resumes)."""
    (run_dir / layout.DONE_MARKER).unlink(missing_ok=True)
    for path in sorted((run_dir / "checkpoints").glob("step_*")):
        if int(path.name.split("_")[1].split(".")[0]) >= step:
            path.unlink()


def checkpoint_file(run_dir: Path, step: int) -> Path:
    """The weights file of a checkpoint (training's layout: checkpoints/step_{step:08d}.safetensors)."""
    return run_dir / "checkpoints" / f"step_{step:08d}.safetensors"


def read_sums(path: Path) -> dict:
    """A run's ``checkpoint-sums.json``; OSError when it cannot be read, ValueError when it is not a sums record."""
    sums = json.loads(path.read_text())
    if not isinstance(sums, dict):
        raise ValueError(f"{path} is not a JSON object")
    return sums


def checkpoint_intact(root: Path, run_id: str, step: int) -> bool:
    """True when the checkpoint's weights match the SHA-256 recorded after training; False for a verified mismatch.

    Only a mismatch (or a weights file that is gone) returns False, and only
    False leads to a repair that deletes files. A file that cannot be read
    now (permissions, I/O error) raises OSError; a damaged sums record raises
    ValueError (the next run rebuilds it from the checkpoints): neither
    deletes anything.
    """
    sums_file = root / layout.checkpoint_sums_path(run_id)
    path = checkpoint_file(root / layout.run_dir(run_id), step)
    sums = read_sums(sums_file)
    if str(step) not in sums:
        raise ValueError(f"{sums_file} has no checksum for step {step}; the next `vaesim study run` rebuilds it")
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    return sha256_file(path) == sums[str(step)]


# -- extract ----------------------------------------------------------------


def extract_stage(root: Path, task: ExtractTask) -> str | None:
    """Record every layer of one checkpoint on the probe set; save their summaries.

    Writes ``summaries/<run_id>/step_{step:08d}.npz`` ({layer: LayerSummary})
    and, for the layers in ``keep_activations``,
    ``activations/<run_id>/step_{step:08d}.npz`` (float32 (n, features) per layer). Returns ``"corrupt_checkpoint"`` when
    the checkpoint cannot be loaded.
    """
    from vaesim.activations import extract_activations
    from vaesim.similarity import save_summaries, summarise
    from vaesim.training import load_checkpoint

    run_id, step = task.run_id, task.step
    if not checkpoint_intact(root, run_id, step):
        logger.warning("checkpoint %s does not match the checksum recorded after training; the run will be repaired",
                       checkpoint_file(root / layout.run_dir(run_id), step))
        return "corrupt_checkpoint"
    # The weights match their checksum: a load failure now (MemoryError, I/O error) is not corruption, so it
    # fails the task (retried, reported) and deletes nothing.
    model, _meta = load_checkpoint(root / layout.run_dir(run_id), step)
    probe = load_probe(root, task.dataset)
    activations = extract_activations(
        model, probe_images(probe), layers=tuple(task.layers), seed=task.probe_seed,
        device=resolve_device(task.device),
    )
    kept = task.keep_activations
    if kept:
        path = root / layout.activations_path(run_id, step)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **{name: np.asarray(activations[name], dtype=np.float32) for name in kept})
        write_checksum(path)
    device = array_device(task.device)
    summaries = {name: summarise(activations[name], name=name, metrics=task.metrics, device=device)
                 for name in task.layers}
    path = root / layout.summary_path(run_id, step)
    save_summaries(path, summaries)
    write_checksum(path)
    return None


def array_device(device: str) -> str | None:
    """Device for the similarity maths: None (numpy, fastest on CPU) or a CUDA device."""
    resolved = resolve_device(device)
    return None if resolved == "cpu" else resolved


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# -- compare ----------------------------------------------------------------


def model_key(run_id: str, step: int) -> str:
    return f"{run_id}@{step}"


def load_checked_summaries(root: Path, run_id: str, step: int, task: CompareTask) -> dict:
    """Summaries of one checkpoint, verified; a corrupt file is recomputed first."""
    from vaesim.similarity import load_summaries

    path = root / layout.summary_path(run_id, step)
    if is_written(path) and verified(path):
        try:
            return load_summaries(path)
        except Exception as error:
            logger.warning("summary file %s failed to load (%s); recomputing it", path, error)
    else:
        logger.warning("summary file %s is missing or corrupt; recomputing it", path)
    discard(path)
    status = extract_stage(root, task.extract_task(run_id, step))
    if status == "corrupt_checkpoint":
        raise RuntimeError(f"cannot recompute {path}: checkpoint step {step} of run {run_id} is corrupt; "
                           "rerun `vaesim study run` to repair the run")
    return load_summaries(path)


def load_factors_summary(root: Path, dataset: str) -> dict:
    """The ``factors`` summary of ``dataset``'s probe set, verified."""
    from vaesim.similarity import load_summaries

    path = root / layout.factors_summary_path(dataset)
    if not verified(path):
        raise FileNotFoundError(f"factors summary {path} is missing or corrupt; rerun `vaesim study run`, "
                                "whose probe stage recomputes it")
    return load_summaries(path)


def compare_stage(root: Path, task: CompareTask) -> None:
    """Compare one group of model pairs with one call to ``vaesim.similarity.compare``.

    Each involved checkpoint's summaries are loaded once. Writes
    ``results/<task>.parquet`` with the columns of
    :data:`vaesim.study.store.RESULT_SCHEMA` (plus its sidecar).
    """
    from vaesim.similarity import compare

    comparison, dataset = task.comparison, task.dataset
    pairs = list(task.pairs)
    models: dict[str, dict] = {}
    for a_run, a_step, b_run, b_step in pairs:
        sides = [(a_run, a_step)] if comparison == "factors" else [(a_run, a_step), (b_run, b_step)]
        for run_id, step in sides:
            key = model_key(run_id, step)
            if key not in models:
                models[key] = load_checked_summaries(root, run_id, step, task)
    if comparison == "factors":
        models[FACTORS_LAYER] = load_factors_summary(root, dataset)
        model_pairs = [(model_key(a, s), FACTORS_LAYER) for a, s, _b, _t in pairs]
    else:
        model_pairs = [(model_key(a, s), model_key(b, t)) for a, s, b, t in pairs]
    scores = compare(models, metrics=tuple(task.metrics), model_pairs=model_pairs, device=array_device(task.device))
    frame = result_rows(scores, pairs, task, dataset_size(root, dataset))
    path = root / layout.results_path(task.task_id)
    write_table(path, frame, RESULT_SCHEMA, checksum=True)


def dataset_size(root: Path, dataset: str) -> int:
    """Size of ``dataset`` recorded by the probe task (``probes/<dataset>.json``, verified)."""
    path = root / layout.probe_info_path(dataset)
    if not verified(path):
        raise FileNotFoundError(f"probe record {path} is missing or corrupt; rerun `vaesim study run`, "
                                "whose probe stage recomputes it")
    try:
        return int(json.loads(path.read_text())["dataset_size"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"probe record {path} is unreadable ({error}); rerun `vaesim study run`") from None


def result_rows(scores: pd.DataFrame, pairs: list[tuple], task: CompareTask, size: int) -> pd.DataFrame:
    """Map ``compare`` output (a_model, a_layer, b_model, b_layer, metric, score, n, note) to store rows."""
    comparison, batch = task.comparison, int(task.batch_size)
    runs = {run.run_id: run for run in task.runs}
    side_of = {}
    for a_run, a_step, b_run, b_step in pairs:
        side_of[model_key(a_run, a_step)] = (a_run, a_step)
        side_of[model_key(b_run, b_step)] = (b_run, b_step)
    a_sides = [side_of[k] for k in scores["a_model"]]
    # For ``factors`` the b side is the factors "layer" of the same run and checkpoint.
    b_sides = a_sides if comparison == "factors" else [side_of[k] for k in scores["b_model"]]
    a_run, a_step = [s[0] for s in a_sides], [s[1] for s in a_sides]
    b_run, b_step = [s[0] for s in b_sides], [s[1] for s in b_sides]
    frame = pd.DataFrame({"dataset": task.dataset, "comparison": comparison,
                          "metric": scores["metric"].astype(str).to_numpy()})
    for prefix, run_ids, steps, layers in (("a", a_run, a_step, scores["a_layer"]),
                                           ("b", b_run, b_step, scores["b_layer"])):
        frame[f"{prefix}_run"] = list(run_ids)
        frame[f"{prefix}_objective"] = [runs[r].objective for r in run_ids]
        frame[f"{prefix}_param_name"] = [runs[r].param_name for r in run_ids]
        frame[f"{prefix}_param"] = np.array([runs[r].param for r in run_ids], dtype=np.float64)
        frame[f"{prefix}_seed"] = np.array([runs[r].seed for r in run_ids], dtype=np.int64)
        frame[f"{prefix}_step"] = np.array(steps, dtype=np.int64)
        frame[f"{prefix}_epoch"] = np.array(steps, dtype=np.float64) * batch / size
        frame[f"{prefix}_layer"] = layers.astype(str).to_numpy()
    frame["n"] = scores["n"].to_numpy(dtype=np.int64)
    frame["score"] = scores["score"].to_numpy(dtype=np.float64)
    frame["note"] = scores["note"].fillna("").astype(str).to_numpy() if "note" in scores else ""
    return frame[list(RESULT_SCHEMA.names)]


# -- store ------------------------------------------------------------------

MONITOR_COLUMNS = ("active_dims", "cka_mean_sample")


METRICS_KEY = "metrics.jsonl"  # the training log's entry in checkpoint-sums.json


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
            "steps": int(config["steps"]), "batch_size": int(config["batch_size"]), "lr": float(config["lr"]),
            "latent_dim": int(config["latent_dim"]),
            "checkpoint_steps": ",".join(str(s) for s in config["checkpoint_steps"]),
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


STAGE_FUNCTIONS = {
    "probe": probe_stage,
    "train": train_stage,
    "extract": extract_stage,
    "compare": compare_stage,
    "store": store_stage,
}
