"""Registered (plug-in) measures on layers: their per-layer summaries and their scores of layer pairs.

:func:`vaesim.similarity.compare` (the engine) is the one entry for built-in
and plug-in measures: when ``metrics`` names a registered measure it scores
the built-in metrics itself in one call and takes the rest from here
(:func:`rows_with_plugins`). Each plug-in measure, looked up in the registry
(:mod:`vaesim.similarity.registry`, the seam between the two), summarises
every involved (model, layer) once with its summary function (shared between
measures that use the same function) and scores every requested layer pair
with its pair function. This module never imports the engine.

A layer can be given as activations ``(n, ...)``, as a built-in
:class:`~vaesim.similarity.LayerSummary` (built-in metrics only), or as a
:class:`MeasureSummaries` holding both the built-in summary and plug-in
summaries by measure name (what a study stores).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from vaesim.similarity.pairs import layer_pairs_of, model_label
from vaesim.similarity.registry import BUILTIN, get_measure
from vaesim.similarity.summary import LayerSummary
from vaesim.similarity.validation import as_matrix

__all__ = ["MeasureSummaries", "builtin_input", "plugin_summaries", "rows_with_plugins", "shared_rows"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class MeasureSummaries:
    """Precomputed summaries of one layer on ``n`` examples.

    Attributes:
        n: number of examples.
        builtin: the built-in :class:`LayerSummary` or None.
        custom: ``{measure name: summary}`` from each measure's summary function.
    """

    n: int
    builtin: LayerSummary | None = None
    custom: Mapping[str, Any] = field(default_factory=dict)


def plugin_summaries(x: Any, metrics: Iterable[str], *, name: str = "x") -> dict[str, Any]:
    """``{measure: summary(x)}`` for the plug-in measures in ``metrics`` that have a summary function.

    Measures sharing one summary function share one computation.
    """
    matrix = as_matrix(x, name, check_finite=True)
    out: dict[str, Any] = {}
    done: dict[int, Any] = {}
    for metric in metrics:
        if metric in BUILTIN:
            continue
        measure = get_measure(metric)
        if measure.summary is None:
            continue
        key = id(measure.summary)
        if key not in done:
            done[key] = measure.summary(matrix)
        out[metric] = done[key]
    return out


def shared_rows(models: Mapping[Any, Mapping[Any, Any]], involved: Iterable[Any]) -> int:
    """The number of examples ``n`` every layer of the ``involved`` models holds; ValueError naming two that differ."""
    reference = None
    for key in involved:
        for layer, value in models[key].items():
            rows = _rows_of(value, model_label(key, layer))
            if reference is None:
                reference = (model_label(key, layer), rows)
            elif rows != reference[1]:
                raise ValueError(f"compare: {model_label(key, layer)} has n={rows} examples but {reference[0]} has "
                                 f"n={reference[1]}; every layer must be recorded on the same probe examples")
    return reference[1] if reference else 0


def _rows_of(value: Any, label: str) -> int:
    if isinstance(value, MeasureSummaries):
        return int(value.n)
    if isinstance(value, LayerSummary):
        return int(value.n)
    return int(as_matrix(value, label, min_rows=1, check_finite=False).shape[0])


def builtin_input(value: Any, label: str) -> Any:
    """What the engine's built-in measures read of one layer: the activations or the built-in
    :class:`LayerSummary` (taken out of a :class:`MeasureSummaries`)."""
    if isinstance(value, MeasureSummaries):
        if value.builtin is None:
            raise ValueError(f"compare: {label} has no built-in LayerSummary; the built-in metrics need one "
                             "(or pass the activations)")
        return value.builtin
    return value


def rows_with_plugins(models: Mapping[Any, Mapping[Any, Any]], pairs: list[tuple[Any, Any]], metrics: tuple[str, ...],
                      builtin_scores: Mapping[tuple, tuple[float, str]], n: int,
                      chosen: Mapping[tuple[Any, Any], list[tuple[Any, Any]]] | None = None) -> list[tuple]:
    """Rows ``(a_model, a_layer, b_model, b_layer, metric, score, n, note)`` of every requested layer pair.

    ``builtin_scores``: ``{(a_model, a_layer, b_model, b_layer, metric): (score, note)}`` of the built-in
    metrics in ``metrics`` (the engine's); each registered measure (:func:`vaesim.similarity.get_measure`)
    summarises every involved (model, layer) once and scores every pair with its pair function. Rows come in
    the engine's order (model pairs, then layer pairs, then ``metrics`` as given); an asymmetric measure also
    gets the reversed layer pairs of a model with itself.
    """
    custom = [get_measure(m) for m in metrics if m not in BUILTIN]
    summaries: dict[tuple[Any, Any, str], Any] = {}

    def summary_of(measure, model, layer):
        key = (model, layer, measure.name)
        if key not in summaries:
            summaries[key] = _custom_input(measure, models[model][layer], model_label(model, layer), summaries,
                                           model, layer)
        return summaries[key]

    out = []
    for a, b in pairs:
        for la, lb in (chosen[(a, b)] if chosen is not None else layer_pairs_of(models, a, b)):
            orders = [(a, la, b, lb)]
            if a == b and la != lb:
                orders.append((b, lb, a, la))
            for position, (ma, xa, mb, xb) in enumerate(orders):
                for metric in metrics:
                    if metric in BUILTIN:
                        if position == 0:
                            score, note = builtin_scores[(ma, xa, mb, xb, metric)]
                            out.append((ma, xa, mb, xb, metric, float(score), n, note))
                        continue
                    measure = get_measure(metric)
                    if position == 1 and measure.symmetric:
                        continue
                    score, note = _score(measure, summary_of(measure, ma, xa), summary_of(measure, mb, xb),
                                         model_label(ma, xa), model_label(mb, xb))
                    out.append((ma, xa, mb, xb, metric, score, n, note))
    log.info("compare with plug-ins %s: %d rows", [m.name for m in custom], len(out))
    return out


def _custom_input(measure, value: Any, label: str, cache: dict, model: Any, layer: Any) -> Any:
    if isinstance(value, MeasureSummaries):
        if measure.name in value.custom:
            return value.custom[measure.name]
        raise ValueError(f"compare: {label} has no summary for measure {measure.name!r}; "
                         f"it holds {sorted(value.custom)} (summarise it with plugin_summaries)")
    if isinstance(value, LayerSummary):
        raise ValueError(f"compare: {label} is a built-in LayerSummary, but measure {measure.name!r} needs the "
                         "activations (or a MeasureSummaries with its summary)")
    matrix = as_matrix(value, label, check_finite=True)
    if measure.summary is None:
        return matrix
    for (m, l, other), summary in cache.items():  # share one computation between measures with one summary fn
        if m == model and l == layer and get_measure(other).summary is measure.summary:
            return summary
    return measure.summary(matrix)


def _score(measure, sa: Any, sb: Any, label_a: str, label_b: str) -> tuple[float, str]:
    try:
        value = measure.pair(sa, sb)
    except (ValueError, ArithmeticError) as error:
        return math.nan, f"{measure.name} undefined for {label_a} and {label_b}: {error}"
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"measure {measure.name!r}: pair function returned {type(value).__name__}, expected a float")
    if not np.isfinite(value):
        return math.nan, f"{measure.name} returned {value} for {label_a} and {label_b}"
    return value, ""
