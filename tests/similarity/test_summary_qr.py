"""The Procrustes factor of wide layers by tall-skinny QR (vaesim.similarity.tsqr) keeps QR's accuracy.

Stated bound (module docstring of ``vaesim.similarity.tsqr``): ``R`` is the
exact R factor of ``Xc^T + dX`` with ``||dx_i|| <= gamma ||xc_i||`` for every
example ``i``; here ``gamma = LAMBDA sqrt(K) u``, ``K = n (m_b + d (n + 1))``
(``m_b`` the tallest leaf, ``d`` the tree depth), the probabilistic form of
Higham's Householder bound with ``LAMBDA = 10``. Consequences checked below,
against references computed independently of vaesim:

* entry by entry ``|R^T R - Xc Xc^T|_ij <= (2 gamma + gamma^2) ||xc_i|| ||xc_j||``
  against a Gram accumulated in extended precision (x86-64 ``long double``,
  ``u = 2^-64``; its own error ``p u_ref ||xc_i|| ||xc_j||`` is added);
* singular values of ``R`` beyond the exact rank of ``Xc`` are at most
  ``gamma ||Xc||_F`` (plus the SVD's ``LAMBDA n u ||R||_2``): what a Gram
  eigendecomposition would not give (``sqrt(gamma) ||Xc||_F``);
* Procrustes scores: ``|score - textbook| <= 2 sqrt(n) (gamma_x + gamma_y)``
  (the backward error moved through ``||X^T Y||_* <= sqrt(n) ||X||_F ||Y||_2``)
  plus the rounding of the products and SVDs of both computations
  (``LAMBDA u`` times ``n + n^2`` for the ``n x n`` route, ``n + p_x p_y`` for
  the textbook's ``p_x x p_y`` cross product); against today's route
  (``numpy.linalg.qr``, ``gamma_old`` with ``K = n p``) the same with both
  gammas. :func:`compare` adds its nuclear-norm tolerance
  ``engine.PROCRUSTES_TOLERANCE``.

Every tolerance comes from ``eps`` and the sizes; measured errors are at most
0.5% (Grams) and 1e-5 (scores) of them on one machine, and nothing depends on it.
"""

import itertools
import math

import numpy as np
import pytest
import similarity_reference as ref

from vaesim.similarity import compare, engine, procrustes_similarity, summarise, tsqr
from vaesim.similarity.measures import centre_columns, nuclear_norm, procrustes_factor
from vaesim.utils.threads import thread_limit

U = np.finfo(np.float64).eps / 2  # unit roundoff 2^-53
LAMBDA = 10.0  # probabilistic bound's multiplier (failure probability <= 2 exp(-50) per quantity)


def _gamma_tsqr(n: int, p: int) -> float:
    """gamma of the stated bound, with the leaves recomputed here from the module's constants."""
    target = max(tsqr.LEAF_ROWS_PER_COLUMN * n, tsqr.MIN_LEAF_ROWS)
    leaves = max(1, p // target)
    tallest = -(-p // leaves)
    depth = math.ceil(math.log2(leaves))
    return LAMBDA * math.sqrt(n * (tallest + depth * (n + 1))) * U


def _gamma_householder(n: int, p: int) -> float:
    """gamma of numpy's one-piece Householder QR of ``Xc^T`` ``(p, n)``."""
    return LAMBDA * math.sqrt(n * p) * U


def _reference_gram(xc: np.ndarray) -> tuple[np.ndarray, float]:
    """``Xc Xc^T`` accumulated in extended precision where the platform has it, and its relative error bound."""
    wide = np.longdouble if np.finfo(np.longdouble).eps < np.finfo(np.float64).eps else np.float64
    unit = float(np.finfo(wide).eps) / 2
    x = xc.astype(wide)
    return (x @ x.T).astype(np.float64), xc.shape[1] * unit  # products exact to u_ref, sums: gamma_p


def _assert_gram_within_bound(r: np.ndarray, xc: np.ndarray) -> float:
    """Entry-wise bound of the module docstring; returns the worst error in units of the bound."""
    n, p = xc.shape
    gram, reference_error = _reference_gram(xc)
    gamma = _gamma_tsqr(n, p)
    norms = np.sqrt(np.einsum("ij,ij->i", xc, xc))
    allowed = ((2 * gamma + gamma**2) + reference_error) * np.outer(norms, norms)
    error = np.abs(r.T @ r - gram)
    # r.T @ r is itself rounded (inner dimension n): gamma_n |R|^T |R| <= LAMBDA sqrt(n) u ||xc_i|| ||xc_j||
    allowed += LAMBDA * math.sqrt(n) * U * np.outer(norms, norms)
    inside = error <= allowed
    assert inside.all(), f"worst |R'R - Kc| / bound = {np.max(error / np.maximum(allowed, 1e-300)):.3g}"
    return float(np.max(error / np.maximum(allowed, 1e-300)))


def _zero_sum_integers(rng, n: int, k: int) -> np.ndarray:
    """Integer ``(n, k)`` columns that sum to exactly 0 (so centring leaves them exactly as they are)."""
    v = rng.integers(-3, 4, size=(n, k)).astype(np.float64)
    return v - np.roll(v, 1, axis=0)


def _relu(rng, n, p, rank=4, noise=0.5):
    signal = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, p))
    return np.maximum(signal + rng.normal(scale=noise, size=(n, p)), 0)


