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

import json
import logging
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vaesim.study import plan as layout
from vaesim.study.plan import FACTORS_LAYER, CompareTask, ExtractTask, ProbeTask, StoreTask, Task, TrainTask
from vaesim.study.progress import TaskProgress
from vaesim.study.disentangle import disentangle_stage
from vaesim.study.measures import (
    builtin_metrics, import_study_plugins, load_plugin_summaries, plugin_metrics, plugin_path, save_plugin_summaries,
)
from vaesim.study.store import RESULT_SCHEMA, discard, is_written, verified, write_checksum, write_table
from vaesim.utils import atomic_path, atomic_write_bytes, atomic_write_json, sha256_file
from vaesim.utils.threads import thread_limit

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
    import_study_plugins(root)  # plug-in similarity measures named in the spec
    if outputs_done(root, task) and not (isinstance(task, StoreTask) and store_is_stale(root, task)):
        return {"task_id": task.task_id, "status": "skipped", "seconds": 0.0}
    with thread_limit(torch_threads):
        status = STAGE_FUNCTIONS[task.stage](root, task) or "done"
    return {"task_id": task.task_id, "status": status, "seconds": time.perf_counter() - start}


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
    save_summaries(factors_file, {FACTORS_LAYER: summarise(factors, name=FACTORS_LAYER, metrics=builtin_metrics(
        task.metrics), device=array_device(task.device))})
    write_checksum(factors_file)
    write_plugin_summaries(factors_file, {FACTORS_LAYER: factors}, task.metrics)
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
        init=config.get("init", "glorot"),
        sample_noise=config.get("sample_noise", "independent"),
        validation_split=config.get("validation_split", 0.0),
    )


def run_label(run) -> str:
    """``beta_vae beta=4 seed 0`` (plus the dataset when it is not the procedural default)."""
    label = f"{run.objective} {run.param_name}={run.param:g} seed {run.seed}"
    return label if run.dataset == "dsprites-procedural" else f"{run.dataset} {label}"


def train_stage(root: Path, task: TrainTask) -> None:
    """Train one run into ``runs/<run_id>/`` (resumes from its last checkpoint); record its checksums.

    ``checkpoint-sums.json`` takes each checkpoint's SHA-256 recorded when it
    was saved, after checking the file still matches it: a checkpoint
    damaged after saving (say, while a killed runner left the sums
    unwritten) is a verified mismatch, so it and the later ones are removed
    and the run resumes from the last good one.
    """
    from vaesim.training import list_checkpoints, train
    from vaesim.training.checkpoint_files import interrupt_step

    run_dir = root / layout.run_dir(task.run_id)
    config = train_config(task)
    restore_config_file(root, task)
    for attempt in range(2):
        done = [] if (run_dir / layout.DONE_MARKER).is_file() else list_checkpoints(run_dir)
        start = done[-1] if done else 0
        if not (run_dir / layout.DONE_MARKER).is_file():  # an interrupt checkpoint past the scheduled ones
            start = max(start, interrupt_step(run_dir) or 0)
        with TaskProgress(root, task.task_id, run_label(task.run), config.steps, done=start,
                          resumed_from=start or None) as meter:
            last: dict = {}  # the loss of the latest logged row (none before the first one)

            def on_log(row: dict) -> None:
                last["loss"] = row["loss"]
                meter.update(row["step"], **last)

            train(config, run_dir, progress=False, device=resolve_device(task.device),
                  callback=lambda finished: meter.update(finished, **last), on_log=on_log,
                  tensorboard=root / "tensorboard" / task.run_id if task.tensorboard else None)
        sums, damaged = checked_sums(run_dir)
        missing = sorted(set(task.run.steps) - {int(s) for s in sums})
        if damaged is None and not missing:
            break
        first = min([*missing, *([] if damaged is None else [damaged])])
        logger.warning("run %s: checkpoint step %d is missing or not as saved; retraining from the last good "
                       "checkpoint", task.run_id, first)
        drop_checkpoints_from(run_dir, first)
    else:
        raise RuntimeError(f"run {task.run_id}: checkpoint step {first} is missing or damaged again after "
                           f"retraining; check the disk under {run_dir}")
    sums[METRICS_KEY] = sha256_file(run_dir / METRICS_KEY)  # the training log, checked by the store stage
    atomic_write_json(root / layout.checkpoint_sums_path(task.run_id), sums)


def config_bytes(task: TrainTask) -> bytes:
    """The bytes of ``runs/<run_id>/config.json`` as training writes them."""
    return (json.dumps(train_config(task).to_dict(), indent=2, sort_keys=True, allow_nan=True) + "\n").encode()


