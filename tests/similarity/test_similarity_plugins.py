"""SVCCA / PWCCA against float64 references from the papers; the measure plug-in API."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import sqrtm

from vaesim.similarity import (
    LayerSummary, MeasureSummaries, compare, plugin_summaries, pwcca, register_measure, summarise, svcca,
    unregister_measure,
)
from vaesim.similarity.cca import KEEP_VARIANCE, cca_summary


def _sv_reduce(x):
    """Raghu et al. 2017: centre, SVD, keep the leading directions holding 99% of the variance."""
    xc = x - x.mean(0)
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    frac = np.cumsum(s**2) / np.sum(s**2)
    k = int(np.argmax(frac >= KEEP_VARIANCE - 1e-12)) + 1
    return xc, u[:, :k] * s[:k]


def _inv_sqrt(c):
    return np.real(np.linalg.inv(sqrtm(c)))


def ref_cca(x, y):
    """Canonical correlations and x's canonical variates, textbook covariance form."""
    xc, xr = _sv_reduce(np.asarray(x, np.float64))
    _, yr = _sv_reduce(np.asarray(y, np.float64))
    n = len(xr)
    sxx, syy, sxy = xr.T @ xr / (n - 1), yr.T @ yr / (n - 1), xr.T @ yr / (n - 1)
    t = _inv_sqrt(sxx) @ sxy @ _inv_sqrt(syy)
    u, rho, _ = np.linalg.svd(t, full_matrices=False)
    h = xr @ _inv_sqrt(sxx) @ u  # canonical variates of x (n, m)
    h /= np.linalg.norm(h, axis=0)
    return rho, h, xc


def ref_svcca(x, y):
    return float(ref_cca(x, y)[0].mean())


def ref_pwcca(x, y):
    rho, h, xc = ref_cca(x, y)
    alpha = np.abs(h.T @ xc).sum(axis=1)  # sum over neurons of |<h_i, x_j>| (Morcos et al. 2018)
    return float((alpha / alpha.sum()) @ rho)


def layers(seed=0, n=300):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 12)) @ np.diag(np.linspace(3, 0.2, 12))
    y = np.tanh(x @ rng.standard_normal((12, 25))) + 0.3 * rng.standard_normal((n, 25))
    return x, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_svcca_pwcca_match_float64_references(seed):
    x, y = layers(seed)
    assert svcca(x, y) == pytest.approx(ref_svcca(x, y), abs=1e-9)
    assert pwcca(x, y) == pytest.approx(ref_pwcca(x, y), abs=1e-9)
    assert pwcca(y, x) == pytest.approx(ref_pwcca(y, x), abs=1e-9)
    assert svcca(x, y) == pytest.approx(svcca(y, x), abs=1e-12)


def test_wide_layer_p_greater_than_n_matches_reference():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((80, 6)) @ rng.standard_normal((6, 200)) + 0.01 * rng.standard_normal((80, 200))
    y = rng.standard_normal((80, 30))
    assert svcca(x, y) == pytest.approx(ref_svcca(x, y), abs=1e-8)
    assert pwcca(x, y) == pytest.approx(ref_pwcca(x, y), abs=1e-8)


