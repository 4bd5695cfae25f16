"""Pure single-pair similarity measures on activations ``(n, ...)``.

Formulas (rows are examples; ``Xc`` is ``X`` with column means removed):

* Linear CKA (Kornblith et al. 2019, eq. 4 / "linear CKA"):
  ``CKA = <Kc, Lc>_F / (||Kc||_F ||Lc||_F)`` with ``Kc = Xc Xc^T``; in feature
  space the same number is ``||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``.
* Debiased CKA: the same ratio with the unbiased HSIC estimator (Song et al.
  2012, eq. 5; Kornblith et al. 2019, appendix) in place of ``<Kc, Lc>``:
  ``HSIC_u = [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))``
  with ``K~`` = ``K`` with its diagonal zeroed. For centred features
  (``K 1 = 0``) this reduces to
  ``[tr(KL) - n/(n-2) d_K.d_L + tr K tr L / ((n-1)(n-2))] / (n(n-3))``,
  ``d_K = diag(K)``. It can be negative for unrelated data.
* Procrustes similarity (Ding et al. 2021 normalisation): centre, divide by the
  Frobenius norm, ``d^2 = 2 - 2 ||X^T Y||_*`` and ``similarity = 1 - d^2/2 =
  ||X^T Y||_*`` in [0, 1]. Angular Procrustes distance (Williams et al. 2021):
  ``arccos(||X^T Y||_*)`` in radians.

Precision: activations are centred in float64 *before* any product (float32
post-ReLU activations with means around 1e3 otherwise lose every digit), and
all products run in float64.

Cost: CKA picks feature space (``p_x p_y`` products) or Gram space (``n x n``)
by flop count. The Procrustes nuclear norm uses reduced factors ``F`` with
``F F^T = Xc Xc^T`` of width ``min(n, p)`` (the centred features themselves when
``p <= n``, else ``R^T`` from a QR of ``Xc^T``), so no ``p x p`` matrix is
ever formed; QR keeps small singular values accurate where a Gram
eigendecomposition would lose half the digits.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vaesim.similarity.validation import as_matrix, check_same_rows, require_rows

__all__ = [
    "centre_columns",
    "linear_cka",
    "procrustes_similarity",
    "procrustes_distance",
    "procrustes_factor",
    "unbiased_hsic_centred",
    "nuclear_norm",
    "clamp_unit",
    "unit_scale",
]

#: rounding slack allowed when clamping a similarity into [0, 1]
CLAMP_TOLERANCE = 1e-9


def centre_columns(x: np.ndarray, name: str | None = None) -> np.ndarray:
    """Column-centred float64 copy of ``x`` ``(n, p)``.

    The mean is accumulated in float64 and subtracted in float64 (one pass
    that casts as it subtracts). Exactly constant columns become exact zeros,
    so a constant layer is detected as zero-variance rather than carrying
    rounding noise: for float32 input this holds by construction (float64 sums
    of up to 2^29 equal float32 values are exact), float64 input is checked.

    Args:
        x: ``(n, p)`` float32/float64.
        name: when given, non-finite values are detected here (a NaN/inf makes
            its column's float64 sum non-finite) and reported under this name,
            which saves :func:`as_matrix` a separate pass over wide layers.
    """
    mean = x.mean(axis=0, dtype=np.float64)  # (p,)
    if name is not None and not np.isfinite(mean).all():
        as_matrix(x, name, min_rows=1)  # raises the standard "expected finite values" error
    centred = np.subtract(x, mean, dtype=np.float64)  # (n, p) float64, always a new array
    if x.dtype != np.float32:
        constant = x.max(axis=0) == x.min(axis=0)
        if constant.any():
            centred[:, constant] = 0.0
    return centred


#: centred activations whose largest magnitude lies outside [2^-SAFE_EXPONENT, 2^SAFE_EXPONENT] are rescaled
SAFE_EXPONENT = 100


def unit_scale(centred: np.ndarray) -> np.ndarray:
    """Rescale centred activations ``(n, p)`` in place by a power of two when their magnitude is extreme.

    CKA and Procrustes are invariant to isotropic scaling, but their products
    square the values (and CKA's Gram inner products take fourth powers), so
    ``1e200 * X`` overflows and ``1e-200 * X`` underflows to zero. Scaling
    *before* squaring brings the largest magnitude into [0.5, 1). The factor
    is a power of two, so the scores are unchanged to the last bit; values in
    the safe range are not touched at all.
    """
    if centred.size == 0:
        return centred
    peak = max(float(centred.max()), -float(centred.min()))
    if peak == 0.0 or not math.isfinite(peak):
        return centred
    exponent = math.frexp(peak)[1]  # peak = m 2^exponent, m in [0.5, 1)
    if -SAFE_EXPONENT <= exponent <= SAFE_EXPONENT:
        return centred
    return np.ldexp(centred, -exponent, out=centred)


def clamp_unit(value: float, what: str) -> float:
    """Clamp ``value`` into [0, 1] when it is outside only by rounding.

    Raises:
        ArithmeticError: ``value`` is outside [0, 1] by more than
            :data:`CLAMP_TOLERANCE` (a numerical failure, never hidden).
    """
    if -CLAMP_TOLERANCE <= value <= 1.0 + CLAMP_TOLERANCE:
        return float(min(max(value, 0.0), 1.0))
    raise ArithmeticError(f"{what} = {value!r} lies outside [0, 1] beyond rounding; inputs are numerically degenerate")


def _zero_variance(name: str, measure: str) -> ValueError:
    return ValueError(
        f"{name} has zero variance (every feature is constant over the examples): {measure} "
        "is undefined for it; drop this layer or use examples that vary"
    )


def _prepare_pair(x: Any, y: Any, min_rows: int, why: str) -> tuple[np.ndarray, np.ndarray]:
    xm = as_matrix(x, "x", min_rows=1)
    ym = as_matrix(y, "y", min_rows=1)
    check_same_rows(xm, ym)
    require_rows(xm.shape[0], "x", min_rows, why=why)
    return unit_scale(centre_columns(xm)), unit_scale(centre_columns(ym))


def _use_feature_space(n: int, px: int, py: int) -> bool:
    """True when the p x p cross-products are cheaper than the n x n Grams."""
    feature_cost = n * (px * py + px * px + py * py)
    gram_cost = n * n * (px + py) + 3 * n * n
    return feature_cost <= gram_cost


def unbiased_hsic_centred(tr_kl: float, diag_dot: float, tr_k: float, tr_l: float, n: int) -> float:
    """Unbiased HSIC (Song et al. 2012) of two Grams of *centred* features.

    Args:
        tr_kl: ``tr(K L)`` = ``<K, L>_F``.
        diag_dot: ``diag(K) . diag(L)``.
        tr_k, tr_l: traces of ``K`` and ``L``.
        n: number of examples (> 3).
    """
    return (tr_kl - n / (n - 2.0) * diag_dot + tr_k * tr_l / ((n - 1.0) * (n - 2.0))) / (n * (n - 3.0))


def _cka_terms_features(xc: np.ndarray, yc: np.ndarray) -> tuple[float, float, float]:
    """(<K,L>, <K,K>, <L,L>) from feature cross-products (float64)."""
    xy = xc.T @ yc
    xx = xc.T @ xc
    yy = yc.T @ yc
    return float(np.vdot(xy, xy)), float(np.vdot(xx, xx)), float(np.vdot(yy, yy))


def _cka_terms_gram(k: np.ndarray, l: np.ndarray) -> tuple[float, float, float]:
    """(<K,L>, <K,K>, <L,L>) from Grams (float64)."""
    return float(np.vdot(k, l)), float(np.vdot(k, k)), float(np.vdot(l, l))


def linear_cka(x: Any, y: Any, *, debiased: bool = False) -> float:
    """Linear CKA between two layers' activations.

    Args:
        x, y: numpy arrays or torch tensors ``(n, ...)`` (same ``n``; trailing
            axes flattened), float32 or float64.
        debiased: use the unbiased HSIC estimator (needs ``n > 3``; the result
            can be negative). Otherwise the biased estimator, in [0, 1].

    Returns:
        CKA as a Python float.

    Raises:
        TypeError: non-numeric input.
        ValueError: different ``n``, NaN/inf, too few examples, zero variance.
    """
    min_rows, why = (4, "debiased CKA needs n > 3") if debiased else (2, "CKA needs n >= 2")
    xc, yc = _prepare_pair(x, y, min_rows, why)
    n, px = xc.shape
    py = yc.shape[1]
    if not xc.any():
        raise _zero_variance("x", "CKA")
    if not yc.any():
        raise _zero_variance("y", "CKA")
    if _use_feature_space(n, px, py):
        kl, kk, ll = _cka_terms_features(xc, yc)
    else:
        k = xc @ xc.T  # (n, n) centred Gram
        l = yc @ yc.T  # (n, n)
        kl, kk, ll = _cka_terms_gram(k, l)
    if not debiased:
        return clamp_unit(kl / math.sqrt(kk * ll), "CKA")
    dk = np.einsum("ij,ij->i", xc, xc)  # diag(K), (n,)
    dl = np.einsum("ij,ij->i", yc, yc)  # diag(L), (n,)
    tk, tl = float(dk.sum()), float(dl.sum())
    hkl = unbiased_hsic_centred(kl, float(dk @ dl), tk, tl, n)
    hkk = unbiased_hsic_centred(kk, float(dk @ dk), tk, tk, n)
    hll = unbiased_hsic_centred(ll, float(dl @ dl), tl, tl, n)
    if hkk <= 0.0 or hll <= 0.0:
        which = "x" if hkk <= 0.0 else "y"
        raise ValueError(
            f"{which}: the unbiased HSIC of the layer with itself is {min(hkk, hll):.3g} (not positive), "
            f"so debiased CKA is undefined at n={n}; use more examples or debiased=False"
        )
    return float(hkl / math.sqrt(hkk * hll))


def procrustes_factor(xc: np.ndarray) -> np.ndarray:
    """Reduced factor ``F`` ``(n, r)``, ``r = min(n, p)``, with ``F F^T = Xc Xc^T``.

    ``||Xc^T Yc||_* = ||F_x^T F_y||_*`` for any such factors (both equal the
    nuclear norm of ``S_x U_x^T U_y S_y`` from thin SVDs). For ``p <= n`` the
    centred features are the factor; otherwise ``R^T`` from the QR
    decomposition ``Xc^T = Q R`` by tall-skinny QR
    (:func:`vaesim.similarity.tsqr.qr_r`: fixed row blocks of ``Xc^T`` on
    the allowed cores, the same bits for any thread count; backward stable:
    ``R^T R`` is within ``(2 gamma + gamma^2) ||xc_i|| ||xc_j||`` of ``Xc Xc^T``
    entry by entry, and small singular values keep their absolute accuracy
    ``gamma ||Xc||_F``, ``gamma`` as stated in that module).
    """
    n, p = xc.shape
    if p <= n:
        return xc
    # scipy.linalg loads only when a wide factor is needed
    from vaesim.similarity.tsqr import qr_r

    r = qr_r(xc)  # (n, n) upper triangular
    return np.ascontiguousarray(r.T)


def nuclear_norm(matrix: np.ndarray) -> float:
    """Sum of singular values (values-only SVD, float64)."""
    if matrix.size == 0:
        return 0.0
    return float(np.linalg.svd(matrix, compute_uv=False).sum())


def _procrustes_score(x: Any, y: Any) -> float:
    xc, yc = _prepare_pair(x, y, 2, "Procrustes needs n >= 2")
    norm_x = float(np.linalg.norm(xc))
    norm_y = float(np.linalg.norm(yc))
    if norm_x == 0.0:
        raise _zero_variance("x", "Procrustes similarity")
    if norm_y == 0.0:
        raise _zero_variance("y", "Procrustes similarity")
    fx = procrustes_factor(xc)
    fy = procrustes_factor(yc)
    cross = fx.T @ fy  # (r_x, r_y)
    return clamp_unit(nuclear_norm(cross) / (norm_x * norm_y), "Procrustes similarity")


def procrustes_similarity(x: Any, y: Any) -> float:
    """Procrustes similarity ``1 - d^2/2 = ||X^T Y||_*`` after centring and unit Frobenius norm.

    Ding et al. 2021 normalisation; in [0, 1], 1 iff ``Y`` is an orthogonal
    transform of ``X`` up to translation and isotropic scale.

    Args:
        x, y: arrays or tensors ``(n, ...)`` with the same ``n >= 2``.
    """
    return _procrustes_score(x, y)


def procrustes_distance(x: Any, y: Any) -> float:
    """Angular Procrustes distance ``arccos(||X^T Y||_*)`` in radians (Williams et al. 2021).

    A metric on shapes (triangle inequality holds); 0 for identical shapes,
    at most pi/2.
    """
    return float(math.acos(_procrustes_score(x, y)))