def config_file_damaged(root: Path, task: TrainTask) -> bool:
    """True when the run's ``config.json`` is not what training wrote (the run id fixes its content).

    A missing ``config.json`` counts only once training has written a checkpoint.
    """
    run_dir = root / layout.run_dir(task.run_id)
    try:
        return (run_dir / "config.json").read_bytes() != config_bytes(task)
    except FileNotFoundError:
        return any((run_dir / "checkpoints").glob("step_*.json"))
    except IsADirectoryError:
        return False  # the wrong kind of entry: see vaesim.study.verify.shape_problems


def restore_config_file(root: Path, task: TrainTask) -> None:
    """Write a damaged ``config.json`` again (its content is fixed by the run's address, nothing is lost)."""
    if config_file_damaged(root, task):
        path = root / layout.run_dir(task.run_id) / "config.json"
        logger.warning("%s is not the config of run %s; written again", path, task.run_id)
        atomic_write_bytes(path, config_bytes(task))


def checked_sums(run_dir: Path) -> tuple[dict[str, str], int | None]:
    """``({step: sha256}, first damaged step or None)`` of a run's checkpoints.

    A checkpoint is damaged when its JSON is not as saved or its weights do
    not match the SHA-256 recorded in the JSON (:func:`vaesim.training.checkpoint.checkpoint_damage`).
    A checkpoint saved before checksums were recorded with it is hashed as it is.
    """
    from vaesim.training.checkpoint_files import list_checkpoints
    from vaesim.training.checkpoint_files import checkpoint_damage, recorded_sha256

    sums, damaged = {}, None
    for step in list_checkpoints(run_dir):
        if checkpoint_damage(run_dir, step) is not None:
            damaged = step if damaged is None else min(damaged, step)
            continue
        sums[str(step)] = recorded_sha256(run_dir, step) or sha256_file(checkpoint_file(run_dir, step))
    return sums, damaged


_CHECKPOINT_NAME = re.compile(r"^step_(\d{8})\.(json|safetensors)$")


