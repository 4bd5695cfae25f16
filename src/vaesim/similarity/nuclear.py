"""Nuclear norm of a cross block ``M = F_x^T F_y``, the cost of every Procrustes pair.

Procrustes similarity is ``||M||_* / sqrt(tr K_x tr K_y)`` with ``M`` of shape
``(r_x, r_y)``, ``r = min(n, p)`` (Ding et al. 2021). A values-only SVD of
``M`` costs ``O(r_x r_y min(r_x, r_y))`` with a large constant; the
eigenvalues of the smaller Gram ``G = M^T M`` (or ``M M^T``) are the squared
singular values and ``eigvalsh`` of ``G`` is 2.5-7x faster than the SVD at
``r`` = 1,000-5,000 (benchmarks/procrustes.py, one thread).

Accuracy of the Gram route (stated, then checked on every block):

* forming ``G`` in float64 with inner dimension ``k``: ``|dG| <= gamma_k |M|^T |M|``
  entrywise (Higham, *Accuracy and Stability*, eq. 3.13), so
  ``||dG||_2 <= gamma_k ||M||_F^2`` with ``gamma_k = k u / (1 - k u)``;
* ``eigvalsh`` is backward stable: its eigenvalues are exact for ``G + E``
  with ``||E||_2 <= p(s) u ||G||_2`` (LAPACK Users' Guide, section 4.7);
  we take ``p(s) = s``, generous against the observed ``~1``;
* hence each computed ``l_i`` is within ``eps = (gamma_k + s u) ||M||_F^2`` of
  ``sigma_i^2`` (Weyl), and ``|sqrt(l_i+) - sigma_i| <= min(sqrt(eps), eps / sqrt(l_i+))``
  (``|sqrt a - sqrt b| <= |a - b| / (sqrt a + sqrt b)`` and ``<= sqrt |a - b|``).

The sum of those per-value bounds is a bound on ``| ||M||_* - sum sqrt(l_i+) |``.
:func:`nuclear_norm` accepts the Gram route's value only when that bound is
within ``tolerance`` (absolute) and otherwise computes the SVD, so the result
is always within ``tolerance`` of the SVD's to first order. Blocks with many
singular values at rounding level relative to the largest (rank-deficient
layers, nearly orthogonal subspaces) take the SVD; trained layers of the
paper's network mostly do not (benchmarks/procrustes.py prints the share).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["nuclear_norm", "nuclear_norm_gram", "UNIT_ROUNDOFF", "ROUNDING_MODEL_FACTOR"]

UNIT_ROUNDOFF = np.finfo(np.float64).eps / 2  # u = 2^-53
#: safety factor of the rounding model (observed errors of G's eigenvalues are below 0.1 (s + sqrt k) u l_max)
ROUNDING_MODEL_FACTOR = 4.0


def nuclear_norm_gram(block: np.ndarray, *, proven: bool = False) -> tuple[float, float]:
    """``(sum of sqrt(eigvalsh(smaller Gram of block)), error bound)`` for ``block`` ``(r_x, r_y)`` float64.

    The bound holds for ``| ||block||_* - value |`` under the rounding model
    ``eps = ROUNDING_MODEL_FACTOR (s + sqrt(k)) u l_max`` (``proven=False``, the
    default) or the worst-case ``eps = (gamma_k + s u) ||M||_F^2``
    (``proven=True``); see the module docstring.
    """
    rows, cols = block.shape
    if block.size == 0:
        return 0.0, 0.0
    if rows <= cols:  # G (s, s) with s the smaller side, k the inner (larger) one
        gram, s, k = block @ block.T, rows, cols
    else:
        gram, s, k = block.T @ block, cols, rows
    eigenvalues = np.linalg.eigvalsh(gram)
    if proven:
        ku = k * UNIT_ROUNDOFF
        eps = (ku / (1.0 - ku) + s * UNIT_ROUNDOFF) * float(np.trace(gram))
    else:
        eps = ROUNDING_MODEL_FACTOR * (s + math.sqrt(k)) * UNIT_ROUNDOFF * max(float(eigenvalues[-1]), 0.0)
    roots = np.sqrt(np.clip(eigenvalues, 0.0, None))
    with np.errstate(divide="ignore"):
        per_value = np.where(roots > 0, eps / np.where(roots > 0, roots, 1.0), math.inf)
    bound = float(np.minimum(per_value, math.sqrt(eps)).sum())
    return float(roots.sum()), bound


def nuclear_norm(block: np.ndarray, tolerance: float = 0.0) -> tuple[float, str]:
    """``(||block||_*, method)``: the Gram route when its bound is <= ``tolerance``, else a values-only SVD.

    ``method`` is ``"gram"`` or ``"svd"``. ``tolerance`` 0 always takes the SVD. The Gram route is tried
    only on blocks at least twice as long as wide: there its Gram is small (``s^2 k`` flops and an
    ``s x s`` eigenproblem against LAPACK's SVD of the whole block, measured 10-30x faster) and its bound
    almost always holds; on square blocks of trained layers (decaying spectra: hundreds of singular values
    near rounding level) the bound failed for a third of the blocks at n = 1,000 and the attempt cost more
    than it saved (benchmarks/procrustes.py).
    """
    if block.size == 0:
        return 0.0, "svd"
    if tolerance > 0 and 2 * min(block.shape) <= max(block.shape):
        value, bound = nuclear_norm_gram(block)
        if bound <= tolerance:
            return value, "gram"
    return float(np.linalg.svd(block, compute_uv=False).sum()), "svd"
