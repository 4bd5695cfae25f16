"""Small, seeded statistics for verdicts: bootstrap intervals, a paired test, clustered rank correlation.

Pure functions on numpy arrays; every random draw comes from
``numpy.random.default_rng(seed)`` so a verdict is the same on every rerun.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.95


def percentile_interval(draws: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Central ``confidence`` percentile interval of bootstrap ``draws`` (NaNs ignored)."""
    draws = np.asarray(draws, dtype=np.float64)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_groups(
    groups: Sequence[np.ndarray],
    statistic: Callable[..., float],
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
    """Statistic and percentile CI when each group's units are resampled independently.

    groups: arrays whose first axis indexes independent units (model pairs,
    runs); ``statistic(*groups)`` -> float. Each draw resamples every group
    with replacement, keeping its size. Returns (estimate, low, high).
    """
    groups = [np.asarray(g) for g in groups]
    estimate = float(statistic(*groups))
    rng = np.random.default_rng(seed)
    draws = np.empty(samples)
    for k in range(samples):
        draws[k] = statistic(*(g[rng.integers(0, len(g), len(g))] for g in groups))
    low, high = percentile_interval(draws, confidence)
    return estimate, low, high


def _seed_weights(seeds_a: np.ndarray, seeds_b: np.ndarray, counts: dict) -> np.ndarray:
    """Weight of each pair in a seed-resampled draw: count(a) * count(b) across seeds, count(a) within one."""
    ca = np.array([counts.get(s, 0) for s in seeds_a], dtype=np.float64)
    cb = np.array([counts.get(s, 0) for s in seeds_b], dtype=np.float64)
    return np.where(seeds_a == seeds_b, ca, ca * cb)


def _weighted_column_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    present = np.isfinite(values)
    w = weights[:, None] * present
    total = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (np.where(present, values, 0.0) * w).sum(axis=0) / total, np.nan)


def seed_bootstrap(
    groups: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    statistic: Callable[..., float],
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float, int]:
    """Statistic of pairwise scores and a CI from resampling seeds, the independent units of pairs.

    groups: ``(seeds_a, seeds_b, values)`` per kind of pair; ``values`` is
    (pairs, layers), NaN where a pair lacks a layer. Two pairs that share a
    seed are not independent (untrained networks of seeds 0-1 and 0-2 share
    network 0), so each draw resamples the seeds present in any group with
    replacement and weights a pair by count(a) * count(b) (count(a) for a
    pair within one seed, e.g. two strengths of one seed).
    ``statistic(*means)`` gets each group's weighted per-layer means
    (layers,) and returns a float. Draws where a group has no pair left
    (every drawn seed the same) are skipped; returns (estimate, low, high,
    valid draws).
    """
    groups = [(np.asarray(a), np.asarray(b), np.asarray(v, dtype=np.float64)) for a, b, v in groups]
    labels = np.unique(np.concatenate([np.concatenate([a, b]) for a, b, _ in groups]))

    def means(counts: dict) -> list[np.ndarray]:
        return [_weighted_column_means(v, _seed_weights(a, b, counts)) for a, b, v in groups]

    estimate = float(statistic(*means({label: 1 for label in labels})))
    rng = np.random.default_rng(seed)
    draws = np.full(samples, np.nan)
    for k in range(samples):
        drawn, counts = np.unique(labels[rng.integers(0, len(labels), len(labels))], return_counts=True)
        per_group = means(dict(zip(drawn.tolist(), counts.tolist())))
        if all(np.isfinite(m).any() for m in per_group):
            with np.errstate(invalid="ignore"):
                draws[k] = statistic(*per_group)
    low, high = percentile_interval(draws, confidence)
    return estimate, low, high, int(np.isfinite(draws).sum())