def drop_checkpoints_from(run_dir: Path, step: int) -> None:
    """Remove the checkpoints of a run from ``step`` on, its interrupt checkpoint and its DONE marker
    (training then resumes)."""
    from vaesim.training.checkpoint_files import remove_interrupt_checkpoint

    (run_dir / layout.DONE_MARKER).unlink(missing_ok=True)
    remove_interrupt_checkpoint(run_dir)
    for path in sorted((run_dir / "checkpoints").glob("step_*")):
        match = _CHECKPOINT_NAME.match(path.name)
        if match and int(match.group(1)) >= step and not path.is_dir():
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

    The sampled layer's eps follows ``task.sample_noise``
    (:func:`vaesim.activations.noise_seed`: per (run, step) by default).
    Writes ``summaries/<run_id>/step_{step:08d}.npz`` ({layer: LayerSummary}),
    ``summaries/<run_id>/step_{step:08d}.latents.parquet`` (per-dimension
    statistics of the latent code, :func:`vaesim.activations.latent_statistics`)
    and, for the layers in ``keep_activations``,
    ``activations/<run_id>/step_{step:08d}.npz`` (float32 (n, features) per layer). Returns ``"corrupt_checkpoint"`` when
    the checkpoint cannot be loaded.
    """
    from vaesim.activations import extract_activations, latent_statistics, noise_seed
    from vaesim.similarity import save_summaries
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
    recorded = tuple(dict.fromkeys((*task.layers, *LATENT_LAYERS)))
    meter = TaskProgress(root, task.task_id, f"extract {run_id} step {step}", 1 + len(task.layers), unit="layer")
    activations = extract_activations(
        model, probe_images(probe), layers=recorded,
        seed=noise_seed(task.probe_seed, run_id, step, task.sample_noise), device=resolve_device(task.device),
    )
    latents = latent_statistics(activations["encoder.mean"], activations["encoder.logvar"])
    write_table(root / layout.latents_path(run_id, step), latents.assign(run_id=run_id, step=step), checksum=True)
    if task.resample and not task.cache_summaries:
        resampled_layers = tuple(layout.noise_layers(task.layers))
        again = extract_activations(
            model, probe_images(probe), layers=resampled_layers,
            seed=noise_seed(task.probe_seed, run_id + RESAMPLED_SUFFIX, step), device=resolve_device(task.device),
        )
        path = root / layout.resampled_path(run_id, step)
        save_summaries(path, summarise_layers(again, resampled_layers, builtin_metrics(task.metrics),
                                              array_device(task.device)))
        write_checksum(path)
    kept = task.keep_activations
    if kept:
        path = root / layout.activations_path(run_id, step)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **{name: np.asarray(activations[name], dtype=np.float32) for name in kept})
        write_checksum(path)
    device = array_device(task.device)
    meter.update(1)  # recording counts as the first unit
    if task.cache_summaries:  # spec summaries: cache: the compare tasks recompute them (checkpoint_summaries)
        meter.close()
        return None
    summaries = summarise_layers(activations, task.layers, builtin_metrics(task.metrics), device, meter)
    path = root / layout.summary_path(run_id, step)
    write_plugin_summaries(path, {name: activations[name] for name in task.layers}, task.metrics)
    save_summaries(path, summaries)
    write_checksum(path)
    meter.close()
    return None


def checkpoint_summaries(root: Path, task: ExtractTask, *, resampled: bool = False) -> dict:
    """The summaries ``task`` would store, computed in memory (spec ``summaries: cache``): ``{layer: summary}``.

    The same recording (probe set, eps seed) and the same summarising as :func:`extract_stage`, so the
    numbers are those of a stored summary, bit for bit. ``resampled``: the noise-driven layers recorded
    with the second eps (built-in measures only). Raises RuntimeError when the checkpoint is damaged.
    """
    from vaesim.activations import extract_activations, noise_seed
    from vaesim.training import load_checkpoint

    run_id, step = task.run_id, task.step
    if not checkpoint_intact(root, run_id, step):
        raise RuntimeError(f"cannot compute the summaries of run {run_id} step {step}: its checkpoint is damaged; "
                           "rerun `vaesim study run` to repair the run")
    model, _meta = load_checkpoint(root / layout.run_dir(run_id), step)
    probe = load_probe(root, task.dataset)
    layers = tuple(layout.noise_layers(task.layers)) if resampled else task.layers
    seed = (noise_seed(task.probe_seed, run_id + RESAMPLED_SUFFIX, step) if resampled
            else noise_seed(task.probe_seed, run_id, step, task.sample_noise))
    activations = extract_activations(model, probe_images(probe), layers=layers, seed=seed,
                                      device=resolve_device(task.device))
    metrics = builtin_metrics(task.metrics)
    summaries = summarise_layers(activations, layers, metrics, array_device(task.device))
    if resampled or not plugin_metrics(task.metrics):
        return summaries
    from vaesim.similarity import MeasureSummaries

    custom = plugin_summary_values(activations, task.metrics)
    return {name: MeasureSummaries(s.n, s, custom.get(name, {})) for name, s in summaries.items()}


def summarise_layers(activations: dict, layers, metrics, device, meter: TaskProgress | None = None) -> dict:
    """``{layer: LayerSummary}`` in ``layers``' order, the layers summarised side by side on the task's cores.

    Each layer is one unit of :func:`vaesim.utils.threads.parallel_map` (widest first, so that the widest
    layer does not start last), its BLAS calls on one thread: a summary does not depend on the thread count.
    """
    import threading

    from vaesim.similarity import summarise
    from vaesim.utils.threads import parallel_map

    widest_first = sorted(layers, key=lambda name: -int(np.prod(np.shape(activations[name])[1:])))
    lock = threading.Lock()
    done = [1]

    def one(name: str):
        summary = summarise(activations[name], name=name, metrics=metrics, device=device)
        if meter is not None:
            with lock:
                done[0] += 1
                meter.update(done[0])
        return summary

    made = dict(zip(widest_first, parallel_map(one, widest_first)))
    return {name: made[name] for name in layers}


LATENT_LAYERS = ("encoder.mean", "encoder.logvar")  # always recorded: the latent statistics need them
RESAMPLED_SUFFIX = "/resampled"  # the second eps of a noise-floor recording: noise_seed(probe, run + suffix, step)


def write_plugin_summaries(summary_file: Path, activations: dict, metrics) -> None:
    """Plug-in measures' summaries of each layer beside ``summary_file`` (nothing without plug-ins)."""

    if not plugin_metrics(metrics):
        return
    target = Path(plugin_path(str(summary_file)))
    save_plugin_summaries(target, plugin_summary_values(activations, metrics))
    write_checksum(target)


def plugin_summary_values(activations: dict, metrics) -> dict:
    """``{layer: {measure: summary}}`` of the plug-in measures (a pair-only measure keeps the activations)."""
    from vaesim.similarity import plugin_summaries
    from vaesim.similarity.validation import as_matrix

    stored = {}
    for name, x in activations.items():
        stored[name] = plugin_summaries(x, metrics, name=name)
        for metric in plugin_metrics(metrics):  # a pair-only measure reads the activations themselves
            if metric not in stored[name]:
                stored[name][metric] = np.asarray(as_matrix(x, name), dtype=np.float64)
    return stored


