"""Interventional disentanglement metrics: BetaVAE score and FactorVAE score.

Both fix one factor across a batch of examples and look at how the codes move,
so they need a generator of codes for chosen factors, not a fixed sample:
a :class:`FactorCodes` (factor sampler + encoder of factor rows).

* **BetaVAE score** (Higgins et al. 2017, "beta-VAE", sec. 3 / appendix):
  a training point = pick factor ``k`` uniformly, draw two batches of
  ``batch_size = 64`` factor rows that agree on factor ``k`` only by
  construction, feature ``= mean over the batch of |z(x1) - z(x2)|`` ``(d,)``,
  label ``k``. A logistic regression is fitted on ``num_train = 10000``
  points and scored on ``num_eval = 5000`` fresh points (accuracy).
* **FactorVAE score** (Kim & Mnih 2018, "Disentangling by Factorising",
  sec. 4): global per-code variance from ``num_variance_estimate = 10000``
  codes (ddof 1); codes with standard deviation ``< 0.05`` are pruned as
  collapsed; a point = pick factor ``k``, one batch of 64 rows with factor
  ``k`` fixed to one value, vote ``argmin_i var_batch(z_i) / var_global(z_i)``
  over active codes. The majority-vote classifier (code -> factor) is built
  from ``num_train = 10000`` votes, accuracy on ``num_eval = 5000`` new votes.

Constants are those of disentanglement_lib's study configs
(``beta_vae_sklearn.gin``, ``factor_vae_metric.gin``). Chance level for both
is ``1 / F``: a representation that ignores the factors scores near ``1/F``,
not 0. Randomness: one ``numpy.random.Generator`` (seeded by the caller)
drives every draw, so a seed gives the same score; the stream differs from
disentanglement_lib's ``RandomState``, so numbers agree in distribution, not
bit for bit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = [
    "BETA_VAE_BATCH",
    "FACTOR_VAE_BATCH",
    "FACTOR_VAE_PRUNE",
    "FactorCodes",
    "beta_vae_score",
    "factor_vae_score",
]

log = logging.getLogger(__name__)

BETA_VAE_BATCH = 64
FACTOR_VAE_BATCH = 64
#: standard deviation below which a code counts as collapsed (``prune_dims.threshold``)
FACTOR_VAE_PRUNE = 0.05


@dataclass(frozen=True)
class FactorCodes:
    """Codes for chosen ground-truth factors.

    Attributes:
        factor_sizes: number of values of each factor ``(F,)``.
        encode: ``encode(factors (B, F) int64, rng) -> codes (B, d)``; for a
            dataset and a model, render (or look up) an image for each factor
            row and return the model's mean representation.
        sample: ``sample(n, rng) -> (n, F) int64``; default independent
            uniform factors (disentanglement_lib's sampling).
        chunk: rows per call of ``encode``.
    """

    factor_sizes: tuple[int, ...]
    encode: Callable[[np.ndarray, np.random.Generator], np.ndarray]
    sample: Callable[[int, np.random.Generator], np.ndarray] | None = None
    chunk: int = 8192

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.sample is not None:
            return np.asarray(self.sample(n, rng), dtype=np.int64)
        return np.stack([rng.integers(0, s, size=n) for s in self.factor_sizes], axis=1).astype(np.int64)

    def codes(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Codes ``(B, d)`` float64 of factor rows ``(B, F)``, encoded ``chunk`` rows at a time."""
        parts = []
        for start in range(0, len(factors), self.chunk):
            part = np.asarray(self.encode(factors[start : start + self.chunk], rng), dtype=np.float64)
            if part.ndim != 2 or part.shape[0] != min(self.chunk, len(factors) - start):
                raise ValueError(
                    f"FactorCodes.encode must return (B, d) codes for B factor rows; "
                    f"got shape {part.shape} for B={min(self.chunk, len(factors) - start)}"
                )
            parts.append(part)
        out = np.concatenate(parts)
        if not np.isfinite(out).all():
            raise ValueError("FactorCodes.encode returned NaN or infinity")
        return out


def _beta_vae_points(truth: FactorCodes, num_points: int, batch: int, rng: np.random.Generator):
    """Features ``(num_points, d)`` and labels ``(num_points,)``."""
    labels = rng.integers(0, truth.num_factors, size=num_points)
    first = truth.sample_factors(num_points * batch, rng).reshape(num_points, batch, -1)
    second = truth.sample_factors(num_points * batch, rng).reshape(num_points, batch, -1)
    rows = np.arange(num_points)
    second[rows, :, labels] = first[rows, :, labels]
    z1 = truth.codes(first.reshape(num_points * batch, -1), rng)
    z2 = truth.codes(second.reshape(num_points * batch, -1), rng)
    features = np.abs(z1 - z2).reshape(num_points, batch, -1).mean(axis=1)
    return features, labels


def beta_vae_score(
    truth: FactorCodes, *, seed: int = 0, batch_size: int = BETA_VAE_BATCH,
    num_train: int = 10000, num_eval: int = 5000,
) -> dict[str, float]:
    """BetaVAE score: ``{"train_accuracy", "eval_accuracy"}`` in [0, 1]."""
    from sklearn.linear_model import LogisticRegression

    if truth.num_factors < 2:
        raise ValueError(f"beta_vae_score: needs at least 2 factors, got {truth.num_factors}")
    rng = np.random.default_rng(seed)
    x_train, y_train = _beta_vae_points(truth, num_train, batch_size, rng)
    model = LogisticRegression(max_iter=1000, random_state=seed).fit(x_train, y_train)
    x_eval, y_eval = _beta_vae_points(truth, num_eval, batch_size, rng)
    return {
        "train_accuracy": float(np.mean(model.predict(x_train) == y_train)),
        "eval_accuracy": float(np.mean(model.predict(x_eval) == y_eval)),
    }


def _factor_vae_votes(truth, num_points, batch, rng, global_var, active):
    """Votes ``(F, d_active)``: how often fixing factor k made active code i the least variable."""
    labels = rng.integers(0, truth.num_factors, size=num_points)
    factors = truth.sample_factors(num_points * batch, rng).reshape(num_points, batch, -1)
    rows = np.arange(num_points)
    factors[rows, :, labels] = factors[rows, 0, labels][:, None]
    z = truth.codes(factors.reshape(num_points * batch, -1), rng).reshape(num_points, batch, -1)
    local = z[:, :, active].var(axis=1, ddof=1)  # (points, d_active)
    winner = np.argmin(local / global_var[active], axis=1)
    votes = np.zeros((truth.num_factors, int(active.sum())), dtype=np.int64)
    np.add.at(votes, (labels, winner), 1)
    return votes


def factor_vae_score(
    truth: FactorCodes, *, seed: int = 0, batch_size: int = FACTOR_VAE_BATCH,
    num_train: int = 10000, num_eval: int = 5000, num_variance_estimate: int = 10000,
    prune_threshold: float = FACTOR_VAE_PRUNE,
) -> dict[str, float]:
    """FactorVAE score: ``{"train_accuracy", "eval_accuracy", "num_active_dims"}``.

    With no active code (every standard deviation below ``prune_threshold``)
    both accuracies are 0, as in disentanglement_lib.
    """
    if truth.num_factors < 2:
        raise ValueError(f"factor_vae_score: needs at least 2 factors, got {truth.num_factors}")
    rng = np.random.default_rng(seed)
    z = truth.codes(truth.sample_factors(num_variance_estimate, rng), rng)
    global_var = z.var(axis=0, ddof=1)
    active = np.sqrt(global_var) >= prune_threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}
    train_votes = _factor_vae_votes(truth, num_train, batch_size, rng, global_var, active)
    classifier = np.argmax(train_votes, axis=0)  # factor predicted for each active code
    columns = np.arange(train_votes.shape[1])
    eval_votes = _factor_vae_votes(truth, num_eval, batch_size, rng, global_var, active)
    return {
        "train_accuracy": float(train_votes[classifier, columns].sum() / train_votes.sum()),
        "eval_accuracy": float(eval_votes[classifier, columns].sum() / eval_votes.sum()),
        "num_active_dims": float(active.sum()),
    }
