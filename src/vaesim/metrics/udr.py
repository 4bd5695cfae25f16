"""Unsupervised Disentanglement Ranking (UDR; Duan et al. 2020, ICLR, arXiv:1905.12614).

Idea: disentangled runs of one objective and strength agree with each other
up to a permutation (and sign / scale) of their informative latents, while
entangled runs agree only up to arbitrary rotations. For two runs ``a`` and
``b`` evaluated on the same ``n`` inputs:

1. **Informative latents by KL**: the average KL of ``q(z_k|x)`` to the prior,
   ``KL_k = mean_x 0.5 (mu_k^2 + exp(logvar_k) - logvar_k - 1)``; latent ``k``
   is active when ``KL_k > 0.01`` (paper sec. 3, disentanglement_lib's
   ``kl_filter_threshold``).
2. **Similarity matrix** ``R`` ``(d_a, d_b)`` between the standardised mean
   codes (collapsed latents zeroed):

   * ``"spearman"``: ``R_ij = |Spearman rank correlation(z^a_i, z^b_j)|``;
   * ``"lasso"``: ``R = |W|^T`` of a Lasso regression ``z^b ~ z^a W``
     (``alpha = 0.1``), the paper's ``UDR_L``.
3. **Pair score** on the active rows and columns of ``R`` (``r_a = max_b R_ab``):
   ``UDR_ab = 1/(d_a + d_b) [sum_b r_b^2 / sum_a R_ab + sum_a r_a^2 / sum_b R_ab]``
   (paper eq. 2, with the ``I_KL`` indicator realised by dropping inactive
   latents; a row or column whose entries are all zero contributes 0). It is
   1 when the active latents of the two runs match one to one, lower when
   one latent of a run spreads over several of the other or a run has active
   latents the other lacks. disentanglement_lib averages the two directions'
   means instead of weighting them by ``d_a`` and ``d_b``; the two agree when
   ``d_a = d_b``. With no active latent in either run the pair scores 0.
4. **Model score**: the median of ``UDR_{b,a}`` over the other runs ``b`` of
   the same group (same objective and strength, different seed).

Defaults follow disentanglement_lib (``udr_sklearn``): 1000 points per model
in its test config; the paper used 10000 (:data:`UDR_POINTS`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Hashable, Mapping

import numpy as np

__all__ = [
    "KL_THRESHOLD",
    "LASSO_ALPHA",
    "UDR_POINTS",
    "LatentCodes",
    "UDRResult",
    "active_latents",
    "gaussian_kl_per_latent",
    "lasso_matrix",
    "spearman_matrix",
    "udr",
    "udr_pair",
]

log = logging.getLogger(__name__)

KL_THRESHOLD = 0.01
LASSO_ALPHA = 0.1
UDR_POINTS = 10000
METHODS = ("spearman", "lasso")


def gaussian_kl_per_latent(mean, logvar) -> np.ndarray:
    """Average KL(N(mean, exp(logvar)) || N(0, 1)) per latent: ``(d,)`` from ``(n, d)`` arrays."""
    mu = np.asarray(mean, dtype=np.float64)
    lv = np.asarray(logvar, dtype=np.float64)
    if mu.shape != lv.shape or mu.ndim != 2:
        raise ValueError(f"gaussian_kl_per_latent: mean and logvar must both be (n, d), got {mu.shape} and {lv.shape}")
    return np.mean(0.5 * (mu * mu + np.exp(lv) - lv - 1.0), axis=0)


def active_latents(kl, threshold: float = KL_THRESHOLD) -> np.ndarray:
    """Boolean mask ``(d,)``: latents whose average KL exceeds ``threshold``."""
    return np.asarray(kl, dtype=np.float64) > threshold


@dataclass(frozen=True)
class LatentCodes:
    """One run's mean codes ``(n, d)`` on the shared inputs and its per-latent KL ``(d,)``."""

    mean: np.ndarray
    kl: np.ndarray

    @classmethod
    def from_encoder(cls, mean, logvar) -> "LatentCodes":
        """From the encoder's mean and log-variance ``(n, d)`` on the shared inputs."""
        return cls(np.asarray(mean, dtype=np.float64), gaussian_kl_per_latent(mean, logvar))

    def standardised(self, threshold: float = KL_THRESHOLD) -> np.ndarray:
        """Codes with zero mean and unit variance per latent; inactive (or constant) latents zeroed."""
        z = np.asarray(self.mean, dtype=np.float64)
        std = z.std(axis=0)
        out = np.where(std > 0, (z - z.mean(0)) / np.where(std > 0, std, 1.0), 0.0)
        return out * active_latents(self.kl, threshold)


def _check_pair(za: np.ndarray, zb: np.ndarray) -> None:
    if za.ndim != 2 or zb.ndim != 2 or za.shape[0] != zb.shape[0]:
        raise ValueError(f"udr: both runs' codes must be (n, d) on the same n inputs, got {za.shape} and {zb.shape}")


