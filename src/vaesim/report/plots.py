"""Figures of any similarity table: a layer x layer heatmap, and score against training step.

A table is what :func:`vaesim.similarity.compare` or
:func:`vaesim.similarity.compare_models` returns (columns ``a_model, a_layer,
b_model, b_layer, metric, score, n, note``), a study's results
(``docs/architecture.md``: ``a_run, a_step, ..., a_layer, b_run, ...``) or
any frame with the columns a figure names. The figures draw what the table
holds: rows are never averaged silently across models (a heatmap cell must
have one row; choose one with ``a_model`` / ``b_model`` or filter the table),
and a step curve says when a point is the mean of several rows.

Matplotlib's object API only (each figure is a ``Figure`` of its own, no
pyplot state): safe with the Agg backend, in threads and in notebooks, whose
backend is left as it is. Show one in a notebook by ending a cell with it, or
save it with ``fig.savefig("heatmap.png")``.

    from vaesim.report import plot_layer_heatmap
    fig = plot_layer_heatmap(compare_models(net_a, net_b, images))
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["plot_layer_heatmap", "plot_score_by_step"]

#: columns every figure here reads
LAYER_COLUMNS = ("a_layer", "b_layer", "score")
#: columns of a table that neither identify a row's two sides nor vary along a figure's axes
_VALUE_COLUMNS = {"score", "note", "n", "metric"}


def _check_table(table: Any, required: Sequence[str], where: str) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{where}: table must be a pandas DataFrame of similarity rows (from vaesim.similarity.compare "
                        f"or compare_models, or a study's results), got {type(table).__name__}")
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise ValueError(
            f"{where}: table lacks the columns {missing}; expected a table of vaesim.similarity.compare / "
            "compare_models (a_model, a_layer, b_model, b_layer, metric, score, n, note) or a study's results "
            f"(docs/architecture.md); got columns {list(table.columns)}"
        )
    if table.empty:
        raise ValueError(f"{where}: table has no rows")
    return table


def _one_metric(table: pd.DataFrame, metric: str | None, where: str) -> tuple[pd.DataFrame, str]:
    """Rows of one metric (``metric``, or the table's only one) and its name."""
    if "metric" not in table.columns:
        return table, metric or "score"
    present = list(dict.fromkeys(table["metric"]))
    if metric is None:
        if len(present) > 1:
            raise ValueError(f"{where}: table holds the metrics {present}; choose one with metric=...")
        metric = present[0]
    elif metric not in present:
        raise ValueError(f"{where}: metric {metric!r} is not in the table; it holds {present}")
    return table[table["metric"] == metric], str(metric)


def _side_pairs(table: pd.DataFrame) -> list[tuple[str, str]]:
    """``(a_x, b_x)`` column pairs that describe a row's two sides, other than the layer (model, run, step, ...)."""
    return [(column, "b_" + column[2:]) for column in table.columns
            if column.startswith("a_") and column != "a_layer" and "b_" + column[2:] in table.columns]


def _side_name(table: pd.DataFrame, side: str) -> str:
    """How the axis of one side is named: its model (or run, and step), when the rows share one."""
    parts = []
    for field in ("model", "run", "objective", "seed", "step"):
        column = f"{side}_{field}"
        if column in table.columns and table[column].nunique(dropna=False) == 1:
            value = table[column].iloc[0]
            parts.append(f"{value}" if field in ("model", "run", "objective") else f"{field} {value}")
    return " ".join(parts) or side


def _check_one_row_per_pair(rows: pd.DataFrame, keys: list[str], where: str, hint: str) -> None:
    duplicated = rows.duplicated(keys, keep=False)
    if not duplicated.any():
        return
    first = rows[duplicated].iloc[0]
    same = rows[(rows[keys] == first[keys]).all(axis=1)]
    varying = [column for column in same.columns
               if column not in _VALUE_COLUMNS and column not in keys and same[column].nunique(dropna=False) > 1]
    raise ValueError(
        f"{where}: the table has {len(same)} rows for {', '.join(f'{k}={first[k]!r}' for k in keys)} (they differ "
        f"in {varying or 'no column: repeated rows'}); {hint}"
    )


def _layer_matrix(rows: pd.DataFrame) -> tuple[np.ndarray, list, list]:
    """``(matrix (len(a_order), len(b_order)), a_order, b_order)``, layers in order of first appearance.

    Rows comparing a model with itself (every ``a_x == b_x`` beside the layer) hold each unordered layer pair
    once, as :func:`vaesim.similarity.compare` gives them: a cell without a row takes its mirror image's score.
    """
    self_pair = all((rows[a] == rows[b]).all() for a, b in _side_pairs(rows))
    a_order = list(dict.fromkeys(rows["a_layer"]))
    b_order = list(dict.fromkeys(rows["b_layer"]))
    if self_pair and set(a_order) == set(b_order):
        a_order = b_order = list(dict.fromkeys([*a_order, *b_order]))
    a_index = {layer: i for i, layer in enumerate(a_order)}
    b_index = {layer: j for j, layer in enumerate(b_order)}
    matrix = np.full((len(a_order), len(b_order)), np.nan)
    for a_layer, b_layer, score in zip(rows["a_layer"], rows["b_layer"], rows["score"]):
        matrix[a_index[a_layer], b_index[b_layer]] = score
    if self_pair:
        scored = set(zip(rows["a_layer"], rows["b_layer"]))
        for a_layer, b_layer, score in zip(rows["a_layer"], rows["b_layer"], rows["score"]):
            if (b_layer, a_layer) not in scored and b_layer in a_index and a_layer in b_index:
                matrix[a_index[b_layer], b_index[a_layer]] = score
    return matrix, a_order, b_order


def plot_layer_heatmap(
    table: pd.DataFrame,
    metric: str | None = None,
    *,
    ax: Any = None,
    a_model: Any = None,
    b_model: Any = None,
    annotate: bool = True,
    cmap: str = "magma",
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
) -> Figure:
    """Layer x layer heatmap of one model pair: rows ``a_layer``, columns ``b_layer``, each cell its score.

    Args:
        table: a :func:`vaesim.similarity.compare` / :func:`~vaesim.similarity.compare_models` table (or any
            frame with ``a_layer, b_layer, score``; ``metric``, ``a_model`` / ``b_model`` when present).
            A model compared with itself (each unordered layer pair once) is drawn as the full symmetric
            matrix.
        metric: which metric's rows (needed when the table holds several).
        ax: matplotlib Axes to draw into (default: a new Figure of its own).
        a_model, b_model: which model pair, when the table holds several (values of ``a_model`` /
            ``b_model``). Every cell must then have exactly one row; filter a study's results first (e.g. one
            step and seed pair).
        annotate: write each score in its cell (2 decimals).
        cmap: colour map name.
        vmin, vmax: colour range; default [0, 1] when every score lies in it, else the scores' range.
        title: default ``"<metric>: <a> (rows) vs <b> (columns)"``.

    Returns:
        the matplotlib Figure (``ax.figure`` when ``ax`` was given). The image's array equals the table's
        scores, layers in the order they first appear in the table (a cell without a row is blank).

    Raises:
        TypeError: ``table`` is not a DataFrame. ValueError: missing columns (named), no rows, several
        metrics and no ``metric``, or several rows for one layer pair.
    """
    where = "plot_layer_heatmap"
    rows = _check_table(table, LAYER_COLUMNS, where)
    rows, metric = _one_metric(rows, metric, where)
    for side, value in (("a_model", a_model), ("b_model", b_model)):
        if value is not None:
            if side not in rows.columns:
                raise ValueError(f"{where}: {side}={value!r} given but the table has no {side!r} column")
            rows = rows[rows[side] == value]
            if rows.empty:
                raise ValueError(f"{where}: no rows of metric {metric!r} with {side}={value!r}; the table's values: "
                                 f"{list(dict.fromkeys(table[side]))}")
    if {"a_model", "b_model"} <= set(rows.columns):
        model_pairs = list(dict.fromkeys(zip(rows["a_model"], rows["b_model"])))
        if len(model_pairs) > 1:
            raise ValueError(f"{where}: the table holds {len(model_pairs)} model pairs {model_pairs[:6]}; choose "
                             "one with a_model=... and b_model=...")
    _check_one_row_per_pair(rows, ["a_layer", "b_layer"], where,
                            "select one model pair (a_model=, b_model=) or filter the table to one row per layer pair")
    matrix, a_order, b_order = _layer_matrix(rows)

    finite = matrix[np.isfinite(matrix)]
    in_unit = finite.size == 0 or (finite.min() >= 0.0 and finite.max() <= 1.0)
    low = vmin if vmin is not None else (0.0 if in_unit else float(finite.min()))
    high = vmax if vmax is not None else (1.0 if in_unit else float(finite.max()))
    if ax is None:
        fig = Figure(figsize=(2.4 + 0.62 * len(b_order), 1.9 + 0.5 * len(a_order)), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=low, vmax=high, origin="upper",
                      aspect="equal" if len(a_order) == len(b_order) else "auto")
    ax.set_xticks(range(len(b_order)), [str(layer) for layer in b_order], rotation=45, ha="right")
    ax.set_yticks(range(len(a_order)), [str(layer) for layer in a_order])
    a_name, b_name = _side_name(rows, "a"), _side_name(rows, "b")
    ax.set_xlabel(f"layer of {b_name}")
    ax.set_ylabel(f"layer of {a_name}")
    ax.set_title(title if title is not None else f"{metric}: {a_name} (rows) vs {b_name} (columns)")
    if annotate:
        middle = (low + high) / 2.0
        size = max(5.0, min(9.0, 70.0 / max(len(a_order), len(b_order))))
        for i in range(len(a_order)):
            for j in range(len(b_order)):
                value = matrix[i, j]
                if math.isfinite(value):
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=size,
                            color="white" if value < middle else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=metric)
    return fig


