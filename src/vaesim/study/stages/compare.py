"""The ``compare`` stage: one group of model pairs scored in one ``vaesim.similarity.compare`` call, stored."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from vaesim.study import plan as layout
from vaesim.study.measures import builtin_metrics
from vaesim.study.plan import FACTORS_LAYER, CompareTask, matching_layer_pairs
from vaesim.study.schema import RESULT_SCHEMA
from vaesim.study.stages.devices import array_device
from vaesim.study.stages.extract import RESAMPLED_SUFFIX, checkpoint_summaries, extract_stage
from vaesim.study.stages.files import discard, is_written, verified, write_table
from vaesim.study.stages.progress import TaskProgress
from vaesim.study.stages.summaries import with_plugin_summaries

logger = logging.getLogger(__name__)


def model_key(run_id: str, step: int) -> str:
    return f"{run_id}@{step}"


#: a checkpoint's summaries computed in memory (``summaries: cache``, a checkpoint beyond a planned cache's cap)
#: larger than this are written to a temporary file of the task and memory-mapped back, so that a task's own
#: memory does not grow with the number of checkpoints it compares (the paper's: 20 x 5.2 GB)
SPILL_MIN_BYTES = 64 * 2**20


class Spill:
    """Temporary summary files of one compare task (``summaries/.tmp-spill-*``), deleted when the task ends (a
    killed task's are deleted by the next ``vaesim study run``, as every ``.tmp-*`` file)."""

    def __init__(self, root: Path):
        self.root, self.paths = root, []

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)

    def mapped(self, summaries: dict) -> dict:
        """``summaries`` written out and memory-mapped back when they are large (same values; built-ins only)."""
        import os
        import tempfile

        from vaesim.similarity import LayerSummary, load_summaries, save_summaries
        from vaesim.utils.io import TMP_PREFIX

        if not all(isinstance(s, LayerSummary) for s in summaries.values()):
            return summaries  # plug-in measures' summaries stay in memory
        if sum(s.nbytes for s in summaries.values()) < SPILL_MIN_BYTES:
            return summaries
        folder = self.root / "summaries"
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=TMP_PREFIX + "spill-", suffix=".npz", dir=folder)
        os.close(fd)
        path = Path(name)
        self.paths.append(path)
        save_summaries(path, summaries)
        return load_summaries(path, mmap=True)


def load_checked_summaries(root: Path, run_id: str, step: int, task: CompareTask, *,
                           resampled: bool = False, spill: Spill | None = None) -> dict:
    """Summaries of one checkpoint (its second-eps recording when ``resampled``), verified; recomputed if corrupt.

    With spec ``summaries: cache`` they are computed from the checkpoint in memory and never stored (for a
    ``noise_floor`` task only its noise-driven layers, the only ones it compares). With ``summaries: planned``
    the checkpoint's cache entry is read when it is there and matches its checksum (written by extraction,
    removed after the last compare task that reads it: :mod:`vaesim.study.summary_cache`), else they are
    computed in memory as with ``cache``: the same numbers either way.
    """
    from vaesim.similarity import load_summaries

    path = root / (layout.resampled_path if resampled else layout.summary_path)(run_id, step)
    metrics = builtin_metrics(task.metrics) if resampled else task.metrics  # the noise floor uses built-ins only
    if task.cache_summaries:
        if task.read_cache and is_written(path) and verified(path):
            try:
                return with_plugin_summaries(path, load_summaries(path, mmap=True), metrics)
            except Exception as error:  # noqa: BLE001 - a damaged cache entry is recomputed, never trusted
                logger.warning("summary cache entry %s failed to load (%s); computing the summaries", path, error)
        only = (tuple(layout.noise_layers(task.layers, task.decoder_input))
                if task.comparison == "noise_floor" else None)
        made = checkpoint_summaries(root, task.extract_task(run_id, step), resampled=resampled, only=only)
        return made if spill is None else spill.mapped(made)
    if is_written(path) and verified(path):
        try:
            return with_plugin_summaries(path, load_summaries(path, mmap=True), metrics)
        except Exception as error:
            logger.warning("summary file %s failed to load (%s); recomputing it", path, error)
    else:
        logger.warning("summary file %s is missing or corrupt; recomputing it", path)
    discard(path)
    status = extract_stage(root, task.extract_task(run_id, step))
    if status == "corrupt_checkpoint":
        raise RuntimeError(f"cannot recompute {path}: checkpoint step {step} of run {run_id} is corrupt; "
                           "rerun `vaesim study run` to repair the run")
    return with_plugin_summaries(path, load_summaries(path, mmap=True), metrics)


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

    Each involved checkpoint's summaries are loaded once, memory-mapped from their files (summaries computed
    here and larger than :data:`SPILL_MIN_BYTES` from a temporary file of the task): the engine streams
    through them, so the task's own memory does not grow with the number of checkpoints. Writes
    ``results/<task>.parquet`` with the columns of
    :data:`vaesim.study.schema.RESULT_SCHEMA` (plus its sidecar).
    """
    with Spill(root) as spill:
        _compare(root, task, spill)


def _compare(root: Path, task: CompareTask, spill: Spill) -> None:
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
                models[key] = load_checked_summaries(root, run_id, step, task, spill=spill)
                meter.update(len(models))
    if comparison == "factors":
        models[FACTORS_LAYER] = with_plugin_summaries(root / layout.factors_summary_path(dataset),
                                                      load_factors_summary(root, dataset), task.metrics)
        model_pairs = [(model_key(a, s), FACTORS_LAYER) for a, s, _b, _t in pairs]
    elif comparison == "noise_floor":
        # the noise-driven layers of one checkpoint, recorded with two eps: only the same layer is compared
        model_pairs = []
        for a, s, _b, _t in pairs:
            again = load_checked_summaries(root, a, s, task, resampled=True, spill=spill)
            first = models[model_key(a, s)]
            models[model_key(a, s)] = {name: getattr(first[name], "builtin", first[name]) for name in again}
            models[model_key(a, s) + RESAMPLED_SUFFIX] = again
            model_pairs.append((model_key(a, s), model_key(a, s) + RESAMPLED_SUFFIX))
    else:
        model_pairs = [(model_key(a, s), model_key(b, t)) for a, s, b, t in pairs]
    metrics = tuple(builtin_metrics(task.metrics)) if comparison == "noise_floor" else tuple(task.metrics)
    layer_pairs = None
    if comparison == "noise_floor" or task.layer_pairs == "matching":
        # a noise floor is a layer against its own second recording; matching: the pairs the findings read
        layer_pairs = {(a, b): matching_layer_pairs(a == b, list(models[a]), list(models[b])) for a, b in model_pairs}
    loaded = len(needed)
    meter.update(loaded)
    meter.flush()  # what a reader sees while the scoring starts
    scores = compare(models, metrics=metrics, model_pairs=model_pairs, layer_pairs=layer_pairs,
                     device=array_device(task.device),
                     progress=lambda done, total: meter.update(loaded + done, total=loaded + total))
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
