"""The seed paper's claims as tests that can fail, read against baselines from the same store.

Bonheme & Grzes, "How do Variational Autoencoders Learn? Insights from
Representational Similarity" (arXiv 2205.08399). Each finding is one row:
``finding`` (name), ``value`` (its number, NaN without data), ``verdict``
(one of four words, :mod:`vaesim.report.verdicts`), ``definition`` (how the
number is computed and when it holds), ``detail`` (the numbers behind it),
``ci_low`` / ``ci_high`` (95 % bootstrap interval of the value, NaN where
none) and ``n`` (independent units behind it: runs, seeds or model pairs).

Baselines. Step 0 is the initial state of a run (its weights before any
update). It is recorded by every study but never counted as a learned
state: it is the baseline that says what architecture and input statistics
give without learning. ``baseline_table`` puts, per layer, the similarity of
untrained networks of different seeds, each run's initial-to-final
similarity and the trained agreements side by side.

Claims (the paper's numbering; claim 4 is a property of the metrics and
lives in :mod:`vaesim.similarity.diagnostics`, not among the verdicts):

1. Encoder layers settle before decoder layers (paired test over runs;
   :mod:`vaesim.report.settling`).
2. The encoder trunk agrees across strengths / objectives beyond the
   untrained cross-seed baseline, and more than the mean/variance heads
   (this module).
3. CKA(mean, sampled) tracks posterior collapse beyond the arithmetic of
   the per-dimension variances (:mod:`vaesim.report.collapse`).

How much each verdict can be trusted (leaving a seed out, moving a
threshold, the other metric) is :mod:`vaesim.report.robustness`.

Every function here is pure: pandas tables in, pandas tables out.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vaesim.report import layers as L
from vaesim.report.collapse import (  # noqa: F401 (claim 3, re-exported)
    COLLAPSE_OBJECTIVES,
    MIN_RUNS_FOR_CORRELATION,
    PASSIVE_VARIANCE,
    STRENGTH_SIGN,
    claims_posterior_collapse,
    collapse_table,
    mean_sample_rows,
    mean_sample_similarity,
    passive_dimensions,
    regularisation_strength,
)
from vaesim.report.settling import (  # noqa: F401 (claim 1, re-exported)
    CONVERGENCE_THRESHOLD,
    MIN_CHECKPOINTS,
    MIN_RUNS_FOR_PAIRED_TEST,
    SETTLE_PROGRESS,
    SIGNIFICANCE,
    claim_encoder_first,
    converged_checkpoints,
    convergence_table,
    noise_floors,
    settle_threshold,
)
from vaesim.report.statistics import seed_jackknife
from vaesim.report.tables import INITIAL_STEP, check_results, same_layer_rows  # noqa: F401
from vaesim.report.verdicts import (  # noqa: F401 (the verdict words, re-exported)
    BOUNDS,
    CEILING,
    FINDING_COLUMNS,
    FRAGILE,
    HOLDS,
    INCONCLUSIVE,
    NOT_ENOUGH_DATA,
    NOT_SIGNIFICANT,
    NULL_INSIDE,
    OPPOSITE_HOLDS,
    SPLIT,
    TIES_OR_GRID,
    VERDICT_WORDS,
    ci_text,
    finding_row,
    format_findings,
    inconclusive,
    interval_verdict,
    short_name,
    support_summary,
    verdict_word,
)

logger = logging.getLogger(__name__)

MIN_PAIRS_FOR_AGREEMENT = 3  # claim 2: model pairs at the final step
MIN_SEEDS_FOR_BASELINE = 3  # claim 2: seeds behind the untrained baseline (one pair has no spread)


@dataclass(frozen=True)
class Thresholds:
    """The decision thresholds of the verdicts, as a robustness check moves them.

    ``settle_shift``: added to each metric's settle threshold
    (:func:`settle_threshold`; claims 1 and 2, and claim 3's converged
    checkpoints); ``passive_variance``: Burda's threshold on Cov_x(E[z_u|x])
    (claim 3).
    """

    settle_shift: float = 0.0
    passive_variance: float = PASSIVE_VARIANCE

    def describe(self) -> str:
        parts = []
        if self.settle_shift:
            parts.append(f"settle threshold {self.settle_shift:+g}")
        if self.passive_variance != PASSIVE_VARIANCE:
            parts.append(f"passive threshold {self.passive_variance:g} (not {PASSIVE_VARIANCE:g})")
        return ", ".join(parts) or "as defined"


# --------------------------------------------------------------------------- baselines
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
        columns[label] = same_layer_rows(results, comparison, metric, step).groupby("a_layer")["score"].mean()
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
    rows = same_layer_rows(results, comparison, metric, "final")
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


def _moved_together(rows: pd.DataFrame, initial: pd.Series) -> pd.DataFrame:
    """Same-seed pair rows with score = A(a_T, b_T) - (C(a) + C(b)) / 2, C(run) = the layer's similarity between
    the run's initial and final state (``initial``: indexed by (run, layer))."""
    keys_a = pd.MultiIndex.from_arrays([rows["a_run"], rows["a_layer"]])
    keys_b = pd.MultiIndex.from_arrays([rows["b_run"], rows["b_layer"]])
    c_a = initial.reindex(keys_a).to_numpy(dtype=np.float64)
    c_b = initial.reindex(keys_b).to_numpy(dtype=np.float64)
    return rows.assign(score=rows["score"].to_numpy(dtype=np.float64) - (c_a + c_b) / 2.0)