def _dead_units(rng, n, p, alive=12):
    """A ReLU layer whose units are all dead but ``alive`` of them: rank <= alive << n."""
    x = np.zeros((n, p))
    columns = rng.choice(p, alive, replace=False)
    x[:, columns] = _relu(rng, n, alive)
    return x


@pytest.fixture
def small_leaves(monkeypatch):
    """Leaves of 2n-4n rows whatever n: deep trees (odd levels included) on small layers; the shipped rule
    (6n rows, at least 1,024) would need large layers for a tree (one test below uses it)."""
    monkeypatch.setattr(tsqr, "MIN_LEAF_ROWS", 0)
    monkeypatch.setattr(tsqr, "LEAF_ROWS_PER_COLUMN", 2)


def _wide_cases():
    rng = np.random.default_rng(33)
    return {
        # (centred activations, exact rank or None)
        "random_n61_p1234": (centre_columns(rng.normal(size=(61, 1234))), None),  # 10 leaves: 10, 5, 3, 2, 1
        "random_n97_p700": (centre_columns(rng.normal(size=(97, 700))), None),  # n not a multiple of 64 or 32
        "relu_dead_units": (centre_columns(_dead_units(rng, 80, 1500)), 12),
        "exact_rank_5": (_zero_sum_integers(rng, 70, 5) @ rng.integers(-4, 5, size=(5, 1100)).astype(float), 5),
        "exact_rank_1": (np.outer(_zero_sum_integers(rng, 64, 1)[:, 0], rng.integers(1, 9, size=900)), 1),
        "offset_1e3": (centre_columns(_relu(rng, 50, 800) + 1e3), None),
        "float32_offset_1e3": (centre_columns((_relu(rng, 50, 800) + 1e3).astype(np.float32)), None),
        "p_barely_above_n": (centre_columns(rng.normal(size=(150, 151))), None),
        "p_twice_n_plus_one": (centre_columns(rng.normal(size=(40, 81))), None),
    }


WIDE = _wide_cases()


@pytest.mark.parametrize("case", sorted(WIDE))
def test_r_transpose_r_is_the_gram_within_the_stated_bound(small_leaves, case):
    xc, rank = WIDE[case]
    n = xc.shape[0]
    assert rank is None or np.linalg.matrix_rank(xc) == rank
    r = tsqr.qr_r(xc)
    assert r.shape == (n, n) and r.flags.c_contiguous and r.dtype == np.float64
    assert np.array_equal(np.tril(r, -1), np.zeros((n, n)))
    _assert_gram_within_bound(r, xc)


@pytest.mark.parametrize("case", sorted(name for name, (_xc, rank) in WIDE.items() if rank is not None))
def test_small_singular_values_keep_absolute_accuracy(small_leaves, case):
    """Beyond the exact rank, singular values of R are rounding-level relative to ||Xc||_F, not its square root."""
    xc, rank = WIDE[case]
    n, p = xc.shape
    singular = np.linalg.svd(tsqr.qr_r(xc), compute_uv=False)
    frobenius = float(np.linalg.norm(xc))
    allowed = (_gamma_tsqr(n, p) + LAMBDA * n * U) * frobenius
    assert singular[rank - 1] > 1e-3 * frobenius / math.sqrt(rank)  # the true directions are kept
    assert singular[rank:].max() <= allowed, (singular[rank:].max() / frobenius, allowed / frobenius)


def test_default_leaves_on_a_layer_wide_enough_for_a_tree():
    """The shipped leaf rule (at least 1,024 rows): 3 leaves for n = 100, p = 3,500."""
    rng = np.random.default_rng(7)
    xc = centre_columns(_relu(rng, 100, 3500) + 3.0)
    assert len(tsqr.leaf_bounds(100, 3500)) == 3
    _assert_gram_within_bound(tsqr.qr_r(xc), xc)


def test_leaves_cover_the_rows_once_and_depend_only_on_the_shape():
    for n, p in [(500, 4096), (1000, 32768), (97, 3500), (10000, 32768), (3, 5)]:
        bounds = tsqr.leaf_bounds(n, p)
        assert bounds[0][0] == 0 and bounds[-1][1] == p
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
        if len(bounds) > 1:
            assert min(r1 - r0 for r0, r1 in bounds) >= max(tsqr.LEAF_ROWS_PER_COLUMN * n, tsqr.MIN_LEAF_ROWS)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_r_is_bit_identical_for_any_thread_count(small_leaves, threads):
    xc = WIDE["random_n61_p1234"][0]
    assert np.array_equal(tsqr.qr_r(xc, threads=threads), tsqr.qr_r(xc, threads=1))


