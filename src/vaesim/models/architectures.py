"""Encoder/decoder architectures of Locatello et al. (2019), ``disentanglement_lib`` layout.

Every layer the study compares is a named submodule, so a forward hook on the
module name (``model.get_submodule("encoder.conv1")``) records exactly the
representation the paper compares: the post-ReLU output of each convolutional
or dense layer, the mean and log-variance heads, the variance ``exp(logvar)``,
the sample ``mean + exp(logvar / 2) * eps`` and the decoder's logits.

Convolutional encoder (input (B, C, 64, 64))::

    conv1  Conv 32 k4 s2 p1 + ReLU   (B, 32, 32, 32)
    conv2  Conv 32 k4 s2 p1 + ReLU   (B, 32, 16, 16)
    conv3  Conv 64 k2 s2 p0 + ReLU   (B, 64, 8, 8)
    conv4  Conv 64 k2 s2 p0 + ReLU   (B, 64, 4, 4)
    fc     Dense 256 + ReLU          (B, 256)        (after flattening 1024)
    mean, logvar  Dense latent_dim   (B, latent_dim)

TF "same" padding equals PyTorch ``padding=1`` for k4 s2 on even sizes and
``padding=0`` for k2 s2. Convolutional decoder::

    fc1  Dense 256 + ReLU, fc2 Dense 1024 + ReLU, reshape (B, 64, 4, 4)
    deconv1..3  ConvT 64, 32, 32 k4 s2 p1 + ReLU      (B, 32, 32, 32) at deconv3
    output      ConvT C k4 s2 p1: logits              (B, C, 64, 64)

The fully connected variant (``architecture="fc"``) follows
``disentanglement_lib``'s ``fc_encoder``/``fc_decoder``: Dense 1200 ReLU x 2
in the encoder, Dense 1200 tanh x 3 in the decoder, a dense output reshaped to
(B, C, 64, 64).
"""

from __future__ import annotations

import torch
from torch import nn

from vaesim.models.layers import Conv2d, ConvTranspose2d, OverlapAddConvTranspose2d, TrainingReLU
from vaesim.models.parts import IMAGE_SIZE, Exp, Reparameterize, VAEOutput, initialise  # noqa: F401 - re-exported
from vaesim.models.names import (  # noqa: F401 - the layer tables live in the torch-free names module
    ARCHITECTURES,
    DECODER_LAYERS,
    ENCODER_LAYERS,
    FC_LAYER_NAMES,
    INITIALISATIONS,
    LAYER_NAMES,
)


def _conv(in_channels: int, out_channels: int, kernel: int, padding: int) -> nn.Sequential:
    return nn.Sequential(Conv2d(in_channels, out_channels, kernel, stride=2, padding=padding), TrainingReLU())


def _deconv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1), TrainingReLU())


def _dense(in_features: int, out_features: int, activation: type[nn.Module] = TrainingReLU) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, out_features), activation())


class ConvEncoder(nn.Module):
    """(B, C, 64, 64) -> mean, logvar (B, latent_dim); layer table in the module docstring."""

    def __init__(self, num_channels: int, latent_dim: int) -> None:
        super().__init__()
        self.conv1 = _conv(num_channels, 32, 4, 1)
        self.conv2 = _conv(32, 32, 4, 1)
        self.conv3 = _conv(32, 64, 2, 0)
        self.conv4 = _conv(64, 64, 2, 0)
        self.fc = _dense(1024, 256)
        self.mean = nn.Linear(256, latent_dim)
        self.logvar = nn.Linear(256, latent_dim)
        self.variance = Exp()
        self.sample = Reparameterize()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv4(self.conv3(self.conv2(self.conv1(x))))  # (B, 64, 4, 4)
        return self.fc(h.flatten(1))  # (B, 256)


class FCEncoder(nn.Module):
    """(B, C, 64, 64) -> flatten -> Dense 1200 ReLU x 2 -> mean, logvar."""

    def __init__(self, num_channels: int, latent_dim: int) -> None:
        super().__init__()
        self.fc1 = _dense(num_channels * IMAGE_SIZE * IMAGE_SIZE, 1200)
        self.fc2 = _dense(1200, 1200)
        self.mean = nn.Linear(1200, latent_dim)
        self.logvar = nn.Linear(1200, latent_dim)
        self.variance = Exp()
        self.sample = Reparameterize()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x.flatten(1)))  # (B, 1200)


