"""Claim 1 of the seed paper: encoder layers settle before decoder layers.

Per run and layer, the curve CKA(layer at t, same layer at the final step T)
over the recorded checkpoints (``within_run`` rows) says when the layer
reached its final state; :func:`convergence_table` reads it per (run,
layer), :func:`claim_encoder_first` turns it into a verdict with a paired
test over runs. The "settled" threshold is set per metric from the
untrained cross-seed baseline stored beside the scores
(:func:`settle_threshold`); step 0 (the initial weights) is a baseline,
never a learned state.

Pure functions: pandas tables in, pandas tables (or one finding row) out.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from vaesim.report import layers as L
from vaesim.report.statistics import (
    paired_greater,
    paired_greater_floor,
    signed_rank_interval,
)
from vaesim.report.tables import (
    INITIAL_STEP,
    both_orientations,
    check_results,
    final_steps,
    same_layer_rows,
    select,
)
from vaesim.report.verdicts import (
    CEILING,
    HOLDS,
    NOT_ENOUGH_DATA,
    NULL_INSIDE,
    OPPOSITE_HOLDS,
    TIES_OR_GRID,
    above_zero,
    ci_text,
    finding_row,
    inconclusive,
)

logger = logging.getLogger(__name__)

SETTLE_PROGRESS = 0.9  # "settled" = this fraction of the way from the metric's unrelated level to 1
CONVERGENCE_THRESHOLD = 0.9  # the settle threshold when the store has no untrained cross-seed rows
MIN_CHECKPOINTS = 3  # learned checkpoints a run needs (final included, step 0 excluded)
MIN_RUNS_FOR_PAIRED_TEST = 6  # the exact signed-rank test cannot reach p < 0.025 one-sided with fewer (2^-5)
SIGNIFICANCE = 0.05  # two-sided: each direction is tested at SIGNIFICANCE / 2, so false decisions <= 5% in all
ONE_SIDED = SIGNIFICANCE / 2


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
    rows = same_layer_rows(results, "seeds", metric, "initial")
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
      point says nothing about learning;
    - ``half_step`` / ``half_score``: the learned checkpoint before T nearest
      T/2 and the score there (NaN/-1 without one);
    - ``last_step`` / ``last_score``: the last learned checkpoint before T and
      the score there; ``moving_at_end`` = ``last_score < threshold``: the
      layer still changed by more than the threshold allows between its last
      two checkpoints, so its settle point is T only because training
      stopped (right-censored). A curve that settled at 0.6 T and stayed flat
      is not moving at the end, however late 0.6 T is.
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
        before = learned[learned.index < final]
        half = int(before.index[np.argmin(np.abs(before.index.to_numpy() - final / 2))]) if len(before) else -1
        last = int(before.index[-1]) if len(before) else -1
        measured = [floors[(run, layer, int(step))] for step in learned.index if (run, layer, int(step)) in floors]
        out.append(dict(
            run=run, objective=first["a_objective"], param=first["a_param"], seed=first["a_seed"], layer=layer,
            group=L.layer_group(layer), final_step=final, initial_score=initial,
            changed=(initial < threshold) if np.isfinite(initial) else math.nan,
            settled_step=settled, settled_fraction=settled / final if final > 0 else math.nan,
            progress_auc=_progress_auc(curve, final), n_checkpoints=len(learned),
            noise_floor=floors.get((run, layer, final), math.nan),
            noise_floor_min=min(measured) if measured else math.nan, noise_floor_steps=len(measured),
            half_step=half, half_score=float(curve.loc[half]) if half >= 0 else math.nan,
            last_step=last, last_score=float(curve.loc[last]) if last >= 0 else math.nan,
        ))
    columns = ["run", "objective", "param", "seed", "layer", "group", "final_step", "initial_score", "changed",
               "settled_step", "settled_fraction", "progress_auc", "n_checkpoints", "noise_floor", "noise_floor_min",
               "noise_floor_steps", "noise_limited", "half_step", "half_score", "last_step", "last_score",
               "moving_at_end"]
    table = pd.DataFrame(out, columns=[c for c in columns if c not in ("noise_limited", "moving_at_end")])
    table["noise_limited"] = table["noise_floor_min"] < threshold
    table["moving_at_end"] = table["last_score"] < threshold
    return table[columns]


TRAINED_ENOUGH = 0.95  # score(T/2, T) a counted layer reaches when training ran long enough to have converged


def counted_curves(trajectories: pd.DataFrame) -> pd.DataFrame:
    """The (run, layer) curves claim 1 counts: changed by training, not limited by sampling noise, enough
    learned checkpoints."""
    table = trajectories[trajectories["n_checkpoints"] >= MIN_CHECKPOINTS]
    changed = table["changed"].fillna(False).astype(bool)
    return table[changed & ~table["noise_limited"].astype(bool)]


def training_length_table(trajectories: pd.DataFrame, *, target: float = TRAINED_ENOUGH) -> pd.DataFrame:
    """Whether training ran long enough: score(t ~ T/2, T) of every counted curve, per objective and strength.

    ``trajectories``: :func:`convergence_table` (its ``half_step`` is the
    learned checkpoint nearest T/2). Per (objective, param): ``runs``,
    ``curves`` counted, ``half_step`` (median), ``min_half_score``,
    ``median_half_score``, ``below`` (curves under ``target``) and
    ``below_layers`` (those layers, with their counts). A run still moving
    between T/2 and T has settle points that a longer run would move.
    """
    counted = counted_curves(trajectories).dropna(subset=["half_score"])
    rows = []
    for (objective, param), group in counted.groupby(["objective", "param"], sort=True):
        low = group[group["half_score"] < target]
        counts = low.groupby("layer").size()
        below_layers = ", ".join(f"{layer} ({counts[layer]})" for layer in L.order_layers(counts.index))
        rows.append(dict(objective=objective, param=param, runs=group["run"].nunique(), curves=len(group),
                         half_step=int(group["half_step"].median()), min_half_score=group["half_score"].min(),
                         median_half_score=group["half_score"].median(), below=len(low),
                         below_layers=below_layers))
    return pd.DataFrame(rows, columns=["objective", "param", "runs", "curves", "half_step", "min_half_score",
                                       "median_half_score", "below", "below_layers"])


def training_length_text(table: pd.DataFrame, *, metric: str = "cka", target: float = TRAINED_ENOUGH) -> str:
    """One sentence: were the counted layers converged by T/2 (score(T/2, T) >= ``target``)?"""
    if table.empty:
        return "Training length: no counted curve with a checkpoint between the first and the last."
    curves, below = int(table["curves"].sum()), int(table["below"].sum())
    name = metric.upper()
    if below == 0:
        return (f"Training length: every one of the {curves} counted curves has {name}(t ~ T/2, T) >= {target:g} "
                f"(lowest {table['min_half_score'].min():.3f}): the runs were trained past convergence.")
    return (f"Training length: {below} of {curves} counted curves have {name}(t ~ T/2, T) < {target:g} (lowest "
            f"{table['min_half_score'].min():.3f}): those runs were still moving in their second half, and their "
            f"settle points would move with longer training.")


TREND_MARGIN = 0.02  # score(T/2, T) must gain this much from T_max / 4 to T_max to count as "rising"
HALF_WINDOW = (1 / 3, 2 / 3)  # the checkpoint read as "T/2" of a candidate T must lie in this fraction of T


def training_length_needed(results: pd.DataFrame, *, metric: str = "cka", target: float = TRAINED_ENOUGH,
                           trajectories: pd.DataFrame | None = None) -> pd.DataFrame:
    """How long the runs must train: score(h, T) for every candidate length T, from every checkpoint pair.

    Needs ``within_run`` rows between learned checkpoints other than the
    final one (``comparisons.within_run: all``): then each learned checkpoint
    T is a candidate end of training, and h the learned checkpoint before it
    nearest T/2 (h / T within :data:`HALF_WINDOW`). A pilot study trained
    once to a long T so answers "what T makes score(T/2, T) >= ``target``"
    for every shorter T, and tells a layer converging (score(T/2, T) rising
    with T) from one that longer training does not bring closer (flat: it
    fluctuates at steady state; falling: it changes more late than early).
    Curves: those claim 1 counts at the run's own final step
    (:func:`counted_curves`). One row per (layer, candidate T): ``T``,
    ``half_step`` (median h), ``runs``, ``min_score``, ``median_score``,
    ``below`` (runs under ``target``) and ``enough_from``: the shortest
    candidate T from which every longer candidate has every run at or above
    ``target`` (NaN when no candidate does). Empty when no candidate T but
    the final one has an h. :func:`training_length_needed_text` calls a
    layer that never gets there "rising", "flat" or "falling" by the change of
    its lowest score(T/2, T) from the first candidate >= T_max / 4 to T_max
    (more than :data:`TREND_MARGIN` either way, else flat).
    """
    check_results(results)
    if trajectories is None:
        trajectories = convergence_table(results, metric=metric)
    counted = set(zip(*(counted_curves(trajectories)[c] for c in ("run", "layer"))))
    rows = select(results, comparison="within_run", metric=metric)
    rows = rows[(rows["a_run"] == rows["b_run"]) & (rows["a_layer"] == rows["b_layer"])
                & (rows["a_step"] > INITIAL_STEP) & (rows["b_step"] > INITIAL_STEP)]
    keep = [(run, layer) in counted for run, layer in zip(rows["a_run"], rows["a_layer"])]
    rows = rows[np.asarray(keep, dtype=bool)] if len(rows) else rows
    scores = rows.assign(lo=np.minimum(rows["a_step"], rows["b_step"]), hi=np.maximum(rows["a_step"], rows["b_step"]))
    scores = scores.groupby(["a_run", "a_layer", "lo", "hi"])["score"].mean()
    steps: dict[str, set[int]] = {}
    for run, _, lo, hi in scores.index:
        steps.setdefault(run, set()).update((int(lo), int(hi)))
    out = []
    for (run, layer, lo, hi), score in scores.items():
        before = np.array(sorted(s for s in steps[run] if s < hi))
        if lo == hi or not len(before):
            continue
        half = int(before[np.argmin(np.abs(before - hi / 2))])
        if lo == half and HALF_WINDOW[0] <= half / hi <= HALF_WINDOW[1]:
            out.append(dict(run=run, layer=layer, T=int(hi), half_step=half, score=float(score)))
    columns = ["layer", "T", "half_step", "runs", "min_score", "median_score", "below", "enough_from"]
    if not out:
        return pd.DataFrame(columns=columns)
    long = pd.DataFrame(out)
    table = long.groupby(["layer", "T"]).agg(half_step=("half_step", "median"), runs=("run", "nunique"),
                                             min_score=("score", "min"), median_score=("score", "median"),
                                             below=("score", lambda x: int((x < target).sum()))).reset_index()
    table["half_step"] = table["half_step"].astype(int)
    enough = {}
    for layer, group in table.groupby("layer"):
        group = group.sort_values("T")
        ok = (group["below"] == 0).to_numpy()
        tail = np.flatnonzero(~ok)
        start = tail[-1] + 1 if len(tail) else 0
        enough[layer] = float(group["T"].iloc[start]) if start < len(group) else math.nan
    table["enough_from"] = table["layer"].map(enough)
    order = {layer: i for i, layer in enumerate(L.order_layers(table["layer"].unique()))}
    table = table.sort_values(["layer", "T"], key=lambda c: c.map(order) if c.name == "layer" else c)
    return table[columns].reset_index(drop=True)


def training_length_needed_text(table: pd.DataFrame, *, metric: str = "cka", target: float = TRAINED_ENOUGH) -> str:
    """One sentence from :func:`training_length_needed`: the shortest T that is enough, and the layers never settled."""
    if table.empty:
        return ""
    name = metric.upper()
    enough = table.groupby("layer")["enough_from"].first()
    longest = int(table["T"].max())
    never = [layer for layer in L.order_layers(enough.index) if not np.isfinite(enough[layer])]
    settled = enough.dropna()
    text = ("Candidate training lengths (every learned checkpoint T with one near T/2, read from every checkpoint "
            "pair): ")
    if not never:
        return text + (f"every counted layer has {name}(T/2, T) >= {target:g} in every run from T = "
                       f"{int(settled.max())} on (longest candidate {longest}).")
    parts = []
    for layer in never:
        rows = table[(table["layer"] == layer) & (table["T"] >= longest / 4)].sort_values("T")
        change = rows["min_score"].iloc[-1] - rows["min_score"].iloc[0]
        trend = "rising" if change > TREND_MARGIN else "falling" if change < -TREND_MARGIN else "flat"
        parts.append(f"{layer} (lowest run {rows['min_score'].iloc[0]:.3f} at T = {int(rows['T'].iloc[0])}, "
                     f"{rows['min_score'].iloc[-1]:.3f} at T = {int(rows['T'].iloc[-1])}: {trend})")
    head = (f"the other counted layers are enough from T = {int(settled.max())}; " if len(settled) else "")
    return text + head + (f"{len(never)} layer(s) never reach {target:g} in every run up to T = {longest}: "
                          + "; ".join(parts) + ". Flat or falling: over this range, longer training at this "
                          "learning rate did not bring the layer closer to its final state.")


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


def claim_encoder_first(results: pd.DataFrame, *, metric: str = "cka", threshold: float | None = None,
                        trajectories: pd.DataFrame | None = None) -> dict:
    """Claim 1: encoder layers settle before decoder layers (paired over runs).

    ``threshold``: None sets it per metric from the store's untrained
    baseline (:func:`settle_threshold`); ``trajectories``: its
    :func:`convergence_table` at that threshold when the caller has it.
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
        f"encoder.* and of the changed decoder.* layers; d = decoder - encoder. Holds if the exact 95% interval "
        f"of the shift of d (every shift the exact one-sided Wilcoxon signed-rank test over runs, Pratt's "
        f"treatment of ties, rejects in neither direction at {ONE_SIDED}) lies above 0, i.e. d > 0 at p < "
        f"{ONE_SIDED} one-sided; opposite holds if it lies below 0; so false decisions are <= "
        f"{SIGNIFICANCE:.0%} in all when the runs' d are symmetric about 0 (encoder and decoder exchangeable), and "
        f"the interval covers the centre of symmetry with >= 95% probability for any symmetric distribution and "
        f"any number of runs. Inconclusive (ties/grid) when the best p the test can reach with this many runs "
        f"and ties is >= {ONE_SIDED} (needs >= {MIN_RUNS_FOR_PAIRED_TEST} runs with >= {MIN_CHECKPOINTS} learned "
        f"checkpoints, a recorded initial state and changed layers on both sides). Curves whose noise floor (the "
        f"layer recorded twice with two eps, at every checkpoint the store measured it) is below the threshold are "
        f"left out. Threshold for {metric.upper()}: {threshold_text}. Value = the Hodges-Lehmann shift of d "
        f"(median of the Walsh averages), the centre of that interval."
    )
    name = "claim 1: encoder layers settle before decoder layers"
    table = convergence_table(results, metric=metric, threshold=threshold) if trajectories is None else trajectories
    table = table[table["n_checkpoints"] >= MIN_CHECKPOINTS]
    if table.empty:
        return finding_row(name, math.nan, NOT_ENOUGH_DATA, definition,
                    f"no run with >= {MIN_CHECKPOINTS} learned checkpoints in 'within_run' rows of metric {metric!r}")
    no_baseline = table["changed"].isna()
    if no_baseline.all():
        return finding_row(name, math.nan, NOT_ENOUGH_DATA, definition,
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
        return finding_row(name, math.nan, verdict, definition,
                    f"{len(both)} of {runs_known} run(s) have layers changed by training in both the encoder and "
                    f"the decoder; needs >= {MIN_RUNS_FOR_PAIRED_TEST}. {unchanged_text}", n=len(both))
    differences = (both["decoder"] - both["encoder"]).to_numpy()
    p_value = paired_greater(differences)
    p_opposite = paired_greater(-differences)
    verdict, estimate, low, high, p_floor = paired_decision(differences)
    ties = int((differences == 0).sum())
    auc = changed.groupby("group")["progress_auc"].mean()
    detail = (
        f"settle point: encoder median {both['encoder'].median():.2f}, decoder median {both['decoder'].median():.2f} "
        f"of training; shift of d = {estimate:+.3f} ({ci_text(low, high)}, exact), mean d = "
        f"{float(np.mean(differences)):+.3f}; Wilcoxon one-sided p = {p_value:.3g} (opposite direction "
        f"{p_opposite:.3g}; each side tested at {ONE_SIDED}); best achievable p with {len(differences)} runs and "
        f"{ties} tie(s) = {p_floor:.3g}{' (cannot pass ' + str(ONE_SIDED) + ')' if p_floor >= ONE_SIDED else ''}; "
        f"encoder first in {int((differences > 0).sum())}/{len(differences)} runs, tied in {ties}. Learned "
        f"checkpoints per run: {_grid_text(table)}. Progress AUC (1 = settled at once): encoder "
        f"{auc.get('encoder', math.nan):.3f}, decoder {auc.get('decoder', math.nan):.3f}. {unchanged_text}"
    )
    return finding_row(name, estimate, verdict, definition, detail, (low, high), len(differences))


def paired_decision(differences: np.ndarray) -> tuple[str, float, float, float, float]:
    """Claim 1's decision on the per-run differences d (n,): (verdict, shift, low, high, best achievable p).

    The exact signed-rank interval (:func:`signed_rank_interval`, 95%) decides
    (:func:`_paired_verdict`); ``benchmarks/calibration.py`` measures its error rates and power with this
    function.
    """
    differences = np.asarray(differences, dtype=np.float64)
    p_floor = paired_greater_floor(differences)
    estimate, low, high = signed_rank_interval(differences, 1.0 - SIGNIFICANCE)
    return _paired_verdict(p_floor, low, high), estimate, low, high, p_floor


def _paired_verdict(p_floor: float, low: float, high: float) -> str:
    """Verdict of the two-sided exact signed-rank decision from its interval (:func:`signed_rank_interval`).

    ``inconclusive (ties/grid)`` when the best achievable p (:func:`paired_greater_floor`)
    cannot pass :data:`ONE_SIDED`: the verdict is then set by the number of runs and ties, not the data.
    """
    if p_floor >= ONE_SIDED:
        return inconclusive(TIES_OR_GRID)
    if above_zero(low):
        return HOLDS
    if above_zero(-high):
        return OPPOSITE_HOLDS
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


def converged_checkpoints(results: pd.DataFrame, *, metric: str = "cka", threshold: float | None = None,
                          trajectories: pd.DataFrame | None = None) -> pd.DataFrame:
    """The learned checkpoints of each run at which its encoder has reached its final state.

    A run's encoder has converged from the latest settle point (see
    :func:`convergence_table`) of its counted encoder layers: those training
    changed (similarity(initial, final) < ``threshold``) and sampling noise does not
    hold down, ``encoder.sample`` excluded (it is the noisy side of claim 3's
    statistic, not part of the posterior). A checkpoint counts when it is at
    or after that point; the final step always counts. A run none of whose
    encoder layers training changed has nothing left to learn: every learned
    checkpoint counts. A run without trajectories (no ``within_run`` rows to
    its final step) counts its final step only.

    ``trajectories``: the :func:`convergence_table` at ``threshold`` when
    the caller has it. Returns run, step, encoder_settled_step (NaN for
    such a run), converged (bool), one row per (run, learned checkpoint)
    seen in the store.
    """
    check_results(results)
    if threshold is None:
        threshold, _ = settle_threshold(results, metric=metric)
    finals = final_steps(results)
    steps = pd.concat([results[["a_run", "a_step"]].set_axis(["run", "step"], axis=1),
                       results[["b_run", "b_step"]].set_axis(["run", "step"], axis=1)]).drop_duplicates()
    steps = steps[steps["step"] > INITIAL_STEP].sort_values(["run", "step"]).reset_index(drop=True)
    table = convergence_table(results, metric=metric, threshold=threshold) if trajectories is None else trajectories
    encoder = table[(table["group"] == "encoder") & (table["layer"] != L.SAMPLE_LAYER)]
    counted = encoder[(encoder["changed"] == True) & ~encoder["noise_limited"]]  # noqa: E712 (NaN = unknown)
    settled = counted.groupby("run")["settled_step"].max()
    known = encoder[encoder["changed"].notna()]
    untouched = set(known["run"]) - set(known.loc[known["changed"].astype(bool), "run"])
    settled_step = steps["run"].map(lambda run: float(settled.get(run, INITIAL_STEP if run in untouched
                                                                       else math.nan)))
    final = steps["run"].map(finals)
    converged = (steps["step"] >= settled_step.fillna(np.inf)) | (steps["step"] == final)
    return steps.assign(encoder_settled_step=settled_step, converged=converged.astype(bool))
