"""The six objectives: one regulariser hook each on shared reconstruction + KL code.

As in ``disentanglement_lib`` (methods/unsupervised/vae.py), every objective
is ``loss = reconstruction + regularizer(kl, mean, logvar, sample, step)``;
the training loop is shared and never copied. Formulas (Bonheme & Grzes 2022
follow Locatello et al. 2019):

- ``beta_vae`` (Higgins et al. 2017): ``beta * KL``.
- ``annealed_vae`` (Burgess et al. 2018): ``gamma * |KL - C|``,
  ``C = min(c_max, c_max * step / iteration_threshold)``.
- ``beta_tc_vae`` (Chen et al. 2018): ``KL + (beta - 1) * TC``, TC estimated
  on the minibatch (:func:`~vaesim.models.losses.total_correlation`).
- ``dip_vae_i`` / ``dip_vae_ii`` (Kumar et al. 2018): ``KL + lambda_od *
  sum_{i!=j} C_ij^2 + lambda_d * sum_i (C_ii - 1)^2`` with ``C = Cov(mean)``
  (I) or ``Cov(mean) + mean_batch diag(exp logvar)`` (II); ``lambda_d``
  defaults to 10 (I) or 1 (II) times ``lambda_od``.
- ``factor_vae`` (Kim & Mnih 2018): ``KL + gamma * E[logit_0 - logit_1]`` of a
  discriminator (6 x Dense 1000 LeakyReLU 0.2 -> 2 logits) trained by its own
  Adam (lr 1e-4, betas (0.5, 0.9)) to tell q(z) from the dimension-wise
  shuffled codes; :meth:`Objective.extra_step` does its update.

An objective is an ``nn.Module`` so any state it owns (the discriminator)
travels with ``state_dict()``; its own optimiser, if any, is
:meth:`Objective.optimizer`.
"""

from __future__ import annotations

import math

import abc
import inspect

import torch
import torch.nn.functional as F
from torch import nn

from vaesim.models.losses import covariance, dip_penalty, shuffle_codes, total_correlation
from vaesim.models.names import check_objective_params  # noqa: F401 - the torch-free check, re-exported


class Objective(nn.Module, abc.ABC):
    """Base class: ``regularizer`` is the one hook an objective overrides."""

    name: str = ""
    main_param: str = ""

    @abc.abstractmethod
    def params(self) -> dict:
        """The objective's parameters, JSON-serialisable (what :func:`make_objective` takes)."""

    @abc.abstractmethod
    def regularizer(
        self, kl: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, sample: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return (regulariser scalar, named terms to log). ``step`` counts updates done so far."""

    def extra_step(self, sample: torch.Tensor) -> dict[str, torch.Tensor]:
        """Update the objective's own parameters after the VAE's step; ``sample`` is detached (B, D)."""
        return {}

    def optimizer(self) -> torch.optim.Optimizer | None:
        """The objective's own optimiser (FactorVAE's discriminator), or None."""
        return None


class BetaVAE(Objective):
    name, main_param = "beta_vae", "beta"

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = float(beta)

    def params(self) -> dict:
        return {"beta": self.beta}

    def regularizer(self, kl, mean, logvar, sample, step):
        return self.beta * kl, {}


class AnnealedVAE(Objective):
    name, main_param = "annealed_vae", "c_max"

    def __init__(self, c_max: float = 25.0, gamma: float = 1000.0, iteration_threshold: int = 100_000) -> None:
        super().__init__()
        if iteration_threshold <= 0:
            raise ValueError(f"annealed_vae: iteration_threshold must be > 0, got {iteration_threshold}")
        self.c_max, self.gamma, self.iteration_threshold = float(c_max), float(gamma), int(iteration_threshold)

    def params(self) -> dict:
        return {"c_max": self.c_max, "gamma": self.gamma, "iteration_threshold": self.iteration_threshold}

    def capacity(self, step: int) -> float:
        """C at ``step``: linear from 0 to ``c_max`` over ``iteration_threshold`` steps, then flat."""
        return min(self.c_max, self.c_max * step / self.iteration_threshold)

    def regularizer(self, kl, mean, logvar, sample, step):
        capacity = self.capacity(step)
        return self.gamma * (kl - capacity).abs(), {"capacity": kl.new_tensor(capacity)}


class BetaTCVAE(Objective):
    name, main_param = "beta_tc_vae", "beta"

    def __init__(self, beta: float = 1.0, sampling: str = "mws", dataset_size: int | None = None) -> None:
        super().__init__()
        if sampling not in ("mws", "stratified"):
            raise ValueError(f"beta_tc_vae: sampling={sampling!r} is unknown; expected 'mws' or 'stratified'")
        self.beta, self.sampling = float(beta), sampling
        self.dataset_size = None if dataset_size is None else int(dataset_size)

    def params(self) -> dict:
        return {"beta": self.beta, "sampling": self.sampling, "dataset_size": self.dataset_size}

    def regularizer(self, kl, mean, logvar, sample, step):
        tc = total_correlation(sample, mean, logvar, sampling=self.sampling, dataset_size=self.dataset_size)
        return kl + (self.beta - 1.0) * tc, {"tc": self.logged_tc(tc, mean.shape[0], mean.shape[1])}

    def logged_tc(self, tc: torch.Tensor, batch: int, latent_dim: int) -> torch.Tensor:
        """The TC estimate itself, for logs: MWS as optimised leaves out ``(D - 1) log(N B)``.

        Minibatch weighted sampling estimates log q(z) and each log q(z_j)
        with a ``-log(N B)`` that :func:`total_correlation` drops (it moves no
        gradient); TC = log q(z) - sum_j log q(z_j) therefore misses
        ``(D - 1) log(N B)``. Adding it back makes the logged ``tc`` the
        estimator's value, comparable with the stratified one. Needs the
        dataset size N; without it the optimised quantity is logged.
        """
        if self.sampling != "mws" or not self.dataset_size:
            return tc
        return tc + (latent_dim - 1) * math.log(self.dataset_size * batch)


class DIPVAE(Objective):
    main_param = "lambda_od"
    variant = "i"
    diagonal_factor = 10.0

    def __init__(self, lambda_od: float = 1.0, lambda_d: float | None = None) -> None:
        super().__init__()
        self.lambda_od = float(lambda_od)
        self.lambda_d = self.diagonal_factor * self.lambda_od if lambda_d is None else float(lambda_d)

    def params(self) -> dict:
        return {"lambda_od": self.lambda_od, "lambda_d": self.lambda_d}

    def latent_covariance(self, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        cov = covariance(mean)  # (D, D)
        if self.variant == "ii":
            cov = cov + torch.diag(logvar.exp().mean(0))
        return cov

    def regularizer(self, kl, mean, logvar, sample, step):
        off_diagonal, on_diagonal = dip_penalty(self.latent_covariance(mean, logvar), self.lambda_od, self.lambda_d)
        penalty = self.lambda_od * off_diagonal + self.lambda_d * on_diagonal
        return kl + penalty, {"dip_off_diagonal": off_diagonal, "dip_diagonal": on_diagonal}


class DIPVAEI(DIPVAE):
    name, variant, diagonal_factor = "dip_vae_i", "i", 10.0


class DIPVAEII(DIPVAE):
    name, variant, diagonal_factor = "dip_vae_ii", "ii", 1.0


def make_discriminator(latent_dim: int, width: int = 1000, depth: int = 6) -> nn.Sequential:
    """FactorVAE's discriminator: ``depth`` x (Dense ``width`` + LeakyReLU 0.2) -> 2 logits."""
    layers: list[nn.Module] = []
    features = latent_dim
    for _ in range(depth):
        layers += [nn.Linear(features, width), nn.LeakyReLU(0.2)]
        features = width
    layers.append(nn.Linear(features, 2))
    return nn.Sequential(*layers)


