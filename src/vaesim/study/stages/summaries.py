"""A checkpoint's layer summaries as the stages make and store them.

The built-in :class:`vaesim.similarity.LayerSummary` of each layer, summarised
side by side on the task's cores (:func:`summarise_layers`), and the plug-in
measures' summaries in a file beside the built-in one
(:func:`write_plugin_summaries`, read back with :func:`with_plugin_summaries`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaesim.study.measures import load_plugin_summaries, plugin_metrics, plugin_path, save_plugin_summaries
from vaesim.study.stages.files import is_written, verified, write_checksum
from vaesim.study.stages.progress import TaskProgress


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