def claim_encoder_agreement(results: pd.DataFrame, *, comparison: str = "params", metric: str = "cka",
                            threshold: float | None = None, trajectories: pd.DataFrame | None = None) -> dict:
    """Claim 2: the encoder trunk agrees across models, each contrast against a baseline of the same seed structure.

    Runs that share a seed share their initial weights, so a pair of them
    agrees before any learning; pairs of different seeds do not. Every
    contrast therefore compares pairs with pairs of the same kind (issue 32),
    on the trunk layers training changed (k of them) and the heads:

    - beyond shared init (pairs within one seed, across ``comparison``):
      A(a_T, b_T) - (C(a) + C(b)) / 2, where C(run) = the layer's similarity
      between the run's initial and final state: the two runs agree more with
      each other than each agrees with the state they started from, so they
      moved together (independent drift from a shared start makes them agree
      less than that);
    - beyond untrained (pairs across seeds): agreement across ``comparison``
      of different seeds when the store has such pairs, else trained networks
      of different seeds at the same settings (``seeds`` rows, final step),
      minus untrained networks of different seeds (``seeds`` rows, step 0);
    - heads less: the trunk's beyond-shared-init minus the heads' (within one
      seed); without same-seed pairs, (trunk - heads) across ``comparison``
      minus (trunk - heads) of untrained networks of different seeds.

    Each contrast has a 95% leave-one-seed-out jackknife t interval
    (:func:`seed_jackknife`). The claim holds only if every contrast holds
    and its opposite only if every contrast is opposite (an
    intersection-union rule: under any null that makes one contrast 0, a
    false decision needs that contrast's interval to miss, <= 2.5% each way).
    """
    across = {"params": "regularisation strengths", "objectives": "objectives", "seeds": "seeds"}[comparison]
    if threshold is None:
        threshold, _ = settle_threshold(results, metric=metric)
    definition = (
        f"Trunk = the encoder layers before the mean/variance heads (encoder.conv*/encoder.fc in the conv VAE, "
        f"a plug-in architecture's layers of role encoder) that training changed ({metric.upper()}(initial, final) < "
        f"{threshold:.3f}, the metric's settle threshold, in the median run), heads = encoder.mean/logvar/variance. "
        f"A = {metric.upper()} between the same layer of two models trained with different {across} (comparison "
        f"'{comparison}', final step); C = a run's layer at step 0 against its final state; U = untrained networks "
        f"of different seeds (step 0); T = trained networks of different seeds at the same settings (final step). "
        f"Runs sharing a seed share their initial weights, so each contrast compares like with like: beyond shared "
        f"init = A - mean C of the pair's two runs, over pairs within one seed (the runs moved together, not just "
        f"started together); beyond untrained = A (pairs of different seeds; T when the store has none) - U; heads "
        f"less = (trunk - heads) of beyond shared init (of A - U without same-seed pairs). Holds if the 95% "
        f"leave-one-seed-out jackknife t interval of every contrast is above 0; opposite holds if every one is below "
        f"0; otherwise inconclusive. Value = beyond shared init (beyond untrained without same-seed pairs). Needs >= "
        f"{MIN_SEEDS_FOR_BASELINE} seeds with step-0 cross-seed rows and >= {MIN_PAIRS_FOR_AGREEMENT} model pairs."
    )
    name = f"claim 2: encoder trunk agrees across {across} beyond the untrained baseline, mean/variance layers less"
    final_rows = same_layer_rows(results, comparison, metric, "final")
    baseline_rows = same_layer_rows(results, "seeds", metric, "initial")
    trunk = [layer for layer in L.order_layers(final_rows["a_layer"]) if L.is_trunk(layer)]
    heads = [layer for layer in L.HEAD_LAYERS if layer in set(final_rows["a_layer"])]
    n_pairs = len({tuple(sorted(p)) for p in zip(final_rows["a_run"], final_rows["b_run"])})
    if not trunk or not heads or n_pairs < MIN_PAIRS_FOR_AGREEMENT:
        return finding_row(name, math.nan, NOT_ENOUGH_DATA, definition,
                    f"{n_pairs} '{comparison}' model pair(s) of metric {metric!r} at the final step with "
                    f"{len(trunk)} trunk and {len(heads)} head layer(s); needs >= {MIN_PAIRS_FOR_AGREEMENT} pairs "
                    f"and both groups", n=n_pairs)
    baseline_layers = set(baseline_rows["a_layer"])
    if not set(trunk) & baseline_layers:
        return finding_row(name, math.nan, NOT_ENOUGH_DATA, definition,
                    "no untrained cross-seed baseline: the store has no 'seeds' rows at step 0 (record the initial "
                    "state and compare seeds at step 0)", n=n_pairs)
    if trajectories is None:
        trajectories = convergence_table(results, metric=metric, threshold=threshold)
    initial = trajectories.groupby("layer")["initial_score"].median()
    changed = [layer for layer in trunk if layer in baseline_layers and initial.get(layer, math.nan) < threshold]
    not_changed = [layer for layer in trunk if layer not in changed]
    if not changed:
        return finding_row(name, math.nan, inconclusive(CEILING), definition,
                    f"no trunk layer was changed by training ({', '.join(f'{layer} {initial.get(layer, math.nan):.3f}' for layer in trunk)} "
                    f"initial-to-final); their agreement is that of the initial weights", n=n_pairs)
    layers = changed + heads
    k = len(changed)
    untrained = _seed_pair_table(baseline_rows, layers, by="seed")
    untrained_seeds = sorted(set(untrained[0].tolist()) | set(untrained[1].tolist()))
    if len(untrained_seeds) < MIN_SEEDS_FOR_BASELINE:
        return finding_row(name, math.nan, NOT_ENOUGH_DATA, definition,
                    f"the untrained baseline comes from {len(untrained[2])} seed pair(s) of {len(untrained_seeds)} "
                    f"seed(s): its spread over seeds is unknown, and a single pair is not an exact baseline (28 "
                    f"untrained pairs of one architecture spread by SD 0.015 in CKA); needs >= "
                    f"{MIN_SEEDS_FOR_BASELINE} seeds with step-0 'seeds' rows", n=n_pairs)
    same_seed = final_rows[final_rows["a_seed"] == final_rows["b_seed"]]
    cross_seed = final_rows[final_rows["a_seed"] != final_rows["b_seed"]]
    if cross_seed.empty:
        involved = set(final_rows["a_objective"]) | set(final_rows["b_objective"])
        cross_seed = same_layer_rows(results, "seeds", metric, "final")
        cross_seed = cross_seed[cross_seed["a_objective"].isin(involved)]
        cross_label = "T (trained, different seeds, same settings)"
    else:
        cross_label = f"A of different seeds across {across}"
    if cross_seed.empty:
        return finding_row(name, math.nan, NOT_ENOUGH_DATA, definition,
                    f"no trained pairs of different seeds (neither '{comparison}' pairs across seeds nor 'seeds' rows "
                    f"at the final step): the cross-seed contrast has no trained side", n=n_pairs)
    start = trajectories.set_index(["run", "layer"])["initial_score"]
    start = start[~start.index.duplicated()]

    def trunk_mean(means: np.ndarray) -> float:
        return float(np.nanmean(means[:k]))

    def gap(means: np.ndarray) -> float:
        return trunk_mean(means) - float(np.nanmean(means[k:]))

    cross = _seed_pair_table(cross_seed, layers, by="run")
    contrasts: dict[str, tuple[list, object]] = {}
    if len(same_seed):
        together = _seed_pair_table(_moved_together(same_seed, start), layers, by="run")
        contrasts["beyond shared init"] = ([together], lambda m: trunk_mean(m))
        contrasts["beyond untrained"] = ([cross, untrained], lambda a, u: trunk_mean(a) - trunk_mean(u))
        contrasts["heads less"] = ([together], lambda m: gap(m))
    else:
        contrasts["beyond untrained"] = ([cross, untrained], lambda a, u: trunk_mean(a) - trunk_mean(u))
        contrasts["heads less"] = ([cross, untrained], lambda a, u: gap(a) - gap(u))
    estimates = {label: seed_jackknife(groups, fn) for label, (groups, fn) in contrasts.items()}
    verdicts = {label: interval_verdict(low, high) for label, (_, low, high, _) in estimates.items()}
    words = set(verdicts.values())
    if words == {HOLDS}:
        verdict = HOLDS
    elif words == {OPPOSITE_HOLDS}:
        verdict = OPPOSITE_HOLDS
    else:
        verdict = inconclusive(NULL_INSIDE if any(v not in (HOLDS, OPPOSITE_HOLDS) for v in verdicts.values())
                               else SPLIT)
    per_layer_groups = [_seed_pair_table(same_seed, layers, by="run") if len(same_seed) else None, cross, untrained]
    a_means, t_means, u_means = (np.nanmean(g[2], axis=0) if g is not None and len(g[2]) else np.full(len(layers), np.nan)
                                 for g in per_layer_groups)
    c_means = np.array([float(start.xs(layer, level="layer").mean()) if layer in start.index.get_level_values("layer")
                        else math.nan for layer in layers])
    per_layer = ", ".join(f"{layer} A {a_means[i]:.3f} / C {c_means[i]:.3f} / {'T' if cross_label.startswith('T') else 'A_x'} "
                          f"{t_means[i]:.3f} / U {u_means[i]:.3f}" for i, layer in enumerate(changed))
    contrast_text = "; ".join(f"{label} {e:+.3f} ({ci_text(low, high)}: {verdicts[label]})"
                              for label, (e, low, high, _) in estimates.items())
    n_seeds = min(e[3] for e in estimates.values())
    opposite = [label for label, v in verdicts.items() if v == OPPOSITE_HOLDS]
    shared = same_layer_rows(results, comparison, metric, "initial")
    shared_trunk = shared[shared["a_layer"].isin(trunk)]["score"]
    shared_text = (f" At step 0 the same '{comparison}' pairs already score {shared_trunk.mean():.3f} on the trunk "
                   f"(shared initial weights)." if len(shared_trunk) else "")
    detail = (
        f"{contrast_text}. Per trunk layer (A across {across} within one seed, C initial-to-final, cross-seed side: "
        f"{cross_label}, U untrained cross-seed): {per_layer}; heads A {np.nanmean(a_means[k:]):.3f} / C "
        f"{np.nanmean(c_means[k:]):.3f} / U {np.nanmean(u_means[k:]):.3f}. {len(same_seed.groupby(['a_run', 'b_run']))} "
        f"same-seed and {len(cross[2])} cross-seed trained pair(s), {len(untrained[2])} untrained seed pair(s) over "
        f"{len(untrained_seeds)} seeds; jackknife over {n_seeds} seeds."
        + (f" Opposite for: {', '.join(opposite)}." if opposite else "")
        + (f" Not changed by training (left out): {', '.join(not_changed)}." if not_changed else "")
        + shared_text
    )
    primary = "beyond shared init" if "beyond shared init" in estimates else "beyond untrained"
    estimate, low, high, _ = estimates[primary]
    return finding_row(name, estimate, verdict, definition, detail, (low, high), len(untrained_seeds))


