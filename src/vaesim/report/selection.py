"""A finding beyond the paper: does cross-seed similarity predict disentanglement and UDR?

UDR (Duan et al. 2020) turns "good models are more similar to each other"
into a model-selection score; the seed paper warns the idea may not carry
over to every VAE. This module asks it of the store directly:

* **cross-seed similarity** of a run: at its final checkpoint, the mean
  similarity (``metric``, CKA by default) of a layer with the same layer of
  the other seeds of its (dataset, objective, value); for ``encoder.mean``
  and for the encoder **trunk** (the mean over the trunk layers, see
  :func:`vaesim.report.layers.is_trunk`);
* **targets** from the disentangle stage (``disentanglement/*.parquet``):
  ``udr_lasso``, ``dci_disentanglement``, ``mig`` (and any other metric
  stored) of the same run at the same step;
* per (dataset, objective, layer, target): Spearman's rho over runs (across
  strengths and seeds) with a 95 % interval from resampling whole strength
  groups (runs of one strength share their seed pairs, so they are not
  independent units; :func:`vaesim.report.statistics.clustered_spearman`).

Verdict (one finding row per layer and headline target, ``udr_lasso`` and
``dci_disentanglement``): the n-weighted mean rho over (dataset, objective)
cells with at least :data:`MIN_RUNS` runs and :data:`MIN_GROUPS` strengths;
its interval from the cells' bootstrap draws combined the same way. It
**holds** when the interval's lower end is above 0 (higher similarity goes
with higher disentanglement), **opposite holds** when its upper end is below
0, **inconclusive** when it contains 0; not enough data without a qualifying
cell.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from vaesim.report import layers as L
from vaesim.report.statistics import spearman
from vaesim.report.verdicts import FINDING_COLUMNS, NOT_ENOUGH_DATA, finding_row, interval_verdict

__all__ = ["HEADLINE_TARGETS", "cross_seed_similarity", "selection_findings", "selection_report", "selection_table"]

logger = logging.getLogger(__name__)

MIN_RUNS = 5
MIN_GROUPS = 3
SAMPLES = 1000
HEADLINE_TARGETS = ("udr_lasso", "dci_disentanglement")
LAYER_SETS = ("encoder.mean", "trunk")


def cross_seed_similarity(results: pd.DataFrame, steps: pd.DataFrame, *, metric: str = "cka") -> pd.DataFrame:
    """Per run and layer set: mean same-layer similarity with the other seeds at the run's scored step.

    Args:
        results: the results store (``comparison == "seeds"`` rows are used).
        steps: ``run, step`` (the step whose disentanglement was measured).
    Returns:
        columns ``run, step, layer_set, similarity, pairs``.
    """
    seeds = results[(results.comparison == "seeds") & (results.metric == metric)
                    & (results.a_layer == results.b_layer) & (results.a_step == results.b_step)]
    out = []
    for run, step in steps[["run", "step"]].drop_duplicates().itertuples(index=False):
        rows = seeds[((seeds.a_run == run) | (seeds.b_run == run)) & (seeds.a_step == step)]
        for layer_set in LAYER_SETS:
            chosen = rows[rows.a_layer == layer_set] if layer_set != "trunk" else rows[rows.a_layer.map(L.is_trunk)]
            if chosen.empty:
                continue
            # trunk: the mean over trunk layers of each pair, then over pairs
            per_pair = chosen.groupby(["a_run", "b_run"]).score.mean()
            out.append(dict(run=run, step=int(step), layer_set=layer_set, similarity=float(per_pair.mean()),
                            pairs=int(len(per_pair))))
    return pd.DataFrame(out, columns=["run", "step", "layer_set", "similarity", "pairs"])


def _joined(results: pd.DataFrame, scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    final = scores.loc[scores.groupby("run").step.transform("max") == scores.step]
    similarity = cross_seed_similarity(results, final[["run", "step"]], metric=metric)
    wide = final.pivot_table(index=["dataset", "objective", "param", "seed", "run", "step"], columns="metric",
                             values="value").reset_index()
    return similarity.merge(wide, on=["run", "step"])


def _cell(frame: pd.DataFrame, target: str, seed: int) -> dict:
    x, y, groups = frame.similarity.to_numpy(), frame[target].to_numpy(), frame.param.to_numpy()
    ok = np.isfinite(x) & np.isfinite(y)
    x, y, groups = x[ok], y[ok], groups[ok]
    n, g = len(x), len(np.unique(groups))
    row = dict(n_runs=n, n_strengths=g, rho=math.nan, ci_low=math.nan, ci_high=math.nan, draws=None)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return row
    row["rho"] = spearman(x, y)
    labels = np.unique(groups)
    members = [np.flatnonzero(groups == label) for label in labels]
    rng = np.random.default_rng(seed)
    draws = np.full(SAMPLES, np.nan)
    for k in range(SAMPLES):
        chosen = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        if np.ptp(x[chosen]) > 0 and np.ptp(y[chosen]) > 0:
            draws[k] = spearman(x[chosen], y[chosen])
    finite = draws[np.isfinite(draws)]
    if len(finite):
        row["ci_low"], row["ci_high"] = (float(v) for v in np.percentile(finite, [2.5, 97.5]))
    row["draws"] = draws
    return row


def selection_table(results: pd.DataFrame, scores: pd.DataFrame, *, metric: str = "cka",
                    seed: int = 0) -> pd.DataFrame:
    """Spearman rho (and 95 % interval) of cross-seed similarity vs each stored target, per cell.

    Returns columns ``dataset, objective, layer_set, target, rho, ci_low, ci_high, n_runs,
    n_strengths`` (the draws stay in ``draws`` for :func:`selection_findings`).
    """
    columns = ["dataset", "objective", "layer_set", "target", "rho", "ci_low", "ci_high", "n_runs", "n_strengths",
               "draws"]
    if results.empty or scores.empty:
        return pd.DataFrame(columns=columns)
    joined = _joined(results, scores, metric)
    targets = [m for m in scores.metric.unique() if m != "udr_active_dims"]
    out = []
    for (dataset, objective, layer_set), frame in joined.groupby(["dataset", "objective", "layer_set"]):
        for target in sorted(targets):
            if target not in frame:
                continue
            out.append(dict(dataset=dataset, objective=objective, layer_set=layer_set, target=target,
                            **_cell(frame, target, seed)))
    return pd.DataFrame(out, columns=columns)


def selection_findings(table: pd.DataFrame) -> pd.DataFrame:
    """One finding row per (layer set, headline target) with a verdict that can fail."""
    rows = []
    for layer_set in LAYER_SETS:
        for target in HEADLINE_TARGETS:
            name = f"beyond the paper: cross-seed {metric_name(layer_set)} similarity predicts {target}"
            definition = (f"Spearman rho over runs, per dataset and objective, between a run's mean same-layer "
                          f"similarity with the other seeds ({layer_set}) and its {target} at the final "
                          f"checkpoint; n-weighted mean over cells with >= {MIN_RUNS} runs and >= {MIN_GROUPS} "
                          "strengths, 95% interval from resampling strength groups; holds when the interval is "
                          "above 0, opposite holds when it is below 0, inconclusive when it contains 0")
            cells = table[(table.layer_set == layer_set) & (table.target == target)] if len(table) else table
            usable = cells[(cells.n_runs >= MIN_RUNS) & (cells.n_strengths >= MIN_GROUPS) & cells.rho.notna()] \
                if len(cells) else cells
            if usable.empty:
                rows.append(finding_row(name, math.nan, NOT_ENOUGH_DATA, definition,
                                 f"no (dataset, objective) with >= {MIN_RUNS} scored runs over >= {MIN_GROUPS} "
                                 "strengths", n=0))
                continue
            weights = usable.n_runs.to_numpy(dtype=float)
            value = float(np.average(usable.rho, weights=weights))
            draws = np.vstack([d for d in usable.draws])  # (cells, samples)
            with np.errstate(invalid="ignore", divide="ignore"):  # a draw where every cell was degenerate
                combined = np.nansum(draws * weights[:, None], axis=0) / np.sum(
                    np.isfinite(draws) * weights[:, None], axis=0)
            combined = combined[np.isfinite(combined)]
            low, high = (np.percentile(combined, [2.5, 97.5]) if len(combined) else (math.nan, math.nan))
            verdict = interval_verdict(low, high)
            detail = "; ".join(f"{r.dataset}/{r.objective}: rho {r.rho:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] "
                               f"({r.n_runs} runs, {r.n_strengths} strengths)" for r in usable.itertuples())
            rows.append(finding_row(name, value, verdict, definition, detail, (float(low), float(high)),
                             int(usable.n_runs.sum())))
    return pd.DataFrame(rows, columns=list(FINDING_COLUMNS))


def metric_name(layer_set: str) -> str:
    return "encoder.mean" if layer_set == "encoder.mean" else "encoder-trunk"


def selection_figure(results: pd.DataFrame, scores: pd.DataFrame, directory: Path, *, metric: str = "cka"):
    """Scatter of cross-seed similarity (x) against each headline target (y), one colour per objective."""
    from vaesim.report.figures import FigureOutput, save_figure, subplots

    name, title = "selection", "Cross-seed similarity vs disentanglement and UDR"
    caption = (f"Each point is a run at its final checkpoint: its mean {metric} with the other seeds (x; left "
               "column encoder.mean, right column the encoder trunk) against its score (y).")
    joined = _joined(results, scores, metric) if not (results.empty or scores.empty) else pd.DataFrame()
    targets = [t for t in HEADLINE_TARGETS if t in joined]
    if joined.empty or not targets:
        return FigureOutput(name, title, caption, None, None, skipped="no disentanglement scores with seed pairs")
    fig, axes = subplots(len(targets), 2, figsize=(8, 3.2 * len(targets)), squeeze=False)
    for i, target in enumerate(targets):
        for j, layer_set in enumerate(LAYER_SETS):
            ax = axes[i, j]
            part = joined[joined.layer_set == layer_set]
            for objective, group in part.groupby("objective"):
                ax.scatter(group.similarity, group[target], label=objective, s=18)
            ax.set_xlabel(f"cross-seed {metric} ({layer_set})")
            ax.set_ylabel(target)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    png, svg = save_figure(fig, Path(directory), name)
    return FigureOutput(name, title, caption, png, svg)


def selection_report(study_dir: str | Path, results: pd.DataFrame, *, metric: str = "cka",
                     figures_dir: str | Path | None = None):
    """(finding rows, [figure]) for :func:`vaesim.report.write_report`; nothing without a disentangle stage."""
    from vaesim.study.store.tables import disentanglement_files, load_disentanglement

    if not disentanglement_files(study_dir):
        return pd.DataFrame(columns=list(FINDING_COLUMNS)), []
    scores = load_disentanglement(study_dir)
    table = selection_table(results, scores, metric=metric)
    findings = selection_findings(table)
    figures = []
    if figures_dir is not None:
        figures.append(selection_figure(results, scores, Path(figures_dir), metric=metric))
    return findings, figures
