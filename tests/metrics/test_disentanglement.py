"""Disentanglement metrics: float64 references, known cases, invariances, chance, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from metrics_reference import (
    ref_dci, ref_entropy, ref_mi_matrix, ref_mig, ref_modularity, ref_mutual_information, ref_sap_continuous,
)
from vaesim.metrics import (
    FactorCodes, Protocol, beta_vae_score, dci, dci_from_importance, evaluate_disentanglement, explicitness,
    factor_vae_score, mig, modularity, sap,
)
from vaesim.metrics.discrete import entropy, histogram_discretize, mutual_information, mutual_information_matrix
from vaesim.metrics.disentanglement import modularity_from_mi

SIZES = (4, 5, 6)


def factors_sample(n, sizes=SIZES, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, s, size=n) for s in sizes], axis=1)


def linear_truth(matrix, sizes=SIZES, noise=0.0, offset=None):
    """FactorCodes with codes = factors @ matrix (+ offset, + Gaussian noise)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    shift = np.zeros(matrix.shape[1]) if offset is None else np.asarray(offset, dtype=np.float64)

    def encode(f, rng):
        z = f @ matrix + shift
        return z + noise * rng.standard_normal(z.shape) if noise else z

    return FactorCodes(tuple(sizes), encode)


# -- building blocks against references ----------------------------------------

def test_mutual_information_matches_counting_reference_and_sklearn():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 7, 3000)
    b = (a + rng.integers(0, 3, 3000)) % 5
    assert mutual_information(a, b) == pytest.approx(ref_mutual_information(a, b), abs=1e-12)
    assert mutual_information(a, b) == pytest.approx(mutual_info_score(a, b), abs=1e-12)
    assert entropy(a) == pytest.approx(ref_entropy(a), abs=1e-12)
    assert mutual_information(a, a) == pytest.approx(ref_entropy(a), abs=1e-12)


def test_histogram_discretize_matches_equal_width_bins_and_has_20_bins():
    codes = np.random.default_rng(2).standard_normal((5000, 3))
    binned = histogram_discretize(codes)
    assert binned.min() == 1 and binned.max() == 20
    from metrics_reference import ref_bins

    for k in range(3):
        assert np.array_equal(binned[:, k] - 1, ref_bins(codes[:, k]))


def test_mig_and_modularity_match_reference_on_noisy_codes():
    f = factors_sample(3000)
    rng = np.random.default_rng(3)
    codes = f @ rng.standard_normal((3, 4)) + rng.standard_normal((3000, 4))
    assert mig(codes, f) == pytest.approx(ref_mig(codes, f), abs=1e-12)
    mi = mutual_information_matrix(histogram_discretize(codes), f)
    assert np.allclose(mi, ref_mi_matrix(codes, f), atol=1e-12)
    assert modularity(codes, f) == pytest.approx(ref_modularity(ref_mi_matrix(codes, f)), abs=1e-12)


def test_sap_continuous_matches_squared_correlation_reference():
    f = factors_sample(2000)
    codes = f @ np.random.default_rng(4).standard_normal((3, 3)) + np.random.default_rng(5).standard_normal((2000, 3))
    assert sap(codes, f, continuous=True) == pytest.approx(ref_sap_continuous(codes, f), abs=1e-12)


@pytest.mark.parametrize("importance", [
    [[1.0, 0.0], [0.0, 1.0]],
    [[1.0, 0.5], [0.0, 1.0]],
    [[0.3, 0.3, 0.1], [0.2, 0.0, 0.9], [0.05, 0.05, 0.05], [0.0, 0.0, 0.0]],
    [[1.0, 1.0], [1.0, 1.0]],
])
def test_dci_from_importance_matches_entropy_reference(importance):
    d, c = dci_from_importance(np.array(importance))
    rd, rc = ref_dci(importance)
    assert d == pytest.approx(rd, abs=1e-12) and c == pytest.approx(rc, abs=1e-12)