# --------------------------------------------------------------------------- all
def compute_findings(results: pd.DataFrame, runs: pd.DataFrame | None = None, *,
                     latents: pd.DataFrame | None = None, metric: str = "cka",
                     thresholds: Thresholds = Thresholds(), only: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Every finding, one row each (columns :data:`FINDING_COLUMNS`).

    ``results``: the results store (``vaesim.study.load_results``); ``runs``:
    ``runs.parquet`` (one row per run) or None; ``latents``:
    ``latents.parquet`` (per run, checkpoint and latent dimension) or None;
    ``thresholds``: the decision thresholds (moved by robustness checks);
    ``only``: compute only the claims whose names start with one of these
    (e.g. ``("claim 3",)``), None = all.
    """
    check_results(results)
    threshold = settle_threshold(results, metric=metric)[0]
    if thresholds.settle_shift:
        threshold += thresholds.settle_shift
    else:
        threshold = None  # each claim sets (and states) it from the store
    wanted = (lambda name: only is None or any(name.startswith(prefix) for prefix in only))
    trajectories = convergence_table(results, metric=metric, threshold=threshold)  # shared by claims 1-3
    rows = []
    if wanted("claim 1"):
        rows.append(claim_encoder_first(results, metric=metric, threshold=threshold, trajectories=trajectories))
    if wanted("claim 2"):
        rows += [claim_encoder_agreement(results, comparison=comparison, metric=metric, threshold=threshold,
                                         trajectories=trajectories) for comparison in ("params", "objectives")]
    if wanted("claim 3"):
        rows += claims_posterior_collapse(results, latents, metric=metric, threshold=threshold,
                                          passive_threshold=thresholds.passive_variance, trajectories=trajectories)
    findings = pd.DataFrame(rows, columns=list(FINDING_COLUMNS))
    logger.info("findings (%s, %s): %s", metric, thresholds.describe(),
                dict(zip(findings["finding"], findings["verdict"])))
    return findings