def spearman_matrix(za, zb) -> np.ndarray:
    """``|Spearman correlation|`` ``(d_a, d_b)``; constant columns give 0."""
    from scipy.stats import rankdata

    za, zb = np.asarray(za, dtype=np.float64), np.asarray(zb, dtype=np.float64)
    _check_pair(za, zb)
    ra = rankdata(za, axis=0)
    rb = rankdata(zb, axis=0)
    ra -= ra.mean(0)
    rb -= rb.mean(0)
    na, nb = np.linalg.norm(ra, axis=0), np.linalg.norm(rb, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = (ra.T @ rb) / np.outer(na, nb)
    return np.abs(np.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0))


def lasso_matrix(za, zb, *, alpha: float = LASSO_ALPHA, seed: int = 0) -> np.ndarray:
    """``|W|^T`` ``(d_a, d_b)`` of the Lasso regression of ``zb`` on ``za``."""
    from sklearn.linear_model import Lasso

    za, zb = np.asarray(za, dtype=np.float64), np.asarray(zb, dtype=np.float64)
    _check_pair(za, zb)
    model = Lasso(alpha=alpha, random_state=seed).fit(za, zb)
    coef = np.atleast_2d(model.coef_)  # (d_b, d_a)
    return np.abs(coef).T


def _strength(matrix: np.ndarray, axis: int) -> float:
    """``sum over lines of max^2 / sum`` along ``axis`` (all-zero lines contribute 0)."""
    top = matrix.max(axis=axis)
    total = matrix.sum(axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(total > 0, top * top / total, 0.0)
    return float(ratio.sum())


def udr_pair(a: LatentCodes, b: LatentCodes, *, method: str = "lasso", seed: int = 0,
             threshold: float = KL_THRESHOLD) -> float:
    """``UDR_ab`` in [0, 1] (paper eq. 2) for two runs on the same inputs."""
    if method not in METHODS:
        raise ValueError(f"udr: method must be one of {METHODS}, got {method!r}")
    za, zb = a.standardised(threshold), b.standardised(threshold)
    _check_pair(za, zb)
    matrix = spearman_matrix(za, zb) if method == "spearman" else lasso_matrix(za, zb, seed=seed)
    rows, cols = active_latents(a.kl, threshold), active_latents(b.kl, threshold)
    r = matrix[rows][:, cols]
    da, db = int(rows.sum()), int(cols.sum())
    if da + db == 0 or r.size == 0:
        return 0.0
    return (_strength(r, axis=0) + _strength(r, axis=1)) / (da + db)


@dataclass(frozen=True)
class UDRResult:
    """UDR of a set of runs.

    Attributes:
        model_scores: ``{run: median over partners of UDR_{partner, run}}``
            (NaN for a run with no partner in its group).
        pairwise: ``{(a, b): UDR_ab}`` for every ordered pair of runs of a group.
        active: ``{run: number of active latents}``.
    """

    model_scores: dict
    pairwise: dict
    active: dict


def udr(runs: Mapping[Hashable, LatentCodes], *, groups: Mapping[Hashable, Any] | None = None,
        method: str = "lasso", seed: int = 0, threshold: float = KL_THRESHOLD) -> UDRResult:
    """UDR scores of ``runs`` (each a :class:`LatentCodes` on the same inputs).

    Args:
        runs: ``{run id: LatentCodes}``.
        groups: ``{run id: group key}``; only runs of the same group (same
            objective and strength, different seeds) are paired. None: one group.
        method: ``"lasso"`` (UDR_L, the paper's default) or ``"spearman"`` (UDR_S).
    """
    if method not in METHODS:
        raise ValueError(f"udr: method must be one of {METHODS}, got {method!r}")
    if not runs:
        raise ValueError("udr: runs is empty; pass at least two runs of one objective and strength")
    keys = list(runs)
    if groups is not None:
        missing = [k for k in keys if k not in groups]
        if missing:
            raise ValueError(f"udr: groups has no entry for runs {missing!r}; give every run its group key")
    group_of = {k: None if groups is None else groups[k] for k in keys}
    n = {np.asarray(runs[k].mean).shape[0] for k in keys}
    if len(n) != 1:
        raise ValueError(f"udr: every run must be encoded on the same inputs; got numbers of rows {sorted(n)}")
    pairwise = {}
    for a in keys:
        for b in keys:
            if a != b and group_of[a] == group_of[b]:
                pairwise[(a, b)] = udr_pair(runs[a], runs[b], method=method, seed=seed, threshold=threshold)
    scores = {}
    for k in keys:
        values = [v for (a, b), v in pairwise.items() if b == k]
        scores[k] = float(np.median(values)) if values else float("nan")
    active = {k: int(active_latents(runs[k].kl, threshold).sum()) for k in keys}
    log.info("udr (%s): %d runs, %d ordered pairs", method, len(keys), len(pairwise))
    return UDRResult(scores, pairwise, active)
