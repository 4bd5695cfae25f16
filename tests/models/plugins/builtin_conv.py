"""vaesim's own conv VAE declared as a plug-in (the same modules and names as the built-in)."""

from torch import nn

from vaesim.models.architectures import ConvDecoder, ConvEncoder
from vaesim.models.names import LAYER_NAMES

ROLES = {"encoder.mean": "mean", "encoder.logvar": "logvar", "decoder.output": "output"}


class ConvAsPlugin(nn.Module):
    def __init__(self, num_channels: int, latent_dim: int) -> None:
        super().__init__()
        self.encoder = ConvEncoder(num_channels, latent_dim)
        self.decoder = ConvDecoder(num_channels, latent_dim)
        skip = ("input", "encoder.variance", "encoder.sample")
        self.vaesim_layers = [(name, ROLES.get(name, name.split(".")[0])) for name in LAYER_NAMES if name not in skip]

    def encode(self, x):
        h = self.encoder.features(x)
        return self.encoder.mean(h), self.encoder.logvar(h)

    def decode(self, z):
        return self.decoder(z)


def make_vae(num_channels: int, latent_dim: int) -> ConvAsPlugin:
    return ConvAsPlugin(num_channels, latent_dim)
