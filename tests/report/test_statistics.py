"""Seeded statistics behind the verdicts, against scipy and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from vaesim.report.statistics import bootstrap_groups, clustered_spearman, paired_greater, percentile_interval


def test_bootstrap_interval_of_a_mean_covers_it_and_shrinks_with_n():
    rng = np.random.default_rng(3)
    small, large = rng.normal(1.0, 1.0, 20), rng.normal(1.0, 1.0, 2000)
    est_s, lo_s, hi_s = bootstrap_groups([small], np.mean)
    est_l, lo_l, hi_l = bootstrap_groups([large], np.mean)
    assert lo_s < est_s < hi_s and lo_l < est_l < hi_l
    assert est_s == pytest.approx(small.mean())
    # the width follows the standard error: about 2 * 1.96 / sqrt(n)
    assert hi_l - lo_l == pytest.approx(2 * 1.96 * large.std() / np.sqrt(2000), rel=0.15)
    assert (hi_s - lo_s) > 5 * (hi_l - lo_l)


def test_bootstrap_is_deterministic_for_a_seed_and_resamples_groups_independently():
    a, b = np.arange(10.0), np.arange(10.0) + 3
    first = bootstrap_groups([a, b], lambda x, y: y.mean() - x.mean(), seed=7)
    assert first == bootstrap_groups([a, b], lambda x, y: y.mean() - x.mean(), seed=7)
    assert first[0] == pytest.approx(3.0) and first[1] < 3.0 < first[2]


def test_paired_test_matches_scipy_and_counts_ties_against_the_claim():
    d = np.array([0.3, 0.1, 0.4, 0.2, 0.5, -0.05])
    assert paired_greater(d) == pytest.approx(stats.wilcoxon(d, alternative="greater", method="exact").pvalue)
    assert paired_greater(np.zeros(6)) == 1.0
    # five positive differences reach p = 1/32 exactly; three tied runs beside them weaken the evidence
    assert paired_greater(np.full(5, 0.2)) == pytest.approx(1 / 32)
    assert paired_greater(np.array([0.2] * 5 + [0.0] * 3)) > 0.05


def test_clustered_spearman_rho_is_scipys_and_its_interval_resamples_runs():
    rng = np.random.default_rng(0)
    runs = np.repeat(np.arange(8), 4)
    x = rng.normal(size=32)
    y = -x + rng.normal(scale=0.3, size=32)
    rho, low, high = clustered_spearman(x, y, runs)
    assert rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert low < rho < high < 0
    unrelated = rng.normal(size=32)
    rho, low, high = clustered_spearman(x, unrelated, runs)
    assert low < 0 < high


def test_percentile_interval_ignores_nan():
    assert percentile_interval(np.array([np.nan, 1.0, 2.0, 3.0]), 1.0) == (1.0, 3.0)
    assert all(np.isnan(percentile_interval(np.array([np.nan]))))