def test_dci_two_factor_mix_scores_as_the_formula_predicts():
    # code 0 carries factor 0 and half-weight factor 1, code 1 factor 1: P rows (2/3, 1/3), (0, 1)
    d, c = dci_from_importance(np.array([[1.0, 0.5], [0.0, 1.0]]))
    h = -(2 / 3 * np.log2(2 / 3) + 1 / 3 * np.log2(1 / 3))
    assert d == pytest.approx((1 - h) * 1.5 / 2.5 + 1.0 * 1.0 / 2.5, abs=1e-9)
    hc = -(1 / 3 * np.log2(1 / 3) + 2 / 3 * np.log2(2 / 3))
    assert c == pytest.approx(1.0 * 1.0 / 2.5 + (1 - hc) * 1.5 / 2.5, abs=1e-9)


# -- known cases -----------------------------------------------------------------

def test_identity_scores_one_where_normalised():
    f = factors_sample(2000, seed=6)
    ft = factors_sample(1000, seed=7)
    z, zt = f.astype(float), ft.astype(float)
    assert mig(z, f) == pytest.approx(1.0, abs=0.01)
    assert modularity(z, f) == pytest.approx(1.0, abs=1e-3)
    assert sap(z, f, continuous=True) == pytest.approx(1.0, abs=0.01)
    scores = dci(z, f, zt, ft)
    assert scores.disentanglement > 0.95 and scores.completeness > 0.95
    assert scores.informativeness_test == pytest.approx(1.0)
    assert explicitness(z, f, zt, ft)[1] > 0.9
    truth = linear_truth(np.eye(3))
    assert beta_vae_score(truth, num_train=500, num_eval=300)["eval_accuracy"] == pytest.approx(1.0)
    assert factor_vae_score(truth, num_train=500, num_eval=300, num_variance_estimate=1000)["eval_accuracy"] == 1.0


def test_permuted_and_rescaled_codes_score_the_same():
    f = factors_sample(2000, seed=8)
    ft = factors_sample(1000, seed=9)
    rng = np.random.default_rng(10)
    z = f + 0.7 * rng.standard_normal(f.shape)
    zt = ft + 0.7 * rng.standard_normal(ft.shape)
    perm, scale, shift = [2, 0, 1], np.array([3.0, -0.5, 12.0]), np.array([5.0, -1.0, 0.25])
    w, wt = z[:, perm] * scale + shift, zt[:, perm] * scale + shift
    assert mig(w, f) == pytest.approx(mig(z, f), abs=1e-12)
    assert modularity(w, f) == pytest.approx(modularity(z, f), abs=1e-12)
    assert sap(w, f, continuous=True) == pytest.approx(sap(z, f, continuous=True), abs=1e-12)
    # the SVM (C=0.01) is regularised, so SAP is only exactly invariant to permutation
    assert sap(z[:, perm], f, zt[:, perm], ft) == pytest.approx(sap(z, f, zt, ft), abs=1e-12)
    assert sap(w, f, wt, ft) == pytest.approx(sap(z, f, zt, ft), abs=0.05)
    a, b = dci(z, f, zt, ft), dci(w, f, wt, ft)
    assert b.disentanglement == pytest.approx(a.disentanglement, abs=0.03)
    assert b.completeness == pytest.approx(a.completeness, abs=0.03)
    assert explicitness(w, f, wt, ft)[1] == pytest.approx(explicitness(z, f, zt, ft)[1], abs=1e-3)
    # FactorVAE divides by the global variance: exactly invariant (same draws, noisy codes)
    t1 = linear_truth(np.eye(3), noise=3.0)
    t2 = FactorCodes(SIZES, lambda fac, r: t1.encode(fac, r)[:, perm] * scale + shift)
    kw = dict(num_train=300, num_eval=200, num_variance_estimate=500)
    first = factor_vae_score(t1, **kw)
    assert 0.4 < first["eval_accuracy"] < 1.0
    assert factor_vae_score(t2, **kw) == first
    bv1 = beta_vae_score(t1, num_train=300, num_eval=300)["eval_accuracy"]
    assert beta_vae_score(t2, num_train=300, num_eval=300)["eval_accuracy"] == pytest.approx(bv1, abs=0.05)


