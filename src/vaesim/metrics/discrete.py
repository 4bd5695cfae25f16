"""Discretisation, mutual information and entropy for the disentanglement metrics.

Conventions (all of :mod:`vaesim.metrics`): rows are examples. ``codes`` is
``(n, d)`` float (a model's mean representation), ``factors`` is ``(n, F)``
integer ground-truth factor indices. disentanglement_lib stores the transpose
(``(d, n)``); the numbers are the same.

Information is in nats (natural logarithm), like scikit-learn's
``mutual_info_score`` that disentanglement_lib calls.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "NUM_BINS",
    "check_codes_factors",
    "histogram_discretize",
    "mutual_information",
    "mutual_information_matrix",
    "entropy",
]

#: histogram bins per code dimension (disentanglement_lib's ``discretizer.num_bins = 20``
#: in every study config, for MIG, modularity and the unsupervised scores)
NUM_BINS = 20


def check_codes_factors(codes, factors, what: str, *, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return ``codes`` as float64 ``(n, d)`` and ``factors`` as int64 ``(n, F)``.

    Raises:
        ValueError: wrong rank, different ``n``, too few rows, NaN/inf codes,
            non-integer factors.
    """
    c = np.asarray(codes)
    f = np.asarray(factors)
    if c.ndim != 2:
        raise ValueError(f"{what}: codes must be shaped (n, d) (examples x code dimensions), got shape {c.shape}")
    if f.ndim != 2:
        raise ValueError(f"{what}: factors must be shaped (n, F) (examples x factors), got shape {f.shape}")
    if c.shape[0] != f.shape[0]:
        raise ValueError(f"{what}: codes have n={c.shape[0]} rows but factors have n={f.shape[0]}; pass the same examples")
    if c.shape[0] < min_rows:
        raise ValueError(f"{what}: needs at least {min_rows} examples, got n={c.shape[0]}")
    if c.shape[1] < 1 or f.shape[1] < 1:
        raise ValueError(f"{what}: needs at least one code dimension and one factor, got codes {c.shape}, factors {f.shape}")
    if not np.issubdtype(f.dtype, np.integer):
        if not np.issubdtype(f.dtype, np.floating) or not np.array_equal(f, np.round(f)):
            raise ValueError(f"{what}: factors must be integer factor indices, got dtype {f.dtype} with fractional values")
    c = c.astype(np.float64, copy=False)
    if not np.isfinite(c).all():
        raise ValueError(f"{what}: codes contain NaN or infinity; expected finite mean representations")
    return c, f.astype(np.int64, copy=False)


def histogram_discretize(codes: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """Bin each code dimension into ``num_bins`` equal-width bins over its range.

    Same rule as disentanglement_lib's ``histogram_discretizer``: the edges of
    ``numpy.histogram(column, num_bins)`` without the last one, then
    ``numpy.digitize`` (so bins are numbered 1..num_bins; a constant column
    goes to one bin).

    Args:
        codes: ``(n, d)`` float.
    Returns:
        ``(n, d)`` int64 bin numbers.
    """
    if num_bins < 2:
        raise ValueError(f"histogram_discretize: num_bins must be >= 2, got {num_bins}")
    codes = np.asarray(codes, dtype=np.float64)
    out = np.empty(codes.shape, dtype=np.int64)
    for k in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, k], bins=num_bins)
        out[:, k] = np.digitize(codes[:, k], edges[:-1])
    return out


def _codes_of(labels: np.ndarray) -> tuple[np.ndarray, int]:
    values, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(-1), len(values)


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in mutual information (nats) of two discrete label vectors ``(n,)``.

    ``I = sum_ij p_ij log(p_ij / (p_i p_j))`` from the contingency table of
    counts (float64).
    """
    ia, ka = _codes_of(np.asarray(a))
    ib, kb = _codes_of(np.asarray(b))
    n = ia.shape[0]
    table = np.bincount(ia * kb + ib, minlength=ka * kb).reshape(ka, kb).astype(np.float64)
    nz = table > 0
    pij = table[nz] / n
    pi = table.sum(1)[:, None].repeat(kb, 1)[nz] / n
    pj = table.sum(0)[None, :].repeat(ka, 0)[nz] / n
    value = float(np.sum(pij * (np.log(pij) - np.log(pi) - np.log(pj))))
    return max(value, 0.0)


def entropy(labels: np.ndarray) -> float:
    """Plug-in entropy (nats) of one discrete label vector ``(n,)``."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    p = counts / counts.sum()
    return float(-np.sum(p * np.log(p)))


def mutual_information_matrix(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``I(code_i; factor_j)`` for all pairs: float64 ``(d, F)`` in nats."""
    d, nf = discrete_codes.shape[1], factors.shape[1]
    out = np.empty((d, nf))
    for i in range(d):
        for j in range(nf):
            out[i, j] = mutual_information(discrete_codes[:, i], factors[:, j])
    return out
