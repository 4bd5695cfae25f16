"""Exact linear CKA (biased and debiased) accumulated over batches of examples.

Sufficient statistics, in float64, of shifted activations ``x_i - c_x``
(``c_x`` = the first batch's column mean; CKA and the unbiased HSIC are
translation invariant, and the shift keeps the sums from cancelling
catastrophically for post-ReLU activations with large means):

    n, s_x = sum x_i, s_y, X^T X, Y^T Y, X^T Y           (p x p blocks)
    d_i = ||x_i||^2, e_i = ||y_i||^2: sum d, sum e, sum d^2, sum e^2, sum d e
    u_xx = sum d_i x_i, u_xy = sum d_i y_i, u_yx = sum e_i x_i, u_yy = sum e_i y_i

Biased CKA uses the centred cross-products ``Xc^T Yc = X^T Y - s_x s_y^T / n``.
The unbiased HSIC (Song et al. 2012, eq. 5) of uncentred linear Grams
``K = X X^T``, ``L = Y Y^T`` with ``K~`` = ``K`` minus its diagonal is
``[T1 + T2 / ((n-1)(n-2)) - 2 T3 / (n-2)] / (n (n-3))`` where

    T1 = tr(K~ L~)   = ||X^T Y||_F^2 - sum d_i e_i
    T2 = 1'K~1 1'L~1 = (||s_x||^2 - sum d)(||s_y||^2 - sum e)
    T3 = 1'K~L~1     = s_x^T (X^T Y) s_y - u_xy . s_y - u_yx . s_x + sum d_i e_i

so the streamed result equals the in-memory one up to float64 rounding.
Memory: ``(p_x + p_y)^2`` numbers, independent of ``n``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vaesim.similarity.measures import clamp_unit
from vaesim.similarity.validation import as_matrix, check_same_rows, require_rows

__all__ = ["StreamingCKA"]


def _unbiased_hsic(xty, sx, sy, d, e, dd, ux_y, uy_x, n):
    """Unbiased HSIC from the streamed sums (see module docstring)."""
    t1 = float(np.vdot(xty, xty)) - dd
    t2 = (float(sx @ sx) - d) * (float(sy @ sy) - e)
    t3 = float(sx @ xty @ sy) - float(ux_y @ sy) - float(uy_x @ sx) + dd
    return (t1 + t2 / ((n - 1.0) * (n - 2.0)) - 2.0 * t3 / (n - 2.0)) / (n * (n - 3.0))


class StreamingCKA:
    """Accumulate exact linear CKA between two layers over batches of examples.

    Example:
        >>> acc = StreamingCKA(debiased=False)
        >>> for xb, yb in batches:          # (b, ...) each, same examples
        ...     acc.update(xb, yb)
        >>> acc.compute()                    # equals linear_cka(X, Y)

    Attributes (fitted state, float64):
        n_: examples seen; shift_x_, shift_y_: the subtracted reference means.
    """

    def __init__(self, *, debiased: bool = False):
        self.debiased = bool(debiased)
        self.n_ = 0
        self.shift_x_: np.ndarray | None = None
        self.shift_y_: np.ndarray | None = None

    def update(self, x: Any, y: Any) -> "StreamingCKA":
        """Add a batch: ``x`` ``(b, ...)`` and ``y`` ``(b, ...)`` for the same ``b`` examples."""
        xb = as_matrix(x, "x", min_rows=1)
        yb = as_matrix(y, "y", min_rows=1)
        check_same_rows(xb, yb)
        if self.shift_x_ is None:
            self._start(xb, yb)
        else:
            for name, batch, width in (("x", xb, self.shift_x_.size), ("y", yb, self.shift_y_.size)):
                if batch.shape[1] != width:
                    raise ValueError(
                        f"StreamingCKA.update: {name} has {batch.shape[1]} features but earlier batches had "
                        f"{width}; every batch must come from the same layer"
                    )
        xs = xb.astype(np.float64) - self.shift_x_  # (b, p_x)
        ys = yb.astype(np.float64) - self.shift_y_  # (b, p_y)
        self.n_ += xs.shape[0]
        self._sx += xs.sum(0)
        self._sy += ys.sum(0)
        self._xx += xs.T @ xs
        self._yy += ys.T @ ys
        self._xy += xs.T @ ys
        if self.debiased:
            d = np.einsum("ij,ij->i", xs, xs)
            e = np.einsum("ij,ij->i", ys, ys)
            self._d += d.sum()
            self._e += e.sum()
            self._dd += d @ d
            self._ee += e @ e
            self._de += d @ e
            self._uxx += d @ xs
            self._uxy += d @ ys
            self._uyx += e @ xs
            self._uyy += e @ ys
        return self

    def _start(self, xb: np.ndarray, yb: np.ndarray) -> None:
        self.shift_x_ = xb.astype(np.float64).mean(0)
        self.shift_y_ = yb.astype(np.float64).mean(0)
        px, py = xb.shape[1], yb.shape[1]
        self._sx, self._sy = np.zeros(px), np.zeros(py)
        self._xx, self._yy, self._xy = np.zeros((px, px)), np.zeros((py, py)), np.zeros((px, py))
        self._d = self._e = self._dd = self._ee = self._de = 0.0
        self._uxx, self._uxy, self._uyx, self._uyy = np.zeros(px), np.zeros(py), np.zeros(px), np.zeros(py)

    def compute(self) -> float:
        """CKA of everything seen so far (biased in [0, 1], or debiased)."""
        n = self.n_
        minimum = 4 if self.debiased else 2
        require_rows(n, "StreamingCKA", minimum, why="debiased CKA needs n > 3" if self.debiased else "CKA needs n >= 2")
        if not self.debiased:
            cxy = self._xy - np.outer(self._sx, self._sy) / n
            cxx = self._xx - np.outer(self._sx, self._sx) / n
            cyy = self._yy - np.outer(self._sy, self._sy) / n
            kk, ll = float(np.vdot(cxx, cxx)), float(np.vdot(cyy, cyy))
            self._check_variance(kk, ll, "CKA")
            return clamp_unit(float(np.vdot(cxy, cxy)) / math.sqrt(kk * ll), "streamed CKA")
        hkl = _unbiased_hsic(self._xy, self._sx, self._sy, self._d, self._e, self._de, self._uxy, self._uyx, n)
        hkk = _unbiased_hsic(self._xx, self._sx, self._sx, self._d, self._d, self._dd, self._uxx, self._uxx, n)
        hll = _unbiased_hsic(self._yy, self._sy, self._sy, self._e, self._e, self._ee, self._uyy, self._uyy, n)
        self._check_variance(np.trace(self._xx) - self._sx @ self._sx / n, np.trace(self._yy) - self._sy @ self._sy / n, "debiased CKA")
        if hkk <= 0.0 or hll <= 0.0:
            raise ValueError(
                f"StreamingCKA: the unbiased HSIC of {'x' if hkk <= 0 else 'y'} with itself is not positive at "
                f"n={n}, so debiased CKA is undefined; use more examples or debiased=False"
            )
        return float(hkl / math.sqrt(hkk * hll))

    def _check_variance(self, kk: float, ll: float, measure: str) -> None:
        for name, value, shift in (("x", kk, self.shift_x_), ("y", ll, self.shift_y_)):
            if value <= 0.0:
                raise ValueError(
                    f"StreamingCKA: {name} has zero variance over the {self.n_} examples seen: {measure} is "
                    "undefined for a constant layer"
                )
