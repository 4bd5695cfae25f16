"""UDR (Duan et al. 2020): reference formula, constructed cases, KL filtering, aggregation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from vaesim.metrics.udr import LatentCodes, active_latents, gaussian_kl_per_latent, udr, udr_pair


def ref_udr_spearman(za, kla, zb, klb, threshold=0.01):
    """Paper eq. 2 with |Spearman| similarities, plain loops over active latents."""
    ia = [i for i in range(za.shape[1]) if kla[i] > threshold]
    ib = [j for j in range(zb.shape[1]) if klb[j] > threshold]
    r = [[abs(spearmanr(za[:, i], zb[:, j])[0]) for j in ib] for i in ia]
    total = 0.0
    for row in r:
        total += max(row) ** 2 / sum(row)
    for j in range(len(ib)):
        col = [r[i][j] for i in range(len(ia))]
        total += max(col) ** 2 / sum(col)
    return total / (len(ia) + len(ib))


def run(mean, active):
    """LatentCodes with KL 1 on the active latents and 0.001 elsewhere."""
    kl = np.where(np.asarray(active, dtype=bool), 1.0, 0.001)
    return LatentCodes(np.asarray(mean, dtype=np.float64), kl)


@pytest.fixture(scope="module")
def base():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((1000, 8))
    z[:, 5:] *= 0.01  # collapsed latents: tiny spread, KL below threshold
    return z


def test_gaussian_kl_matches_closed_form():
    mean = np.array([[0.0, 1.0], [2.0, -1.0]])
    logvar = np.array([[0.0, math.log(4.0)], [0.0, 0.0]])
    expected = [np.mean([0.0, 0.5 * 4.0]), np.mean([0.5 * (1 + 4 - math.log(4) - 1), 0.5])]
    assert np.allclose(gaussian_kl_per_latent(mean, logvar), expected)
    assert active_latents([0.005, 0.02]).tolist() == [False, True]


def test_spearman_pair_matches_paper_formula_reference(base):
    rng = np.random.default_rng(1)
    other = base @ rng.standard_normal((8, 8)) * 0.5 + rng.standard_normal((1000, 8))
    active_a, active_b = [1] * 5 + [0] * 3, [1] * 6 + [0] * 2
    a, b = run(base, active_a), run(other, active_b)
    got = udr_pair(a, b, method="spearman")
    assert got == pytest.approx(ref_udr_spearman(base, a.kl, other, b.kl), abs=1e-12)


@pytest.mark.parametrize("method", ["spearman", "lasso"])
def test_permuted_copy_scores_highest_and_extra_noise_dims_lower(base, method):
    rng = np.random.default_rng(2)
    perm = [3, 0, 4, 1, 2, 5, 6, 7]
    active = [1] * 5 + [0] * 3
    a = run(base, active)
    b = run(base[:, perm] * np.array([2.0, -1.0, 0.5, -3.0, 1.0, 1, 1, 1]) + 0.05 * rng.standard_normal((1000, 8)),
            active)
    noisy = base.copy()
    noisy[:, 5:] = rng.standard_normal((1000, 3))  # three more latents carry noise and are active
    c = run(noisy, [1] * 8)
    rotated = base.copy()
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    rotated[:, :5] = base[:, :5] @ q
    d = run(rotated, active)
    perm_score = udr_pair(a, b, method=method)
    noise_score = udr_pair(a, c, method=method)
    rotation_score = udr_pair(a, d, method=method)
    assert perm_score > 0.85
    assert perm_score > noise_score + 0.1
    assert perm_score > rotation_score + 0.1
    if method == "spearman":
        # noise latents add columns with near-zero similarity: each contributes ~ max/len ~ 0,
        # so the score drops to about 2*5 / (5 + 8) of the permutation case
        assert noise_score == pytest.approx(perm_score * 10 / 13, abs=0.05)


def test_collapsed_latents_are_ignored(base):
    active = [1] * 5 + [0] * 3
    a = run(base, active)
    b = run(base[:, [1, 0, 2, 3, 4, 5, 6, 7]], active)
    few = run(base[:, :5], [1] * 5)
    few_b = run(base[:, [1, 0, 2, 3, 4]], [1] * 5)
    for method in ("spearman", "lasso"):
        assert udr_pair(a, b, method=method) == pytest.approx(udr_pair(few, few_b, method=method), abs=1e-9)


def test_no_active_latent_scores_zero(base):
    dead = run(base, [0] * 8)
    assert udr_pair(dead, run(base, [1] * 8), method="spearman") == 0.0


def test_model_scores_are_medians_within_groups(base):
    rng = np.random.default_rng(3)
    active = [1] * 5 + [0] * 3
    runs = {
        "beta1/s0": run(base, active),
        "beta1/s1": run(base[:, [2, 1, 0, 3, 4, 5, 6, 7]], active),
        "beta1/s2": run(base @ np.linalg.qr(rng.standard_normal((8, 8)))[0], [1] * 8),
        "beta4/s0": run(rng.standard_normal((1000, 8)), [1] * 8),
        "beta4/s1": run(rng.standard_normal((1000, 8)), [1] * 8),
    }
    groups = {k: k.split("/")[0] for k in runs}
    result = udr(runs, groups=groups, method="spearman")
    assert set(result.pairwise) == {(a, b) for a in runs for b in runs if a != b and groups[a] == groups[b]}
    for k in runs:
        partners = [v for (a, b), v in result.pairwise.items() if b == k]
        assert result.model_scores[k] == pytest.approx(float(np.median(partners)))
    assert result.model_scores["beta1/s0"] > result.model_scores["beta1/s2"]
    assert result.active == {"beta1/s0": 5, "beta1/s1": 5, "beta1/s2": 8, "beta4/s0": 8, "beta4/s1": 8}
    lonely = udr({"x": runs["beta1/s0"]}, method="spearman")
    assert math.isnan(lonely.model_scores["x"])


def test_udr_bad_inputs(base):
    a = run(base, [1] * 8)
    with pytest.raises(ValueError, match="method must be one of"):
        udr({"a": a, "b": a}, method="pearson")
    with pytest.raises(ValueError, match="no entry for runs"):
        udr({"a": a, "b": a}, groups={"a": 1})
    with pytest.raises(ValueError, match="same inputs"):
        udr({"a": a, "b": run(base[:10], [1] * 8)})