def seed_jackknife(
    groups: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    statistic: Callable[..., float],
    *,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float, int]:
    """Statistic of pairwise scores and a leave-one-seed-out jackknife t interval.

    groups, statistic: as :func:`seed_bootstrap` (each group's weighted
    per-layer means go to ``statistic``). Each of the S seeds present is
    left out in turn (every pair that involves it dropped); with the
    leave-one-out values theta_(i), SE^2 = (S - 1) / S * sum (theta_(i) -
    mean theta_(.))^2 and the interval is estimate +/- t_{S-1} SE (Student's
    t quantile at ``confidence``). For pairs within one seed (a mean of
    independent per-seed means) this is the textbook t interval of a mean,
    exact for normal per-seed means at any S >= 2; for pairs across seeds
    (each seed in several pairs) it is the jackknife's SE, which the
    percentile bootstrap of few seeds underestimates (issue 32: 10.7% of
    null datasets decided with 3 seeds). Leave-one-out values where a group
    has no pair left are skipped (S counts the rest); fewer than 2 valid:
    no interval. Returns (estimate, low, high, S).
    """
    groups = [(np.asarray(a), np.asarray(b), np.asarray(v, dtype=np.float64)) for a, b, v in groups]
    labels = np.unique(np.concatenate([np.concatenate([a, b]) for a, b, _ in groups]))

    def value(counts: dict) -> float:
        per_group = [_weighted_column_means(v, _seed_weights(a, b, counts)) for a, b, v in groups]
        if not all(np.isfinite(m).any() for m in per_group):
            return math.nan
        with np.errstate(invalid="ignore"):
            return float(statistic(*per_group))

    estimate = value({label: 1 for label in labels})
    left_out = np.array([value({label: int(label != out) for label in labels}) for out in labels])
    left_out = left_out[np.isfinite(left_out)]
    count = int(left_out.size)
    if count < 2 or not np.isfinite(estimate):
        return estimate, math.nan, math.nan, count
    se = math.sqrt((count - 1) / count * float(np.sum((left_out - left_out.mean()) ** 2)))
    half = float(stats.t.ppf(0.5 + confidence / 2.0, count - 1)) * se
    return estimate, estimate - half, estimate + half, count


#: the exact signed-rank distribution is used up to this many non-zero differences (the normal one beyond)
EXACT_MAX_UNITS = 50


def paired_greater(differences: np.ndarray) -> float:
    """One-sided p-value of the Wilcoxon signed-rank test that ``differences`` are centred above 0.

    Zero differences (runs where both sides are equal) are ranked with the
    others, so they raise the ranks of the rest, and left out of the sum
    (Pratt 1959). Exact p-value up to :data:`EXACT_MAX_UNITS` units: the
    permutation distribution, given the observed ranks (average ranks for
    tied magnitudes), of the sum of the ranks that carry a + sign when each
    non-zero difference is + or - with probability 1/2 (a zero has no sign
    to flip); normal approximation beyond. So ``k`` non-zero differences,
    all positive, give p = 2^-k whatever the zeros and the tied magnitudes.
    All-zero differences give p = 1.
    """
    differences = np.asarray(differences, dtype=np.float64)
    if differences.size == 0 or np.all(differences == 0):
        return 1.0
    nonzero = differences != 0
    if int(nonzero.sum()) > EXACT_MAX_UNITS:
        return float(stats.wilcoxon(differences, zero_method="pratt", alternative="greater",
                                    method="approx").pvalue)
    doubled = np.rint(2 * average_ranks(np.abs(differences))).astype(np.int64)[nonzero]  # integer: ranks are k/2
    observed = int(doubled[differences[nonzero] > 0].sum())
    ways = np.zeros(int(doubled.sum()) + 1)  # ways[t]: sign patterns whose + ranks sum to t (exact below 2^53)
    ways[0] = 1.0
    for rank in doubled:
        ways[rank:] = ways[rank:] + ways[:-rank].copy()
    return float(ways[observed:].sum() / ways.sum())


def paired_greater_floor(differences: np.ndarray) -> float:
    """Smallest p-value :func:`paired_greater` can give for these differences' magnitudes.

    The floor is the p-value had every non-zero difference been positive:
    2^-k for k non-zero differences (exact test; the units beyond
    :data:`EXACT_MAX_UNITS` take the normal approximation's). With 6 runs it
    is 0.016, 0.031, 0.063, 0.125, 0.250 for 0, 1, 2, 3, 4 zero differences
    (runs that tie); 8 runs with 3 ties reach 0.031. When it is >= the significance level the
    test cannot pass whatever the data say: the verdict is undecided by
    design, not contradicted. The same floor holds for the opposite
    direction (the test is symmetric).
    """
    return paired_greater(np.abs(np.asarray(differences, dtype=np.float64)))


def walsh_averages(differences: np.ndarray) -> np.ndarray:
    """Sorted Walsh averages (d_i + d_j) / 2, i <= j, of ``differences`` (n,): n (n + 1) / 2 values."""
    d = np.asarray(differences, dtype=np.float64)
    i, j = np.triu_indices(d.size)
    return np.sort((d[i] + d[j]) / 2.0)