def test_noise_scores_at_chance():
    f = factors_sample(2000, seed=11)
    ft = factors_sample(1000, seed=12)
    rng = np.random.default_rng(13)
    z, zt = rng.standard_normal((2000, 3)), rng.standard_normal((1000, 3))
    assert mig(z, f) < 0.03
    assert sap(z, f, continuous=True) < 0.01
    assert sap(z, f, zt, ft) < 0.05
    scores = dci(z, f, zt, ft)
    assert scores.disentanglement < 0.2 and scores.completeness < 0.2
    assert explicitness(z, f, zt, ft)[1] == pytest.approx(0.5, abs=0.05)
    noise = FactorCodes(SIZES, lambda fac, r: r.standard_normal((len(fac), 3)))
    assert beta_vae_score(noise, num_train=600, num_eval=600)["eval_accuracy"] == pytest.approx(1 / 3, abs=0.07)
    fv = factor_vae_score(noise, num_train=600, num_eval=600, num_variance_estimate=1000)
    assert fv["eval_accuracy"] == pytest.approx(1 / 3, abs=0.07)


def test_two_factor_mix_mig_and_modularity_as_predicted():
    # code 0 = 4 y0 + y1 carries both factors exactly (16 values < 20 bins), code 1 = y1:
    # factor 0 has gap H(y0) - I(code1; y0) ~ H(y0), factor 1 a gap of exactly 0 -> MIG ~ 1/2
    f = factors_sample(4000, sizes=(4, 4), seed=14)
    z = np.stack([4 * f[:, 0] + f[:, 1], f[:, 1]], axis=1).astype(float)
    m = ref_mi_matrix(z, f)
    h0, h1 = ref_entropy(f[:, 0]), ref_entropy(f[:, 1])
    predicted_mig = ((h0 - m[1, 0]) / h0 + 0.0) / 2
    assert mig(z, f) == pytest.approx(predicted_mig, abs=1e-12)
    assert mig(z, f) == pytest.approx(0.5, abs=0.01)
    predicted_mod = ((1 - (min(h0, h1) / max(h0, h1)) ** 2) + (1 - (m[1, 0] / h1) ** 2)) / 2
    assert modularity(z, f) == pytest.approx(predicted_mod, abs=1e-12)
    assert modularity(z, f) == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("t", [0.5, 1.0, 2.0])
def test_two_factor_mix_sap_is_one_over_one_plus_t_squared(t):
    f = factors_sample(20000, sizes=(10, 10), seed=15)
    z = np.stack([f[:, 0] + t * f[:, 1], f[:, 1]], axis=1).astype(float)
    assert sap(z, f, continuous=True) == pytest.approx(1 / (1 + t * t), abs=0.02)


def test_two_factor_mix_interventional_scores_two_thirds():
    # code 0 = y0 + y1 cannot tell which of the two was fixed; code 1 = y2 can: 2/3 of points right
    mix = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    truth = linear_truth(mix, sizes=(10, 10, 10))
    bv = beta_vae_score(truth, num_train=1500, num_eval=1500)["eval_accuracy"]
    assert bv == pytest.approx(2 / 3, abs=0.04)
    fv = factor_vae_score(truth, num_train=1500, num_eval=1500, num_variance_estimate=2000)["eval_accuracy"]
    assert fv == pytest.approx(2 / 3, abs=0.04)


def test_evaluate_disentanglement_is_deterministic_for_a_seed():
    truth = linear_truth(np.eye(3), noise=1.0)
    protocol = Protocol(num_train=400, num_test=200, batch_size=16, num_variance_estimate=400)
    first = evaluate_disentanglement(truth, seed=3, protocol=protocol)
    again = evaluate_disentanglement(truth, seed=3, protocol=protocol)
    other = evaluate_disentanglement(truth, seed=4, protocol=protocol)
    assert first == again
    assert first != other
    assert set(first) == {"beta_vae", "factor_vae", "mig", "sap", "dci_disentanglement", "dci_completeness",
                          "dci_informativeness", "modularity", "explicitness"}


