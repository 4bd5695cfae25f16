"""The ``probe`` stage: one study probe set per dataset, and its ground-truth factors as a "layer"."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaesim.study import plan as layout
from vaesim.study.measures import builtin_metrics
from vaesim.study.plan import FACTORS_LAYER, ProbeTask
from vaesim.study.stages.devices import array_device
from vaesim.study.stages.files import verified, write_checksum
from vaesim.study.stages.summaries import write_plugin_summaries
from vaesim.utils import atomic_path, atomic_write_json


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
