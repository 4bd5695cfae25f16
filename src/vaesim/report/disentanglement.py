"""Every stored disentanglement score per model, with each metric's chance level and a warning near it.

The disentangle stage stores one row per (run, step, metric)
(``disentanglement/*.parquet``, :func:`vaesim.study.store.tables.load_disentanglement`).
:func:`disentanglement_table` gives, per model (dataset, objective,
strength), the mean and standard deviation over seeds of every metric at
the run's last scored step. :func:`chance_levels` says what a
representation that knows nothing about the factors scores:

- from the store when it scored untrained networks (step 0): the mean of
  those scores per (dataset, metric), and the highest of them;
- otherwise from the metric's definition (a code independent of the factors,
  ``vaesim.metrics.disentanglement``): BetaVAE and FactorVAE scores 1/F (F
  factors, a uniform guess of the fixed factor), MIG, SAP, DCI
  disentanglement and completeness 0, DCI informativeness the mean over
  factors of 1/K_j (majority-class rate of uniform factors), explicitness
  0.5 (ROC-AUC), UDR 0 (correlations; finite samples bias MIG, SAP, DCI and
  UDR upward, so an untrained reference is the better chance level); modularity has none (noise scores
  high), so it is judged only against an untrained reference.

A score is **near chance** when it is at most the highest untrained score,
or (without an untrained reference) within :data:`NEAR_CHANCE` of the way
from chance to the metric's maximum 1.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

NEAR_CHANCE = 0.1  # fraction of the range from chance to 1 that still counts as "near chance"
NOT_SCORES = ("udr_active_dims",)  # stored beside the scores, but counts, not scores


def definitional_chance(metric: str, factor_sizes: list[int] | None) -> tuple[float, str]:
    """(chance level, how it follows from the definition) of ``metric``; NaN where the definition gives none."""
    sizes = [int(s) for s in factor_sizes] if factor_sizes else []
    if metric in ("beta_vae", "factor_vae"):
        if not sizes:
            return math.nan, "1/F, but the number of factors F is not recorded"
        return 1.0 / len(sizes), f"1/F, F = {len(sizes)} factors (a uniform guess of the fixed factor)"
    if metric == "dci_informativeness":
        if not sizes:
            return math.nan, "mean of 1/K_j, but the factor sizes are not recorded"
        return float(np.mean([1.0 / s for s in sizes])), "mean over factors of 1/K_j (majority-class rate)"
    if metric in ("mig", "sap", "dci_disentanglement", "dci_completeness"):
        return 0.0, "0 for a code independent of the factors (finite samples bias it upward)"
    if metric == "explicitness":
        return 0.5, "0.5 (ROC-AUC of a guess)"
    if metric.startswith("udr"):
        return 0.0, "0 for uncorrelated codes (finite samples bias it upward)"
    return math.nan, "no chance level follows from the definition (noise scores high on modularity)"


def factor_sizes(study_dir: str | Path, dataset: str) -> list[int] | None:
    """Factor sizes recorded by the probe stage (``probes/<dataset>.json``), or None."""
    path = Path(study_dir) / "probes" / f"{dataset}.json"
    try:
        return [int(s) for s in json.loads(path.read_text())["factor_sizes"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.info("no factor sizes for %s (%s): chance levels that need them are unknown", dataset, error)
        return None


def chance_levels(scores: pd.DataFrame, sizes: dict[str, list[int] | None]) -> pd.DataFrame:
    """Per (dataset, metric): chance, highest_untrained (NaN without step-0 scores), source.

    ``scores``: the disentanglement table; ``sizes``: {dataset: factor sizes or None}.
    """
    rows = []
    for (dataset, metric), group in scores.groupby(["dataset", "metric"]):
        if metric in NOT_SCORES:
            continue
        untrained = group[group["step"] == 0]["value"].dropna()
        if len(untrained):
            rows.append(dict(dataset=dataset, metric=metric, chance=float(untrained.mean()),
                             highest_untrained=float(untrained.max()),
                             source=f"untrained networks (step 0, {len(untrained)} runs)"))
        else:
            level, how = definitional_chance(metric, sizes.get(dataset))
            rows.append(dict(dataset=dataset, metric=metric, chance=level, highest_untrained=math.nan, source=how))
    return pd.DataFrame(rows, columns=["dataset", "metric", "chance", "highest_untrained", "source"])


def near_chance(value: float, chance: float, highest_untrained: float) -> bool:
    """True when ``value`` does not clear what a representation that knows nothing scores."""
    if not np.isfinite(value):
        return False
    if np.isfinite(highest_untrained):
        return bool(value <= highest_untrained)
    if not np.isfinite(chance):
        return False
    return bool(value <= chance + NEAR_CHANCE * (1.0 - chance))


def disentanglement_table(scores: pd.DataFrame, chance: pd.DataFrame) -> pd.DataFrame:
    """Per model (dataset, objective, param) and metric: mean, sd over seeds, seeds, chance, near_chance.

    Uses each run's last scored step (the trained model). Returns dataset,
    objective, param_name, param, metric, mean, sd, seeds, chance,
    near_chance (the mean is at or under chance by :func:`near_chance`).
    """
    columns = ["dataset", "objective", "param_name", "param", "metric", "mean", "sd", "seeds", "chance", "near_chance"]
    if scores.empty:
        return pd.DataFrame(columns=columns)
    last = scores[scores["step"] == scores.groupby("run")["step"].transform("max")]
    last = last[~last["metric"].isin(NOT_SCORES)]
    table = last.groupby(["dataset", "objective", "param_name", "param", "metric"])["value"].agg(
        mean="mean", sd="std", seeds="count").reset_index()
    table = table.merge(chance[["dataset", "metric", "chance", "highest_untrained"]], on=["dataset", "metric"],
                        how="left")
    table["near_chance"] = [near_chance(v, c, h) for v, c, h in
                            zip(table["mean"], table["chance"], table["highest_untrained"])]
    return table[columns]


def wide_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per model, one column per metric: ``mean`` (``*`` appended when near chance)."""
    if table.empty:
        return table
    cells = table.assign(cell=[f"{m:.3f}" + (" *" if near else "") for m, near in zip(table["mean"],
                                                                                    table["near_chance"])])
    wide = cells.pivot_table(index=["dataset", "objective", "param_name", "param"], columns="metric", values="cell",
                             aggfunc="first").reset_index()
    seeds = table.groupby(["dataset", "objective", "param_name", "param"])["seeds"].max().rename("seeds")
    wide = wide.merge(seeds.reset_index(), on=["dataset", "objective", "param_name", "param"])
    wide.columns.name = None
    return wide


