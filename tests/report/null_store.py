"""The hand-made null of claim 3: untrained VAEs with k passive dimensions set by hand.

Issue 19's audit: an untrained network whose mean-head rows are zeroed for k
dimensions (their posterior mean is constant) and whose sigma is 1 there
makes CKA(mean, sampled) fall with k by arithmetic alone (rho -0.9 to -0.99
with the raw statistic). Nothing was learned, so claim 3 must not hold.

:func:`handmade_null` builds such a store: the :class:`Synthetic` study's
rows, with every CKA / Procrustes(encoder.mean, encoder.sample) replaced by
the score of a real untrained network (vaesim's own ``build_vae`` and
``linear_cka`` / ``procrustes_similarity``), fresh eps per checkpoint, and a
``latents`` table computed from the same codes. Every layer's trajectory is
flat (nothing learns), so every learned checkpoint counts as converged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from synthetic_store import Synthetic
from vaesim.models import build_vae
from vaesim.similarity import linear_cka, procrustes_similarity

# (scale of the active dimensions' mean code, sigma of the active dimensions; None = the untrained logvar's)
DESIGNS = {"unit code, sigma 0.3": (1.0, 0.3), "unit code, sigma 0.1": (1.0, 0.1),
           "small code, sigma 0.5": (0.3, 0.5), "unit code, untrained sigma": (1.0, None)}


def probe_images(n: int = 200, seed: int = 0) -> torch.Tensor:
    """(n, 1, 64, 64) images of one white rectangle each, at random places and sizes (no dataset needed)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 1, 64, 64), dtype=np.float32)
    for image in images:
        h, w = rng.integers(6, 30, size=2)
        top, left = rng.integers(0, 64 - h), rng.integers(0, 64 - w)
        image[0, top:top + h, left:left + w] = 1.0
    return torch.from_numpy(images)


@dataclass
class NullCodes:
    mean: np.ndarray  # (n, D) the untrained mean code, standardised and scaled
    sigma: np.ndarray  # (n, D)


def untrained_codes(seed: int, scale: float, sigma: float | None, images: torch.Tensor) -> NullCodes:
    torch.manual_seed(seed)
    model = build_vae(latent_dim=10).eval()
    with torch.no_grad():
        mean, logvar = model.encode(images)
    mean = mean.double().numpy()
    mean = (mean - mean.mean(axis=0)) / mean.std(axis=0) * scale
    spread = np.exp(logvar.double().numpy() / 2.0) if sigma is None else np.full(mean.shape, sigma)
    return NullCodes(mean, spread)


def handmade_null(design: str, *, covariance: bool = False, n: int = 200) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, latents) of the hand-made null ``design`` (a key of :data:`DESIGNS`).

    ``covariance``: latents also carry ``mean_cov_sq`` (the mean code's
    off-diagonal covariances), so the CKA expectation is exact, not bounded.
    """
    scale, sigma = DESIGNS[design]
    synthetic = Synthetic()
    flat = {0: 0.999, 250: 0.999, 500: 1.0, 750: 1.0}
    synthetic.curves = {name: flat for name in synthetic.layers}  # nothing learns
    results = synthetic.results()
    images = probe_images(n)
    codes = {seed: untrained_codes(seed, scale, sigma, images) for seed in synthetic.seeds}
    rng = np.random.default_rng(12345)
    latent_rows = []
    pair = results["a_layer"].isin(["encoder.mean", "encoder.sample"]) & results["b_layer"].isin(
        ["encoder.mean", "encoder.sample"]) & (results["a_layer"] != results["b_layer"]) \
        & (results["comparison"] == "within_run") & (results["a_step"] == results["b_step"])
    for param, seed in synthetic.run_list():
        run = synthetic.run_id(param, seed)
        for step in synthetic.steps:
            k = synthetic.passive(param, step / synthetic.steps[-1])
            mean, spread = codes[seed].mean.copy(), codes[seed].sigma.copy()
            mean[:, :k] = 0.0  # mean-head rows zeroed: a constant posterior mean
            spread[:, :k] = 1.0  # sigma = 1: the prior
            sample = mean + spread * rng.standard_normal(mean.shape)
            at = pair & (results["a_run"] == run) & (results["a_step"] == step)
            results.loc[at & (results["metric"] == "cka"), "score"] = linear_cka(mean, sample)
            results.loc[at & (results["metric"] == "procrustes"), "score"] = procrustes_similarity(mean, sample)
            results.loc[at, "n"] = n
            centred = mean - mean.mean(axis=0)
            cov = centred.T @ centred / n
            for dim in range(mean.shape[1]):
                latent_rows.append(dict(run_id=run, step=step, dim=dim, mean_variance=float(mean[:, dim].var()),
                                        posterior_variance=float((spread[:, dim] ** 2).mean()),
                                        **({"mean_cov_sq": float((cov[dim] ** 2).sum())} if covariance else {})))
    return results, pd.DataFrame(latent_rows)
