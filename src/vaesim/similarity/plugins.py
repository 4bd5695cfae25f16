"""``compare`` with registered (plug-in) measures next to the built-ins.

:func:`vaesim.similarity.compare` hands over to :func:`compare_with_plugins`
when ``metrics`` names a registered measure. The built-in metrics still go
through the engine in one call; each plug-in measure summarises every
involved (model, layer) once with its summary function (shared between
measures that use the same function) and scores every requested layer pair
with its pair function. Rows come out in the engine's order (model pairs,
then layer pairs, then ``metrics`` in the order given); an asymmetric
measure also gets the reversed layer pairs of a model with itself.

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
import pandas as pd

from vaesim.similarity.registry import BUILTIN, check_metric_names, get_measure
from vaesim.similarity.summary import LayerSummary
from vaesim.similarity.validation import as_matrix

__all__ = ["MeasureSummaries", "compare_with_plugins", "plugin_summaries"]

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


def _label(model: Any, layer: Any) -> str:
    return f"models[{model!r}][{layer!r}]"


def _rows_of(value: Any, label: str) -> int:
    if isinstance(value, MeasureSummaries):
        return int(value.n)
    if isinstance(value, LayerSummary):
        return int(value.n)
    return int(as_matrix(value, label, min_rows=1, check_finite=False).shape[0])


def compare_with_plugins(
    models: Mapping[Any, Mapping[Any, Any]], *, metrics: Iterable[str], model_pairs=None, device: Any = None,
    block_bytes: int = 256 << 20,
) -> pd.DataFrame:
    """:func:`vaesim.similarity.compare` for a ``metrics`` list that names plug-in measures."""
    from vaesim.similarity import engine

    metrics = check_metric_names(metrics, "compare")
    engine._check_models(models)
    pairs = engine._resolve_pairs(models, model_pairs)
    involved = [key for key in models if any(key in pair for pair in pairs)]
    builtin = tuple(m for m in metrics if m in BUILTIN)
    custom = [get_measure(m) for m in metrics if m not in BUILTIN]

    reference = None
    for key in involved:
        for layer, value in models[key].items():
            rows = _rows_of(value, _label(key, layer))
            if reference is None:
                reference = (_label(key, layer), rows)
            elif rows != reference[1]:
                raise ValueError(f"compare: {_label(key, layer)} has n={rows} examples but {reference[0]} has "
                                 f"n={reference[1]}; every layer must be recorded on the same probe examples")
    n = reference[1] if reference else 0

    found: dict[tuple, tuple[float, str]] = {}
    if builtin:
        inputs = {key: {layer: _builtin_input(value, _label(key, layer)) for layer, value in models[key].items()}
                  for key in involved}
        frame = engine.compare(inputs, metrics=builtin, model_pairs=pairs, device=device, block_bytes=block_bytes)
        for row in frame.itertuples(index=False):
            found[(row.a_model, row.a_layer, row.b_model, row.b_layer, row.metric)] = (row.score, row.note)

    summaries: dict[tuple[Any, Any, str], Any] = {}

    def summary_of(measure, model, layer):
        key = (model, layer, measure.name)
        if key not in summaries:
            summaries[key] = _custom_input(measure, models[model][layer], _label(model, layer), summaries, model, layer)
        return summaries[key]

    out = []
    for a, b in pairs:
        for la, lb in engine._layer_pairs(models, a, b):
            orders = [(a, la, b, lb)]
            if a == b and la != lb:
                orders.append((b, lb, a, la))
            for position, (ma, xa, mb, xb) in enumerate(orders):
                for metric in metrics:
                    if metric in BUILTIN:
                        if position == 0:
                            score, note = found[(ma, xa, mb, xb, metric)]
                            out.append((ma, xa, mb, xb, metric, float(score), n, note))
                        continue
                    measure = get_measure(metric)
                    if position == 1 and measure.symmetric:
                        continue
                    score, note = _score(measure, summary_of(measure, ma, xa), summary_of(measure, mb, xb),
                                         _label(ma, xa), _label(mb, xb))
                    out.append((ma, xa, mb, xb, metric, score, n, note))
    log.info("compare with plug-ins %s: %d rows", [m.name for m in custom], len(out))
    frame = pd.DataFrame(out, columns=engine.COLUMNS)
    frame["n"] = frame["n"].astype("int64")
    return frame


def _builtin_input(value: Any, label: str) -> Any:
    if isinstance(value, MeasureSummaries):
        if value.builtin is None:
            raise ValueError(f"compare: {label} has no built-in LayerSummary; the built-in metrics need one "
                             "(or pass the activations)")
        return value.builtin
    return value


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