def with_plugin_summaries(summary_file: Path, summaries: dict, metrics) -> dict:
    """``summaries`` as ``{layer: MeasureSummaries}`` with the stored plug-in summaries (unchanged without plug-ins)."""
    from vaesim.similarity import MeasureSummaries

    if not plugin_metrics(metrics):
        return summaries
    target = Path(plugin_path(str(summary_file)))
    if not (is_written(target) and verified(target)):
        raise FileNotFoundError(f"plug-in summary file {target} is missing or corrupt")
    custom = load_plugin_summaries(target)
    return {name: MeasureSummaries(s.n, s, custom.get(name, {})) for name, s in summaries.items()}


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


def load_checked_summaries(root: Path, run_id: str, step: int, task: CompareTask, *,
                           resampled: bool = False) -> dict:
    """Summaries of one checkpoint (its second-eps recording when ``resampled``), verified; recomputed if corrupt.

    With spec ``summaries: cache`` they are computed from the checkpoint in memory and never stored.
    """
    from vaesim.similarity import load_summaries

    if task.cache_summaries:
        return checkpoint_summaries(root, task.extract_task(run_id, step), resampled=resampled)

    path = root / (layout.resampled_path if resampled else layout.summary_path)(run_id, step)
    metrics = builtin_metrics(task.metrics) if resampled else task.metrics  # the noise floor uses built-ins only
    if is_written(path) and verified(path):
        try:
            return with_plugin_summaries(path, load_summaries(path), metrics)
        except Exception as error:
            logger.warning("summary file %s failed to load (%s); recomputing it", path, error)
    else:
        logger.warning("summary file %s is missing or corrupt; recomputing it", path)
    discard(path)
    status = extract_stage(root, task.extract_task(run_id, step))
    if status == "corrupt_checkpoint":
        raise RuntimeError(f"cannot recompute {path}: checkpoint step {step} of run {run_id} is corrupt; "
                           "rerun `vaesim study run` to repair the run")
    return with_plugin_summaries(path, load_summaries(path), metrics)


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
    needed = {(run_id, step) for a_run, a_step, b_run, b_step in pairs
              for run_id, step in ([(a_run, a_step)] if comparison == "factors" else [(a_run, a_step), (b_run, b_step)])}
    # units: each checkpoint's summaries loaded, then the engine's scoring units (Gram row blocks, model pairs)
    meter = TaskProgress(root, task.task_id, f"compare {task.task_id.split('/', 1)[-1]} ({len(pairs)} pairs)",
                         len(needed) + 1, unit="unit")
    for a_run, a_step, b_run, b_step in pairs:
        sides = [(a_run, a_step)] if comparison == "factors" else [(a_run, a_step), (b_run, b_step)]
        for run_id, step in sides:
            key = model_key(run_id, step)
            if key not in models:
                models[key] = load_checked_summaries(root, run_id, step, task)
                meter.update(len(models))
    if comparison == "factors":
        models[FACTORS_LAYER] = with_plugin_summaries(root / layout.factors_summary_path(dataset),
                                                      load_factors_summary(root, dataset), task.metrics)
        model_pairs = [(model_key(a, s), FACTORS_LAYER) for a, s, _b, _t in pairs]
    elif comparison == "noise_floor":
        # the noise-driven layers of one checkpoint, recorded with two eps: only the same layer is compared
        model_pairs = []
        for a, s, _b, _t in pairs:
            again = load_checked_summaries(root, a, s, task, resampled=True)
            first = models[model_key(a, s)]
            models[model_key(a, s)] = {name: getattr(first[name], "builtin", first[name]) for name in again}
            models[model_key(a, s) + RESAMPLED_SUFFIX] = again
            model_pairs.append((model_key(a, s), model_key(a, s) + RESAMPLED_SUFFIX))
    else:
        model_pairs = [(model_key(a, s), model_key(b, t)) for a, s, b, t in pairs]
    metrics = tuple(builtin_metrics(task.metrics)) if comparison == "noise_floor" else tuple(task.metrics)
    loaded = len(needed)
    meter.update(loaded)
    meter.flush()  # what a reader sees while the scoring starts
    scores = compare(models, metrics=metrics, model_pairs=model_pairs, device=array_device(task.device),
                     progress=lambda done, total: meter.update(loaded + done, total=loaded + total))
    if comparison == "noise_floor":
        scores = scores[scores["a_layer"] == scores["b_layer"]].reset_index(drop=True)
    frame = result_rows(scores, pairs, task, dataset_size(root, dataset))
    path = root / layout.results_path(task.task_id)
    write_table(path, frame, RESULT_SCHEMA, checksum=True)
    meter.close()


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
    b_sides = a_sides if comparison in ("factors", "noise_floor") else [side_of[k] for k in scores["b_model"]]
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
    mean_variance, posterior_variance, kl. A checkpoint whose file is missing
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
    return pd.concat(parts, ignore_index=True)[columns]


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
    "disentangle": disentangle_stage,
    "store": store_stage,
}
