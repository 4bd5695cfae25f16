"""The parts every VAE of vaesim shares, built-in or plug-in: what ``forward`` returns, the variance and
sample layers vaesim adds after the encoder's heads, and the weight initialisation."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from vaesim.models.names import INITIALISATIONS

IMAGE_SIZE = 64


class VAEOutput(NamedTuple):
    """What :meth:`VAE.forward` returns.

    logits: (B, C, 64, 64) decoder output before the sigmoid.
    mean, logvar, sample: (B, latent_dim).
    """

    logits: torch.Tensor
    mean: torch.Tensor
    logvar: torch.Tensor
    sample: torch.Tensor


class Exp(nn.Module):
    """``exp(x)``: turns the log-variance head into the variance layer."""

    def forward(self, logvar: torch.Tensor) -> torch.Tensor:
        return torch.exp(logvar)


class Reparameterize(nn.Module):
    """The sampled layer: ``z = mean + exp(logvar / 2) * eps``, eps ~ N(0, I).

    ``noise`` (same shape as ``mean``) fixes eps, which makes extraction
    reproducible; without it eps comes from torch's global generator.
    """

    def forward(self, mean: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = torch.randn_like(mean)
        return mean + torch.exp(0.5 * logvar) * noise


def initialise(model: nn.Module, scheme: str = "glorot") -> nn.Module:
    """Re-initialise every conv, transposed-conv and dense layer of ``model`` in place; return it.

    ``glorot``: weights ~ U(-a, a) with a = sqrt(6 / (fan_in + fan_out))
    (Glorot & Bengio 2010; fans include the kernel's receptive field, so
    fan_in + fan_out is the same for a transposed convolution as in Keras),
    biases 0. ``pytorch``: leave torch's default initialisation as built.
    Draws from torch's global generator (seed it first for reproducibility).
    """
    if scheme not in INITIALISATIONS:
        raise ValueError(f"initialise: scheme={scheme!r} is unknown; expected one of {list(INITIALISATIONS)}")
    if scheme == "pytorch":
        return model
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model
