"""A small VAE with BatchNorm (integer ``num_batches_tracked`` buffers): a plug-in architecture
(``bn_plugin:make_vae``) for the checkpoint import's tests."""

from torch import nn


class BatchNormVAE(nn.Module):
    def __init__(self, num_channels: int, latent_dim: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(num_channels, 4, 4, 4), nn.BatchNorm2d(4), nn.ReLU(),
                                      nn.Conv2d(4, 4, 4, 4), nn.BatchNorm2d(4), nn.ReLU())  # 64 -> 4
        self.mean = nn.Linear(4 * 4 * 4, latent_dim)
        self.logvar = nn.Linear(4 * 4 * 4, latent_dim)
        self.expand = nn.Sequential(nn.Linear(latent_dim, 4 * 4 * 4), nn.ReLU())
        self.to_pixels = nn.ConvTranspose2d(4, num_channels, 16, 16)
        self.vaesim_layers = [("features.2", "encoder"), ("features.5", "encoder"), ("mean", "mean"),
                              ("logvar", "logvar"), ("expand", "decoder"), ("to_pixels", "output")]

    def encode(self, x):
        h = self.features(x).flatten(1)
        return self.mean(h), self.logvar(h)

    def decode(self, z):
        return self.to_pixels(self.expand(z).view(-1, 4, 4, 4))


def make_vae(num_channels: int, latent_dim: int) -> BatchNormVAE:
    return BatchNormVAE(num_channels, latent_dim)
