"""The seed paper's claims as tests that can fail, read against baselines from the same store.

Bonheme & Grzes, "How do Variational Autoencoders Learn? Insights from
Representational Similarity" (arXiv 2205.08399). Each finding is one row:
``finding`` (name), ``value`` (its number, NaN without data), ``verdict``
(one of four words, see below),
``definition`` (how the number is computed and when it holds), ``detail``
(the numbers behind it), ``ci_low`` / ``ci_high`` (95 % bootstrap interval
of the value, NaN where none) and ``n`` (independent units behind it: runs
or model pairs).

Baselines. Step 0 is the initial state of a run (its weights before any
update). It is recorded by every study but never counted as a learned
state: it is the baseline that says what architecture and input statistics
give without learning. ``baseline_table`` puts, per layer, the similarity of
untrained networks of different seeds, each run's initial-to-final
similarity and the trained agreements side by side.

Claims (the paper's numbering; claim 4 is a property of the metrics and
lives in :mod:`vaesim.similarity.diagnostics`, not among the verdicts):

1. Encoder layers settle before decoder layers (paired test over runs).
2. The encoder trunk agrees across strengths / objectives beyond the
   untrained cross-seed baseline, and more than the mean/variance heads.
3. CKA(mean, sampled) tracks posterior collapse: it falls as the number of
   passive latent dimensions grows (objectives that push towards the prior).

Verdicts use four words and nothing else:

- ``holds``: the test passes and its interval lies on the claim's side of the null;
- ``opposite holds``: the interval lies entirely on the other side;
- ``inconclusive (<reason>)``: the data exist but do not decide; the reason is
  one of ``interval contains the null``, ``test not significant``,
  ``ties/grid`` (the paired test's best achievable p for the number of runs
  and ties, printed beside it, cannot pass) or ``ceiling`` (the layers that
  would decide sit at the metric's ceiling or under the noise floor);
- ``not enough data``: the store lacks what the test needs (runs, seeds,
  checkpoints, a baseline).

An interval that contains the null is never read as "the claim fails".

Every function here is pure: pandas tables in, pandas tables out.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from scipy import stats

from vaesim.report import layers as L
from vaesim.report.statistics import (
    bootstrap_groups,
    clustered_spearman,
    paired_greater,
    paired_greater_floor,
    seed_bootstrap,
)
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
OPPOSITE_HOLDS = "opposite holds"
INCONCLUSIVE = "inconclusive"
NOT_ENOUGH_DATA = "not enough data"
VERDICT_WORDS = (HOLDS, OPPOSITE_HOLDS, INCONCLUSIVE, NOT_ENOUGH_DATA)
# why an ``inconclusive`` verdict did not decide
NULL_INSIDE = "interval contains the null"
NOT_SIGNIFICANT = "test not significant"
TIES_OR_GRID = "ties/grid"
CEILING = "ceiling"
FINDING_COLUMNS = ("finding", "value", "verdict", "definition", "detail", "ci_low", "ci_high", "n")

INITIAL_STEP = 0  # the initial weights: a baseline, never a learned state
SETTLE_PROGRESS = 0.9  # claim 1: "settled" = this fraction of the way from the metric's unrelated level to 1
CONVERGENCE_THRESHOLD = 0.9  # claim 1: the settle threshold when the store has no untrained cross-seed rows
MIN_CHECKPOINTS = 3  # claim 1: learned checkpoints a run needs (final included, step 0 excluded)
MIN_RUNS_FOR_PAIRED_TEST = 5  # claim 1: a one-sided signed-rank test cannot reach p < 0.05 with fewer
MIN_PAIRS_FOR_AGREEMENT = 3  # claim 2: model pairs at the final step
MIN_SEEDS_FOR_BASELINE = 3  # claim 2: seeds behind the untrained baseline (one pair has no spread)
SIGNIFICANCE = 0.05
MIN_RUNS_FOR_CORRELATION = 5  # claim 3
PASSIVE_VARIANCE = 0.01  # claim 3: Burda et al. (2016): dimension u is active if Cov_x(E[z_u|x]) > 0.01
# Objectives whose swept parameter pushes the posterior towards the prior (claim 3 applies):
# beta-VAE's beta; Annealed VAE's capacity C_max (a smaller capacity pushes harder).
COLLAPSE_OBJECTIVES = {"beta_vae": "beta", "annealed_vae": "-C_max"}

# Sign that turns an objective's main parameter into a regularisation strength
# (larger = stronger pressure towards the prior). Annealed VAE's C_max is a KL
# capacity: a larger capacity means a weaker regulariser.
STRENGTH_SIGN = {"annealed_vae": -1.0}


def _row(finding: str, value: float, verdict: str, definition: str, detail: str,
         ci: tuple[float, float] = (math.nan, math.nan), n: int = 0) -> dict:
    return dict(finding=finding, value=float(value), verdict=verdict, definition=definition, detail=detail,
                ci_low=float(ci[0]), ci_high=float(ci[1]), n=int(n))


def inconclusive(reason: str) -> str:
    """``inconclusive (reason)``: the verdict of data that exist but do not decide."""
    return f"{INCONCLUSIVE} ({reason})"


def verdict_word(verdict: str) -> str:
    """The verdict's word without its reason: ``inconclusive (ties/grid)`` -> ``inconclusive``."""
    word = str(verdict).split(" (", 1)[0]
    if word not in VERDICT_WORDS:
        raise ValueError(f"verdict {verdict!r}: expected one of {list(VERDICT_WORDS)}, optionally followed by "
                         f"' (reason)'")
    return word


