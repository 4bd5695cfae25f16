"""Seeded statistics behind the verdicts, against scipy and closed forms."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from vaesim.report.statistics import (
    bootstrap_groups,
    clustered_spearman,
    paired_greater,
    paired_greater_floor,
    percentile_interval,
    seed_bootstrap,
    seed_jackknife,
    signed_rank_interval,
    walsh_averages,
)


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
    # five positive differences reach p = 1/32 exactly, with or without tied runs beside them (Pratt: a zero has
    # no sign to flip); a tied run lowers a mixed set's evidence by raising the ranks it is compared with
    assert paired_greater(np.full(5, 0.2)) == pytest.approx(1 / 32)
    assert paired_greater(np.array([0.2] * 5 + [0.0] * 3)) == pytest.approx(1 / 32)
    mixed = np.array([0.3, 0.1, 0.4, 0.2, -0.05])
    assert paired_greater(np.r_[mixed, 0.0, 0.0]) >= paired_greater(mixed)


def _pratt_by_enumeration(d: np.ndarray) -> float:
    """Textbook exact Pratt test: every sign pattern of the non-zero differences, ranks of |d| with zeros ranked."""
    import itertools

    ranks = stats.rankdata(np.abs(d))
    nonzero = np.flatnonzero(d != 0)
    observed = ranks[nonzero][d[nonzero] > 0].sum()
    sums = [sum(ranks[i] for i, s in zip(nonzero, signs) if s) for signs in
            itertools.product([0, 1], repeat=len(nonzero))]
    return float(np.mean(np.array(sums) >= observed - 1e-9))


@pytest.mark.parametrize("seed", range(12))
def test_the_exact_pratt_p_value_is_the_enumerated_one(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 12))
    d = np.round(rng.normal(0.2, 1.0, n), 1)  # rounding makes tied magnitudes
    d[rng.random(n) < 0.25] = 0.0  # and tied runs
    assert paired_greater(d) == pytest.approx(_pratt_by_enumeration(d), abs=1e-12)
    if np.all(d == 0) or len(d) == 0:
        return
    assert paired_greater_floor(d) == pytest.approx(2.0 ** -np.count_nonzero(d), abs=1e-12)


def test_clustered_spearman_rho_is_scipys_and_its_interval_leaves_out_runs():
    rng = np.random.default_rng(0)
    runs = np.repeat(np.arange(8), 4)
    x = rng.normal(size=32)
    y = -x + rng.normal(scale=0.3, size=32)
    rho, low, high = clustered_spearman(x, y, runs)
    assert rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert low < rho < high < 0
    # independent reference: the jackknife on Fisher's z written out with scipy
    z = np.arctanh([stats.spearmanr(x[runs != g], y[runs != g]).statistic for g in range(8)])
    se = np.sqrt(7 / 8 * ((z - z.mean()) ** 2).sum())
    half = stats.t.ppf(0.975, 7) * se
    assert (low, high) == pytest.approx((np.tanh(np.arctanh(rho) - half), np.tanh(np.arctanh(rho) + half)))
    unrelated = rng.normal(size=32)
    rho, low, high = clustered_spearman(x, unrelated, runs)
    assert low < 0 < high


def test_percentile_interval_ignores_nan():
    assert percentile_interval(np.array([np.nan, 1.0, 2.0, 3.0]), 1.0) == (1.0, 3.0)
    assert all(np.isnan(percentile_interval(np.array([np.nan]))))


def test_the_paired_test_floor_matches_the_issue_for_six_runs():
    # best one-sided p with 6 runs and 0..4 zero differences (exact Pratt test): 2^-(6 - zeros), as the docs say
    floors = [paired_greater_floor(np.r_[np.zeros(z), np.arange(1.0, 7 - z)]) for z in range(5)]
    assert floors == pytest.approx([1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4])
    # 8 runs with 3 ties can decide: p = 1/32 < 0.05 is reachable
    assert paired_greater_floor(np.r_[np.zeros(3), np.arange(1.0, 6)]) == pytest.approx(1 / 32)
    # the floor depends on magnitudes and ties only, never on the signs, and bounds the test from below
    d = np.array([0.0, 0.0, -0.3, 0.1, 0.2, -0.4])
    assert paired_greater_floor(d) == paired_greater_floor(-d) == paired_greater_floor(np.abs(d))
    assert paired_greater(d) >= paired_greater_floor(d) and paired_greater(-d) >= paired_greater_floor(d)
    assert paired_greater_floor(np.zeros(8)) == 1.0


def test_seed_bootstrap_resamples_seeds_not_pairs():
    # three seeds, one score per seed pair: every draw is one of the 27 seed multisets, so the interval
    # lies within what those give, and draws where one seed was drawn three times have no pair
    values = {(0, 1): 0.68, (0, 2): 0.70, (1, 2): 0.74}
    a, b = np.array([0, 0, 1]), np.array([1, 2, 2])
    scores = np.array([[values[p]] for p in zip(a, b)])
    estimate, low, high, valid = seed_bootstrap([(a, b, scores)], lambda m: m[0])
    assert estimate == pytest.approx(np.mean(list(values.values())))
    exact = []
    for draw in itertools.product(range(3), repeat=3):
        c = np.bincount(draw, minlength=3)
        w = np.array([c[i] * c[j] for i, j in zip(a, b)], dtype=float)
        if w.sum() > 0:
            exact.append(float(w @ scores[:, 0] / w.sum()))
    assert min(exact) <= low < estimate < high <= max(exact)
    assert abs(valid - 2000 * 24 / 27) < 5 * np.sqrt(2000 * (24 / 27) * (3 / 27))  # binomial, 5 SD


def test_seed_bootstrap_draws_a_seed_once_for_every_group():
    # two groups whose pairs within one seed score the same per seed: resampled jointly by seed their
    # difference is 0 in every draw; resampled apart it would not be
    seeds = np.arange(5)
    per_seed = np.array([[0.1], [0.4], [0.2], [0.9], [0.5]])
    group = (seeds, seeds, per_seed)
    estimate, low, high, valid = seed_bootstrap([group, group], lambda x, y: x[0] - y[0])
    assert estimate == low == high == 0.0 and valid == 2000
    _, low, high, _ = seed_bootstrap([group], lambda x: x[0])
    assert low < per_seed.mean() < high


def test_spearman_matches_scipy_with_ties():
    from scipy import stats as scipy_stats

    from vaesim.report.statistics import average_ranks, spearman

    rng = np.random.default_rng(3)
    for _ in range(20):
        x, y = rng.integers(0, 5, 30).astype(float), rng.normal(size=30)
        assert spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic, abs=1e-12)
    assert list(average_ranks(np.array([3.0, 1.0, 3.0, 2.0]))) == [3.5, 1.0, 3.5, 2.0]
    assert np.isnan(spearman(np.ones(4), np.arange(4.0)))


def test_signed_rank_interval_is_the_set_of_shifts_the_exact_test_keeps():
    # independent reference: scan a fine grid of shifts with the exact two one-sided tests at 0.025
    rng = np.random.default_rng(3)
    for n in (6, 7, 9, 12):
        d = np.round(rng.normal(0.3, 1.0, n), 2)
        estimate, low, high = signed_rank_interval(d)
        grid = np.linspace(d.min() - 0.5, d.max() + 0.5, 4001)
        kept = [t for t in grid if paired_greater(d - t) >= 0.025 and paired_greater(t - d) >= 0.025]
        step = grid[1] - grid[0]
        assert low <= min(kept) < low + step + 1e-12 and high - step - 1e-12 < max(kept) <= high
        assert low in set(walsh_averages(d)) and high in set(walsh_averages(d))
        assert estimate == pytest.approx(np.median(walsh_averages(d)))
        # the interval is above 0 exactly when the one-sided test rejects "no shift" at 0.025
        assert (low > 0) == (paired_greater(d) < 0.025)


def test_signed_rank_interval_needs_six_units_for_95_percent():
    # 2^-5 = 0.031 > 0.025: five all-positive differences cannot exclude any shift below them
    assert signed_rank_interval(np.arange(1.0, 6.0))[1:] == (-np.inf, np.inf)
    estimate, low, high = signed_rank_interval(np.arange(1.0, 7.0))
    assert low == 1.0 and high == 6.0 and estimate == 3.5  # 2^-6 = 0.016: the extremes are the ends


def test_signed_rank_interval_covers_the_centre_of_symmetric_data():
    # coverage >= 95% for any symmetric law (exact by test inversion); Monte Carlo with 600 draws per case:
    # a true coverage of 0.95 falls below 0.92 with probability < 0.1% (binomial)
    rng = np.random.default_rng(11)
    for n, draw in ((6, lambda: rng.standard_t(2, 6)), (8, lambda: rng.laplace(0, 1, 8)),
                    (15, lambda: rng.uniform(-1, 1, 15))):
        covered = 0
        for _ in range(600):
            _, low, high = signed_rank_interval(draw() + 0.4)
            covered += low <= 0.4 <= high
        assert covered / 600 >= 0.92, (n, covered / 600)


def test_seed_jackknife_within_seeds_is_the_t_interval_of_per_seed_means():
    # pairs within one seed (two per seed): the statistic is the mean of per-seed means, and the jackknife t
    # interval is the textbook one, mean +/- t_{S-1} sd / sqrt(S) of those means
    rng = np.random.default_rng(5)
    seeds = np.repeat(np.arange(5), 2)
    values = rng.normal(0.1, 0.05, (10, 1))
    estimate, low, high, count = seed_jackknife([(seeds, seeds, values)], lambda m: m[0])
    per_seed = values[:, 0].reshape(5, 2).mean(axis=1)
    half = stats.t.ppf(0.975, 4) * per_seed.std(ddof=1) / np.sqrt(5)
    assert count == 5 and estimate == pytest.approx(per_seed.mean())
    assert (low, high) == pytest.approx((per_seed.mean() - half, per_seed.mean() + half))


def test_seed_jackknife_across_seeds_drops_every_pair_of_the_left_out_seed():
    # every pair of 4 seeds, one value each: leave-one-out means over the 3 pairs without that seed
    a, b = np.array([0, 0, 0, 1, 1, 2]), np.array([1, 2, 3, 2, 3, 3])
    values = np.array([[0.1], [0.2], [0.4], [0.3], [0.5], [0.9]])
    estimate, low, high, count = seed_jackknife([(a, b, values)], lambda m: m[0])
    loo = np.array([values[(a != s) & (b != s), 0].mean() for s in range(4)])
    se = np.sqrt(3 / 4 * ((loo - loo.mean()) ** 2).sum())
    assert count == 4 and estimate == pytest.approx(values.mean())
    assert (low, high) == pytest.approx((values.mean() - stats.t.ppf(0.975, 3) * se,
                                         values.mean() + stats.t.ppf(0.975, 3) * se))
