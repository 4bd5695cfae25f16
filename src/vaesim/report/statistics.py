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


def paired_greater(differences: np.ndarray) -> float:
    """One-sided p-value of the Wilcoxon signed-rank test that ``differences`` are centred above 0.

    Zero differences (runs where both sides are equal) are ranked with the
    others and then left out of the sum (Pratt 1959, ``zero_method='pratt'``),
    so they weaken the evidence instead of being dropped. Exact null
    distribution up to 50 units, normal approximation beyond. All-zero
    differences give p = 1.
    """
    differences = np.asarray(differences, dtype=np.float64)
    if differences.size == 0 or np.all(differences == 0):
        return 1.0
    method = "exact" if differences.size <= 50 else "approx"
    return float(stats.wilcoxon(differences, zero_method="pratt", alternative="greater", method=method).pvalue)


def clustered_spearman(
    x: np.ndarray,
    y: np.ndarray,
    clusters: np.ndarray,
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
    """Spearman's rho of (x, y) and a CI from resampling whole clusters (runs) with replacement.

    Points of one cluster (the checkpoints of one run) are not independent,
    so the interval resamples clusters, not points. Draws where x or y is
    constant are skipped. Returns (rho, low, high).
    """
    x, y, clusters = (np.asarray(a) for a in (x, y, clusters))
    rho = float(stats.spearmanr(x, y).statistic)
    labels = np.unique(clusters)
    members = [np.flatnonzero(clusters == label) for label in labels]
    rng = np.random.default_rng(seed)
    draws = np.full(samples, np.nan)
    for k in range(samples):
        chosen = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        xs, ys = x[chosen], y[chosen]
        if np.ptp(xs) > 0 and np.ptp(ys) > 0:
            draws[k] = stats.spearmanr(xs, ys).statistic
    low, high = percentile_interval(draws, confidence)
    return rho, low, high