class FactorVAE(Objective):
    name, main_param = "factor_vae", "gamma"

    def __init__(
        self,
        gamma: float = 10.0,
        latent_dim: int = 10,
        discriminator_lr: float = 1e-4,
        discriminator_betas: tuple[float, float] = (0.5, 0.9),
    ) -> None:
        super().__init__()
        self.gamma, self.latent_dim = float(gamma), int(latent_dim)
        self.discriminator_lr = float(discriminator_lr)
        self.discriminator_betas = (float(discriminator_betas[0]), float(discriminator_betas[1]))
        self.discriminator = make_discriminator(self.latent_dim)
        self._optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=self.discriminator_lr, betas=self.discriminator_betas, eps=1e-8
        )

    def params(self) -> dict:
        return {
            "gamma": self.gamma,
            "latent_dim": self.latent_dim,
            "discriminator_lr": self.discriminator_lr,
            "discriminator_betas": list(self.discriminator_betas),
        }

    def optimizer(self) -> torch.optim.Optimizer:
        return self._optimizer

    def regularizer(self, kl, mean, logvar, sample, step):
        logits = self.discriminator(sample)  # (B, 2)
        tc = (logits[:, 0] - logits[:, 1]).mean()
        return kl + self.gamma * tc, {"tc": tc}

    def discriminator_loss(self, sample: torch.Tensor, shuffled: torch.Tensor) -> torch.Tensor:
        """``-(0.5 E[log p_0(z)] + 0.5 E[log p_1(shuffled z)])``: class 0 = q(z), class 1 = prod_j q(z_j)."""
        real = F.log_softmax(self.discriminator(sample), dim=1)[:, 0]
        permuted = F.log_softmax(self.discriminator(shuffled), dim=1)[:, 1]
        return -(0.5 * real.mean() + 0.5 * permuted.mean())

    def extra_step(self, sample: torch.Tensor) -> dict[str, torch.Tensor]:
        sample = sample.detach()
        loss = self.discriminator_loss(sample, shuffle_codes(sample))
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._optimizer.step()
        return {"discriminator_loss": loss.detach()}


OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (BetaVAE, AnnealedVAE, BetaTCVAE, DIPVAEI, DIPVAEII, FactorVAE)
}


def _valid_params(name: str) -> list[str]:
    return [p for p in inspect.signature(OBJECTIVES[name].__init__).parameters if p != "self"]


def _check_name(name: str) -> None:
    if name not in OBJECTIVES:
        raise ValueError(f"objective {name!r} is unknown; valid objectives: {', '.join(OBJECTIVES)}")


def main_param(name: str) -> str:
    """The parameter the study sweeps for objective ``name`` (e.g. ``beta`` for ``beta_vae``)."""
    _check_name(name)
    return OBJECTIVES[name].main_param


def objective_params(name: str) -> list[str]:
    """Every parameter objective ``name`` accepts."""
    _check_name(name)
    return _valid_params(name)


def make_objective(name: str, **params) -> Objective:
    """Build objective ``name`` from its parameters; unknown names or parameters raise ValueError."""
    check_objective_params(name, params)
    return OBJECTIVES[name](**params)
