"""Figures of the report (matplotlib, Agg backend), one function per figure.

Each ``figure_*`` function takes the results store (and the runs table) and
returns a matplotlib Figure, or raises :class:`NotEnoughData` with the reason
when the store lacks what the figure needs; :func:`make_figures` saves every
figure as PNG and SVG and records the reasons of skipped ones.

Colours are fixed across figures: each layer has its own qualitative colour
(encoder layers solid lines, decoder layers dashed); each model (objective,
strength) has its objective's colour family, darker = stronger, and its
objective's line style; seeds in tab10. Layers always go input to output.
Curves are never averaged over objectives or strengths: a figure shows one
panel (or line) per model, averaged over seeds only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt  # colour maps and the Figure type only: figures are made without pyplot
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from vaesim.report import layers as L
from vaesim.report.collapse import PASSIVE_VARIANCE, collapse_table, final_active_dimensions, mean_sample_similarity
from vaesim.report.findings import agreement_by_layer, baseline_table
from vaesim.report.settling import settle_threshold
from vaesim.report.tables import (
    at_final_step,
    both_orientations,
    check_results,
    final_steps,
    run_info,
    select,
)
from vaesim.utils import atomic_path

logger = logging.getLogger(__name__)

DPI = 110
COMPARISON_COLOURS = {"params": "#1b9e77", "objectives": "#7570b3", "seeds": "#666666"}


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, **options) -> tuple[Figure, object]:
    """``plt.subplots`` on a Figure of its own: no pyplot backend is chosen or changed (a user's notebook keeps
    its backend, and the report's figures never appear in it), saved with :func:`save_figure`."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **options)


class NotEnoughData(Exception):
    """The store lacks the rows a figure needs; the message says which."""


@dataclass(frozen=True)
class FigureOutput:
    name: str
    title: str
    caption: str
    png: Path | None
    svg: Path | None
    skipped: str = ""  # reason, when the figure could not be drawn


# ------------------------------------------------------------------ colours
def layer_colours(layers) -> dict[str, tuple]:
    """Fixed, distinguishable colour per layer: a qualitative palette in depth order, separately for the
    encoder and the decoder (telled apart by line style); ``input`` grey."""
    ordered = L.order_layers(layers)
    colours = {name: (0.45, 0.45, 0.45, 1.0) for name in ordered}
    palette = [plt.cm.tab10(i) for i in (0, 1, 2, 3, 4, 5, 6, 8, 9, 7)]
    for test in (L.is_encoder, L.is_decoder):
        for index, name in enumerate(n for n in ordered if test(n)):
            colours[name] = palette[index % len(palette)]
    return colours


OBJECTIVE_COLOURMAPS = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys")
OBJECTIVE_LINES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1)))


def model_styles(models: pd.DataFrame) -> dict[tuple, tuple]:
    """{(objective, param_name, param): (colour, line style, label)} for the distinct models of ``models``.

    Each objective has a colour family and a line style; within it, stronger
    regularisation is darker (shades 0.45 to 1.0, never the pale end).
    """
    styles = {}
    keys = models[["objective", "param_name", "param"]].drop_duplicates()
    for index, (objective, group) in enumerate(keys.groupby("objective", sort=True)):
        cmap = plt.get_cmap(OBJECTIVE_COLOURMAPS[index % len(OBJECTIVE_COLOURMAPS)])
        values = sorted(group["param"].unique())
        shades = np.linspace(0.45, 1.0, len(values)) if len(values) > 1 else [0.8]
        for value, shade in zip(values, shades):
            param_name = group.loc[group["param"] == value, "param_name"].iloc[0]
            styles[(objective, param_name, value)] = (cmap(shade), OBJECTIVE_LINES[index % len(OBJECTIVE_LINES)],
                                                      _model_label(objective, param_name, value))
    return styles


def seeds_phrase(n_seeds: int) -> str:
    """'mean over 3 seeds', or 'one seed'."""
    return f"mean over {n_seeds} seeds" if n_seeds > 1 else "one seed"


def _model_label(objective, param_name, param) -> str:
    return f"{objective} {param_name}={float(param):g}"


def step_axis(ax, steps) -> None:
    """Symmetric-log x axis when checkpoints span a wide range (log schedules), linear otherwise."""
    positive = sorted(s for s in set(steps) if s > 0)
    if len(positive) >= 3 and positive[-1] / positive[0] >= 20:
        ax.set_xscale("symlog", linthresh=positive[0])
        ax.set_xlim(left=0)


