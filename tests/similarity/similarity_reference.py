"""Float64 textbook formulas, written independently of vaesim's implementation.

Each one forms the explicit centring matrix H = I - 11'/n and n x n Grams, or
the full p_x x p_y cross-product and its SVD, exactly as the papers state them.
"""

import numpy as np


def _flat64(x):
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(x.shape[0], -1)


def centring_matrix(n):
    return np.eye(n) - np.ones((n, n)) / n


def cka(x, y):
    """Kornblith et al. 2019: <HKH, HLH> / (||HKH|| ||HLH||)."""
    x, y = _flat64(x), _flat64(y)
    # centre the features first (as any careful float64 reference must for large offsets)
    x, y = x - x.mean(0), y - y.mean(0)
    h = centring_matrix(x.shape[0])
    k, l = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return float(np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l)))


def unbiased_hsic(k, l):
    """Song et al. 2012, eq. 5, with K~ = K with zero diagonal."""
    n = k.shape[0]
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    one = np.ones(n)
    return (
        np.trace(k @ l)
        + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (one @ k @ l @ one)
    ) / (n * (n - 3))


def cka_debiased(x, y, centre=True):
    x, y = _flat64(x), _flat64(y)
    if centre:
        x, y = x - x.mean(0), y - y.mean(0)
    k, l = x @ x.T, y @ y.T
    return float(unbiased_hsic(k, l) / np.sqrt(unbiased_hsic(k, k) * unbiased_hsic(l, l)))


def procrustes(x, y):
    """Ding et al. 2021: centre, unit Frobenius norm, 1 - d^2/2 with d^2 = 2 - 2||X'Y||_* (full SVD)."""
    x, y = _flat64(x), _flat64(y)
    x, y = x - x.mean(0), y - y.mean(0)
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    nuclear = np.linalg.svd(x.T @ y, compute_uv=False).sum()
    d2 = 2.0 - 2.0 * nuclear
    return float(1.0 - d2 / 2.0)
