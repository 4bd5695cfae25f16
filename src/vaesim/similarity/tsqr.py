"""Tall-skinny QR (TSQR): the ``R`` of ``Xc^T = Q R`` for wide layers, in fixed row blocks.

The Procrustes factor of a layer with ``p > n`` features is ``R^T`` from the
QR decomposition of ``Xc^T`` ``(p, n)`` (see
:func:`vaesim.similarity.measures.procrustes_factor`). :func:`qr_r` computes
that ``R`` as a one-level tall-skinny QR (Demmel, Grigori, Hoemmen & Langou
2012, "Communication-optimal parallel and sequential QR and LU
factorizations", SIAM J. Sci. Comput. 34(1), section on TSQR):

1. leaves: ``Xc^T`` is cut into ``k`` row blocks (:func:`leaf_bounds`; each
   ``m_b x n`` with ``m_b`` between ``LEAF_ROWS_PER_COLUMN * n`` and twice
   that, or all ``p`` rows when ``p`` is smaller) and each block's ``R_i``
   ``(n, n)`` is computed by LAPACK ``dgeqrt`` (compact-WY Householder QR with
   a recursive panel, block size :data:`LEAF_BLOCK`);
2. tree: neighbouring ``R``'s are merged pairwise, ``[R_a; R_b] = Q' R`` by
   LAPACK ``dtpqrt`` (Householder QR of a triangle stacked on a triangle,
   ``2 n^3 / 3`` flops per merge, block size :data:`MERGE_BLOCK`), level by
   level, until one ``R`` is left.

The flop count equals that of Householder QR of the whole matrix
(``2 p n^2 - 2 n^3 / 3``); what is faster is the shape: every leaf's panels
are ``m_b`` rows tall instead of ``p`` (the panel factorisation is the
memory-bound part of ``dgeqrf``), and the leaves and the merges of one tree
level are independent work, spread over the allowed cores by
:func:`vaesim.utils.threads.parallel_map` with BLAS/LAPACK on one thread per
call. The blocks and the pairing depend only on ``(n, p)``, so ``R`` is
bit-identical for any thread count and load.

Error bound (backward stable, like ``numpy.linalg.qr``): the computed ``R``
is the exact R factor of ``Xc^T + dX`` with, column by column (example
``i``), ``||dx_i||_2 <= gamma ||xc_i||_2`` (Higham 2002, "Accuracy and
Stability of Numerical Algorithms", Thm. 19.4, applied to the leaf and to
each of the ``d = ceil(log2 k)`` merges on the path of a column: ``n``
reflectors of length at most ``m_b``, then ``d`` times ``n`` reflectors of
length at most ``n + 1``). With ``K = n (m_b + d (n + 1))`` and the unit
roundoff ``u = 2^-53``, ``gamma = c K u`` in the worst case (``c`` a small
constant) and ``gamma = lambda sqrt(K) u`` with probability at least ``1 -
2 K exp(-lambda^2 (1 - u)^2 / 2)`` under the model of mean-independent
rounding errors (Higham & Mary 2019, "A new approach to probabilistic
rounding error analysis", SIAM J. Sci. Comput. 41(5), Thm. 3.1; the small
constant of the Householder analysis is absorbed in ``lambda``). Hence,
entry by entry,
``|(R^T R - Xc Xc^T)_ij| <= (2 gamma + gamma^2) ||xc_i|| ||xc_j||`` and
``||R^T R - Xc Xc^T||_F <= (2 gamma + gamma^2) ||Xc||_F^2``; small singular
values of ``Xc`` keep the absolute accuracy ``gamma ||Xc||_F`` (a Gram
eigendecomposition would leave them ``sqrt(gamma) ||Xc||_F``). The tests in
``tests/similarity/test_summary_qr.py`` check the entry-wise bound with
``lambda = 10`` against an extended-precision Gram (measured errors: at most
0.5% of it), and the Procrustes scores against the textbook formula.

Measured (benchmarks/summary_qr.py, 2-core AMD EPYC VM, one thread, the
other core busy with another job), against numpy's ``qr(xc.T, mode="r")``
at n = 500 and 1,000: 1.16-1.35x at p = 4,096 and 8,192 (one or two
leaves: mostly ``dgeqrt``'s recursive panel), 1.6-2.1x at p = 32,768.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import lapack

from vaesim.utils.threads import parallel_map, single_threaded_blas

__all__ = ["backward_error_terms", "leaf_bounds", "qr_r"]

#: leaf height in units of ``n``: leaves are ``m_b`` rows with ``6 n <= m_b < 12 n`` (when ``p >= 12 n``);
#: measured best of 2n-8n (benchmarks/summary_qr.py): fewer, taller leaves spend less in the slower merges
LEAF_ROWS_PER_COLUMN = 6
#: smallest leaf (rows) for narrow factors: below it the per-call overhead and the merges dominate
MIN_LEAF_ROWS = 1024
#: ``dgeqrt`` block size of a leaf (the width of its recursive panels; 128 measured best of 32-256)
LEAF_BLOCK = 128
#: ``dtpqrt`` block size of a merge
MERGE_BLOCK = 32
#: a leaf with this many elements or more (a single leaf of 16 GiB) is factored by numpy's 64-bit-indexed LAPACK
_LAPACK32_MAX_ELEMENTS = 2**31 - 1


def leaf_bounds(n: int, p: int) -> list[tuple[int, int]]:
    """Row ranges ``[r0, r1)`` of ``Xc^T`` ``(p, n)`` for the leaves: ``k = max(1, p // target)`` near-equal blocks.

    ``target = max(LEAF_ROWS_PER_COLUMN * n, MIN_LEAF_ROWS)``; the ranges
    depend only on ``(n, p)`` (never on the machine), and every leaf of a
    split (``k > 1``) has at least ``target > n`` rows, so its R is square.
    """
    target = max(LEAF_ROWS_PER_COLUMN * n, MIN_LEAF_ROWS)
    k = max(1, p // target)
    return [(j * p // k, (j + 1) * p // k) for j in range(k)]


def backward_error_terms(n: int, p: int) -> int:
    """``K = n (m_b + d (n + 1))`` of the module docstring's bound (``m_b`` the tallest leaf, ``d`` tree levels)."""
    bounds = leaf_bounds(n, p)
    tallest = max(r1 - r0 for r0, r1 in bounds)
    depth = math.ceil(math.log2(len(bounds)))
    return n * (tallest + depth * (n + 1))


def qr_r(xc: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Upper-triangular ``R`` ``(min(n, p), n)`` of ``Xc^T = Q R`` by TSQR (see the module docstring).

    Args:
        xc: centred activations ``(n, p)`` float64 (any strides; not modified).
        threads: threads for the independent leaves and merges (default
            :func:`vaesim.utils.threads.compute_threads`); the result does
            not depend on it.

    Returns:
        ``R`` float64, C-contiguous, zero below the diagonal, ``R^T R = Xc Xc^T``
        within the stated bound. Rows may differ in sign from another QR's.
    """
    xc = np.asarray(xc, dtype=np.float64)
    n, p = xc.shape
    with single_threaded_blas():  # one LAPACK thread per call: the cores go to independent leaves
        factors = parallel_map(lambda rows: _leaf_r(xc, *rows), leaf_bounds(n, p), threads)
        while len(factors) > 1:  # fixed pairing (0,1), (2,3), ...; an odd last factor moves up a level as is
            pairs = [(factors[i], factors[i + 1]) for i in range(0, len(factors) - 1, 2)]
            merged = parallel_map(lambda pair: _merge(*pair), pairs, threads)
            factors = merged + factors[2 * len(pairs):]
    return np.ascontiguousarray(factors[0])


def _leaf_r(xc: np.ndarray, r0: int, r1: int) -> np.ndarray:
    """R ``(min(m, n), n)`` of the leaf ``Xc^T[r0:r1]`` ``(m, n)``, ``m = r1 - r0``, by ``dgeqrt``."""
    n = xc.shape[0]
    leaf = xc[:, r0:r1].T  # (m, n) view; f2py copies it into a Fortran-ordered work array
    m = leaf.shape[0]
    if m * n >= _LAPACK32_MAX_ELEMENTS:  # scipy's LAPACK indexes with 32-bit integers; numpy's is 64-bit
        return np.triu(np.linalg.qr(leaf, mode="r"))
    factored, _t, info = lapack.dgeqrt(max(1, min(LEAF_BLOCK, m, n)), leaf)
    _check(info, "dgeqrt")
    return np.triu(factored[: min(m, n)])  # (min(m, n), n): R above the diagonal, reflectors below dropped


def _merge(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """R ``(n, n)`` of ``[top; bottom]`` ``(2n, n)``, both upper triangular, by ``dtpqrt``."""
    n = top.shape[0]
    merged, _v, _t, info = lapack.dtpqrt(n, max(1, min(MERGE_BLOCK, n)), top, bottom, overwrite_a=1, overwrite_b=1)
    _check(info, "dtpqrt")
    return merged  # upper triangle = R; dtpqrt leaves the (zero) lower triangle of ``top`` as it was


def _check(info: int, routine: str) -> None:
    if info != 0:  # only an illegal argument: a bug here, never bad data
        raise RuntimeError(f"LAPACK {routine} failed with info={info} (an argument was illegal)")