def signed_rank_interval(differences: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Hodges-Lehmann shift of ``differences`` (n,) and its exact interval from the signed-rank test.

    The interval is every shift theta that the exact one-sided Pratt
    signed-rank test (:func:`paired_greater`) rejects in neither direction
    at level (1 - ``confidence``) / 2: theta is in it when both
    ``paired_greater(d - theta)`` and ``paired_greater(theta - d)`` are
    >= (1 - confidence) / 2. So it covers the centre of symmetry with
    probability >= ``confidence`` whenever the differences are symmetric
    about it (exactly, by test inversion, for any symmetric distribution and
    any n), and it lies above 0 only if the test rejects "no shift" at
    (1 - confidence) / 2 one-sided. The test statistic changes only at Walsh
    averages, so the set is found by testing each Walsh average and one
    point inside each gap between them; its ends are Walsh averages. When
    even the most extreme data cannot reach the level (n too small for the
    confidence: 2^-n >= (1 - confidence) / 2), the interval is unbounded
    (-inf, inf). Returns (Hodges-Lehmann estimate = median Walsh average,
    low, high).
    """
    d = np.asarray(differences, dtype=np.float64)
    if d.size == 0:
        return math.nan, math.nan, math.nan
    walsh = walsh_averages(d)
    estimate = float(np.median(walsh))
    level = (1.0 - confidence) / 2.0
    points = np.unique(walsh)
    gaps = (points[:-1] + points[1:]) / 2.0
    outside = [points[0] - 1.0 - abs(points[0]), points[-1] + 1.0 + abs(points[-1])]
    # candidate shifts in order: left of every Walsh average, each one and each gap, right of every one
    candidates = np.empty(2 * points.size + 1)
    candidates[0], candidates[-1] = outside
    candidates[1:-1:2] = points
    candidates[2:-1:2] = gaps

    def kept(theta: float) -> bool:
        return paired_greater(d - theta) >= level and paired_greater(theta - d) >= level

    # the first kept candidate from each end is the set's end (no assumption that the kept set is an interval)
    first = next((k for k in range(len(candidates)) if kept(candidates[k])), None)
    if first is None:  # cannot happen for a nondegenerate sample (the median shift is never rejected)
        return estimate, math.nan, math.nan
    last = next(k for k in range(len(candidates) - 1, first - 1, -1) if kept(candidates[k]))
    low = -math.inf if first == 0 else float(candidates[first] if first % 2 == 1 else candidates[first - 1])
    high = math.inf if last == len(candidates) - 1 else float(
        candidates[last] if last % 2 == 1 else candidates[last + 1])
    return estimate, low, high


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` (n,), ties sharing their average rank (``scipy.stats.rankdata``'s default)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse.reshape(-1)]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho of (x, y), both (n,): Pearson's r of their average ranks (NaN when either is constant)."""
    rx, ry = average_ranks(np.asarray(x)), average_ranks(np.asarray(y))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry / denominator) if denominator > 0 else math.nan


def clustered_spearman(
    x: np.ndarray,
    y: np.ndarray,
    clusters: np.ndarray,
    *,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
    """Spearman's rho of (x, y) and a leave-one-cluster-out jackknife interval on Fisher's z scale.

    Points of one cluster (the checkpoints of one run) are not independent,
    so the interval leaves out whole clusters: with G clusters and
    z_(g) = atanh(rho without cluster g), SE^2 = (G - 1) / G * sum (z_(g) -
    mean z)^2, and the interval is tanh(atanh(rho) +/- t_{G-1} SE). Issue
    32: the percentile bootstrap over runs excluded 0 in 10% of null
    datasets with 5 runs; this interval's rate is measured by
    ``benchmarks/calibration.py`` (docs/evidence.md). Leave-one-out values
    where x or y is constant are skipped; fewer than 2 left: no interval.
    Returns (rho, low, high).
    """
    x, y, clusters = (np.asarray(a) for a in (x, y, clusters))
    rho = spearman(x, y)
    if not np.isfinite(rho):
        return rho, math.nan, math.nan
    left_out = []
    for label in np.unique(clusters):
        keep = clusters != label
        if np.ptp(x[keep]) > 0 and np.ptp(y[keep]) > 0:
            left_out.append(spearman(x[keep], y[keep]))
    z = np.arctanh(np.clip(np.asarray(left_out, dtype=np.float64), -FISHER_CLIP, FISHER_CLIP))
    count = int(z.size)
    if count < 2:
        return rho, math.nan, math.nan
    se = math.sqrt((count - 1) / count * float(np.sum((z - z.mean()) ** 2)))
    centre = math.atanh(min(max(rho, -FISHER_CLIP), FISHER_CLIP))
    half = float(stats.t.ppf(0.5 + confidence / 2.0, count - 1)) * se
    return rho, math.tanh(centre - half), math.tanh(centre + half)


#: |rho| is clipped to this before Fisher's z (rho = +/-1 would map to infinity)
FISHER_CLIP = 1.0 - 1e-9
