"""Mixed-precision Grams (float64 centring, float32 product, float64 diagonal) stay within 1e-6 of float64.

Every case is summarised with ``precision="mixed"`` (so the float32 product
is really used, whatever the size) and compared through :func:`compare`
against the float64 textbook formulas of ``similarity_reference``.
"""

import numpy as np
import pytest

import similarity_reference as ref
from vaesim.similarity import compare, summarise
from vaesim.similarity import summary as summary_module
from vaesim.similarity.summary import unpack_upper

TOL = 1e-6
METRICS = ("cka", "cka_debiased")


def _relu(rng, n, p, rank=4, noise=0.5):
    signal = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, p))
    return np.maximum(signal + rng.normal(scale=noise, size=(n, p)), 0)


def _cases():
    rng = np.random.default_rng(11)
    n = 64
    base = rng.normal(size=(n, 3))
    rank_one = np.outer(rng.normal(size=n), rng.normal(size=900))
    return {
        "float32_offset_1e3": (_relu(rng, n, 400) + 1e3).astype(np.float32),
        # a 1e4 offset on a wide float32 layer: float32 centring would lose ~1e4 * 2^-24 per value
        "wide_float32_offset_1e4": (_relu(rng, n, 4096) + 1e4).astype(np.float32),
        "float64_offset_1e6": _relu(rng, n, 300) + 1e6,
        "p_much_larger_than_n": rng.normal(size=(n, 6000)),
        "rank_deficient": (base @ rng.normal(size=(3, 500)) + 50.0).astype(np.float32),
        "nearly_rank_one": rank_one + 1e-4 * rng.normal(size=(n, 900)),
        "nearly_rank_one_float32_offset": (rank_one + 1e-2 * rng.normal(size=(n, 900)) + 300.0).astype(np.float32),
        "related_to_first": (np.maximum(base @ rng.normal(size=(3, 200)), 0) + 0.05 * rng.normal(size=(n, 200))),
        "narrow_partner": rng.normal(size=(n, 7)) + 20.0,  # p <= n/2: stored as features (float64 route)
    }


CASES = _cases()


@pytest.fixture(scope="module")
def mixed_frame():
    models = {name: {"layer": summarise(x, name=name, metrics=METRICS, precision="mixed")}
              for name, x in CASES.items()}
    return compare(models, metrics=METRICS)


@pytest.mark.parametrize("metric", METRICS)
def test_every_pair_within_1e6_of_float64_textbook(mixed_frame, metric):
    reference = {"cka": ref.cka, "cka_debiased": ref.cka_debiased}[metric]
    rows = mixed_frame[mixed_frame.metric == metric]
    assert len(rows) == len(CASES) * (len(CASES) + 1) // 2
    worst = 0.0
    for row in rows.itertuples():
        expected = reference(CASES[row.a_model], CASES[row.b_model])
        assert row.score == pytest.approx(expected, abs=TOL), (row.a_model, row.b_model)
        worst = max(worst, abs(row.score - expected))
    assert worst < TOL


@pytest.mark.parametrize("name", ["wide_float32_offset_1e4", "p_much_larger_than_n", "nearly_rank_one"])
def test_mixed_gram_is_really_float32_and_within_its_bound(name):
    """The mixed Gram differs from the float64 one (the float32 product is used) by O(2^-24 |xi||xj|)."""
    x = CASES[name]
    mixed = summarise(x, metrics=("cka",), precision="mixed")
    exact = summarise(x, metrics=("cka",), precision="float64")
    n = mixed.n
    k_mixed = unpack_upper(mixed.packed_gram(), n, scale=True, symmetric=True)
    k_exact = unpack_upper(exact.packed_gram(), n, scale=True, symmetric=True)
    assert not np.array_equal(k_mixed, k_exact)
    norms = np.sqrt(exact.row_norms)
    relative = np.abs(k_mixed - k_exact) / np.outer(norms, norms)
    assert relative.max() < 64 * 2.0**-24
    # the diagonal, traces and row norms are the float64 ones
    np.testing.assert_allclose(mixed.row_norms, exact.row_norms, rtol=1e-13)
    np.testing.assert_allclose(np.diagonal(k_mixed), exact.row_norms, rtol=1e-13)
    assert mixed.total_variance == pytest.approx(exact.total_variance, rel=1e-13)


def test_float32_straightforward_method_fails_where_mixed_holds():
    """The adversarial case is real: the straightforward float32 method (cast, centre and multiply in float32)
    is off by far more than 1e-6 on float64 activations with a large mean; centring first in float64 is not."""
    x = CASES["float64_offset_1e6"]
    y = CASES["float32_offset_1e3"]
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    xc = x32 - x32.mean(0)  # float32 arithmetic throughout
    yc = y32 - y32.mean(0)
    k, l = xc @ xc.T, yc @ yc.T
    naive = float((k.astype(np.float64) * l).sum() / np.sqrt((k.astype(np.float64) ** 2).sum() * (l.astype(np.float64) ** 2).sum()))
    expected = ref.cka(x, y)
    ours = compare({"a": {"l": summarise(x, metrics=("cka",), precision="mixed")},
                    "b": {"l": summarise(y, metrics=("cka",), precision="mixed")}},
                   metrics=("cka",), model_pairs=[("a", "b")])["score"].iloc[0]
    assert abs(naive - expected) > 1e-5
    assert ours == pytest.approx(expected, abs=TOL)