def _with_spectrum(energy, n=400, seed=5):
    """Centred (n, m) activations whose squared singular values are exactly ``energy``."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, len(energy)))
    u, _ = np.linalg.qr(z - z.mean(0))
    return u * np.sqrt(energy)


@pytest.mark.parametrize("energy, kept", [
    ([100, 100, 100, 1, 1, 1e-4], 3),  # 300 / 302.0001 = 99.34 %
    ([100, 1, 1, 1e-4], 2),             # 100 / 102 = 98.0 %, 101 / 102 = 99.02 %
    ([50, 50], 2),
])
def test_keeps_99_percent_of_variance(energy, kept):
    x = _with_spectrum(energy)
    assert cca_summary(x).rank == kept
    assert _sv_reduce(x)[1].shape[1] == kept


def test_cca_invariances_and_known_cases():
    x, y = layers(7)
    q, _ = np.linalg.qr(np.random.default_rng(8).standard_normal((25, 25)))
    assert svcca(x, y @ q * 4.0 + 7.0) == pytest.approx(svcca(x, y), abs=1e-10)
    assert pwcca(x, y @ q * 4.0 + 7.0) == pytest.approx(pwcca(x, y), abs=1e-10)
    assert svcca(x, x) == pytest.approx(1.0) and pwcca(x, x) == pytest.approx(1.0)
    noise = np.random.default_rng(9).standard_normal((3000, 5))
    other = np.random.default_rng(10).standard_normal((3000, 5))
    assert svcca(noise, other) < 0.05


def test_compare_svcca_pwcca_rows_and_orders():
    x, y = layers(11)
    frame = compare({"m": {"a": x, "b": y}}, metrics=("cka", "svcca", "pwcca"))
    got = {(r.a_layer, r.b_layer, r.metric): r.score for r in frame.itertuples()}
    assert got[("a", "b", "svcca")] == pytest.approx(ref_svcca(x, y), abs=1e-9)
    assert got[("a", "b", "pwcca")] == pytest.approx(ref_pwcca(x, y), abs=1e-9)
    assert got[("b", "a", "pwcca")] == pytest.approx(ref_pwcca(y, x), abs=1e-9)  # asymmetric: both orders
    assert ("b", "a", "svcca") not in got and ("b", "a", "cka") not in got
    builtin = compare({"m": {"a": x, "b": y}}, metrics=("cka",))
    assert got[("a", "b", "cka")] == pytest.approx(float(builtin.score[builtin.a_layer != builtin.b_layer].iloc[0]))
    assert list(frame.columns) == ["a_model", "a_layer", "b_model", "b_layer", "metric", "score", "n", "note"]
    assert frame.n.dtype == np.int64 and (frame.n == len(x)).all()


def test_zero_variance_layer_gives_nan_with_note():
    x, _ = layers(12)
    frame = compare({"m": {"a": x}, "k": {"a": np.ones((len(x), 4))}}, metrics=("svcca",), model_pairs=[("m", "k")])
    assert math.isnan(frame.score.iloc[0]) and "zero variance" in frame.note.iloc[0]


# -- the plug-in API with the documented RBF-CKA example --------------------------

def rbf_gram(x, fraction=0.5):
    sq = (x * x).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
    np.fill_diagonal(d2, 0.0)
    sigma2 = fraction**2 * np.median(d2)
    k = np.exp(-d2 / (2 * sigma2))
    h = np.eye(len(x)) - 1 / len(x)
    return h @ k @ h


def gram_cka(kc, lc):
    return float((kc * lc).sum() / np.sqrt((kc * kc).sum() * (lc * lc).sum()))


def ref_rbf_cka(x, y, fraction=0.5):
    """Kornblith et al. 2019: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), RBF kernels, loops over pairs."""
    def kernel(z):
        n = len(z)
        d = np.array([[np.sum((z[i] - z[j]) ** 2) for j in range(n)] for i in range(n)])
        sigma = fraction * np.sqrt(np.median(d))
        return np.exp(-d / (2 * sigma**2))

    k, l = kernel(x), kernel(y)
    h = np.eye(len(x)) - np.ones((len(x), len(x))) / len(x)
    hsic = lambda a, b: np.trace(a @ h @ b @ h)  # noqa: E731
    return hsic(k, l) / math.sqrt(hsic(k, k) * hsic(l, l))


@pytest.fixture
def rbf_measure():
    register_measure("cka_rbf", gram_cka, summary=lambda x: rbf_gram(np.asarray(x, float)))
    yield
    unregister_measure("cka_rbf")


def test_registered_rbf_cka_matches_reference_in_compare(rbf_measure):
    x, y = layers(13, n=60)
    frame = compare({"a": {"l": x}, "b": {"l": y}}, metrics=("cka_rbf", "cka"), model_pairs=[("a", "b")])
    assert list(frame.metric) == ["cka_rbf", "cka"]
    assert frame.score.iloc[0] == pytest.approx(ref_rbf_cka(x, y), abs=1e-10)


def test_pair_only_measure_and_precomputed_summaries(rbf_measure):
    calls = []

    def mean_abs_corr(x, y):
        calls.append(1)
        c = np.corrcoef(x.T, y.T)[: x.shape[1], x.shape[1]:]
        return float(np.abs(c).mean())

    register_measure("mean_corr", mean_abs_corr)
    try:
        x, y = layers(14, n=60)
        frame = compare({"a": {"l": x}, "b": {"l": y}}, metrics=("mean_corr",), model_pairs=[("a", "b")])
        assert frame.score.iloc[0] == pytest.approx(mean_abs_corr(x, y))
        stored = {key: MeasureSummaries(len(v), summarise(v, metrics=("cka",)), plugin_summaries(v, ("cka_rbf", "cka")))
                  for key, v in (("a", x), ("b", y))}
        again = compare({"a": {"l": stored["a"]}, "b": {"l": stored["b"]}}, metrics=("cka", "cka_rbf"),
                        model_pairs=[("a", "b")])
        direct = compare({"a": {"l": x}, "b": {"l": y}}, metrics=("cka", "cka_rbf"), model_pairs=[("a", "b")])
        assert np.allclose(again.score, direct.score, atol=1e-12)
        with pytest.raises(ValueError, match="no summary for measure 'mean_corr'"):
            compare({"a": {"l": stored["a"]}, "b": {"l": stored["b"]}}, metrics=("mean_corr",))
        with pytest.raises(ValueError, match="needs the activations"):
            compare({"a": {"l": summarise(x)}}, metrics=("cka_rbf",))
    finally:
        unregister_measure("mean_corr")


def test_registry_rejects_bad_registrations(rbf_measure):
    with pytest.raises(ValueError, match="built-in"):
        register_measure("cka", gram_cka)
    with pytest.raises(ValueError, match="already registered"):
        register_measure("cka_rbf", gram_cka)
    with pytest.raises(ValueError, match="lower-case"):
        register_measure("My Measure", gram_cka)
    with pytest.raises(TypeError, match="callable"):
        register_measure("broken", 3)
    with pytest.raises(ValueError, match="non-empty subset"):
        compare({"a": {"l": np.eye(5)}}, metrics=("cka", "nope"))
    with pytest.raises(ValueError, match="register others with"):
        compare({"a": {"l": np.eye(5)}}, metrics=("cka_rbf", "nope"))
    register_measure("bad_type", lambda a, b: "high")
    try:
        with pytest.raises(TypeError, match="returned str"):
            compare({"a": {"l": np.random.default_rng(0).standard_normal((5, 2))}}, metrics=("bad_type",))
    finally:
        unregister_measure("bad_type")
