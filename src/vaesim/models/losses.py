"""Reconstruction and KL terms shared by every objective (pure functions).

Formulas as in ``disentanglement_lib`` (methods/shared/losses.py, vae.py):

- Bernoulli reconstruction: sigmoid cross-entropy of the logits against the
  image, summed over pixels; per example (B,).
- Gaussian reconstruction: ``sum (sigmoid(logits) - x)^2`` over pixels (the
  library's ``l2_loss`` with a sigmoid activation); per example (B,).
- KL(q(z|x) || N(0, I)) per latent dimension, batch mean:
  ``0.5 * mean_b (mu^2 + exp(logvar) - logvar - 1)``; the KL is its sum.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vaesim.models.names import RECONSTRUCTIONS  # noqa: F401,E402 - torch-free, for spec checks


def reconstruction_loss(images: torch.Tensor, logits: torch.Tensor, kind: str = "bernoulli") -> torch.Tensor:
    """Per-example reconstruction loss (B,), summed over pixels.

    images: (B, C, H, W) in [0, 1]; logits: same shape, before the sigmoid.
    """
    if kind == "bernoulli":
        return F.binary_cross_entropy_with_logits(logits, images, reduction="none").flatten(1).sum(1)
    if kind == "gaussian":
        return (torch.sigmoid(logits) - images).square().flatten(1).sum(1)
    raise ValueError(f"reconstruction={kind!r} is unknown; expected one of {list(RECONSTRUCTIONS)}")


def kl_per_dimension(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per latent dimension, averaged over the batch: (D,)."""
    return 0.5 * (mean.square() + logvar.exp() - logvar - 1.0).mean(0)


def gaussian_log_density(samples: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(samples; mean, exp(logvar)) (broadcasting)."""
    inv_var = torch.exp(-logvar)
    return -0.5 * (math.log(2.0 * math.pi) + logvar + (samples - mean).square() * inv_var)


def stratified_log_weights(batch_size: int, dataset_size: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Log importance weights (B, B) of minibatch stratified sampling (Chen et al. 2018, appendix C.2).

    Row i weighs the batch's posteriors when estimating q(z_i), z_i drawn from
    q(z|x_i): ``1/N`` for x_i itself, ``(N - M) / (N M)`` for one other
    example (x_{i+1 mod B}) and ``1/M`` for the remaining ``M - 1``, with
    ``M = B - 1`` and ``N`` the dataset size; every row sums to 1. (The
    authors' ``log_importance_weight_matrix`` puts the ``1/N`` weight in
    column 0 of every row rather than on the diagonal; this follows the paper.)
    """
    if batch_size < 2:
        raise ValueError(f"stratified sampling needs a batch of at least 2 examples, got {batch_size}")
    if dataset_size < batch_size:
        raise ValueError(
            f"stratified sampling: dataset_size={dataset_size} is smaller than the batch ({batch_size}); "
            "pass the number of training images"
        )
    n, m = float(dataset_size), float(batch_size - 1)
    weights = torch.full((batch_size, batch_size), 1.0 / m, dtype=torch.float64)
    rows = torch.arange(batch_size)
    weights[rows, rows] = 1.0 / n
    weights[rows, (rows + 1) % batch_size] = (n - m) / (n * m)
    return weights.log().to(device=device, dtype=dtype)


def total_correlation(
    sample: torch.Tensor,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    *,
    sampling: str = "mws",
    dataset_size: int | None = None,
) -> torch.Tensor:
    """Minibatch estimate of TC = KL(q(z) || prod_j q(z_j)) (Chen et al. 2018), a scalar.

    sample, mean, logvar: (B, D). With ``log q(z_i|x_k)`` the Gaussian log
    density of sample i under the posterior of example k:

    - ``"mws"`` (minibatch weighted sampling), as ``disentanglement_lib``'s
      ``total_correlation``: ``log q(z_i) = logsumexp_k sum_j log q(z_ij|x_k)``
      and ``log q(z_ij) = logsumexp_k log q(z_ij|x_k)``; the constant
      ``-log(B N)`` is left out of both, as in that library (it does not move
      the gradients).
    - ``"stratified"`` (minibatch stratified sampling): the same sums with the
      importance weights of :func:`stratified_log_weights`; needs
      ``dataset_size``.

    Returns ``mean_i [log q(z_i) - sum_j log q(z_ij)]``.
    """
    log_qz_cond = gaussian_log_density(sample[:, None, :], mean[None, :, :], logvar[None, :, :])  # (B, B, D)
    if sampling == "mws":
        log_qz = torch.logsumexp(log_qz_cond.sum(2), dim=1)  # (B,)
        log_qz_product = torch.logsumexp(log_qz_cond, dim=1).sum(1)  # (B,)
    elif sampling == "stratified":
        if dataset_size is None:
            raise ValueError("total_correlation: sampling='stratified' needs dataset_size (the number of training images)")
        log_w = stratified_log_weights(sample.shape[0], dataset_size, device=sample.device, dtype=sample.dtype)
        log_qz = torch.logsumexp(log_w + log_qz_cond.sum(2), dim=1)  # (B,)
        log_qz_product = torch.logsumexp(log_w[:, :, None] + log_qz_cond, dim=1).sum(1)  # (B,)
    else:
        raise ValueError(f"total_correlation: sampling={sampling!r} is unknown; expected 'mws' or 'stratified'")
    return (log_qz - log_qz_product).mean()


def covariance(x: torch.Tensor) -> torch.Tensor:
    """Population covariance of the rows of x (B, D): E[x x^T] - E[x] E[x]^T, (D, D)."""
    centred = x - x.mean(0, keepdim=True)
    return centred.T @ centred / x.shape[0]


def dip_penalty(cov: torch.Tensor, lambda_od: float, lambda_d: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DIP-VAE terms (Kumar et al. 2018): off-diagonal ``sum_{i!=j} C_ij^2`` and diagonal ``sum_i (C_ii - 1)^2``.

    Returns the two unweighted sums; the regulariser is
    ``lambda_od * off + lambda_d * diag``.
    """
    diag = torch.diagonal(cov)
    off_diagonal = (cov - torch.diag(diag)).square().sum()
    on_diagonal = (diag - 1.0).square().sum()
    return off_diagonal, on_diagonal


def shuffle_codes(z: torch.Tensor) -> torch.Tensor:
    """Permute each latent dimension independently across the batch (FactorVAE), (B, D)."""
    batch, dims = z.shape
    order = torch.argsort(torch.rand(batch, dims, device=z.device), dim=0)  # (B, D)
    return torch.gather(z, 0, order)
