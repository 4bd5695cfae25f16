"""SVCCA (Raghu et al. 2017) and PWCCA (Morcos et al. 2018) on per-layer summaries.

For a layer ``X`` ``(n, p)`` (rows are examples), centred in float64:

1. **SV step** (Raghu et al. 2017, sec. 2): thin SVD ``Xc = U S V^T``; keep the
   ``k`` leading directions, ``k`` the smallest number whose squared singular
   values reach 99 % of ``||Xc||_F^2`` (:data:`KEEP_VARIANCE`). The reduced
   layer ``X' = U_k S_k`` spans ``U_k`` ``(n, k)``.
2. **CCA step**: the canonical correlations of ``X'`` and ``Y'`` are the
   singular values of ``U_k^T U'_l`` (both bases orthonormal; CCA is invariant
   to invertible linear maps of either side, so ``S_k`` drops out):
   ``U_k^T U'_l = A diag(rho) B^T``, ``rho`` sorted descending,
   ``min(k, l)`` of them.
3. **SVCCA** = ``mean(rho)``.
4. **PWCCA** (Morcos et al. 2018, sec. 3.1): the canonical variates of ``X``
   are ``h_i = U_k a_i`` (unit norm); weight ``alpha~_i = sum_j |<h_i, x_j>|``
   over the neurons ``x_j`` (columns of ``Xc``), ``alpha = alpha~ / sum
   alpha~``, PWCCA = ``sum_i alpha_i rho_i``. Since ``h_i`` lies in span
   ``U_k``, ``<h_i, x_j> = (a_i^T M)_j`` with ``M = S_k V_k^T`` ``(k, p)``,
   so the summary keeps ``M``. PWCCA weights by the first layer: it is not
   symmetric (``compare`` reports ``(a_layer, b_layer)`` with weights from
   ``a_layer``), as in the authors' code.

Per-layer summary (:class:`CCASummary`): ``U_k`` and ``M``, computed once per
(model, layer) and reused for every pair; the pair step is one ``k x l``
product and its SVD. ``M`` holds ``k p`` numbers (up to ``n p``, the size of
the activations) and is only kept when PWCCA is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vaesim.similarity.measures import centre_columns
from vaesim.similarity.validation import as_matrix, check_same_rows

__all__ = ["KEEP_VARIANCE", "CCASummary", "cca_summary", "pwcca", "pwcca_pair", "svcca", "svcca_pair"]

#: fraction of the variance the SV step keeps (Raghu et al. 2017)
KEEP_VARIANCE = 0.99


@dataclass(frozen=True, eq=False)
class CCASummary:
    """SV-step summary of one layer.

    Attributes:
        basis: ``U_k`` ``(n, k)`` orthonormal columns (``k = 0`` for a constant layer).
        weights: ``M = S_k V_k^T`` ``(k, p)`` for PWCCA, or None.
        name: the layer's name for messages.
    """

    basis: np.ndarray
    weights: np.ndarray | None
    name: str = "x"

    @property
    def n(self) -> int:
        return int(self.basis.shape[0])

    @property
    def rank(self) -> int:
        return int(self.basis.shape[1])


def cca_summary(x: Any, *, name: str = "x", keep: float = KEEP_VARIANCE, with_weights: bool = True) -> CCASummary:
    """SV step of one layer ``x`` ``(n, ...)``: keep the directions with ``keep`` of the variance."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"cca_summary: keep must be in (0, 1], got {keep}")
    matrix = as_matrix(x, name, check_finite=False)
    xc = centre_columns(matrix, name)  # (n, p) float64
    u, s, vt = np.linalg.svd(xc, full_matrices=False)  # (n, r), (r,), (r, p)
    energy = s * s
    total = float(energy.sum())
    if total == 0.0:
        return CCASummary(np.zeros((xc.shape[0], 0)), np.zeros((0, xc.shape[1])) if with_weights else None, name)
    k = int(np.searchsorted(np.cumsum(energy) / total, keep - 1e-12) + 1)
    k = min(k, int(np.sum(s > s[0] * max(xc.shape) * np.finfo(float).eps)))  # never keep numerically null directions
    basis = np.ascontiguousarray(u[:, :k])
    weights = s[:k, None] * vt[:k] if with_weights else None  # (k, p)
    return CCASummary(basis, weights, name)


