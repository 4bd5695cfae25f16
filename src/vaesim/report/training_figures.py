"""Training curves from ``training_metrics.parquet`` (one row per logged step of each run).

:func:`figure_training_curves`: loss, reconstruction and KL against step,
one line per model (mean over seeds). :func:`figure_kl_per_dimension`: the KL
of each latent dimension against step, one panel per model (its lowest seed),
which shows when each dimension switches on, or that it never does
(posterior collapse).
"""

from __future__ import annotations

import matplotlib.pyplot as plt  # colour maps only: figures are made without pyplot (report.figures.subplots)
import numpy as np
import pandas as pd

from vaesim.report.figures import NotEnoughData, step_axis, model_styles, seeds_phrase, subplots

CURVES = (("loss", "loss (the objective minimised)"), ("reconstruction", "reconstruction (nats per image)"),
          ("kl", "KL(q(z|x) || p(z)) (nats)"))


def _check(metrics: pd.DataFrame | None, columns) -> pd.DataFrame:
    if metrics is None or metrics.empty:
        raise NotEnoughData("no training_metrics.parquet (the study's store stage has not run)")
    missing = [c for c in ("run_id", "step", "objective", "param_name", "param", "seed", *columns)
               if c not in metrics.columns]
    if missing:
        raise NotEnoughData(f"training_metrics.parquet lacks columns {missing}")
    return metrics


def kl_columns(metrics: pd.DataFrame) -> list[str]:
    """``kl_dim_0, kl_dim_1, ...`` in dimension order."""
    columns = [c for c in metrics.columns if c.startswith("kl_dim_")]
    return sorted(columns, key=lambda c: int(c.rsplit("_", 1)[1]))


def figure_training_curves(metrics: pd.DataFrame | None) -> plt.Figure:
    """Loss, reconstruction and KL against training step; one line per model, mean over seeds."""
    metrics = _check(metrics, [c for c, _ in CURVES])
    per_model = metrics.groupby(["objective", "param_name", "param", "step"])[[c for c, _ in CURVES]].mean()
    per_model = per_model.reset_index()
    styles = model_styles(per_model[["objective", "param_name", "param"]].drop_duplicates())
    fig, axes = subplots(1, len(CURVES), figsize=(4.4 * len(CURVES), 3.9), squeeze=False)
    for ax, (column, label) in zip(axes[0], CURVES):
        for key, curve in per_model.groupby(["objective", "param_name", "param"]):
            colour, line, name = styles[key]
            ax.plot(curve["step"], curve[column], line, color=colour, label=name, linewidth=1.5)
        step_axis(ax, per_model["step"])
        ax.set_xlabel("training step")
        ax.set_title(label, fontsize=9.5)
        ax.grid(alpha=0.25)
        if column != "kl" and per_model[column].min() > 0 and per_model[column].max() / per_model[column].min() > 20:
            ax.set_yscale("log")
    axes[0, -1].legend(fontsize=7.5, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
    n_seeds = int(metrics.groupby(["objective", "param"])["seed"].nunique().max())
    fig.suptitle(f"Training curves ({seeds_phrase(n_seeds)} per model)", fontsize=11)
    fig.tight_layout()
    return fig


def figure_kl_per_dimension(metrics: pd.DataFrame | None, limit: int = 12) -> plt.Figure:
    """KL of each latent dimension against step: one panel per model (lowest seed), up to ``limit`` panels."""
    metrics = _check(metrics, [])
    columns = kl_columns(metrics)
    if not columns:
        raise NotEnoughData("training_metrics.parquet has no kl_dim_* columns")
    firsts = (metrics.sort_values("seed").drop_duplicates(["objective", "param"])
              .sort_values(["objective", "param"]).head(limit))
    n = len(firsts)
    n_cols = min(4, n)
    n_rows = int(np.ceil(n / n_cols))
    fig, axes = subplots(n_rows, n_cols, figsize=(3.6 * n_cols, 2.9 * n_rows), squeeze=False, sharey=True)
    colours = plt.cm.tab10(np.arange(len(columns)) % 10)
    for ax, (_, first) in zip(axes.flat, firsts.iterrows()):
        run = metrics[metrics["run_id"] == first["run_id"]].sort_values("step")
        for colour, column in zip(colours, columns):
            ax.plot(run["step"], run[column], color=colour, linewidth=1.3, label=f"z{column.rsplit('_', 1)[1]}")
        step_axis(ax, run["step"])
        ax.set_title(f"{first['objective']} {first['param_name']}={float(first['param']):g} "
                     f"(seed {int(first['seed'])})", fontsize=9)
        ax.set_xlabel("training step", fontsize=8)
        ax.grid(alpha=0.25)
    for ax in axes[:, 0]:
        ax.set_ylabel("KL per dimension (nats)", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes[0, -1].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1)
    fig.suptitle("KL of each latent dimension through training: a dimension near 0 carries no information",
                 fontsize=10.5)
    fig.tight_layout()
    return fig
