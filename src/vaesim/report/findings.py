"""The seed paper's claims, checked with numbers from the results store.

Bonheme & Grzes, "How do Variational Autoencoders Learn? Insights from
Representational Similarity" (arXiv 2205.08399). Each finding is one row:
``finding`` (name), ``value`` (its number, NaN without data), ``verdict``
(``holds`` / ``does not hold`` / ``not enough data``), ``definition`` (how the
number is computed and when it holds) and ``detail`` (the numbers behind it).
Every function here is pure: pandas tables in, pandas tables out.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from scipy import stats

from vaesim.report import layers as L
from vaesim.report.tables import (
    at_final_step,
    both_orientations,
    check_results,
    final_steps,
    run_info,
    select,
)

logger = logging.getLogger(__name__)

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
NOT_ENOUGH_DATA = "not enough data"
FINDING_COLUMNS = ("finding", "value", "verdict", "definition", "detail")

CONVERGENCE_THRESHOLD = 0.9  # claim 1: CKA with the final state counted as "learned"
AGREEMENT_THRESHOLD = 0.9  # claim 2: mean agreement counted as "very similar"
MIN_CHECKPOINTS = 3  # claim 1: a run needs at least this many checkpoints (final included)
SIGNIFICANCE = 0.05  # claim 3: one-sided p-value of Spearman's rho
MIN_RUNS_FOR_CORRELATION = 5
MIN_STRENGTHS_FOR_CORRELATION = 3
UNRELATED_CKA = 0.5  # claim 4: layer pairs with CKA below this count as unrelated
MIN_PAIRS_FOR_METRIC_COMPARISON = 10
PROCRUSTES_ABOVE_SHARE = 0.9

# Sign that turns an objective's main parameter into a regularisation strength
# (larger = stronger pressure towards the prior). Annealed VAE's C_max is a KL
# capacity: a larger capacity means a weaker regulariser.
STRENGTH_SIGN = {"annealed_vae": -1.0}


def _row(finding: str, value: float, verdict: str, definition: str, detail: str) -> dict:
    return dict(finding=finding, value=float(value), verdict=verdict, definition=definition, detail=detail)


# --------------------------------------------------------------------------- claim 1
def convergence_table(
    results: pd.DataFrame, *, metric: str = "cka", threshold: float = CONVERGENCE_THRESHOLD
) -> pd.DataFrame:
    """When each layer of each run reaches its final state (claim 1 of the paper).

    Uses ``within_run`` rows comparing a layer at step t with the same layer at
    the run's final step T. For each (run, layer) the convergence step is the
    first checkpoint t with score(t, T) >= ``threshold`` (the final step itself
    counts with score 1, so every layer converges at the latest at T).

    Returns one row per (run, layer), ``input`` and non-model layers excluded:
    run, objective, param, seed, layer, group ("encoder" / "decoder"),
    final_step, converged_step, converged_fraction (= converged_step / T, in
    (0, 1]), n_checkpoints (distinct steps of that run, final included).
    """
    check_results(results)
    finals = final_steps(results)
    rows = select(results, comparison="within_run", metric=metric)
    rows = rows[(rows["a_run"] == rows["b_run"]) & (rows["a_layer"] == rows["b_layer"])]
    rows = both_orientations(rows)
    rows = rows[rows["b_step"] == rows["b_run"].map(finals)]
    rows = rows[rows["a_layer"].map(lambda name: L.is_encoder(name) or L.is_decoder(name)).astype(bool)]
    out = []
    for (run, layer), group in rows.groupby(["a_run", "a_layer"], sort=False):
        final = int(finals[run])
        curve = group.groupby("a_step")["score"].mean()
        curve.loc[final] = 1.0  # a state is identical to itself
        curve = curve.sort_index()
        reached = curve[curve >= threshold]
        converged = int(reached.index[0])
        first = group.iloc[0]
        out.append(
            dict(
                run=run,
                objective=first["a_objective"],
                param=first["a_param"],
                seed=first["a_seed"],
                layer=layer,
                group=L.layer_group(layer),
                final_step=final,
                converged_step=converged,
                converged_fraction=converged / final if final > 0 else float("nan"),
                n_checkpoints=len(curve),
            )
        )
    columns = ["run", "objective", "param", "seed", "layer", "group", "final_step", "converged_step",
               "converged_fraction", "n_checkpoints"]
    return pd.DataFrame(out, columns=columns)


def claim_encoder_first(results: pd.DataFrame, *, metric: str = "cka") -> dict:
    """Claim 1: encoder layers reach their final representation before decoder layers."""
    definition = (
        f"For each run and layer: the first checkpoint step t at which {metric.upper()}(layer at t, same layer "
        f"at the final step T) >= {CONVERGENCE_THRESHOLD}, as a fraction t/T of training ('input' excluded: it "
        f"never changes). Per run: mean over encoder.* layers and over decoder.* layers (a mean, not a median, "
        f"so that the mean/variance heads, which the paper finds settle late, do not hide the trunk); then the "
        f"median of each over runs with >= {MIN_CHECKPOINTS} checkpoints. Value = decoder median - encoder "
        f"median (fraction of training). Holds if the encoder median is smaller."
    )
    name = "claim 1: encoder layers converge before decoder layers"
    table = convergence_table(results, metric=metric)
    table = table[table["n_checkpoints"] >= MIN_CHECKPOINTS]
    per_run = table.groupby(["run", "group"])["converged_fraction"].mean().unstack()
    if per_run.empty or not {"encoder", "decoder"} <= set(per_run.columns):
        return _row(name, math.nan, NOT_ENOUGH_DATA, definition,
                    f"no run with >= {MIN_CHECKPOINTS} checkpoints and both encoder and decoder layers "
                    f"in 'within_run' rows of metric {metric!r}")
    per_run = per_run.dropna(subset=["encoder", "decoder"])
    if per_run.empty:
        return _row(name, math.nan, NOT_ENOUGH_DATA, definition, "no run has both encoder and decoder layers")
    encoder, decoder = float(per_run["encoder"].median()), float(per_run["decoder"].median())
    earlier = int((per_run["encoder"] < per_run["decoder"]).sum())
    verdict = HOLDS if encoder < decoder else DOES_NOT_HOLD
    detail = (
        f"encoder median {encoder:.2f}, decoder median {decoder:.2f} of training "
        f"(encoder earlier by {decoder - encoder:+.2f}); encoder first in {earlier}/{len(per_run)} runs"
    )
    return _row(name, decoder - encoder, verdict, definition, detail)


# --------------------------------------------------------------------------- claim 2
def agreement_by_layer(results: pd.DataFrame, *, comparison: str = "params", metric: str = "cka") -> pd.DataFrame:
    """Mean similarity of each layer with itself across models, at the final step (claim 2).

    Uses rows of ``comparison`` ("params": same objective, different
    regularisation strengths; "objectives": different objectives; "seeds")
    where a_layer == b_layer and both sides are at their run's final step.
    Returns layer (input-to-output order), group, mean, std, n_pairs.
    """
    check_results(results)
    rows = at_final_step(select(results, comparison=comparison, metric=metric), final_steps(results))
    rows = rows[rows["a_layer"] == rows["b_layer"]]
    stats_by_layer = rows.groupby("a_layer")["score"].agg(["mean", "std", "count"])
    order = [name for name in L.order_layers(stats_by_layer.index) if name in stats_by_layer.index]
    stats_by_layer = stats_by_layer.loc[order].rename(columns={"count": "n_pairs"})
    out = stats_by_layer.reset_index().rename(columns={"a_layer": "layer"})
    out.insert(1, "group", out["layer"].map(L.layer_group))
    return out


def claim_encoder_agreement(results: pd.DataFrame, *, comparison: str = "params", metric: str = "cka") -> dict:
    """Claim 2: encoder layers other than mean/variance agree across models; the heads less so."""
    across = {"params": "regularisation strengths", "objectives": "objectives", "seeds": "seeds"}[comparison]
    definition = (
        f"Per layer: mean {metric.upper()} between the same layer of two models trained with different "
        f"{across} (comparison '{comparison}', both at their final step). Trunk = encoder.conv*/encoder.fc; "
        f"heads = encoder.mean/logvar/variance. Value = mean over trunk layers. Holds if it is "
        f">= {AGREEMENT_THRESHOLD} and above the heads' mean."
    )
    name = f"claim 2: encoder trunk agrees across {across}, mean/variance layers less"
    table = agreement_by_layer(results, comparison=comparison, metric=metric)
    trunk = table[table["layer"].map(L.is_trunk).astype(bool)]
    heads = table[table["layer"].isin(L.HEAD_LAYERS)]
    if trunk.empty or heads.empty:
        return _row(name, math.nan, NOT_ENOUGH_DATA, definition,
                    f"no '{comparison}' rows of metric {metric!r} for both trunk and head layers at the final step")
    trunk_mean, head_mean = float(trunk["mean"].mean()), float(heads["mean"].mean())
    verdict = HOLDS if trunk_mean >= AGREEMENT_THRESHOLD and trunk_mean > head_mean else DOES_NOT_HOLD
    weakest = trunk.loc[trunk["mean"].idxmin()]
    detail = (
        f"trunk {trunk_mean:.3f} (lowest {weakest['layer']} {weakest['mean']:.3f}), heads {head_mean:.3f} (trunk - heads = {trunk_mean - head_mean:+.3f}); "
        f"up to {int(table['n_pairs'].max())} model pair(s) per layer"
    )
    return _row(name, trunk_mean, verdict, definition, detail)


# --------------------------------------------------------------------------- claim 3
def regularisation_strength(objective: str, param: float) -> float:
    """Main parameter turned into a strength that grows with the pressure towards the prior."""
    return STRENGTH_SIGN.get(objective, 1.0) * float(param)


def mean_sample_similarity(results: pd.DataFrame, *, metric: str = "cka") -> pd.DataFrame:
    """Similarity of the mean and sampled representations of each run at its final step.

    From ``within_run`` rows pairing encoder.mean with encoder.sample of the
    same run, both at the final step. Returns run, objective, param_name,
    param, seed, strength, score.
    """
    check_results(results)
    rows = at_final_step(select(results, comparison="within_run", metric=metric), final_steps(results))
    pair = {L.MEAN_LAYER, L.SAMPLE_LAYER}
    rows = rows[
        (rows["a_run"] == rows["b_run"])
        & (rows["a_layer"] != rows["b_layer"])
        & rows["a_layer"].isin(pair)
        & rows["b_layer"].isin(pair)
    ]
    scores = rows.groupby("a_run")["score"].mean().rename("score")
    info = run_info(results).set_index("run")
    out = info.join(scores, how="inner").rename_axis("run").reset_index()
    out["strength"] = [regularisation_strength(o, p) for o, p in zip(out["objective"], out["param"])]
    return out[["run", "objective", "param_name", "param", "seed", "strength", "score"]]


def _rank_correlation_row(table: pd.DataFrame, column: str, *, name: str, definition: str, what: str) -> dict:
    table = table.dropna(subset=["strength", column])
    n_runs, n_strengths = len(table), table["strength"].nunique()
    if n_runs < MIN_RUNS_FOR_CORRELATION or n_strengths < MIN_STRENGTHS_FOR_CORRELATION:
        return _row(name, math.nan, NOT_ENOUGH_DATA, definition,
                    f"{n_runs} runs with {n_strengths} distinct strengths; needs >= {MIN_RUNS_FOR_CORRELATION} runs "
                    f"and >= {MIN_STRENGTHS_FOR_CORRELATION} strengths")
    if table[column].nunique() < 2:
        return _row(name, math.nan, DOES_NOT_HOLD, definition, f"{what} is constant ({table[column].iloc[0]:.3g})")
    rho, p_value = stats.spearmanr(table["strength"], table[column], alternative="less")
    verdict = HOLDS if rho < 0 and p_value < SIGNIFICANCE else DOES_NOT_HOLD
    by_strength = table.groupby("strength")[column].mean()
    span = f"{what} {by_strength.iloc[0]:.3g} at the weakest, {by_strength.iloc[-1]:.3g} at the strongest"
    p_text = "< 1e-16" if p_value < 1e-16 else f"= {p_value:.3g}"
    detail = f"rho = {rho:+.2f}, one-sided p {p_text}, {n_runs} runs, {n_strengths} strengths; {span}"
    return _row(name, rho, verdict, definition, detail)


def claims_posterior_collapse(results: pd.DataFrame, runs: pd.DataFrame | None, *, metric: str = "cka") -> list[dict]:
    """Claim 3: stronger regularisation lowers CKA(mean, sampled) and the number of active dimensions.

    One row per objective for CKA(encoder.mean, encoder.sample) at the final
    step (results store) and one per objective for ``active_dims`` (runs
    table), each a one-sided Spearman rank correlation with the strength.
    """
    rows = []
    table = mean_sample_similarity(results, metric=metric)
    objectives = sorted(set(table["objective"]) | set([] if runs is None or "objective" not in runs else runs["objective"]))
    if not objectives:
        objectives = ["any objective"]
    for objective in objectives:
        sign = "-C_max" if STRENGTH_SIGN.get(objective, 1.0) < 0 else "its main parameter"
        definition = (
            f"Spearman rank correlation between regularisation strength ({sign}) and "
            f"{metric.upper()}(encoder.mean, encoder.sample) of each run at its final step (within-run rows). "
            f"Holds if rho < 0 with one-sided p < {SIGNIFICANCE} (needs >= {MIN_RUNS_FOR_CORRELATION} runs, "
            f">= {MIN_STRENGTHS_FOR_CORRELATION} strengths)."
        )
        rows.append(_rank_correlation_row(
            table[table["objective"] == objective], "score",
            name=f"claim 3: CKA(mean, sampled) falls with regularisation [{objective}]",
            definition=definition, what=f"{metric.upper()}(mean, sampled)",
        ))
        definition_dims = definition.replace(
            f"{metric.upper()}(encoder.mean, encoder.sample) of each run at its final step (within-run rows)",
            "the run's number of active latent dimensions (runs table, 'active_dims')",
        )
        if runs is None or not {"objective", "param", "active_dims"} <= set(runs.columns):
            rows.append(_row(f"claim 3: active dimensions fall with regularisation [{objective}]", math.nan,
                             NOT_ENOUGH_DATA, definition_dims, "the runs table has no 'active_dims' column"))
            continue
        dims = runs[runs["objective"] == objective][["objective", "param", "active_dims"]].copy()
        dims["strength"] = [regularisation_strength(o, p) for o, p in zip(dims["objective"], dims["param"])]
        rows.append(_rank_correlation_row(
            dims, "active_dims", name=f"claim 3: active dimensions fall with regularisation [{objective}]",
            definition=definition_dims, what="active dims",
        ))
    return rows


# --------------------------------------------------------------------------- claim 4
def metric_pairs(results: pd.DataFrame) -> pd.DataFrame:
    """CKA and Procrustes scores of the same layer pairs side by side: key columns + cka, procrustes."""
    check_results(results)
    keys = [c for c in results.columns if c.startswith(("a_", "b_"))] + ["comparison"]
    wide = results[results["metric"].isin(["cka", "procrustes"]) & results["score"].notna()]
    wide = wide.pivot_table(index=keys, columns="metric", values="score", aggfunc="mean")
    if not {"cka", "procrustes"} <= set(wide.columns):
        return pd.DataFrame(columns=keys + ["cka", "procrustes"])
    return wide[["cka", "procrustes"]].dropna().reset_index()


def claim_procrustes_above_cka(results: pd.DataFrame) -> dict:
    """Claim 4: Procrustes similarity stays above linear CKA on unrelated layer pairs."""
    definition = (
        f"Over layer pairs scored with both metrics whose CKA < {UNRELATED_CKA} ('unrelated'): the share "
        f"where Procrustes similarity >= linear CKA. Holds if the share >= {PROCRUSTES_ABOVE_SHARE} "
        f"(needs >= {MIN_PAIRS_FOR_METRIC_COMPARISON} pairs)."
    )
    name = "claim 4: Procrustes >= CKA on unrelated layer pairs"
    pairs = metric_pairs(results)
    unrelated = pairs[pairs["cka"] < UNRELATED_CKA]
    if len(unrelated) < MIN_PAIRS_FOR_METRIC_COMPARISON:
        return _row(name, math.nan, NOT_ENOUGH_DATA, definition,
                    f"{len(unrelated)} unrelated pairs scored with both cka and procrustes")
    share = float((unrelated["procrustes"] >= unrelated["cka"]).mean())
    verdict = HOLDS if share >= PROCRUSTES_ABOVE_SHARE else DOES_NOT_HOLD
    detail = (
        f"{share:.1%} of {len(unrelated)} pairs; median CKA {unrelated['cka'].median():.3f}, "
        f"median Procrustes {unrelated['procrustes'].median():.3f}"
    )
    return _row(name, share, verdict, definition, detail)


# --------------------------------------------------------------------------- all
def compute_findings(results: pd.DataFrame, runs: pd.DataFrame | None = None, *, metric: str = "cka") -> pd.DataFrame:
    """Every finding, one row each: finding, value, verdict, definition, detail.

    ``results``: the results store (``vaesim.study.load_results``); ``runs``:
    ``runs.parquet`` (one row per run) or None.
    """
    check_results(results)
    rows = [
        claim_encoder_first(results, metric=metric),
        claim_encoder_agreement(results, comparison="params", metric=metric),
        claim_encoder_agreement(results, comparison="objectives", metric=metric),
        *claims_posterior_collapse(results, runs, metric=metric),
        claim_procrustes_above_cka(results),
    ]
    findings = pd.DataFrame(rows, columns=list(FINDING_COLUMNS))
    logger.info("findings: %s", dict(zip(findings["finding"], findings["verdict"])))
    return findings


def format_findings(findings: pd.DataFrame, *, width: int = 110) -> str:
    """Findings as a plain-text table for the terminal: verdict, value, finding, then its numbers."""
    import textwrap

    indent = " " * 29
    lines = [f"{'verdict':<16} {'value':>8}   finding"]
    for row in findings.itertuples(index=False):
        missing = row.value is None or (isinstance(row.value, float) and np.isnan(row.value))
        value = "-" if missing else f"{row.value:+.3f}"
        lines.append(f"{row.verdict:<16} {value:>8}   {row.finding}")
        if row.detail:
            lines.append(textwrap.fill(str(row.detail), width=width, initial_indent=indent, subsequent_indent=indent))
    return "\n".join(lines)