def test_auto_uses_float64_below_threshold_and_mixed_above(monkeypatch):
    x = CASES["p_much_larger_than_n"]
    exact = summarise(x, metrics=("cka",), precision="float64").gram
    monkeypatch.setattr(summary_module, "MIXED_MIN_WORK", 10**12)
    assert np.array_equal(summarise(x, metrics=("cka",)).gram, exact)
    monkeypatch.setattr(summary_module, "MIXED_MIN_WORK", 1)
    assert not np.array_equal(summarise(x, metrics=("cka",)).gram, exact)


def test_mixed_keeps_zero_variance_constant_columns_and_nan_errors():
    rng = np.random.default_rng(3)
    constant = np.full((20, 50), 7.25)
    summary = summarise(constant, metrics=("cka",), precision="mixed")
    assert summary.zero_variance and not summary.gram.any()
    x = rng.normal(size=(20, 60))
    x[:, :30] = 123.456  # exactly constant float64 columns become exact zeros, as in the float64 route
    mixed = summarise(x, metrics=("cka",), precision="mixed")
    exact = summarise(x[:, 30:], metrics=("cka",), precision="mixed")
    np.testing.assert_allclose(mixed.row_norms, exact.row_norms, rtol=1e-13)
    x[3, 40] = np.nan
    with pytest.raises(ValueError, match="finite"):
        summarise(x, name="layer_with_nan", metrics=("cka",), precision="mixed")


def test_mixed_with_procrustes_keeps_float64_features_and_factor():
    """n/2 < p <= n with Procrustes: features (float64) are the factor; only the Gram is mixed."""
    rng = np.random.default_rng(5)
    x = (_relu(rng, 40, 30) + 1e3).astype(np.float32)
    y = rng.normal(size=(40, 35)) + 5.0
    summaries = {k: {"l": summarise(v, metrics=("cka", "procrustes"), precision="mixed")} for k, v in (("x", x), ("y", y))}
    assert summaries["x"]["l"].features.dtype == np.float64
    frame = compare(summaries, metrics=("cka", "procrustes"), model_pairs=[("x", "y")])
    scores = dict(zip(frame.metric, frame.score))
    assert scores["cka"] == pytest.approx(ref.cka(x, y), abs=TOL)
    assert scores["procrustes"] == pytest.approx(ref.procrustes(x, y), abs=TOL)


def test_torch_device_route_agrees():
    torch = pytest.importorskip("torch")
    x = CASES["wide_float32_offset_1e4"]
    on_torch = summarise(x, metrics=("cka",), precision="mixed", device=torch.device("cpu"))
    on_numpy = summarise(x, metrics=("cka",), precision="mixed")
    scale = on_numpy.total_variance
    assert np.abs(on_torch.gram - on_numpy.gram).max() < 64 * 2.0**-24 * scale


def test_bad_precision_is_named():
    with pytest.raises(ValueError, match="precision must be one of"):
        summarise(np.ones((4, 3)), precision="half")


@pytest.mark.parametrize("scale", [1e200, 1e-200, 1e12, 1e-12])
def test_mixed_route_is_scale_invariant_at_extreme_magnitudes(scale):
    """Values beyond float32's range (1e200 -> inf, 1e-200 -> 0) or whose squares leave it (1e+-12 in a
    Gram of p values) are scaled by a power of two before the float32 product; CKA is unchanged."""
    x = CASES["p_much_larger_than_n"]
    y = CASES["related_to_first"]
    expected = ref.cka(x, y)
    models = {"x": {"l": summarise(scale * x, metrics=METRICS, precision="mixed")},
              "y": {"l": summarise(y, metrics=METRICS, precision="mixed")}}
    assert np.isfinite(models["x"]["l"].gram).all() and models["x"]["l"].total_variance > 0
    frame = compare(models, metrics=("cka",), model_pairs=[("x", "y")])
    assert frame["score"].iloc[0] == pytest.approx(expected, abs=TOL)
    assert (frame["note"] == "").all()


def test_float32_values_whose_squares_underflow_are_scaled():
    """float32 activations of size ~1e-20 (squares below float32's smallest normal number) keep their CKA."""
    x = CASES["wide_float32_offset_1e4"].astype(np.float64)
    tiny = ((x - x.mean(0)) * 1e-20).astype(np.float32)
    y = CASES["float32_offset_1e3"]
    models = {"x": {"l": summarise(tiny, metrics=("cka",), precision="mixed")},
              "y": {"l": summarise(y, metrics=("cka",), precision="mixed")}}
    score = compare(models, metrics=("cka",), model_pairs=[("x", "y")])["score"].iloc[0]
    assert score == pytest.approx(ref.cka(tiny.astype(np.float64), y), abs=TOL)


def test_mixed_gram_does_not_depend_on_the_thread_count():
    """The centring runs in fixed row blocks over the process's threads; 1 or 2 threads give the same bits."""
    from vaesim.utils.threads import thread_limit

    rng = np.random.default_rng(8)
    x = (_relu(rng, 300, 2000) + 1e3).astype(np.float32)
    with thread_limit(1):
        one = summarise(x, metrics=("cka",), precision="mixed")
    with thread_limit(2):
        two = summarise(x, metrics=("cka",), precision="mixed")
    assert np.array_equal(one.gram, two.gram) and np.array_equal(one.row_norms, two.row_norms)
    assert np.array_equal(one.gram, summarise(x, metrics=("cka",), precision="mixed").gram)