def _correlations(a: CCASummary, b: CCASummary) -> tuple[np.ndarray, np.ndarray]:
    if a.n != b.n:
        raise ValueError(f"CCA: {a.name} has n={a.n} examples but {b.name} has n={b.n}; use the same examples")
    if a.rank == 0 or b.rank == 0:
        which = a.name if a.rank == 0 else b.name
        raise ValueError(f"{which} has zero variance (every feature is constant): CCA is undefined for it")
    cross = a.basis.T @ b.basis  # (k, l)
    left, rho, _ = np.linalg.svd(cross, full_matrices=False)  # (k, m), (m,)
    return np.clip(rho, 0.0, 1.0), left


def svcca_pair(a: CCASummary, b: CCASummary) -> float:
    """SVCCA of two summaries: mean canonical correlation after the SV step, in [0, 1]."""
    rho, _ = _correlations(a, b)
    return float(rho.mean())


def pwcca_pair(a: CCASummary, b: CCASummary) -> float:
    """PWCCA of two summaries, weighted by ``a``'s neurons, in [0, 1]."""
    if a.weights is None:
        raise ValueError(f"PWCCA needs the projection weights of {a.name}; make its summary with with_weights=True")
    rho, left = _correlations(a, b)
    alpha = np.abs(left.T @ a.weights).sum(axis=1)  # (m,) sum_j |<h_i, x_j>|
    return float(alpha @ rho / alpha.sum())


def _pair(x, y, name: str):
    xm = as_matrix(x, "x", min_rows=2)
    ym = as_matrix(y, "y", min_rows=2)
    check_same_rows(xm, ym)
    return cca_summary(xm, name="x"), cca_summary(ym, name="y", with_weights=False)


def svcca(x: Any, y: Any) -> float:
    """SVCCA similarity of two layers' activations ``(n, ...)``."""
    return svcca_pair(*_pair(x, y, "svcca"))


def pwcca(x: Any, y: Any) -> float:
    """PWCCA similarity of two layers' activations ``(n, ...)``, weighted by ``x``."""
    return pwcca_pair(*_pair(x, y, "pwcca"))


# -- registration as plug-in measures ("svcca", "pwcca") ------------------------------------

def layer_summary(x: Any) -> dict[str, np.ndarray]:
    """Storable per-layer summary for the registry: ``{"basis": U_k, "weights": M}``.

    One summary serves both SVCCA and PWCCA (the registry shares it).
    """
    summary = cca_summary(x)
    return {"basis": summary.basis, "weights": summary.weights}


def _as_summary(value: Any) -> CCASummary:
    if isinstance(value, CCASummary):
        return value
    if isinstance(value, dict) and "basis" in value:
        return CCASummary(np.asarray(value["basis"], dtype=np.float64),
                          None if value.get("weights") is None else np.asarray(value["weights"], dtype=np.float64))
    raise TypeError(f"SVCCA/PWCCA: expected a CCA summary (dict with 'basis' and 'weights'), got {type(value).__name__}")


def _register() -> None:
    from vaesim.similarity.registry import get_measure, register_measure

    for name, fn, symmetric, text in (
        ("svcca", svcca_pair, True, "SVCCA (Raghu et al. 2017): mean canonical correlation after keeping 99% variance"),
        ("pwcca", pwcca_pair, False, "PWCCA (Morcos et al. 2018): projection-weighted canonical correlation, "
                                     "weights from a_layer"),
    ):
        try:
            get_measure(name)
        except ValueError:
            register_measure(name, lambda a, b, fn=fn: fn(_as_summary(a), _as_summary(b)), summary=layer_summary,
                             symmetric=symmetric, description=text)


_register()
