"""Observational disentanglement metrics: MIG, SAP, DCI, modularity / explicitness.

Each is a pure function of a sample of mean codes ``(n, d)`` and their
ground-truth factors ``(n, F)`` (integer indices), following the protocol of
disentanglement_lib (Locatello et al. 2019, ``evaluation/metrics/*``; study
configs ``unsupervised_study_v1/metric_configs``): ``num_train = 10000`` and
``num_test = 5000`` points drawn uniformly over factors, 20 histogram bins.
The sampling lives in :mod:`vaesim.metrics.protocol`; the interventional
BetaVAE and FactorVAE scores in :mod:`vaesim.metrics.interventional`.

* **MIG** (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs",
  eq. 6): codes binned into 20 equal-width bins; ``I_ij = I(z_i; v_j)``;
  ``MIG = mean_j (I_(1)j - I_(2)j) / H(v_j)`` with ``I_(1)``, ``I_(2)`` the
  largest and second-largest over codes. In [0, 1]; 1 when every factor is
  carried whole by one code and by no other.
* **SAP** (Kumar et al. 2018, "Variational Inference of Disentangled Latent
  Concepts", sec. 3): score matrix ``S_ij`` = test accuracy of a one-feature
  linear SVM (``C=0.01``, balanced classes) predicting factor ``j`` from code
  ``i`` (``continuous=False``, the study setting), or the squared correlation
  ``cov(z_i, v_j)^2 / (var z_i var v_j)`` (``continuous=True``); ``SAP =
  mean_j (S_(1)j - S_(2)j)``.
* **DCI** (Eastwood & Williams 2018, "A Framework for the Quantitative
  Evaluation of Disentangled Representations", sec. 2): importance ``R_ij`` of
  code ``i`` for factor ``j`` = |feature importance| of a gradient-boosted
  tree classifier per factor (scikit-learn ``GradientBoostingClassifier``
  defaults: 100 stages, depth 3, learning rate 0.1, as disentanglement_lib).
  Disentanglement ``D = sum_i rho_i (1 - H_F(P_i.))`` with ``P_ij = R_ij /
  sum_k R_ik``, ``H_F`` the entropy in base ``F`` and ``rho_i = sum_j R_ij /
  sum R``; completeness ``C = sum_j rho_j (1 - H_d(P~_.j))`` with columns
  normalised instead; informativeness = mean classification accuracy (train
  and test). disentanglement_lib adds ``1e-11`` to ``R`` before the entropies;
  so does this module.
* **Modularity / explicitness** (Ridgeway & Mozer 2018, "Learning Deep
  Disentangled Embeddings with the F-Statistic Loss", sec. 3): with ``m_ij =
  I(z_i; v_j)`` on the 20-bin codes and ``theta_i = max_j m_ij``,
  ``delta_i = sum_{j != argmax} m_ij^2 / (theta_i^2 (F - 1))``, modularity
  ``= mean_i (1 - delta_i)`` (0 for a code with no information).
  Explicitness: mean over factors of the one-vs-rest ROC-AUC (macro over
  classes) of a logistic regression on the standardised codes.

Chance levels (a representation independent of the factors): MIG, SAP, DCI
disentanglement and completeness near 0 (finite-sample bias only);
explicitness near 0.5; DCI informativeness near the majority-class rate;
modularity is *not* near 0 for noise (a known property of the score: noisy
MI estimates still have one largest entry per code).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from vaesim.metrics.discrete import (
    NUM_BINS,
    check_codes_factors,
    entropy,
    histogram_discretize,
    mutual_information_matrix,
)

__all__ = [
    "DCI_EPSILON",
    "SAP_SVM_C",
    "DCIScores",
    "dci",
    "dci_from_importance",
    "explicitness",
    "gbt_importance",
    "mig",
    "modularity",
    "modularity_from_mi",
    "sap",
    "sap_score_matrix",
]

log = logging.getLogger(__name__)

#: the SVM regularisation of the SAP score (Kumar et al. 2018; disentanglement_lib)
SAP_SVM_C = 0.01
#: added to the importance matrix before the DCI entropies (disentanglement_lib)
DCI_EPSILON = 1e-11


# -- MIG ---------------------------------------------------------------------

def mig(codes, factors, *, num_bins: int = NUM_BINS) -> float:
    """Mutual Information Gap of ``codes`` ``(n, d)`` for ``factors`` ``(n, F)``.

    Needs ``d >= 2`` (a gap needs two codes). Factors with zero entropy
    (constant in the sample) are skipped; if all are constant, ValueError.
    """
    c, f = check_codes_factors(codes, factors, "mig")
    if c.shape[1] < 2:
        raise ValueError(f"mig: needs at least 2 code dimensions (the gap between the top two), got d={c.shape[1]}")
    m = mutual_information_matrix(histogram_discretize(c, num_bins), f)  # (d, F)
    h = np.array([entropy(f[:, j]) for j in range(f.shape[1])])
    keep = h > 0
    if not keep.any():
        raise ValueError("mig: every factor is constant in this sample (zero entropy); sample more examples")
    top = np.sort(m, axis=0)[::-1]
    return float(np.mean((top[0, keep] - top[1, keep]) / h[keep]))


# -- SAP ---------------------------------------------------------------------

def sap_score_matrix(codes, factors, codes_test=None, factors_test=None, *, continuous: bool = False) -> np.ndarray:
    """SAP score matrix ``(d, F)``: per (code, factor) predictability.

    ``continuous=True``: squared Pearson correlation on ``codes``/``factors``
    (codes with variance <= 1e-12 score 0). ``continuous=False``: accuracy on
    the test set of ``LinearSVC(C=0.01, class_weight="balanced")`` fitted on
    one code dimension of the training set.
    """
    c, f = check_codes_factors(codes, factors, "sap")
    d, nf = c.shape[1], f.shape[1]
    out = np.zeros((d, nf))
    if continuous:
        cc = c - c.mean(0)
        fc = f - f.mean(0)
        var_c = (cc * cc).sum(0) / (len(c) - 1)  # (d,)
        var_f = (fc * fc).sum(0) / (len(c) - 1)  # (F,)
        cov = cc.T @ fc / (len(c) - 1)  # (d, F)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = cov**2 / (var_c[:, None] * var_f[None, :])
        out[var_c <= 1e-12, :] = 0.0
        out[:, var_f == 0] = 0.0
        return out
    if codes_test is None or factors_test is None:
        raise ValueError("sap: continuous=False needs codes_test and factors_test (the SVM's test set)")
    ct, ft = check_codes_factors(codes_test, factors_test, "sap (test set)", min_rows=1)
    if ct.shape[1] != d or ft.shape[1] != nf:
        raise ValueError(f"sap: test set has shapes {ct.shape}, {ft.shape}; training set has {c.shape}, {f.shape}")
    from sklearn.svm import LinearSVC

    for j in range(nf):
        if np.unique(f[:, j]).size < 2:
            continue  # a constant factor is predicted perfectly by every code: gap 0
        for i in range(d):
            model = LinearSVC(C=SAP_SVM_C, class_weight="balanced")
            model.fit(c[:, i : i + 1], f[:, j])
            out[i, j] = np.mean(model.predict(ct[:, i : i + 1]) == ft[:, j])
    return out


def sap(codes, factors, codes_test=None, factors_test=None, *, continuous: bool = False) -> float:
    """SAP score: mean over factors of the gap between the two best codes.

    Args:
        codes, factors: training sample ``(n, d)``, ``(n, F)``.
        codes_test, factors_test: test sample (needed when ``continuous=False``).
        continuous: treat factors as continuous (squared correlation).
    """
    matrix = sap_score_matrix(codes, factors, codes_test, factors_test, continuous=continuous)
    if matrix.shape[0] < 2:
        raise ValueError(f"sap: needs at least 2 code dimensions, got d={matrix.shape[0]}")
    top = np.sort(matrix, axis=0)
    return float(np.mean(top[-1] - top[-2]))


# -- DCI ---------------------------------------------------------------------

@dataclass(frozen=True)
class DCIScores:
    """DCI of one representation (Eastwood & Williams 2018)."""

    disentanglement: float
    completeness: float
    informativeness_train: float
    informativeness_test: float


def _entropy_base(p: np.ndarray, base: int, axis: int) -> np.ndarray:
    """Shannon entropy along ``axis`` of the normalised non-negative ``p``, log base ``base``."""
    q = p / p.sum(axis=axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(q > 0, q * np.log(q), 0.0)
    return -terms.sum(axis=axis) / np.log(base)


def dci_from_importance(importance: np.ndarray) -> tuple[float, float]:
    """(disentanglement, completeness) from an importance matrix ``(d, F)`` (>= 0).

    Raises:
        ValueError: not 2-D, negative entries, fewer than 2 codes or factors.
    """
    r = np.abs(np.asarray(importance, dtype=np.float64))
    if r.ndim != 2 or r.shape[0] < 2 or r.shape[1] < 2:
        raise ValueError(f"dci: importance must be (d, F) with d >= 2 and F >= 2, got shape {np.shape(importance)}")
    d, nf = r.shape
    weights = r if r.sum() > 0 else np.ones_like(r)
    per_code = 1.0 - _entropy_base(r + DCI_EPSILON, nf, axis=1)  # (d,)
    per_factor = 1.0 - _entropy_base(r + DCI_EPSILON, d, axis=0)  # (F,)
    code_weight = weights.sum(1) / weights.sum()
    factor_weight = weights.sum(0) / weights.sum()
    return float(np.sum(per_code * code_weight)), float(np.sum(per_factor * factor_weight))


def gbt_importance(codes, factors, codes_test, factors_test, *, seed: int = 0) -> tuple[np.ndarray, float, float]:
    """Gradient-boosted-tree importance ``(d, F)`` and mean train / test accuracy.

    One scikit-learn ``GradientBoostingClassifier()`` (library defaults, as in
    disentanglement_lib) per factor, ``random_state=seed`` for determinism.
    The factors' classifiers are independent, so they are fitted on up to
    :func:`vaesim.utils.threads.compute_threads` threads (scikit-learn builds
    trees without the GIL); each fit is the same whatever the thread count.
    """
    from sklearn.ensemble import GradientBoostingClassifier

    from vaesim.utils.threads import compute_threads

    c, f = check_codes_factors(codes, factors, "dci")
    ct, ft = check_codes_factors(codes_test, factors_test, "dci (test set)", min_rows=1)
    for j in range(f.shape[1]):
        if np.unique(f[:, j]).size < 2:
            raise ValueError(f"dci: factor {j} is constant in the training sample; a classifier needs two classes")

    def fit(j: int) -> tuple[np.ndarray, float, float]:
        model = GradientBoostingClassifier(random_state=seed)
        model.fit(c, f[:, j])
        train = float(np.mean(model.predict(c) == f[:, j]))
        log.debug("dci: factor %d fitted (train acc %.3f)", j, train)
        return np.abs(model.feature_importances_), train, float(np.mean(model.predict(ct) == ft[:, j]))

    threads = min(compute_threads(), f.shape[1])
    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        # largest classifiers first (cost grows with the number of classes), so the threads finish together
        order = sorted(range(f.shape[1]), key=lambda j: -np.unique(f[:, j]).size)
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vaesim-dci") as pool:
            fitted = dict(zip(order, pool.map(fit, order)))
        results = [fitted[j] for j in range(f.shape[1])]
    else:
        results = [fit(j) for j in range(f.shape[1])]
    importance = np.stack([r[0] for r in results], axis=1)  # (d, F)
    return importance, float(np.mean([r[1] for r in results])), float(np.mean([r[2] for r in results]))


def dci(codes, factors, codes_test, factors_test, *, seed: int = 0) -> DCIScores:
    """DCI disentanglement, completeness and informativeness (train, test)."""
    importance, train, test = gbt_importance(codes, factors, codes_test, factors_test, seed=seed)
    d, c = dci_from_importance(importance)
    return DCIScores(d, c, train, test)


# -- modularity / explicitness -------------------------------------------------

def modularity_from_mi(mi: np.ndarray) -> float:
    """Modularity from a mutual-information matrix ``(d, F)`` (Ridgeway & Mozer 2018)."""
    m = np.asarray(mi, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ValueError(f"modularity: needs a (d, F) matrix with F >= 2 factors, got shape {m.shape}")
    sq = m * m
    top = sq.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (sq.sum(1) - top) / (top * (m.shape[1] - 1.0))
    score = np.where(top == 0.0, 0.0, 1.0 - delta)
    return float(np.mean(score))


def modularity(codes, factors, *, num_bins: int = NUM_BINS) -> float:
    """Modularity of ``codes`` ``(n, d)`` for ``factors`` ``(n, F)`` on 20-bin codes."""
    c, f = check_codes_factors(codes, factors, "modularity")
    return modularity_from_mi(mutual_information_matrix(histogram_discretize(c, num_bins), f))


def _macro_auc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    aucs = []
    for k, label in enumerate(classes):
        target = y == label
        if target.all() or not target.any():
            continue  # AUC undefined for a class absent from (or filling) this sample
        aucs.append(roc_auc_score(target, proba[:, k]))
    if not aucs:
        raise ValueError("explicitness: no factor class is both present and absent in the sample; AUC undefined")
    return float(np.mean(aucs))


def explicitness(codes, factors, codes_test, factors_test, *, seed: int = 0) -> tuple[float, float]:
    """Explicitness (train, test): mean over factors of macro one-vs-rest ROC-AUC.

    Codes are standardised with the training mean and standard deviation
    (constant codes are left at 0), then ``LogisticRegression`` (scikit-learn
    defaults, ``max_iter=1000``) per factor.
    """
    from sklearn.linear_model import LogisticRegression

    c, f = check_codes_factors(codes, factors, "explicitness")
    ct, ft = check_codes_factors(codes_test, factors_test, "explicitness (test set)", min_rows=1)
    mean, std = c.mean(0), c.std(0)
    std = np.where(std > 0, std, 1.0)
    c, ct = (c - mean) / std, (ct - mean) / std
    train, test = [], []
    for j in range(f.shape[1]):
        if np.unique(f[:, j]).size < 2:
            raise ValueError(f"explicitness: factor {j} is constant in the training sample; a classifier needs two classes")
        model = LogisticRegression(max_iter=1000, random_state=seed).fit(c, f[:, j])
        train.append(_macro_auc(f[:, j], model.predict_proba(c), model.classes_))
        test.append(_macro_auc(ft[:, j], model.predict_proba(ct), model.classes_))
    return float(np.mean(train)), float(np.mean(test))
