"""The ``disentangle`` stage: disentanglement metrics and UDR of checkpoints, stored beside the results.

Writes, each atomically with a SHA-256 sidecar (so a rerun skips finished
tasks and a damaged file is recomputed):

* ``disentanglement/<run_id>/step_{step:08d}.parquet``: one row per metric
  of :func:`vaesim.metrics.evaluate_disentanglement` (the mean code,
  layer ``encoder.mean``, at disentanglement_lib's protocol sizes);
* ``disentanglement/udr/<group>_step_{step:08d}.parquet``: ``udr_lasso``,
  ``udr_spearman`` and ``udr_active_dims`` of every seed of one (dataset,
  objective, value), all encoded on the same ``points`` images.

Columns: :data:`vaesim.study.schema.DISENTANGLEMENT_SCHEMA` (one row per run, step, metric,
value). ``vaesim query DIR "SELECT * FROM disentanglement"`` and
:func:`vaesim.study.store.tables.load_disentanglement` read them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from vaesim.study import plan as layout
from vaesim.study.plan import DisentangleTask, RunPlan, UDRTask
from vaesim.study.schema import DISENTANGLEMENT_SCHEMA
from vaesim.study.stages.checkpoints import checkpoint_file, checkpoint_intact
from vaesim.study.stages.devices import resolve_device
from vaesim.study.stages.files import write_table
from vaesim.study.stages.progress import TaskProgress

__all__ = ["disentangle_stage", "udr_stage"]

logger = logging.getLogger(__name__)


def _rows(run: RunPlan, step: int, values: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame([dict(dataset=run.dataset, run=run.run_id, objective=run.objective,
                              param_name=run.param_name, param=float(run.param), seed=int(run.seed), step=int(step),
                              metric=name, value=float(value)) for name, value in values.items()])


def _load_model(root: Path, run_id: str, step: int, device: str):
    from vaesim.training import load_checkpoint

    if not checkpoint_intact(root, run_id, step):
        raise RuntimeError(f"checkpoint {checkpoint_file(root / layout.run_dir(run_id), step)} does not match the "
                           "checksum recorded after training; rerun `vaesim study run` to repair the run")
    model, _ = load_checkpoint(root / layout.run_dir(run_id), step, device=resolve_device(device))
    return model.eval()


def disentangle_stage(root: Path, task: DisentangleTask | UDRTask) -> None:
    """Run one metrics task or one UDR task."""
    if isinstance(task, UDRTask):
        return udr_stage(root, task)
    from vaesim.data import get_dataset
    from vaesim.metrics import Protocol, evaluate_disentanglement, model_factor_codes

    run = task.run
    model = _load_model(root, run.run_id, task.step, task.device)
    dataset = get_dataset(run.dataset, root=task.dataset_root)
    # progress: metrics finished (of those asked), and the images encoded so far (each at most once)
    with TaskProgress(root, task.task_id, f"disentanglement {run.run_id} step {task.step}", len(task.metrics),
                      unit="metric") as meter:
        state = {"metrics": 0}

        def encoded(count: int) -> None:
            meter.update(state["metrics"], encoded=count)

        def finished(names: list[str]) -> None:
            state["metrics"] = len(names)
            meter.update(len(names))

        truth = model_factor_codes(dataset, model, device=resolve_device(task.device), on_encoded=encoded)
        protocol = Protocol().scaled(task.protocol_fraction) if task.protocol_fraction < 1 else Protocol()
        values = evaluate_disentanglement(truth, seed=task.seed, protocol=protocol, metrics=task.metrics,
                                          on_metric=finished)
    write_table(root / task.outputs[0], _rows(run, task.step, values), DISENTANGLEMENT_SCHEMA, checksum=True)


def udr_stage(root: Path, task: UDRTask) -> None:
    """UDR of the seeds of one group at one step, from their mean and log-variance on shared images."""
    from vaesim.data import get_dataset

    first = task.runs[0]
    dataset = get_dataset(first.dataset, root=task.dataset_root)
    rng = np.random.default_rng([task.seed, task.step])
    indices = rng.integers(0, len(dataset), size=task.points)
    device = resolve_device(task.device)
    codes = {}
    # units: each seed's codes encoded, then the scoring
    with TaskProgress(root, task.task_id, f"UDR {task.task_id.split('/', 1)[-1]}", len(task.runs) + 1,
                      unit="model") as meter:
        _udr_scores(root, task, dataset, indices, device, codes, meter)


def _udr_scores(root: Path, task: UDRTask, dataset, indices, device: str, codes: dict, meter: TaskProgress) -> None:
    import torch

    from vaesim.metrics.udr import LatentCodes, udr

    meter.update(0)
    for run in task.runs:
        model = _load_model(root, run.run_id, task.step, task.device)
        means, logvars = [], []
        with torch.no_grad():
            for start in range(0, len(indices), 512):
                images = torch.from_numpy(dataset.images(indices[start:start + 512])).to(device)
                mean, logvar = model.encode(images)
                means.append(mean.double().cpu().numpy())
                logvars.append(logvar.double().cpu().numpy())
        codes[run.run_id] = LatentCodes.from_encoder(np.concatenate(means), np.concatenate(logvars))
        meter.update(len(codes))
    frames = []
    lasso = udr(codes, method="lasso", seed=task.seed)
    spearman = udr(codes, method="spearman", seed=task.seed)
    for run in task.runs:
        frames.append(_rows(run, task.step, {
            "udr_lasso": lasso.model_scores[run.run_id],
            "udr_spearman": spearman.model_scores[run.run_id],
            "udr_active_dims": float(lasso.active[run.run_id]),
        }))
    write_table(root / task.outputs[0], pd.concat(frames, ignore_index=True), DISENTANGLEMENT_SCHEMA, checksum=True)
    logger.info("udr %s: %s", task.task_id, {k: round(v, 3) for k, v in lasso.model_scores.items()})