def test_summary_factor_is_bit_identical_for_1_and_2_threads(small_leaves):
    rng = np.random.default_rng(8)
    x = (_relu(rng, 90, 2000) + 1e3).astype(np.float32)
    with thread_limit(1):
        one = summarise(x, metrics=("procrustes",))
    with thread_limit(2):
        two = summarise(x, metrics=("procrustes",))
    assert one.r is not None and np.array_equal(one.r, two.r) and np.array_equal(one.gram, two.gram)
    assert np.array_equal(one.r, summarise(x, metrics=("procrustes",)).r)


def _pairs():
    rng = np.random.default_rng(12)
    n = 60
    base = rng.normal(size=(n, 3))
    return {
        "random": (rng.normal(size=(n, 1000)), rng.normal(size=(n, 700))),
        "related_relu_offset_1e3": (np.maximum(base @ rng.normal(size=(3, 900)), 0) + 1e3,
                                    np.maximum(base @ rng.normal(size=(3, 650)), 0) + 0.1 * rng.normal(size=(n, 650))),
        "dead_units_vs_random": (_dead_units(rng, n, 1100, alive=8), rng.normal(size=(n, 500)) + 5.0),
        "rank_one_vs_rank_one": (np.outer(rng.normal(size=n), rng.normal(size=800)),
                                 np.outer(rng.normal(size=n), rng.normal(size=300)) + 1e3),
        "p_barely_above_n": (rng.normal(size=(n, 61)), rng.normal(size=(n, 600))),
    }


PAIRS = _pairs()


def _score_tolerances(n: int, px: int, py: int) -> tuple[float, float]:
    """(vs the textbook formula, vs today's numpy.linalg.qr route), both as stated in the module docstring."""
    gx, gy = _gamma_tsqr(n, px), _gamma_tsqr(n, py)
    small_route = LAMBDA * U * (n + n * n)  # n x n cross product and its values-only SVD
    textbook = LAMBDA * U * (n + px * py)  # p_x x p_y cross product and its values-only SVD
    vs_textbook = 2 * math.sqrt(n) * (gx + gy) + small_route + textbook
    old = _gamma_householder(n, px) + _gamma_householder(n, py)
    vs_today = 2 * math.sqrt(n) * (gx + gy + old) + 2 * small_route
    return vs_textbook, vs_today


def _today(x: np.ndarray, y: np.ndarray) -> float:
    """Procrustes similarity with the factors of vaesim before TSQR (numpy.linalg.qr(xc.T, mode="r"))."""
    def factor(a):
        ac = centre_columns(a)
        return np.linalg.qr(ac.T, mode="r").T if ac.shape[1] > ac.shape[0] else ac, np.linalg.norm(ac)

    (fx, nx), (fy, ny) = factor(x), factor(y)
    return float(np.linalg.svd(fx.T @ fy, compute_uv=False).sum() / (nx * ny))


@pytest.mark.parametrize("case", sorted(PAIRS))
def test_procrustes_scores_match_the_textbook_formula_and_todays_route(small_leaves, case):
    x, y = PAIRS[case]
    (n, px), py = x.shape, y.shape[1]
    vs_textbook, vs_today = _score_tolerances(n, px, py)
    expected = ref.procrustes(x, y)
    # the pure measure
    assert abs(procrustes_similarity(x, y) - expected) <= vs_textbook
    assert abs(procrustes_similarity(x, y) - _today(x, y)) <= vs_today
    # the summary route: the stored factors with an explicit SVD, then compare() (its nuclear-norm tolerance added)
    sx, sy = summarise(x, metrics=("procrustes",)), summarise(y, metrics=("procrustes",))
    direct = nuclear_norm(sx.factor().T @ sy.factor()) / math.sqrt(sx.total_variance * sy.total_variance)
    assert abs(direct - expected) <= vs_textbook
    frame = compare({"x": {"l": sx}, "y": {"l": sy}}, metrics=("procrustes",), model_pairs=[("x", "y")])
    assert abs(frame["score"].iloc[0] - expected) <= vs_textbook + engine.PROCRUSTES_TOLERANCE


def test_procrustes_factor_is_the_tsqr_r(small_leaves):
    xc = WIDE["random_n61_p1234"][0]
    assert np.array_equal(procrustes_factor(xc), tsqr.qr_r(xc).T)
    narrow = xc[:, :40]
    assert procrustes_factor(narrow) is narrow  # p <= n: the centred features are the factor


def test_stated_tolerances_are_far_below_what_a_gram_route_would_give():
    """Sanity of the bounds themselves: at n = 1,000, p = 32,768 gamma is ~1e-11, sqrt(gamma) would be ~3e-6."""
    gamma = _gamma_tsqr(1000, 32768)
    assert gamma < 1e-10 and math.sqrt(gamma) > 1e-6