class ConvDecoder(nn.Module):
    """z (B, latent_dim) -> logits (B, C, 64, 64)."""

    def __init__(self, num_channels: int, latent_dim: int) -> None:
        super().__init__()
        self.fc1 = _dense(latent_dim, 256)
        self.fc2 = _dense(256, 1024)
        self.deconv1 = _deconv(64, 64)
        self.deconv2 = _deconv(64, 32)
        self.deconv3 = _deconv(32, 32)
        self.output = OverlapAddConvTranspose2d(32, num_channels, 4, stride=2, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc2(self.fc1(z)).view(-1, 64, 4, 4)  # (B, 64, 4, 4)
        h = self.deconv3(self.deconv2(self.deconv1(h)))  # (B, 32, 32, 32)
        return self.output(h)  # (B, C, 64, 64)


class FCDecoder(nn.Module):
    """z -> Dense 1200 tanh x 3 -> Dense C*64*64 reshaped to logits (B, C, 64, 64)."""

    def __init__(self, num_channels: int, latent_dim: int) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.fc1 = _dense(latent_dim, 1200, nn.Tanh)
        self.fc2 = _dense(1200, 1200, nn.Tanh)
        self.fc3 = _dense(1200, 1200, nn.Tanh)
        self.output = nn.Linear(1200, num_channels * IMAGE_SIZE * IMAGE_SIZE)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc3(self.fc2(self.fc1(z)))
        return self.output(h).view(-1, self.num_channels, IMAGE_SIZE, IMAGE_SIZE)


class VAE(nn.Module):
    """Gaussian-encoder VAE; ``layer_names`` lists the comparable layers, input to output.

    ``input`` is an identity module so a hook on it records the images
    (B, C, 64, 64) the model saw.
    """

    def __init__(self, architecture: str = "conv", num_channels: int = 1, latent_dim: int = 10) -> None:
        super().__init__()
        self.architecture = architecture
        self.num_channels = num_channels
        self.latent_dim = latent_dim
        self.input = nn.Identity()
        if architecture == "conv":
            self.encoder: nn.Module = ConvEncoder(num_channels, latent_dim)
            self.decoder: nn.Module = ConvDecoder(num_channels, latent_dim)
            self.layer_names = LAYER_NAMES
        else:
            self.encoder = FCEncoder(num_channels, latent_dim)
            self.decoder = FCDecoder(num_channels, latent_dim)
            self.layer_names = FC_LAYER_NAMES

    @property
    def layer_modules(self) -> dict[str, str]:
        """Layer name -> the module name a forward hook records it on (the same names here; a plug-in's differ)."""
        return {name: name for name in self.layer_names}

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_dim) -> logits (B, C, 64, 64)."""
        return self.decoder(z)

    def config(self) -> dict:
        """Everything :func:`build_vae` needs to rebuild this model."""
        return {"architecture": self.architecture, "num_channels": self.num_channels, "latent_dim": self.latent_dim}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, 64, 64) in [0, 1] -> (mean, logvar), each (B, latent_dim)."""
        h = self.encoder.features(self.input(x))
        return self.encoder.mean(h), self.encoder.logvar(h)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> VAEOutput:
        """x (B, C, 64, 64) -> :class:`VAEOutput`; ``noise`` (B, latent_dim) fixes eps."""
        mean, logvar = self.encode(x)  # (B, D) each
        self.encoder.variance(logvar)  # the variance layer, computed for hooks
        sample = self.encoder.sample(mean, logvar, noise)  # (B, D)
        logits = self.decoder(sample)  # (B, C, 64, 64)
        return VAEOutput(logits, mean, logvar, sample)


def build_vae(architecture: str = "conv", num_channels: int = 1, latent_dim: int = 10, *,
              init: str = "glorot") -> VAE:
    """Build the ``"conv"`` (default, Locatello et al. 2019) or ``"fc"`` (1200-1200) VAE, or a plug-in
    (``"module:factory"`` or an entry point name; :mod:`vaesim.models.plugins`, a
    :class:`~vaesim.models.plugins.PluginVAE` with the same interface).

    ``init``: ``"glorot"`` (default; the references' Glorot-uniform weights
    and zero biases) or ``"pytorch"`` (torch's default); see :func:`initialise`.
    """
    if init not in INITIALISATIONS:
        raise ValueError(f"build_vae: init={init!r} is unknown; expected one of {list(INITIALISATIONS)}")
    if not isinstance(architecture, str) or not architecture:
        raise ValueError(f"build_vae: architecture={architecture!r} is unknown; expected one of {list(ARCHITECTURES)} "
                         "or a plug-in 'module:factory'")
    for label, value in (("num_channels", num_channels), ("latent_dim", latent_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"build_vae: {label} must be a positive integer, got {value!r}")
    if architecture not in ARCHITECTURES:
        from vaesim.models.plugins import build_plugin_vae

        return build_plugin_vae(architecture, num_channels, latent_dim, init=init)
    return initialise(VAE(architecture, num_channels, latent_dim), init)