def test_bad_inputs_name_the_problem():
    f = factors_sample(100)
    with pytest.raises(ValueError, match="codes have n=99 rows but factors have n=100"):
        mig(np.zeros((99, 3)), f)
    with pytest.raises(ValueError, match="at least 2 code dimensions"):
        mig(np.zeros((100, 1)), f)
    with pytest.raises(ValueError, match="NaN"):
        mig(np.full((100, 3), np.nan), f)
    with pytest.raises(ValueError, match="integer factor indices"):
        mig(np.zeros((100, 3)), f + 0.5)
    with pytest.raises(ValueError, match="codes_test"):
        sap(np.zeros((100, 3)), f)
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate_disentanglement(linear_truth(np.eye(3)), metrics=("mig", "nope"))
    with pytest.raises(ValueError, match="F >= 2"):
        modularity_from_mi(np.ones((3, 1)))


def test_model_factor_codes_encodes_each_item_once_and_exactly():
    import copy

    import torch

    from vaesim.data import get_dataset
    from vaesim.metrics import model_factor_codes
    from vaesim.models import build_vae

    dataset = get_dataset("dsprites-procedural")
    torch.manual_seed(0)
    model = build_vae(num_channels=1).eval()
    seen = []
    original = model.encode

    def counting(x):
        seen.append(len(x))
        return original(x)

    model.encode = counting
    truth = model_factor_codes(dataset, model, batch_size=16)
    rng = np.random.default_rng(0)
    factors = dataset.sample_factors(40, rng)
    twice = np.concatenate([factors, factors[:10]])
    codes = truth.codes(twice, rng)
    assert sum(seen) == len(np.unique(dataset.index_of(factors)))  # the repeats come from the cache
    # the repeated items are the cached codes of their first encoding, bit for bit
    assert np.array_equal(codes[40:], codes[:10])
    # and the codes are the encoder's: against a float64 copy of the encoder (float32 at batch 16 and the
    # float64 reference differ by float32 rounding; another batch size or CPU rounds differently, so no
    # bit-equality with a second float32 encoding is asserted)
    reference = copy.deepcopy(model).double()
    reference.encode = reference.__class__.encode.__get__(reference)
    with torch.no_grad():
        exact = reference.encode(torch.from_numpy(dataset.images_for_factors(twice)).double())[0].numpy()
    scale = float(np.abs(exact).max())
    assert scale > 0
    assert np.abs(codes - exact).max() <= 1e-5 * scale
    truth.codes(factors, rng)
    assert sum(seen) == len(np.unique(dataset.index_of(factors)))


def test_dci_classifiers_fitted_on_threads_equal_one_sklearn_classifier_per_factor():
    """DCI fits its per-factor classifiers on several threads: same importances as fitting scikit-learn's
    GradientBoostingClassifier (disentanglement_lib's estimator) one factor at a time, for 1 or 2 threads."""
    from sklearn.ensemble import GradientBoostingClassifier

    from vaesim.metrics.disentanglement import gbt_importance
    from vaesim.utils.threads import thread_limit

    rng = np.random.default_rng(12)
    f, ft = factors_sample(400, seed=12), factors_sample(200, seed=13)
    mix = rng.normal(size=(3, 4))
    z, zt = f @ mix + 0.3 * rng.normal(size=(400, 4)), ft @ mix + 0.3 * rng.normal(size=(200, 4))
    expected = np.stack([np.abs(GradientBoostingClassifier(random_state=0).fit(z, f[:, j]).feature_importances_)
                         for j in range(f.shape[1])], axis=1)
    for threads in (1, 2):
        with thread_limit(threads):
            importance, train, test = gbt_importance(z, f, zt, ft, seed=0)
        np.testing.assert_array_equal(importance, expected)
        assert 0 < test <= train <= 1