def _step_axis(ax, steps: Iterable[float]) -> None:
    """Symmetric-log x axis when the steps span a wide range (log checkpoint schedules), linear otherwise
    (the rule of the study report's figures)."""
    positive = sorted(s for s in set(steps) if s > 0)
    if len(positive) >= 3 and positive[-1] / positive[0] >= 20:
        ax.set_xscale("symlog", linthresh=positive[0])
        ax.set_xlim(left=0)


def plot_score_by_step(
    table: pd.DataFrame,
    metric: str | None = None,
    *,
    step: str | None = None,
    layer_pairs: Iterable[tuple[Any, Any]] | None = None,
    ax: Any = None,
    title: str | None = None,
) -> Figure:
    """Score against training step, one line per layer pair ``(a_layer, b_layer)``.

    Args:
        table: rows with ``a_layer, b_layer, score`` and a step column: e.g. :func:`vaesim.similarity.compare`
            tables of several checkpoints joined with a ``step`` column, or a study's results (``a_step``;
            filter them to one comparison first, e.g. ``results[results.comparison == "seeds"]``).
        metric: which metric's rows (needed when the table holds several).
        step: the step column (default ``"step"`` if present, else ``"a_step"``).
        layer_pairs: which ``(a_layer, b_layer)`` to draw (default every pair, in order of first appearance).
        ax: matplotlib Axes to draw into (default: a new Figure of its own).
        title: default ``"<metric> by <step column>"``.

    Returns:
        the matplotlib Figure. Each line's points are the mean score of the rows at each step (the table's
        value itself when one row); where several rows share a pair and step (seeds, runs), the line says
        "mean of k rows" in the legend and a band spans their minimum to maximum.

    Raises:
        TypeError: ``table`` is not a DataFrame. ValueError: missing columns (named), no rows, several
        metrics and no ``metric``, or a requested layer pair that the table lacks.
    """
    where = "plot_score_by_step"
    if step is None and isinstance(table, pd.DataFrame):
        step = "step" if "step" in table.columns else "a_step" if "a_step" in table.columns else "step"
    rows = _check_table(table, (*LAYER_COLUMNS, step), where)
    rows, metric = _one_metric(rows, metric, where)
    present = list(dict.fromkeys(zip(rows["a_layer"], rows["b_layer"])))
    if layer_pairs is None:
        chosen = present
    else:
        chosen = [tuple(pair) for pair in layer_pairs]
        unknown = [pair for pair in chosen if pair not in set(present)]
        if unknown:
            raise ValueError(f"{where}: layer_pairs {unknown} are not in the table (metric {metric!r}); it holds "
                             f"{present[:12]}{' ...' if len(present) > 12 else ''}")
    if ax is None:
        fig = Figure(figsize=(7.5, 4.5), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    colours = _colours(len(chosen))
    same_layer = all(a == b for a, b in chosen)
    for colour, (a_layer, b_layer) in zip(colours, chosen):
        pair_rows = rows[(rows["a_layer"] == a_layer) & (rows["b_layer"] == b_layer)]
        stats = pair_rows.groupby(step)["score"].agg(["mean", "min", "max", "count"]).sort_index()
        label = f"{a_layer}" if same_layer else f"{a_layer} / {b_layer}"
        most = int(stats["count"].max())
        if most > 1:
            label += f" (mean of {most} rows)"
            ax.fill_between(stats.index, stats["min"], stats["max"], color=colour, alpha=0.18, linewidth=0)
        ax.plot(stats.index, stats["mean"], marker="o", markersize=3, color=colour, label=label)
    _step_axis(ax, rows[step].tolist())
    ax.set_xlabel("training step" if step in ("step", "a_step") else step)
    ax.set_ylabel(metric)
    ax.set_title(title if title is not None else f"{metric} by {step}" + ("" if same_layer else " (a layer / b layer)"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(chosen) > 8 else 1, loc="best")
    return fig


def _colours(count: int) -> list:
    from matplotlib import colormaps

    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return [palette(i % palette.N) for i in range(count)]