def _strength_axis(ax, values) -> None:
    """Log x axis when regularisation values are positive and span a factor >= 10."""
    values = [float(v) for v in values]
    if values and min(values) > 0 and max(values) / min(values) >= 10:
        ax.set_xscale("log")


def _shade_groups(ax, ordered: list[str]) -> None:
    """Light background behind the encoder and decoder layers of a layer axis."""
    for test, colour in ((L.is_encoder, "#dbe8f6"), (L.is_decoder, "#fde5cf")):
        positions = [i for i, name in enumerate(ordered) if test(name)]
        if positions:
            ax.axvspan(min(positions) - 0.5, max(positions) + 0.5, color=colour, zorder=0)


# ------------------------------------------------------------------ 1. heatmap
def choose_model_pair(results: pd.DataFrame, metric: str = "cka") -> tuple[str, tuple, tuple]:
    """The pair of models the heatmap shows: the weakest vs the strongest regularisation.

    Returns (comparison, (objective, param_name, param), (objective, param_name,
    param)); falls back to one model across seeds, then to a model with itself.
    """
    for comparison in ("params", "seeds", "within_run"):
        rows = select(results, comparison=comparison, metric=metric)
        if rows.empty:
            continue
        objective = sorted(rows["a_objective"].unique())[0]
        rows = rows[rows["a_objective"] == objective]
        params = sorted(set(rows["a_param"]) | set(rows["b_param"]))
        first = rows.iloc[0]
        low = (objective, first["a_param_name"], params[0])
        high = (objective, first["a_param_name"], params[-1]) if comparison == "params" else low
        return comparison, low, high
    raise NotEnoughData(f"no rows of metric {metric!r} to draw a layer x layer heatmap")


def step_label(runs: pd.DataFrame | None) -> str:
    """The x axis of a checkpoint axis: ``training step``, or ``epoch`` for a store that counts epochs (an import
    of VAE_learning_dynamics' scores: runs.parquet's ``step_unit``)."""
    if runs is not None and "step_unit" in runs and (runs["step_unit"] == "epoch").all():
        return "epoch"
    return "training step"


def figure_heatmap(results: pd.DataFrame, runs=None, *, metric: str = "cka") -> plt.Figure:
    """Layer x layer similarity between two models at their final step, averaged over seeds."""
    comparison, model_a, model_b = choose_model_pair(results, metric)
    rows = at_final_step(select(results, comparison=comparison, metric=metric), final_steps(results))
    rows = both_orientations(rows)
    rows = rows[
        (rows["a_objective"] == model_a[0]) & (rows["a_param"] == model_a[2])
        & (rows["b_objective"] == model_b[0]) & (rows["b_param"] == model_b[2])
    ]
    if comparison == "within_run":
        rows = rows[rows["a_run"] == rows["b_run"]]
    rows = rows[~rows["a_layer"].isin([L.FACTORS_LAYER]) & ~rows["b_layer"].isin([L.FACTORS_LAYER])]
    matrix = rows.pivot_table(index="a_layer", columns="b_layer", values="score", aggfunc="mean")
    if matrix.shape[0] < 2 or matrix.shape[1] < 2:
        raise NotEnoughData(f"fewer than 2 x 2 layers scored between {model_a} and {model_b} ({comparison})")
    if not (rows["a_layer"] != rows["b_layer"]).any():
        raise NotEnoughData(f"only matching layers were scored between {model_a} and {model_b} ({comparison}; "
                            "the study's comparisons.layer_pairs is matching): a layer x layer map needs "
                            "layer_pairs all")
    a_order = [n for n in L.order_layers(matrix.index)]
    b_order = [n for n in L.order_layers(matrix.columns)]
    matrix = matrix.loc[a_order, b_order]
    n_seeds = rows["a_seed"].nunique()
    fig, ax = subplots(figsize=(8.2, 7.0))
    image = ax.imshow(matrix.to_numpy(dtype=float), vmin=0, vmax=1, cmap="magma", origin="upper")
    ax.set_xticks(range(len(b_order)), b_order, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(a_order)), a_order, fontsize=8)
    label_a, label_b = _model_label(*model_a), _model_label(*model_b)
    ax.set_ylabel(f"layer of {label_a}")
    ax.set_xlabel(f"layer of {label_b}" + (" (another seed)" if comparison == "seeds" else ""))
    if comparison == "within_run":
        what = f"between the layers of {label_a} itself"
    elif comparison == "seeds":
        what = f"between two seeds of {label_a}"
    else:
        what = f"between each layer of {label_a} (rows) and of {label_b} (columns)"
    seeds = f"averaged over {n_seeds} seeds" if n_seeds > 1 else "one seed"
    ax.set_title(f"{metric.upper()} {what}\nend of training, {seeds}; 1 = same representation, 0 = unrelated",
                 fontsize=9.5)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=metric.upper())
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ 2. learning dynamics
def dynamics_table(results: pd.DataFrame, *, metric: str = "cka") -> pd.DataFrame:
    """Mean similarity of each layer at step t with itself at the final step, per model, over seeds.

    Returns objective, param_name, param, layer, step, fraction (t / T),
    score (mean over the model's seeds), n_runs; the final step is included
    with score 1; ``input`` is left out.
    """
    columns = ["objective", "param_name", "param", "layer", "step", "fraction", "score", "n_runs"]
    finals = final_steps(results)
    rows = select(results, comparison="within_run", metric=metric)
    rows = rows[(rows["a_run"] == rows["b_run"]) & (rows["a_layer"] == rows["b_layer"])]
    rows = both_orientations(rows)
    rows = rows[(rows["b_step"] == rows["b_run"].map(finals)) & (rows["a_layer"] != L.INPUT_LAYER)]
    rows = rows[rows["a_layer"].map(lambda n: L.is_encoder(n) or L.is_decoder(n)).astype(bool)]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    model = ["a_objective", "a_param_name", "a_param"]
    per_run = rows.groupby([*model, "a_run", "a_layer", "a_step"])["score"].mean().reset_index()
    finals_rows = per_run.drop_duplicates(["a_run", "a_layer"]).assign(score=1.0)
    finals_rows["a_step"] = finals_rows["a_run"].map(finals)
    per_run = pd.concat([per_run, finals_rows]).drop_duplicates(["a_run", "a_layer", "a_step"], keep="first")
    per_run["fraction"] = per_run["a_step"] / per_run["a_run"].map(finals)
    table = per_run.groupby([*model, "a_layer", "a_step"]).agg(
        fraction=("fraction", "mean"), score=("score", "mean"), n_runs=("a_run", "nunique")
    )
    table = table.reset_index().rename(columns={"a_objective": "objective", "a_param_name": "param_name",
                                                "a_param": "param", "a_layer": "layer", "a_step": "step"})
    return table[columns]