def split_wide_table(wide: pd.DataFrame, per_table: int = 6) -> list[pd.DataFrame]:
    """:func:`wide_table` cut into tables of at most ``per_table`` metric columns, each led by the model it
    describes (``dataset``, ``model`` as ``objective param=value``, ``seeds``), so that no table is wider than
    the page however many metrics the store holds (vaesim's, UDR, scores published with imported runs)."""
    if wide.empty:
        return [wide]
    ids = ["dataset", "objective", "param_name", "param", "seeds"]
    model = [f"{o} {n}={p:g}" for o, n, p in zip(wide["objective"], wide["param_name"], wide["param"])]
    base = pd.DataFrame({"dataset": wide["dataset"], "model": model, "seeds": wide["seeds"]})
    metrics = [column for column in wide.columns if column not in ids]
    return [pd.concat([base, wide[metrics[i:i + per_table]]], axis=1) for i in range(0, len(metrics), per_table)]


def chance_warning(table: pd.DataFrame, chance: pd.DataFrame) -> str:
    """A sentence for the report: which metrics score near chance for how many models (empty when none)."""
    if table.empty:
        return ""
    near = table[table["near_chance"]]
    if near.empty:
        return ""
    counts = near.groupby("metric").size()
    totals = table.groupby("metric").size()
    return ("Near chance (marked *): " + ", ".join(f"{metric} for {counts[metric]} of {totals[metric]} models"
                                                 for metric in counts.index)
            + ". These scores do not tell the models apart from a representation that knows nothing about the "
            "factors; a selection or ranking by them is noise.")
