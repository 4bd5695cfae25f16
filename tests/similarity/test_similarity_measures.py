"""Single-pair measures against float64 textbook formulas, invariances and bad input."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import similarity_reference as ref
from vaesim.similarity import linear_cka, procrustes_distance, procrustes_similarity

TOL = 1e-6


def _relu_layer(rng, n, p, offset=0.0, dtype=np.float64):
    signal = rng.normal(size=(n, 4)) @ rng.normal(size=(4, p))
    return (np.maximum(signal + rng.normal(scale=0.5, size=(n, p)), 0) + offset).astype(dtype)


CASES = {
    "random": lambda r: (r.normal(size=(40, 12)), r.normal(size=(40, 9))),
    "wide": lambda r: (r.normal(size=(30, 700)), r.normal(size=(30, 500))),
    "narrow": lambda r: (r.normal(size=(200, 2)), r.normal(size=(200, 3))),
    "mixed": lambda r: (r.normal(size=(25, 400)), r.normal(size=(25, 5))),
    "rank_deficient": lambda r: (
        r.normal(size=(50, 3)) @ r.normal(size=(3, 300)),
        r.normal(size=(50, 2)) @ r.normal(size=(2, 40)),
    ),
    "related": lambda r: (lambda x: (x, x @ r.normal(size=(20, 30)) + 0.3 * r.normal(size=(60, 30))))(
        r.normal(size=(60, 20))
    ),
    "images": lambda r: (r.random(size=(30, 3, 8, 8)), r.normal(size=(30, 2, 5))),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_measures_match_textbook_formulas(case):
    x, y = CASES[case](np.random.default_rng(len(case)))
    assert linear_cka(x, y) == pytest.approx(ref.cka(x, y), abs=TOL)
    assert linear_cka(x, y, debiased=True) == pytest.approx(ref.cka_debiased(x, y), abs=TOL)
    assert procrustes_similarity(x, y) == pytest.approx(ref.procrustes(x, y), abs=TOL)
    assert procrustes_distance(x, y) == pytest.approx(math.acos(min(1.0, ref.procrustes(x, y))), abs=1e-5)


def test_debiased_reference_does_not_need_centring():
    # Unbiased HSIC is translation invariant: uncentred and centred textbook values agree,
    # so vaesim's centring first changes only the rounding.
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(30, 6)) + 2.0, rng.normal(size=(30, 4)) - 1.0
    assert ref.cka_debiased(x, y, centre=False) == pytest.approx(ref.cka_debiased(x, y), abs=1e-10)
    assert linear_cka(x, y, debiased=True) == pytest.approx(ref.cka_debiased(x, y, centre=False), abs=1e-9)


@pytest.mark.parametrize("p", [64, 2000])
def test_float32_with_large_mean_keeps_float64_precision(p):
    rng = np.random.default_rng(p)
    n = 300
    x = _relu_layer(rng, n, p, offset=1e3, dtype=np.float32)  # post-ReLU, mean ~1e3, spread ~1
    y = _relu_layer(rng, n, 48, offset=5e2, dtype=np.float32)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)  # the exact values the float32 arrays hold
    expected = ref.cka(x64, y64)
    assert linear_cka(x, y) == pytest.approx(expected, abs=TOL)
    assert linear_cka(x, y, debiased=True) == pytest.approx(ref.cka_debiased(x64, y64), abs=TOL)
    assert procrustes_similarity(x, y) == pytest.approx(ref.procrustes(x64, y64), abs=TOL)
    # the test has teeth: products in float32 before centring lose the answer entirely
    k = (x @ x.T).astype(np.float64)
    l = (y @ y.T).astype(np.float64)
    h = ref.centring_matrix(n)
    naive = np.sum((h @ k @ h) * (h @ l @ h)) / np.sqrt(np.sum((h @ k @ h) ** 2) * np.sum((h @ l @ h) ** 2))
    assert abs(naive - expected) > 100 * TOL


def test_procrustes_wide_rank_deficient_small_singular_values():
    # p >> n, rank 3, large offset: the reduced-factor route must keep 1e-6 agreement.
    rng = np.random.default_rng(11)
    x = rng.normal(size=(60, 3)) @ rng.normal(size=(3, 900)) + 1e3
    y = x @ rng.normal(size=(900, 80)) * 1e-3 + rng.normal(scale=1e-4, size=(60, 80))
    assert procrustes_similarity(x, y) == pytest.approx(ref.procrustes(x, y), abs=TOL)
    assert procrustes_similarity(x, x[:, ::-1]) == pytest.approx(1.0, abs=1e-9)


def test_torch_and_numpy_inputs_agree():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 3, 4, 4)).astype(np.float32)
    y = rng.normal(size=(40, 10)).astype(np.float32)
    for measure in (linear_cka, procrustes_similarity):
        assert measure(torch.from_numpy(x), torch.from_numpy(y)) == measure(x, y)
    assert linear_cka(torch.from_numpy(x).to(torch.float16), y) == pytest.approx(linear_cka(x, y), abs=1e-2)


matrices = st.tuples(st.integers(6, 24), st.integers(1, 30), st.integers(1, 30), st.integers(0, 2**31 - 1))


def _pair(params):
    n, px, py, seed = params
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, px)) * rng.uniform(0.1, 10, size=px) + rng.normal(size=px) * 5
    y = np.hstack([x[:, : min(px, py)], rng.normal(size=(n, max(0, py - px)))]) + rng.normal(size=(n, py))
    return rng, x, y


@settings(max_examples=40, deadline=None)
@given(matrices)
def test_invariances_and_symmetry(params):
    rng, x, y = _pair(params)
    q, _ = np.linalg.qr(rng.normal(size=(x.shape[1], x.shape[1])))
    shift = rng.normal(size=x.shape[1]) * 100
    transforms = [x @ q, 7.5 * x, x + shift, 0.01 * (x @ q) - 3.0]
    for measure in (linear_cka, procrustes_similarity):
        base = measure(x, y)
        assert 0.0 <= base <= 1.0
        assert measure(y, x) == pytest.approx(base, abs=1e-9)
        for moved in transforms:
            assert measure(moved, y) == pytest.approx(base, abs=1e-8)
        assert measure(x, x) == pytest.approx(1.0, abs=1e-9)
    debiased = linear_cka(x, y, debiased=True)
    assert linear_cka(y, x, debiased=True) == pytest.approx(debiased, abs=1e-9)
    for moved in transforms:
        assert linear_cka(moved, y, debiased=True) == pytest.approx(debiased, abs=1e-7)
    assert linear_cka(x, x, debiased=True) == pytest.approx(1.0, abs=1e-9)
    assert procrustes_distance(x, x) == pytest.approx(0.0, abs=1e-4)


@settings(max_examples=20, deadline=None)
@given(matrices)
def test_procrustes_distance_triangle_inequality(params):
    rng, x, y = _pair(params)
    z = rng.normal(size=(x.shape[0], 5))
    d = procrustes_distance
    assert d(x, z) <= d(x, y) + d(y, z) + 1e-7


def test_invertible_non_orthogonal_map_changes_cka():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(200, 6))
    stretch = np.diag([1.0, 1.0, 1.0, 1.0, 1.0, 30.0])  # invertible, not orthogonal
    assert linear_cka(x, x @ stretch) < 0.9
    assert procrustes_similarity(x, x @ stretch) < 0.9


def test_identity_gives_one_for_every_route():
    rng = np.random.default_rng(9)
    for shape in [(30, 2), (30, 500), (12, 3, 7, 7)]:
        x = rng.normal(size=shape)
        assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
        assert linear_cka(x, x, debiased=True) == pytest.approx(1.0, abs=1e-12)
        assert procrustes_similarity(x, x) == pytest.approx(1.0, abs=1e-10)


# ---------------------------------------------------------------- bad input

GOOD = np.random.default_rng(0).normal(size=(10, 3))


@pytest.mark.parametrize("measure", [linear_cka, procrustes_similarity, procrustes_distance])
def test_different_n_names_both_inputs(measure):
    with pytest.raises(ValueError, match=r"x has 10 examples but y has 9.*same n"):
        measure(GOOD, GOOD[:9])


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("measure", [linear_cka, procrustes_similarity])
def test_non_finite_values_rejected(measure, bad_value):
    y = GOOD.copy()
    y[2, 1] = bad_value
    with pytest.raises(ValueError, match=r"^y: expected finite values, found 1 NaN/inf"):
        measure(GOOD, y)


def test_too_few_examples():
    with pytest.raises(ValueError, match=r"x: expected at least 2 examples.*got 1"):
        linear_cka(GOOD[:1], GOOD[:1])
    with pytest.raises(ValueError, match=r"x: expected at least 4 examples \(rows\) \(debiased CKA needs n > 3\), got 3"):
        linear_cka(GOOD[:3], GOOD[:3], debiased=True)
    with pytest.raises(ValueError, match=r"at least 2 examples"):
        procrustes_similarity(GOOD[:1], GOOD[:1])


@pytest.mark.parametrize(
    "bad, kind",
    [
        (np.array([["a", "b"]] * 10), "dtype <U1"),
        (np.array([[object()]] * 10, dtype=object), "dtype object"),
        (np.ones((10, 2), dtype=complex), "dtype complex128"),
    ],
)
def test_non_numeric_arrays_are_type_errors(bad, kind):
    with pytest.raises(TypeError, match=rf"x: expected (numeric|real-valued) activations.*{kind}"):
        linear_cka(bad, GOOD)


def test_wrong_object_type():
    with pytest.raises(TypeError, match=r"y: expected a numpy array or torch tensor.*got dict"):
        procrustes_similarity(GOOD, {"a": 1})


def test_integer_input_is_accepted_as_float64():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, size=(20, 4))
    assert linear_cka(x, x.astype(np.float64) * 2) == pytest.approx(1.0)


@pytest.mark.parametrize("measure", [linear_cka, procrustes_similarity])
def test_zero_variance_raises_never_returns_0_or_1(measure):
    constant = np.full((10, 3), 0.1)
    with pytest.raises(ValueError, match=r"y has zero variance.*undefined"):
        measure(GOOD, constant)
    with pytest.raises(ValueError, match=r"x has zero variance"):
        measure(constant, GOOD)


def test_debiased_undefined_when_self_hsic_not_positive():
    # n = 4 with one feature: unbiased HSIC of the layer with itself can be <= 0.
    x = np.array([[0.0], [0.0], [0.0], [1.0]])
    y = np.array([[1.0], [2.0], [3.0], [5.0]])
    assert ref.unbiased_hsic(x @ x.T, x @ x.T) <= 1e-15  # the textbook value agrees: not positive
    with pytest.raises(ValueError, match=r"^x: the unbiased HSIC of the layer with itself is .*\(not positive\)"):
        linear_cka(x, y, debiased=True)