def interval_verdict(low: float, high: float) -> str:
    """Verdict of a claim that a quantity is > 0, from its interval [low, high]."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return NOT_ENOUGH_DATA
    if _above_zero(low):
        return HOLDS
    if _above_zero(-high):
        return OPPOSITE_HOLDS
    return inconclusive(NULL_INSIDE)


def _above_zero(value: float) -> bool:
    """``value > 0`` beyond float rounding (sums of equal scores can leave 1e-17)."""
    return bool(value > 1e-12)


def _ci_text(low: float, high: float) -> str:
    return f"95% CI [{low:+.3f}, {high:+.3f}]" if np.isfinite(low) and np.isfinite(high) else "no CI"


# --------------------------------------------------------------------------- trajectories
def settle_threshold(results: pd.DataFrame, *, metric: str = "cka") -> tuple[float, str]:
    """The metric's own "settled" threshold, from the untrained baseline stored beside its scores.

    Metrics differ in scale: Procrustes similarity of unrelated representations
    sits far above CKA's, so one constant means different things for each.
    The metric's unrelated level u is the lowest mean score of any layer
    between untrained networks of different seeds (step-0 ``seeds`` rows; a
    layer downstream of independent noise shares nothing across networks);
    the threshold is u + :data:`SETTLE_PROGRESS` * (1 - u), the same fraction
    of the way from "unrelated" to "identical" on every metric. Without such
    rows: :data:`CONVERGENCE_THRESHOLD`. Returns (threshold, how it was set).
    """
    rows = _same_layer_rows(results, "seeds", metric, "initial")
    rows = rows[rows["a_layer"].map(lambda name: L.is_encoder(name) or L.is_decoder(name)).astype(bool)]
    if rows.empty:
        return CONVERGENCE_THRESHOLD, (f"{CONVERGENCE_THRESHOLD} (constant: the store has no untrained cross-seed "
                                       f"rows of {metric!r} to set it from)")
    by_layer = rows.groupby("a_layer")["score"].mean()
    unrelated = float(by_layer.min())
    threshold = unrelated + SETTLE_PROGRESS * (1.0 - unrelated)
    return threshold, (f"{threshold:.3f} = u + {SETTLE_PROGRESS} (1 - u), u = {unrelated:.3f} the lowest untrained "
                       f"cross-seed {metric.upper()} of any layer ({by_layer.idxmin()})")


def convergence_table(
    results: pd.DataFrame, *, metric: str = "cka", threshold: float | None = None
) -> pd.DataFrame:
    """How and when each layer of each run reaches its final state (claim 1 of the paper).

    Uses ``within_run`` rows comparing a layer at step t with the same layer at
    the run's final step T (score(T, T) = 1). ``threshold``: None sets it from
    the store's baselines (:func:`settle_threshold`). Per (run, layer),
    ``input`` and non-model layers excluded:

    - ``initial_score``: score(0, T), the layer's similarity between its
      initial and final state (NaN when step 0 was not recorded);
    - ``changed``: ``initial_score < threshold``: training moved the layer
      (a layer already within the threshold at initialisation is "not changed
      by training", not "learned early"); NaN when step 0 is missing;
    - ``settled_step``: the first learned (non-initial) checkpoint from which
      the score stays >= ``threshold`` at every later checkpoint;
      ``settled_fraction`` = settled_step / T, in (0, 1];
    - ``progress_auc``: area under (s(t) - s(0)) / (1 - s(0)) over t / T in
      [0, 1] (trapezoids through the checkpoints; NaN without step 0 or when
      s(0) = 1): 1 = the layer reached its final state at once, 0.5 = linearly;
    - ``n_checkpoints``: learned checkpoints (final included);
    - ``noise_floor``: the score of the layer at the final step with itself
      recorded with a second eps (``noise_floor`` rows; NaN for layers
      upstream of the sampling noise or without such rows);
      ``noise_floor_min``: the lowest such score over the learned checkpoints
      where the store measured one (early checkpoints have a wider posterior
      and a lower floor), ``noise_floor_steps``: how many were measured; and
      ``noise_limited`` = noise_floor_min < ``threshold``: sampling noise
      alone can keep the layer's curve below the threshold, so its settle
      point says nothing about learning.
    """
    check_results(results)
    if threshold is None:
        threshold, _ = settle_threshold(results, metric=metric)
    finals = final_steps(results)
    rows = select(results, comparison="within_run", metric=metric)
    rows = rows[(rows["a_run"] == rows["b_run"]) & (rows["a_layer"] == rows["b_layer"])]
    rows = both_orientations(rows)
    rows = rows[rows["b_step"] == rows["b_run"].map(finals)]
    rows = rows[rows["a_layer"].map(lambda name: L.is_encoder(name) or L.is_decoder(name)).astype(bool)]
    floors = noise_floors(results, metric=metric)
    out = []
    for (run, layer), group in rows.groupby(["a_run", "a_layer"], sort=False):
        final = int(finals[run])
        curve = group.groupby("a_step")["score"].mean()
        curve.loc[final] = 1.0  # a state is identical to itself
        curve = curve.sort_index()
        initial = float(curve.get(INITIAL_STEP, math.nan))
        learned = curve[curve.index > INITIAL_STEP]
        settled = final
        for step, score in zip(learned.index[::-1], learned.to_numpy()[::-1]):
            if score < threshold:
                break
            settled = int(step)
        first = group.iloc[0]
        measured = [floors[(run, layer, int(step))] for step in learned.index if (run, layer, int(step)) in floors]
        out.append(dict(
            run=run, objective=first["a_objective"], param=first["a_param"], seed=first["a_seed"], layer=layer,
            group=L.layer_group(layer), final_step=final, initial_score=initial,
            changed=(initial < threshold) if np.isfinite(initial) else math.nan,
            settled_step=settled, settled_fraction=settled / final if final > 0 else math.nan,
            progress_auc=_progress_auc(curve, final), n_checkpoints=len(learned),
            noise_floor=floors.get((run, layer, final), math.nan),
            noise_floor_min=min(measured) if measured else math.nan, noise_floor_steps=len(measured),
        ))
    columns = ["run", "objective", "param", "seed", "layer", "group", "final_step", "initial_score", "changed",
               "settled_step", "settled_fraction", "progress_auc", "n_checkpoints", "noise_floor", "noise_floor_min",
               "noise_floor_steps", "noise_limited"]
    table = pd.DataFrame(out, columns=[c for c in columns if c != "noise_limited"])
    table["noise_limited"] = table["noise_floor_min"] < threshold
    return table[columns]


def noise_floors(results: pd.DataFrame, *, metric: str = "cka") -> dict[tuple[str, str, int], float]:
    """{(run, layer, step): score of a noise-driven layer with itself under a second eps}, from ``noise_floor`` rows.

    One entry per checkpoint the store recorded twice (today's plans record
    only the final one; a store that records more is read at each).
    """
    rows = select(results, comparison="noise_floor", metric=metric)
    rows = rows[(rows["a_layer"] == rows["b_layer"]) & (rows["a_step"] == rows["b_step"])]
    floors = rows.groupby(["a_run", "a_layer", "a_step"])["score"].mean()
    return {(run, layer, int(step)): float(score) for (run, layer, step), score in floors.items()}


def _progress_auc(curve: pd.Series, final: int) -> float:
    if INITIAL_STEP not in curve.index or final <= 0:
        return math.nan
    start = float(curve.loc[INITIAL_STEP])
    if not start < 1.0 - 1e-12:
        return math.nan
    progress = (curve.to_numpy() - start) / (1.0 - start)
    time = curve.index.to_numpy(dtype=np.float64) / final
    return float(np.sum((time[1:] - time[:-1]) * (progress[1:] + progress[:-1]) / 2.0))


def claim_encoder_first(results: pd.DataFrame, *, metric: str = "cka", threshold: float | None = None) -> dict:
    """Claim 1: encoder layers settle before decoder layers (paired over runs).

    ``threshold``: None sets it per metric from the store's untrained
    baseline (:func:`settle_threshold`).
    """
    if threshold is None:
        threshold, threshold_text = settle_threshold(results, metric=metric)
    else:
        threshold_text = f"{threshold} (given)"
    definition = (
        f"Per run and layer: the settle point is the first learned checkpoint t (step 0, the initial weights, "
        f"never counts) from which {metric.upper()}(layer at t, same layer at the final step T) stays >= "
        f"{threshold:.3f} at every later checkpoint, as a fraction t/T. Layers with {metric.upper()}(initial, final) "
        f">= {threshold:.3f} were not changed by training and are left out. Per run: mean settle point of the changed "
        f"encoder.* and of the changed decoder.* layers; d = decoder - encoder. Holds if d > 0 in a one-sided "
        f"Wilcoxon signed-rank test over runs (p < {SIGNIFICANCE}; tied runs ranked as zeros, Pratt) and the 95% "
        f"bootstrap CI of the mean d is above 0; opposite holds if the same holds for -d; inconclusive (ties/grid) "
        f"when the best p the test can reach with this many runs and ties is >= {SIGNIFICANCE} (needs >= "
        f"{MIN_RUNS_FOR_PAIRED_TEST} runs with >= {MIN_CHECKPOINTS} learned "
        f"checkpoints, a recorded initial state and changed layers on both sides). Curves whose noise floor (the "
        f"layer recorded twice with two eps, at every checkpoint the store measured it) is below the threshold are "
        f"left out. Threshold for {metric.upper()}: {threshold_text}. Value = mean d."
    )
    name = "claim 1: encoder layers settle before decoder layers"
    table = convergence_table(results, metric=metric, threshold=threshold)
    table = table[table["n_checkpoints"] >= MIN_CHECKPOINTS]
    if table.empty:
        return _row(name, math.nan, NOT_ENOUGH_DATA, definition,
                    f"no run with >= {MIN_CHECKPOINTS} learned checkpoints in 'within_run' rows of metric {metric!r}")
    no_baseline = table["changed"].isna()
    if no_baseline.all():
        return _row(name, math.nan, NOT_ENOUGH_DATA, definition,
                    "no run recorded its initial state (step 0), so no layer can be told apart from one that "
                    "training did not change; rerun with a spec that records step 0")
    known = table[~no_baseline]
    unchanged = known[~known["changed"].astype(bool)]
    changed = known[known["changed"].astype(bool)]
    unchanged_text = _unchanged_text(unchanged, known)
    limited = changed[changed["noise_limited"]]
    changed = changed[~changed["noise_limited"]]
    if len(limited):
        counts = limited.groupby("layer").size()
        unchanged_text += (
            f" {len(limited)} changed curve(s) are limited by sampling noise (the layer recorded twice with two "
            f"eps scores < {threshold:.3f}) and are left out too: "
            + ", ".join(f"{layer} ({counts[layer]})" for layer in L.order_layers(counts.index)) + ".")
    unchanged_text += _floor_text(known)
    per_run = changed.groupby(["run", "group"])["settled_fraction"].mean().unstack()
    both = per_run.dropna(subset=[g for g in ("encoder", "decoder") if g in per_run.columns]) \
        if {"encoder", "decoder"} <= set(per_run.columns) else per_run.iloc[0:0]
    if len(both) < MIN_RUNS_FOR_PAIRED_TEST:
        # the runs exist, but the curves that would decide are at the ceiling (not changed) or under the noise floor
        runs_known = known["run"].nunique()
        verdict = inconclusive(CEILING) if runs_known >= MIN_RUNS_FOR_PAIRED_TEST else NOT_ENOUGH_DATA
        return _row(name, math.nan, verdict, definition,
                    f"{len(both)} of {runs_known} run(s) have layers changed by training in both the encoder and "
                    f"the decoder; needs >= {MIN_RUNS_FOR_PAIRED_TEST}. {unchanged_text}", n=len(both))
    differences = (both["decoder"] - both["encoder"]).to_numpy()
    p_value = paired_greater(differences)
    p_opposite = paired_greater(-differences)
    p_floor = paired_greater_floor(differences)
    estimate, low, high = bootstrap_groups([differences], np.mean)
    verdict = _paired_verdict(p_value, p_opposite, p_floor, low, high)
    ties = int((differences == 0).sum())
    auc = changed.groupby("group")["progress_auc"].mean()
    detail = (
        f"settle point: encoder median {both['encoder'].median():.2f}, decoder median {both['decoder'].median():.2f} "
        f"of training; mean d = {estimate:+.3f} ({_ci_text(low, high)}), Wilcoxon one-sided p = {p_value:.3g} "
        f"(opposite direction {p_opposite:.3g}); best achievable p with {len(differences)} runs and {ties} tie(s) "
        f"= {p_floor:.3g}{' (cannot pass ' + str(SIGNIFICANCE) + ')' if p_floor >= SIGNIFICANCE else ''}; "
        f"encoder first in {int((differences > 0).sum())}/{len(differences)} runs, tied in {ties}. Learned "
        f"checkpoints per run: {_grid_text(table)}. Progress AUC (1 = settled at once): encoder "
        f"{auc.get('encoder', math.nan):.3f}, decoder {auc.get('decoder', math.nan):.3f}. {unchanged_text}"
    )
    return _row(name, estimate, verdict, definition, detail, (low, high), len(differences))


def _paired_verdict(p_value: float, p_opposite: float, p_floor: float, low: float, high: float) -> str:
    """Verdict of a one-sided paired test with its bootstrap interval of the mean difference.

    ``inconclusive (ties/grid)`` when the best achievable p (:func:`paired_greater_floor`)
    cannot pass: the verdict is then set by the number of runs and ties, not the data.
    """
    if p_floor >= SIGNIFICANCE:
        return inconclusive(TIES_OR_GRID)
    if p_value < SIGNIFICANCE and _above_zero(low):
        return HOLDS
    if p_opposite < SIGNIFICANCE and _above_zero(-high):
        return OPPOSITE_HOLDS
    if _above_zero(low) or _above_zero(-high):
        return inconclusive(NOT_SIGNIFICANT)
    return inconclusive(NULL_INSIDE)


def _floor_text(known: pd.DataFrame) -> str:
    """Where the noise floor was measured: at every learned checkpoint, or only at some (say so)."""
    noisy = known[known["noise_floor_steps"] > 0]
    if noisy.empty:
        return ""
    partial = noisy[noisy["noise_floor_steps"] < noisy["n_checkpoints"]]
    if partial.empty:
        return " Noise floor measured at every learned checkpoint."
    steps = sorted(set(partial["noise_floor_steps"]))
    return (f" Noise floor measured at {'/'.join(map(str, steps))} of {partial['n_checkpoints'].max()} learned "
            f"checkpoints for {len(partial)} curve(s): earlier checkpoints, whose posterior is wider, may sit "
            f"under a lower floor than the one measured.")


def _grid_text(table: pd.DataFrame) -> str:
    counts = table.groupby("run")["n_checkpoints"].max()
    return f"{counts.min()}" if counts.min() == counts.max() else f"{counts.min()}-{counts.max()}"


def _unchanged_text(unchanged: pd.DataFrame, known: pd.DataFrame) -> str:
    if unchanged.empty:
        return "Every layer was changed by training."
    counts = unchanged.groupby("layer").size()
    names = ", ".join(f"{layer} ({counts[layer]})" for layer in L.order_layers(counts.index))
    return (f"{len(unchanged)} of {len(known)} (run, layer) curves were not changed by training and are left "
            f"out: {names}.")


# --------------------------------------------------------------------------- baselines
def _same_layer_rows(results: pd.DataFrame, comparison: str, metric: str, step: str) -> pd.DataFrame:
    rows = select(results, comparison=comparison, metric=metric)
    rows = rows[rows["a_layer"] == rows["b_layer"]]
    if step == "final":
        return at_final_step(rows, final_steps(results))
    return rows[(rows["a_step"] == INITIAL_STEP) & (rows["b_step"] == INITIAL_STEP)]


def baseline_table(results: pd.DataFrame, *, metric: str = "cka") -> pd.DataFrame:
    """Per layer: what training adds to what architecture and input give without learning.

    Columns (means over model pairs or runs; NaN where the store has no rows):
    ``untrained_seeds`` (same layer of untrained networks of different seeds,
    step 0 ``seeds`` rows), ``trained_seeds`` (same, at the final step),
    ``initial_to_final`` (each run's layer at step 0 against its final state),
    ``noise_floor`` (a noise-driven layer's final state against itself
    recorded with a second sampling eps),
    ``params_initial`` / ``objectives_initial`` (the ``params`` /
    ``objectives`` pairs at step 0: runs that share a seed share their
    initial weights, so these are 1 for layers upstream of any noise), and
    ``params_final`` / ``objectives_final``.
    """
    check_results(results)
    columns = {}
    for label, comparison, step in (("untrained_seeds", "seeds", "initial"), ("trained_seeds", "seeds", "final"),
                                    ("params_initial", "params", "initial"), ("params_final", "params", "final"),
                                    ("objectives_initial", "objectives", "initial"),
                                    ("objectives_final", "objectives", "final")):
        columns[label] = _same_layer_rows(results, comparison, metric, step).groupby("a_layer")["score"].mean()
    trajectories = convergence_table(results, metric=metric)
    columns["initial_to_final"] = trajectories.groupby("layer")["initial_score"].mean()
    columns["noise_floor"] = trajectories.groupby("layer")["noise_floor"].mean()
    table = pd.DataFrame(columns)
    order = [c for c in ("untrained_seeds", "trained_seeds", "initial_to_final", "noise_floor", "params_initial",
                         "params_final", "objectives_initial", "objectives_final")]
    table = table.reindex(columns=order)
    table = table.loc[[name for name in L.order_layers(table.index) if name in table.index]]
    out = table.rename_axis("layer").reset_index()
    out.insert(1, "group", out["layer"].map(L.layer_group))
    return out


# --------------------------------------------------------------------------- claim 2
def agreement_by_layer(results: pd.DataFrame, *, comparison: str = "params", metric: str = "cka") -> pd.DataFrame:
    """Mean similarity of each layer with itself across models, at the final step (claim 2).

    Uses rows of ``comparison`` ("params": same objective, different
    regularisation strengths; "objectives": different objectives; "seeds")
    where a_layer == b_layer and both sides are at their run's final step.
    Returns layer (input-to-output order), group, mean, std, n_pairs.
    """
    check_results(results)
    rows = _same_layer_rows(results, comparison, metric, "final")
    stats_by_layer = rows.groupby("a_layer")["score"].agg(["mean", "std", "count"])
    order = [name for name in L.order_layers(stats_by_layer.index) if name in stats_by_layer.index]
    stats_by_layer = stats_by_layer.loc[order].rename(columns={"count": "n_pairs"})
    out = stats_by_layer.reset_index().rename(columns={"a_layer": "layer"})
    out.insert(1, "group", out["layer"].map(L.layer_group))
    return out


def _seed_pair_table(rows: pd.DataFrame, layers: list[str], *, by: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seeds_a, seeds_b, scores (pairs, layers)) of same-layer rows, one pair per two runs (``by="run"``)
    or per two seeds (``by="seed"``: duplicates of one seed pair, e.g. the same two initial networks
    compared once per strength, count once)."""
    if rows.empty:
        return np.empty(0), np.empty(0), np.empty((0, len(layers)))
    a, b = rows[f"a_{by}"].to_numpy(), rows[f"b_{by}"].to_numpy()
    keys = [tuple(sorted(p)) for p in zip(a, b)]
    seeds = dict(zip(keys, [tuple(sorted(p)) for p in zip(rows["a_seed"], rows["b_seed"])]))
    frame = rows.assign(pair=keys).pivot_table(index="pair", columns="a_layer", values="score", aggfunc="mean")
    frame = frame.reindex(columns=layers)
    pair_seeds = np.array([seeds[k] for k in frame.index])
    return pair_seeds[:, 0], pair_seeds[:, 1], frame.to_numpy(dtype=np.float64)


def claim_encoder_agreement(results: pd.DataFrame, *, comparison: str = "params", metric: str = "cka",
                            threshold: float | None = None) -> dict:
    """Claim 2: the encoder trunk agrees across models, read against like-for-like baselines.

    Three contrasts on the changed trunk layers (k of them) and the heads,
    each with a 95% CI from resampling seeds (:func:`seed_bootstrap`):

    - beyond untrained: agreement across ``comparison`` - agreement of
      untrained networks of different seeds (every seed pair at step 0);
    - like for like: agreement across ``comparison`` - agreement of trained
      networks of different seeds at the same setting (``seeds`` rows at the
      final step);
    - heads less: (trunk - heads) across ``comparison`` - (trunk - heads) of
      untrained networks of different seeds: the architecture alone makes the
      trunk agree more than the heads, so only a larger gap is learned.
    """
    across = {"params": "regularisation strengths", "objectives": "objectives", "seeds": "seeds"}[comparison]
    if threshold is None:
        threshold, _ = settle_threshold(results, metric=metric)
    definition = (
        f"Trunk = encoder.conv*/encoder.fc that training changed ({metric.upper()}(initial, final) < "
        f"{threshold:.3f}, the metric's settle threshold, in the median run; runs sharing a seed share their "
        f"initial weights, so a layer that did not move agrees trivially), heads = encoder.mean/logvar/variance. A = {metric.upper()} between the same layer of two "
        f"models trained with different {across} (comparison '{comparison}', final step). Baselines: U = untrained "
        f"networks of different seeds (every seed pair, step 0); T = trained networks of different seeds at the "
        f"same settings (final step). Value = trunk (A - U). Holds if the 95% CIs of trunk (A - U) and of "
        f"[(trunk - heads) of A] - [(trunk - heads) of U] are above 0 and the CI of trunk (A - T) is not below 0; "
        f"opposite holds if any of the three CIs is below 0; CIs resample seeds (pairs sharing a seed are not "
        f"independent); needs >= {MIN_SEEDS_FOR_BASELINE} seeds with step-0 cross-seed rows and >= "
        f"{MIN_PAIRS_FOR_AGREEMENT} model pairs."
    )
    name = f"claim 2: encoder trunk agrees across {across} beyond the untrained baseline, mean/variance layers less"
    final_rows = _same_layer_rows(results, comparison, metric, "final")
    baseline_rows = _same_layer_rows(results, "seeds", metric, "initial")
    trunk = [layer for layer in L.order_layers(final_rows["a_layer"]) if L.is_trunk(layer)]
    heads = [layer for layer in L.HEAD_LAYERS if layer in set(final_rows["a_layer"])]
    n_pairs = len({tuple(sorted(p)) for p in zip(final_rows["a_run"], final_rows["b_run"])})
    if not trunk or not heads or n_pairs < MIN_PAIRS_FOR_AGREEMENT:
        return _row(name, math.nan, NOT_ENOUGH_DATA, definition,
                    f"{n_pairs} '{comparison}' model pair(s) of metric {metric!r} at the final step with "
                    f"{len(trunk)} trunk and {len(heads)} head layer(s); needs >= {MIN_PAIRS_FOR_AGREEMENT} pairs "
                    f"and both groups", n=n_pairs)
    baseline_layers = set(baseline_rows["a_layer"])
    if not set(trunk) & baseline_layers:
        return _row(name, math.nan, NOT_ENOUGH_DATA, definition,
                    "no untrained cross-seed baseline: the store has no 'seeds' rows at step 0 (record the initial "
                    "state and compare seeds at step 0)", n=n_pairs)
    initial = convergence_table(results, metric=metric, threshold=threshold).groupby("layer")["initial_score"].median()
    changed = [layer for layer in trunk if layer in baseline_layers and initial.get(layer, math.nan) < threshold]
    not_changed = [layer for layer in trunk if layer not in changed]
    if not changed:
        return _row(name, math.nan, inconclusive(CEILING), definition,
                    f"no trunk layer was changed by training ({', '.join(f'{layer} {initial.get(layer, math.nan):.3f}' for layer in trunk)} "
                    f"initial-to-final); their agreement is that of the initial weights", n=n_pairs)
    layers = changed + heads
    k = len(changed)
    untrained = _seed_pair_table(baseline_rows, layers, by="seed")
    untrained_seeds = sorted(set(untrained[0].tolist()) | set(untrained[1].tolist()))
    if len(untrained_seeds) < MIN_SEEDS_FOR_BASELINE:
        return _row(name, math.nan, NOT_ENOUGH_DATA, definition,
                    f"the untrained baseline comes from {len(untrained[2])} seed pair(s) of {len(untrained_seeds)} "
                    f"seed(s): its spread over seeds is unknown, and a single pair is not an exact baseline (28 "
                    f"untrained pairs of one architecture spread by SD 0.015 in CKA); needs >= "
                    f"{MIN_SEEDS_FOR_BASELINE} seeds with step-0 'seeds' rows", n=n_pairs)
    involved = set(final_rows["a_objective"]) | set(final_rows["b_objective"])
    trained_rows = _same_layer_rows(results, "seeds", metric, "final")
    trained_rows = trained_rows[trained_rows["a_objective"].isin(involved)]
    if trained_rows.empty:
        return _row(name, math.nan, NOT_ENOUGH_DATA, definition,
                    "no trained cross-seed agreement at the same settings ('seeds' rows at the final step): "
                    "the like-for-like baseline is missing", n=n_pairs)
    across_pairs = _seed_pair_table(final_rows, layers, by="run")
    trained = _seed_pair_table(trained_rows, layers, by="run")
    groups = [across_pairs, untrained, trained]

    def trunk_mean(means: np.ndarray) -> float:
        return float(np.nanmean(means[:k]))

    def gap(means: np.ndarray) -> float:
        return trunk_mean(means) - float(np.nanmean(means[k:]))

    contrasts = {
        "beyond untrained": lambda a, u, t: trunk_mean(a) - trunk_mean(u),
        "like for like": lambda a, u, t: trunk_mean(a) - trunk_mean(t),
        "heads less": lambda a, u, t: gap(a) - gap(u),
    }
    estimates = {label: seed_bootstrap(groups, fn) for label, fn in contrasts.items()}
    verdicts = {label: interval_verdict(low, high) for label, (_, low, high, _) in estimates.items()}
    opposite = [label for label, v in verdicts.items() if v == OPPOSITE_HOLDS]
    if opposite:
        verdict = OPPOSITE_HOLDS
    elif verdicts["beyond untrained"] == HOLDS and verdicts["heads less"] == HOLDS:
        verdict = HOLDS
    else:
        verdict = inconclusive(NULL_INSIDE)
    a_means, u_means, t_means = (np.nanmean(g[2], axis=0) for g in groups)
    per_layer = ", ".join(f"{layer} A {a_means[i]:.3f} / T {t_means[i]:.3f} / U {u_means[i]:.3f}"
                          for i, layer in enumerate(changed))
    contrast_text = "; ".join(f"{label} {e:+.3f} ({_ci_text(low, high)}: {verdicts[label]})"
                              for label, (e, low, high, _) in estimates.items())
    n_draws = min(e[3] for e in estimates.values())
    shared = _same_layer_rows(results, comparison, metric, "initial")
    shared_trunk = shared[shared["a_layer"].isin(trunk)]["score"]
    shared_text = (f" At step 0 the same '{comparison}' pairs already score {shared_trunk.mean():.3f} on the trunk "
                   f"(shared initial weights)." if len(shared_trunk) else "")
    detail = (
        f"{contrast_text}. Per trunk layer (A across {across}, T trained cross-seed, U untrained cross-seed): "
        f"{per_layer}; heads A {np.nanmean(a_means[k:]):.3f} / U {np.nanmean(u_means[k:]):.3f}. "
        f"{len(across_pairs[2])} model pair(s), {len(trained[2])} trained and {len(untrained[2])} untrained seed "
        f"pair(s) over {len(untrained_seeds)} seeds; {n_draws} valid seed-resampled draws."
        + (f" Opposite for: {', '.join(opposite)}." if opposite else "")
        + (f" Not changed by training (left out): {', '.join(not_changed)}." if not_changed else "")
        + shared_text
    )
    estimate, low, high, _ = estimates["beyond untrained"]
    return _row(name, estimate, verdict, definition, detail, (low, high), len(untrained_seeds))


# --------------------------------------------------------------------------- claim 3
def regularisation_strength(objective: str, param: float) -> float:
    """Main parameter turned into a strength that grows with the pressure towards the prior."""
    return STRENGTH_SIGN.get(objective, 1.0) * float(param)


def _mean_sample_rows(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = select(results, comparison="within_run", metric=metric)
    pair = {L.MEAN_LAYER, L.SAMPLE_LAYER}
    return rows[(rows["a_run"] == rows["b_run"]) & (rows["a_step"] == rows["b_step"])
                & (rows["a_layer"] != rows["b_layer"]) & rows["a_layer"].isin(pair) & rows["b_layer"].isin(pair)]


def mean_sample_similarity(results: pd.DataFrame, *, metric: str = "cka") -> pd.DataFrame:
    """Similarity of the mean and sampled representations of each run at its final step.

    From ``within_run`` rows pairing encoder.mean with encoder.sample of the
    same run, both at the final step. Returns run, objective, param_name,
    param, seed, strength, score.
    """
    check_results(results)
    rows = at_final_step(_mean_sample_rows(results, metric), final_steps(results))
    scores = rows.groupby("a_run")["score"].mean().rename("score")
    info = run_info(results).set_index("run")
    out = info.join(scores, how="inner").rename_axis("run").reset_index()
    out["strength"] = [regularisation_strength(o, p) for o, p in zip(out["objective"], out["param"])]
    return out[["run", "objective", "param_name", "param", "seed", "strength", "score"]]


def passive_dimensions(latents: pd.DataFrame, *, threshold: float = PASSIVE_VARIANCE) -> pd.DataFrame:
    """Passive latent dimensions per (run, step) from the ``latents`` table.

    A dimension u is active when Cov_x(E_q[z_u | x]) > ``threshold`` over the
    probe set (Burda et al. 2016, "Importance Weighted Autoencoders", Sec. 5.2),
    i.e. its ``mean_variance`` column; passive otherwise. Returns run, step,
    passive_dims, latent_dim.
    """
    required = {"run_id", "step", "dim", "mean_variance"}
    missing = required - set(latents.columns)
    if missing:
        raise ValueError(f"latents: missing columns {sorted(missing)}; expected the latents.parquet table of a "
                         f"study (columns run_id, step, dim, mean_variance, ...)")
    grouped = latents.assign(passive=latents["mean_variance"] <= threshold).groupby(["run_id", "step"])
    out = grouped.agg(passive_dims=("passive", "sum"), latent_dim=("dim", "nunique")).reset_index()
    return out.rename(columns={"run_id": "run"})


def collapse_table(results: pd.DataFrame, latents: pd.DataFrame, *, metric: str = "cka") -> pd.DataFrame:
    """CKA(mean, sampled) beside the number of passive dimensions, per run and learned checkpoint.

    Returns run, objective, param, seed, step, score, passive_dims,
    latent_dim; step 0 (initial weights) is left out.
    """
    check_results(results)
    rows = _mean_sample_rows(results, metric)
    scores = rows.groupby(["a_run", "a_step"])["score"].mean().rename("score").reset_index()
    scores = scores.rename(columns={"a_run": "run", "a_step": "step"})
    merged = scores.merge(passive_dimensions(latents), on=["run", "step"], how="inner")
    merged = merged.merge(run_info(results)[["run", "objective", "param", "seed"]], on="run", how="left")
    merged = merged[merged["step"] > INITIAL_STEP]
    return merged[["run", "objective", "param", "seed", "step", "score", "passive_dims", "latent_dim"]]


def claims_posterior_collapse(results: pd.DataFrame, latents: pd.DataFrame | None, *,
                              metric: str = "cka") -> list[dict]:
    """Claim 3, directly: CKA(mean, sampled) falls as latent dimensions become passive.

    One row per objective in the store whose parameter pushes the posterior
    towards the prior (:data:`COLLAPSE_OBJECTIVES`); the others get no row
    (the claim says nothing about them). A store with none of them gets one
    ``not enough data`` row.
    """
    definition = (
        f"Over the learned checkpoints (step 0 excluded) of every run of the objective: Spearman's rho between "
        f"{metric.upper()}(encoder.mean, encoder.sample) at that checkpoint (within-run rows) and the number of "
        f"passive latent dimensions at the same checkpoint (Cov_x(E[z_u|x]) <= {PASSIVE_VARIANCE} on the probe "
        f"set, Burda et al. 2016). Holds if the 95% CI of rho from resampling whole runs is below 0, opposite "
        f"holds if it is above 0, inconclusive if it contains 0 (needs "
        f">= {MIN_RUNS_FOR_CORRELATION} runs and a varying number of passive dimensions). Applies to objectives "
        f"whose parameter pushes towards the prior: "
        + ", ".join(f"{name} ({param})" for name, param in COLLAPSE_OBJECTIVES.items()) + "."
    )
    check_results(results)
    objectives = sorted(set(run_info(results)["objective"]))
    if not objectives:
        return [_row("claim 3: CKA(mean, sampled) falls as dimensions become passive", math.nan, NOT_ENOUGH_DATA,
                     definition, "the results store has no runs")]
    table = None if latents is None else collapse_table(results, latents, metric=metric)
    if not set(objectives) & set(COLLAPSE_OBJECTIVES):
        return [_row("claim 3: CKA(mean, sampled) falls as dimensions become passive", math.nan, NOT_ENOUGH_DATA,
                     definition, f"no run of an objective whose parameter pushes towards the prior (the store has "
                                 f"{', '.join(objectives)})")]
    rows = []
    for objective in objectives:
        name = f"claim 3: CKA(mean, sampled) falls as dimensions become passive [{objective}]"
        if objective not in COLLAPSE_OBJECTIVES:
            # DIP-VAE's lambda penalises the covariance of the mean, beta-TC-VAE's beta the total correlation:
            # neither pushes the whole posterior towards the prior, so the claim is not tested on them
            logger.info("claim 3: %s's parameter does not push towards the prior; no verdict for it", objective)
            continue
        if table is None:
            rows.append(_row(name, math.nan, NOT_ENOUGH_DATA, definition,
                             "no per-checkpoint latent statistics (latents.parquet): rerun the study's extract "
                             "and store stages"))
            continue
        part = table[table["objective"] == objective]
        n_runs = part["run"].nunique()
        if n_runs < MIN_RUNS_FOR_CORRELATION or part["passive_dims"].nunique() < 2 or part["score"].nunique() < 2:
            rows.append(_row(name, math.nan, NOT_ENOUGH_DATA, definition,
                             f"{n_runs} run(s), {len(part)} checkpoints; passive dimensions take the values "
                             f"{sorted(part['passive_dims'].unique().tolist())}: needs >= "
                             f"{MIN_RUNS_FOR_CORRELATION} runs and at least two distinct counts", n=n_runs))
            continue
        rho, low, high = clustered_spearman(part["score"].to_numpy(), part["passive_dims"].to_numpy(),
                                            part["run"].to_numpy())
        verdict = interval_verdict(-high, -low)  # the claim: -rho > 0
        by_count = part.groupby("passive_dims")["score"].mean()
        detail = (
            f"rho = {rho:+.3f} ({_ci_text(low, high)}, runs resampled), {n_runs} runs, {len(part)} checkpoints; "
            f"mean {metric.upper()}(mean, sampled) by passive dimensions: "
            + ", ".join(f"{int(k)}: {v:.3f}" for k, v in by_count.items())
        )
        rows.append(_row(name, rho, verdict, definition, detail, (low, high), n_runs))
    return rows


# --------------------------------------------------------------------------- all
def compute_findings(results: pd.DataFrame, runs: pd.DataFrame | None = None, *,
                     latents: pd.DataFrame | None = None, metric: str = "cka") -> pd.DataFrame:
    """Every finding, one row each (columns :data:`FINDING_COLUMNS`).

    ``results``: the results store (``vaesim.study.load_results``); ``runs``:
    ``runs.parquet`` (one row per run) or None; ``latents``:
    ``latents.parquet`` (per run, checkpoint and latent dimension) or None.
    """
    check_results(results)
    rows = [
        claim_encoder_first(results, metric=metric),
        claim_encoder_agreement(results, comparison="params", metric=metric),
        claim_encoder_agreement(results, comparison="objectives", metric=metric),
        *claims_posterior_collapse(results, latents, metric=metric),
    ]
    findings = pd.DataFrame(rows, columns=list(FINDING_COLUMNS))
    logger.info("findings: %s", dict(zip(findings["finding"], findings["verdict"])))
    return findings


def format_findings(findings: pd.DataFrame, *, width: int = 110) -> str:
    """Findings as a plain-text table for the terminal: verdict, value, finding, then its numbers."""
    import textwrap

    column = max([len("verdict")] + [len(str(v)) for v in findings["verdict"]])
    indent = " " * (column + 13)
    lines = [f"{'verdict':<{column}} {'value':>8}   finding"]
    for row in findings.itertuples(index=False):
        missing = row.value is None or (isinstance(row.value, float) and np.isnan(row.value))
        value = "-" if missing else f"{row.value:+.3f}"
        lines.append(f"{row.verdict:<{column}} {value:>8}   {row.finding}")
        if row.detail:
            lines.append(textwrap.fill(str(row.detail), width=width, initial_indent=indent, subsequent_indent=indent))
    summary = support_summary(findings)
    if summary:
        lines += ["", textwrap.fill(summary, width=width)]
    return "\n".join(lines)


def short_name(finding: str) -> str:
    """``claim 2 (objectives)``, ``claim 3 [beta_vae]``: a finding's name without its statement."""
    finding = str(finding)
    name = finding.split(":")[0]
    if "[" in finding:
        return f"{name} {finding[finding.index('['):]}"
    if " across " in finding:
        return f"{name} ({finding.split(' across ')[1].split(' beyond')[0]})"
    if finding.startswith("beyond the paper: cross-seed ") and " similarity predicts " in finding:
        layer, target = finding[len("beyond the paper: cross-seed "):].split(" similarity predicts ", 1)
        return f"{name} ({layer} -> {target})"
    return name


def support_summary(findings: pd.DataFrame) -> str:
    """One sentence per verdict kind: which claims this study supports, contradicts, or cannot judge."""
    labels = {HOLDS: "This study supports", OPPOSITE_HOLDS: "The opposite holds for",
              INCONCLUSIVE: "It cannot tell (inconclusive)", NOT_ENOUGH_DATA: "It cannot judge (not enough data)"}
    words = findings["verdict"].map(verdict_word)
    parts = []
    for verdict, label in labels.items():
        names = [short_name(name) for name in findings.loc[words == verdict, "finding"]]
        if names:
            parts.append(f"{label}: {', '.join(names)}.")
    return " ".join(parts)
