"""Per-dimension statistics of a checkpoint's latent code on the probe set (posterior collapse, claim 3)."""

from __future__ import annotations

import numpy as np
import pandas as pd

LATENT_COLUMNS = ("dim", "mean_variance", "posterior_variance", "kl", "mean_cov_sq")


def latent_statistics(mean: np.ndarray, logvar: np.ndarray) -> pd.DataFrame:
    """One row per latent dimension u of the encoder's Gaussian posterior over n probe images.

    mean, logvar: (n, D) the ``encoder.mean`` and ``encoder.logvar`` layers.
    Columns (float64 arithmetic):

    - ``mean_variance``: Cov_x(E_q[z_u | x]), the population variance of the
      posterior mean over the probe set. Burda et al. (2016) call u active
      when it exceeds 0.01; a passive dimension ignores its input.
    - ``posterior_variance``: E_x[exp(logvar_u)], the average posterior variance
      (near 1 for a dimension collapsed to the prior).
    - ``kl``: E_x[KL(q(z_u|x) || N(0, 1))] = E_x[0.5 (mu^2 + sigma^2 - log sigma^2 - 1)] in nats.
    - ``mean_cov_sq``: sum_w Cov_x(mu_u, mu_w)^2 (population covariances,
      w = u included), so that the column sums to ||Cov_x(mu)||_F^2: what the
      noise-only expectation of CKA(mean, sampled) needs beyond the diagonal
      (:mod:`vaesim.report.collapse`).
    """
    mean = np.asarray(mean, dtype=np.float64)
    logvar = np.asarray(logvar, dtype=np.float64)
    if mean.ndim != 2 or mean.shape != logvar.shape:
        raise ValueError(f"latent_statistics: mean and logvar must both be (n, D); got {mean.shape} and {logvar.shape}")
    if mean.shape[0] < 2:
        raise ValueError(f"latent_statistics: needs at least 2 probe images, got {mean.shape[0]}")
    variance = np.exp(logvar)
    centred = mean - mean.mean(axis=0)
    covariance = centred.T @ centred / mean.shape[0]  # (D, D), population covariance of the mean code
    return pd.DataFrame({
        "dim": np.arange(mean.shape[1], dtype=np.int64),
        "mean_variance": mean.var(axis=0),
        "posterior_variance": variance.mean(axis=0),
        "kl": (0.5 * (mean**2 + variance - logvar - 1.0)).mean(axis=0),
        "mean_cov_sq": (covariance**2).sum(axis=1),
    }, columns=list(LATENT_COLUMNS))