def figure_learning_dynamics(results: pd.DataFrame, runs=None, *, metric: str = "cka") -> plt.Figure:
    """Claim 1: similarity of each layer with its final state against step; encoder row and decoder row,
    one column per model (objective, strength), mean over seeds."""
    table = dynamics_table(results, metric=metric)
    if table.empty or table["step"].nunique() < 2:
        raise NotEnoughData("no within-run rows comparing a layer with its final state at >= 2 checkpoints")
    settled, _ = settle_threshold(results, metric=metric)  # the findings' per-metric threshold
    uniform = final_steps(results).nunique() == 1
    x_column, x_label = ("step", step_label(runs)) if uniform else ("fraction", "fraction of training")
    final_x = float(table[x_column].max())
    colours = layer_colours(table["layer"])
    models = table[["objective", "param_name", "param"]].drop_duplicates().sort_values(["objective", "param"])
    n_models = len(models)
    n_cols = min(n_models, 4)
    blocks = int(np.ceil(n_models / n_cols))
    fig, axes = subplots(2 * blocks, n_cols, figsize=(3.3 * n_cols + 2.0, 2.7 * 2 * blocks), squeeze=False,
                             sharey=True)
    low = min(0.0, float(table["score"].min())) - 0.02
    for index, model in enumerate(models.itertuples(index=False)):
        block, column = divmod(index, n_cols)
        part = table[(table["objective"] == model.objective) & (table["param"] == model.param)]
        for row, (test, group, style) in enumerate(((L.is_encoder, "encoder", "-"), (L.is_decoder, "decoder", "--"))):
            ax = axes[2 * block + row, column]
            for layer in L.order_layers(n for n in part["layer"].unique() if test(n)):
                curve = part[part["layer"] == layer].sort_values(x_column)
                ax.plot(curve[x_column], curve["score"], style, marker="o", markersize=3, color=colours[layer],
                        label=layer, linewidth=1.5)
            ax.axhline(settled, color="#555555", linewidth=0.8, linestyle=":")
            ax.axvline(final_x, color="#bbbbbb", linewidth=0.8)
            ax.set_ylim(low, 1.05)
            # the threshold is a y tick (not a label inside the plot, where curves run through it)
            ax.set_yticks([t for t in (0.0, 0.25, 0.5, 0.75) if low <= t < settled - 0.08] + [settled, 1.0])
            ax.set_yticklabels([f"{t:g}" for t in ax.get_yticks()[:-2]] + [f"{settled:.3g} settled", "1"],
                               fontsize=7.5)
            ax.grid(alpha=0.25)
            n_runs = int(part["n_runs"].max())
            ax.set_title(f"{_model_label(model.objective, model.param_name, model.param)}: {group}\n"
                         f"({seeds_phrase(n_runs)})", fontsize=8.5)
            if column == 0:
                ax.set_ylabel(f"{metric.upper()} with final state", fontsize=8)
    for index, ax in enumerate(axes.flat):
        if not ax.has_data():
            ax.axis("off")
            continue
        if uniform:
            step_axis(ax, table["step"])
            ticks = [t for t in ax.get_xticks() if 0 <= t < final_x * 0.85] + [final_x]
        else:
            ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
        decoder_row = (index // n_cols) % 2 == 1
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks[:-1]] + [f"final\n{final_x:g}"] if decoder_row else [],
                      fontsize=7.5)
        if decoder_row:
            ax.set_xlabel(x_label, fontsize=8)
    for row, group in ((0, "encoder"), (1, "decoder")):
        handles, labels = axes[row, 0].get_legend_handles_labels()
        axes[row, -1].legend(handles, labels, fontsize=7, frameon=False, loc="center left",
                             bbox_to_anchor=(1.02, 0.5), title=f"{group} layers", title_fontsize=7.5)
    fig.suptitle(f"Learning dynamics: {metric.upper()} of each layer at step t with the same layer at the final "
                 f"step (dotted: {settled:.3g}, {metric.upper()}'s 'settled' threshold)", fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ 3. layer pairs over training
LAYER_PAIRS = (("input", "encoder.sample"), ("encoder.mean", "encoder.sample"))


def layer_pair_table(results: pd.DataFrame, pair: tuple[str, str], *, metric: str = "cka") -> pd.DataFrame:
    """Similarity of two layers of the same run at the same step, per model, averaged over seeds.

    Returns objective, param_name, param, step, score, n_seeds.
    """
    rows = select(results, comparison="within_run", metric=metric)
    rows = rows[(rows["a_run"] == rows["b_run"]) & (rows["a_step"] == rows["b_step"])]
    rows = rows[((rows["a_layer"] == pair[0]) & (rows["b_layer"] == pair[1]))
                | ((rows["a_layer"] == pair[1]) & (rows["b_layer"] == pair[0]))]
    if rows.empty:
        return pd.DataFrame(columns=["objective", "param_name", "param", "step", "score", "n_seeds"])
    per_run = rows.groupby(["a_objective", "a_param_name", "a_param", "a_run", "a_step"])["score"].mean()
    table = per_run.reset_index().groupby(["a_objective", "a_param_name", "a_param", "a_step"]).agg(
        score=("score", "mean"), n_seeds=("a_run", "nunique"))
    table = table.reset_index()
    return table.rename(columns={"a_objective": "objective", "a_param_name": "param_name", "a_param": "param",
                                 "a_step": "step"})


def figure_layer_pairs(results: pd.DataFrame, runs=None, *, metric: str = "cka") -> plt.Figure:
    """Layer pairs (input vs sampled, mean vs sampled) over training, one line per strength."""
    tables = {pair: layer_pair_table(results, pair, metric=metric) for pair in LAYER_PAIRS}
    tables = {pair: t for pair, t in tables.items() if not t.empty and t["step"].nunique() >= 2}
    if not tables:
        raise NotEnoughData(f"no within-run rows for {' or '.join(' vs '.join(p) for p in LAYER_PAIRS)} "
                            f"at >= 2 checkpoints")
    fig, axes = subplots(1, len(tables), figsize=(5.2 * len(tables), 4.2), squeeze=False)
    for ax, (pair, table) in zip(axes[0], tables.items()):
        styles = model_styles(table)
        for key, curve in table.groupby(["objective", "param_name", "param"]):
            curve = curve.sort_values("step")
            colour, line, label = styles[key]
            ax.plot(curve["step"], curve["score"], linestyle=line, marker="o", markersize=3, color=colour,
                    label=label)
        ax.set_title(f"{pair[0]} vs {pair[1]}", fontsize=10)
        step_axis(ax, table["step"])
        ax.set_xlabel(step_label(runs))
        ax.set_ylabel(f"{metric.upper()} (same run, same step; mean over seeds)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle("Layer pairs over training, one line per model (objective and strength)", fontsize=11)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ 4. agreement per layer
def figure_agreement(results: pd.DataFrame, runs=None, *, metric: str = "cka") -> plt.Figure:
    """Claim 2: per layer, mean similarity of the same layer across strengths / objectives / seeds."""
    tables = {c: agreement_by_layer(results, comparison=c, metric=metric) for c in ("params", "objectives", "seeds")}
    tables = {c: t for c, t in tables.items() if not t.empty}
    if not tables:
        raise NotEnoughData("no 'params', 'objectives' or 'seeds' rows comparing a layer with itself at the final step")
    ordered = L.order_layers(layer for t in tables.values() for layer in t["layer"])
    ordered = [name for name in ordered if name != L.FACTORS_LAYER]
    position = {name: i for i, name in enumerate(ordered)}
    fig, ax = subplots(figsize=(9.0, 4.6))
    _shade_groups(ax, ordered)
    offsets = dict(zip(tables, np.linspace(-0.18, 0.18, len(tables))))
    labels = {"params": "across regularisation strengths", "objectives": "across objectives", "seeds": "across seeds"}
    for comparison, table in tables.items():
        table = table[table["layer"].isin(position)]
        x = table["layer"].map(position) + offsets[comparison]
        ax.errorbar(x, table["mean"], yerr=table["std"].fillna(0.0), fmt="o-", capsize=2, markersize=4,
                    color=COMPARISON_COLOURS[comparison],
                    label=f"{labels[comparison]} ({int(table['n_pairs'].max())} model pairs)")
    # the baseline claim 2's verdict subtracts: the same layer of untrained networks of different seeds (step 0)
    baseline = baseline_table(results, metric=metric).set_index("layer")["untrained_seeds"].dropna()
    baseline = baseline[baseline.index.isin(position)]
    if len(baseline):
        ax.plot(baseline.index.map(position), baseline.to_numpy(), "s--", color="#999999", markersize=4,
                linewidth=1.2, label="baseline: untrained networks, across seeds (step 0)")
    ax.set_xticks(range(len(ordered)), ordered, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(-0.02, 1.05)
    ax.set_ylabel(f"mean {metric.upper()}, same layer, final step")
    ax.set_title("Agreement of each layer across models (blue band: encoder, orange: decoder)", fontsize=10)
    ax.legend(fontsize=8, frameon=False, loc="lower left", title="error bars: \u00b11 SD over model pairs",
              title_fontsize=8)
    ax.grid(alpha=0.25, axis="y")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ 5. posterior collapse
def figure_posterior_collapse(results: pd.DataFrame, runs: pd.DataFrame | None = None, *,
                              metric: str = "cka", latents: pd.DataFrame | None = None) -> plt.Figure:
    """Claim 3: metric(mean, sampled), its noise-only expectation and the active dimensions against strength.

    One column per objective (strengths of different objectives are not
    comparable: beta is not lambda_od); points are runs at their final step.
    Top: the observed statistic (filled) and the expectation from the same
    checkpoint's variances (open; with its bounds for CKA without the mean
    code's covariances). Bottom: active dimensions, Cov_x(E[z_u|x]) > 0.01
    (Burda et al. 2016; the definition of every verdict and table) from
    ``latents``; without latents, the runs table's ``active_dims``.
    """
    similarity = mean_sample_similarity(results, metric=metric)
    expected = pd.DataFrame()
    if latents is not None and len(latents) and len(similarity):
        table = collapse_table(results, latents, metric=metric)
        last = table["step"] == table["run"].map(final_steps(results))
        expected = table[last][["run", "expected", "expected_low", "expected_high"]]
    active = None
    if latents is not None and len(latents):
        counts = final_active_dimensions(latents)
        active = run_info(results).assign(active_dims=lambda f: f["run"].map(counts)).dropna(subset=["active_dims"])
    elif runs is not None and {"objective", "param", "active_dims"} <= set(runs.columns) and len(runs):
        active = runs
    if similarity.empty and active is None:
        raise NotEnoughData(f"no {metric.upper()}(encoder.mean, encoder.sample) rows at the final step and no "
                            "latent statistics (latents.parquet)")
    if len(expected):
        similarity = similarity.merge(expected, on="run", how="left")
    panels = [("similarity", similarity)] if not similarity.empty else []
    if active is not None:
        panels.append(("active dims", active))
    objectives = sorted(set().union(*(set(table["objective"]) for _, table in panels)))
    fig, axes = subplots(len(panels), len(objectives), figsize=(3.9 * len(objectives) + 0.6, 3.3 * len(panels)),
                         squeeze=False)
    for row, (what, table) in enumerate(panels):
        column_name = "score" if what == "similarity" else "active_dims"
        for col, objective in enumerate(objectives):
            ax = axes[row, col]
            group = table[table["objective"] == objective]
            if group.empty:
                ax.axis("off")
                continue
            colour = plt.get_cmap(OBJECTIVE_COLOURMAPS[col % len(OBJECTIVE_COLOURMAPS)])(0.8)
            ax.scatter(group["param"], group[column_name], color=colour, alpha=0.55, s=22, label="one run (seed)")
            means = group.groupby("param")[column_name].mean()
            ax.plot(means.index, means.to_numpy(), "-", color=colour, label="mean over seeds")
            if what == "similarity" and "expected" in group:
                ax.scatter(group["param"], group["expected"], facecolors="none", edgecolors="#333333", s=30,
                           label="noise-only expectation")
                bounded = group["expected_high"] > group["expected_low"] + 1e-9
                if bounded.any():
                    ax.vlines(group.loc[bounded, "param"], group.loc[bounded, "expected_low"],
                              group.loc[bounded, "expected_high"], color="#999999", linewidth=1.0,
                              label="its bounds (covariances unknown)")
            _strength_axis(ax, group["param"])
            ax.set_xticks(list(means.index), [f"{v:g}" for v in means.index])
            param_name = group["param_name"].iloc[0] if "param_name" in group else "strength"
            ax.set_xlabel(f"{param_name} ({objective})", fontsize=8.5)
            if what == "similarity":
                ax.set_ylabel(f"{metric.upper()}(mean, sample), final step", fontsize=8.5)
                ax.set_ylim(-0.02, 1.02)
            else:
                ax.set_ylabel(f"active dimensions (Cov(E[z|x]) > {PASSIVE_VARIANCE:g})", fontsize=8.5)
                ax.set_ylim(bottom=0)
            ax.set_title(objective, fontsize=9.5)
            ax.grid(alpha=0.25)
            if row == 0 and col == 0:
                ax.legend(fontsize=7.5, frameon=False)
    fig.suptitle("Posterior collapse against regularisation strength, one column per objective", fontsize=11)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ 6. embedding
def similarity_vectors(results: pd.DataFrame, *, metric: str = "cka") -> tuple[pd.DataFrame, np.ndarray]:
    """Each run's layer x layer similarity matrix at its final step, vectorised.

    Uses within-run rows of distinct layers (upper triangle, layers present in
    every run). Returns (run info table, array (n_runs, n_pairs)).
    """
    rows = at_final_step(select(results, comparison="within_run", metric=metric), final_steps(results))
    rows = rows[(rows["a_run"] == rows["b_run"]) & (rows["a_layer"] != rows["b_layer"])]
    if rows.empty:
        return run_info(results).iloc[:0], np.zeros((0, 0))
    order = {name: i for i, name in enumerate(L.order_layers(set(rows["a_layer"]) | set(rows["b_layer"])))}
    first = np.where(rows["a_layer"].map(order) <= rows["b_layer"].map(order), rows["a_layer"], rows["b_layer"])
    second = np.where(rows["a_layer"].map(order) <= rows["b_layer"].map(order), rows["b_layer"], rows["a_layer"])
    wide = rows.assign(first=first, second=second).pivot_table(
        index="a_run", columns=["first", "second"], values="score", aggfunc="mean")
    wide = wide.dropna(axis=1)
    info = run_info(results).set_index("run").loc[wide.index].rename_axis("run").reset_index()
    return info, wide.to_numpy(dtype=float)


def classical_mds(distances: np.ndarray, n_components: int = 2) -> np.ndarray:
    """Classical (Torgerson) multidimensional scaling of a distance matrix (n, n) -> (n, n_components).

    B = -1/2 J D^2 J with J = I - 11^T/n; coordinates are the top eigenvectors
    of B scaled by the square roots of their (non-negative) eigenvalues, so
    Euclidean distances are reproduced exactly when they fit in n_components
    dimensions. Each axis' sign is fixed (largest |coordinate| positive).
    """
    d = np.asarray(distances, dtype=np.float64)
    n = d.shape[0]
    centring = np.eye(n) - np.full((n, n), 1.0 / n)
    gram = -0.5 * centring @ (d**2) @ centring
    values, vectors = np.linalg.eigh((gram + gram.T) / 2)
    top = np.argsort(values)[::-1][:n_components]
    coords = vectors[:, top] * np.sqrt(np.clip(values[top], 0.0, None))
    signs = np.sign(coords[np.abs(coords).argmax(axis=0), range(coords.shape[1])])
    signs[signs == 0] = 1.0
    out = np.zeros((n, n_components))
    out[:, : coords.shape[1]] = coords * signs
    return out


def figure_embedding(results: pd.DataFrame, runs=None, *, metric: str = "cka") -> plt.Figure:
    """Classical MDS of the runs' vectorised layer x layer similarity matrices, coloured by seed and by strength."""
    info, vectors = similarity_vectors(results, metric=metric)
    if len(info) < 3 or vectors.shape[1] < 2:
        raise NotEnoughData(f"{len(info)} runs with a within-run layer x layer matrix at the final step; needs >= 3")
    distances = np.sqrt(((vectors[:, None, :] - vectors[None, :, :]) ** 2).sum(-1))
    embedding = classical_mds(distances, 2)
    fig, axes = subplots(1, 2, figsize=(10.0, 4.4))
    seed_values = sorted(info["seed"].unique())
    for seed in seed_values:
        mask = (info["seed"] == seed).to_numpy()
        axes[0].scatter(embedding[mask, 0], embedding[mask, 1], color=plt.cm.tab10(seed_values.index(seed) % 10),
                        label=f"seed {seed}", s=40, edgecolor="white")
    styles = model_styles(info)
    markers = dict(zip(sorted(info["objective"].unique()), "osD^v<>"))
    for key, group in info.groupby(["objective", "param_name", "param"]):
        mask = info.index.isin(group.index)
        colour, _, label = styles[key]
        axes[1].scatter(embedding[mask, 0], embedding[mask, 1], color=colour, marker=markers[key[0]],
                        label=label, s=46, edgecolor="#333333", linewidth=0.5)
    for ax, title in zip(axes, ("coloured by seed", "coloured by model (objective and strength)")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("MDS dimension 1", fontsize=8.5)
        ax.set_ylabel("MDS dimension 2", fontsize=8.5)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.2)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(f"Runs placed so that distances match the differences between their layer x layer "
                 f"{metric.upper()} matrices\n(classical MDS, final step, {len(info)} runs; axis units are "
                 f"distances between vectorised matrices)", fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ 7. factors over training
def factors_table(results: pd.DataFrame, *, metric: str = "cka") -> pd.DataFrame:
    """Similarity of each layer with the ground-truth factors of the probe images, per model and step.

    Returns objective, param_name, param, layer, step, score (mean over seeds), n_runs.
    """
    rows = select(results, comparison="factors", metric=metric)
    rows = both_orientations(rows)
    rows = rows[(rows["b_layer"] == L.FACTORS_LAYER) & (rows["a_layer"] != L.FACTORS_LAYER)]
    if rows.empty:
        return pd.DataFrame(columns=["objective", "param_name", "param", "layer", "step", "score", "n_runs"])
    table = rows.groupby(["a_objective", "a_param_name", "a_param", "a_layer", "a_step"]).agg(
        score=("score", "mean"), n_runs=("a_run", "nunique")).reset_index()
    return table.rename(columns={"a_objective": "objective", "a_param_name": "param_name", "a_param": "param",
                                 "a_layer": "layer", "a_step": "step"})


def figure_factors(results: pd.DataFrame, runs=None, *, metric: str = "cka") -> plt.Figure:
    """Which layers carry the ground-truth factors, through training: a layer x step heatmap per model."""
    table = factors_table(results, metric=metric)
    if table.empty:
        raise NotEnoughData(f"no 'factors' rows of metric {metric!r} (comparisons.factors is off, or not run yet)")
    models = table[["objective", "param_name", "param"]].drop_duplicates().sort_values(["objective", "param"])
    n_cols = min(len(models), 4)
    n_rows = int(np.ceil(len(models) / n_cols))
    layers = L.order_layers(table["layer"].unique())
    steps = sorted(table["step"].unique())
    top = max(float(table["score"].max()), 1e-6)
    fig, axes = subplots(n_rows, n_cols, figsize=(2.6 * n_cols + 2.6, 0.27 * len(layers) * n_rows + 1.6),
                             squeeze=False)
    image = None
    for ax, model in zip(axes.flat, models.itertuples(index=False)):
        part = table[(table["objective"] == model.objective) & (table["param"] == model.param)]
        matrix = part.pivot_table(index="layer", columns="step", values="score").reindex(index=layers, columns=steps)
        image = ax.imshow(matrix.to_numpy(dtype=float), vmin=0, vmax=top, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(steps)), [f"{s:g}" for s in steps], rotation=45, fontsize=7)
        ax.set_yticks(range(len(layers)), layers, fontsize=7)
        ax.set_xlabel(step_label(runs), fontsize=8)
        n_runs = int(part["n_runs"].max())
        ax.set_title(f"{_model_label(model.objective, model.param_name, model.param)}\n"
                     f"({seeds_phrase(n_runs)})", fontsize=8.5)
    for ax in list(axes.flat)[len(models):]:
        ax.axis("off")
    for ax in axes[:, 1:].flat:
        ax.set_yticklabels([])
    fig.colorbar(image, ax=axes, fraction=0.025, pad=0.02, label=f"{metric.upper()}(layer, factor values)")
    fig.suptitle("Which layers carry the ground-truth factors? Similarity of each layer with the probe images' "
                 "factor values, through training", fontsize=10)
    return fig


# ------------------------------------------------------------------ all
FIGURES = (
    ("heatmap", "Layer x layer similarity", figure_heatmap,
     "Similarity between every layer of one model (rows) and every layer of another (columns) at the end of "
     "training, averaged over seeds: the weakest vs the strongest regularisation of the first objective. "
     "Bright diagonal cells mean a layer is the same in both models."),
    ("learning_dynamics", "Learning dynamics (claim 1)", figure_learning_dynamics,
     "Similarity of each layer at step t with the same layer at the end of training, one column per model "
     "(mean over its seeds; encoder layers on top, decoder layers below). Step 0 is the initial weights, a "
     "baseline: a curve that starts above the dotted line (the metric's settle threshold, set from its untrained "
     "cross-seed level) belongs to a layer training barely changed. With "
     "independent sampling noise every checkpoint draws its own eps, so the sampled and decoder curves also "
     "carry noise while the posterior variance is large; the Baselines table gives each layer's noise floor. "
     "Claim 1's verdict uses the settle point (the checkpoint from which a curve stays above that line) of the layers "
     "training changed and noise does not hold down."),
    ("layer_pairs", "Layer pairs over training", figure_layer_pairs,
     "Input vs sampled and mean vs sampled representations of the same run at the same step, one line per "
     "model (objective: colour family and line style; stronger regularisation: darker), mean over seeds."),
    ("agreement", "Agreement across models per layer (claim 2)", figure_agreement,
     "Mean similarity of the same layer in two models that differ by regularisation strength, objective or "
     "seed, at the end of training; error bars are one standard deviation over the model pairs."),
    ("posterior_collapse", "Posterior collapse (claim 3)", figure_posterior_collapse,
     "Top: similarity between the mean and sampled representations at the end of training (filled) and what "
     "independent sampling noise alone gives with the same checkpoint's per-dimension variances (open circles; "
     "grey bars: its bounds when the mean code's covariances are not stored); claim 3 is judged on the gap. "
     "Bottom: active latent dimensions, Cov_x(E[z_u|x]) > 0.01 on the probe set (Burda et al. 2016), the one "
     "definition used by every verdict and table. One column per objective, since their strengths are "
     "different quantities (points: runs; lines: mean over seeds)."),
    ("factors", "Which layers carry the ground-truth factors", figure_factors,
     "Similarity of each layer with the ground-truth factor values of the probe images (the 'factors' "
     "comparison), at every checkpoint: where and when the factors become readable."),
    ("embedding", "Runs embedded by their similarity matrices", figure_embedding,
     "Multidimensional scaling of each run's vectorised layer x layer similarity matrix at the final step: "
     "runs close together have similar internal structure."),
)


def save_figure(fig: plt.Figure, directory: Path, name: str) -> tuple[Path, Path]:
    """Write ``fig`` as ``name.png`` and ``name.svg`` in ``directory`` (atomically); close it."""
    paths = []
    for suffix in ("png", "svg"):
        path = Path(directory) / f"{name}.{suffix}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=suffix, dpi=DPI)
        paths.append(path)
    plt.close(fig)  # a figure made with pyplot by a caller; a no-op for ours
    return paths[0], paths[1]


def make_figures(results: pd.DataFrame, runs: pd.DataFrame | None, directory: str | Path, *,
                 metric: str = "cka", latents: pd.DataFrame | None = None) -> list[FigureOutput]:
    """Draw every figure into ``directory``; a figure without data is skipped with its reason.

    ``latents``: ``latents.parquet``, passed to the figures that read it (posterior collapse).
    """
    import inspect

    check_results(results)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    outputs = []
    for name, title, function, caption in FIGURES:
        try:
            options = {"latents": latents} if "latents" in inspect.signature(function).parameters else {}
            fig = function(results, runs, metric=metric, **options)
        except NotEnoughData as reason:
            logger.info("figure %s skipped: %s", name, reason)
            outputs.append(FigureOutput(name, title, caption, None, None, skipped=str(reason)))
            continue
        png, svg = save_figure(fig, directory, name)
        outputs.append(FigureOutput(name, title, caption, png, svg))
    return outputs
