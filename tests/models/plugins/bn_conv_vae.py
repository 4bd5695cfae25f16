"""A conv VAE with BatchNorm, 5 conv layers and in-place ReLUs (a plug-in architecture for the tests)."""

import torch
from torch import nn


def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BNConvVAE(nn.Module):
    def __init__(self, num_channels: int, latent_dim: int) -> None:
        super().__init__()
        self.features = nn.Sequential(block(num_channels, 8), block(8, 8), block(8, 16), block(16, 16),
                                      block(16, 16))  # 64 -> 2
        self.fc = nn.Linear(16 * 2 * 2, 2 * latent_dim)  # mean and log-variance from one layer, split
        self.mean = nn.Identity()
        self.logvar = nn.Identity()
        self.expand = nn.Sequential(nn.Linear(latent_dim, 16 * 4 * 4), nn.ReLU())
        self.up = nn.Sequential(
            nn.Sequential(nn.ConvTranspose2d(16, 16, 4, 2, 1), nn.BatchNorm2d(16), nn.ReLU(inplace=True)),
            nn.Sequential(nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.BatchNorm2d(8), nn.ReLU(inplace=True)),
            nn.Sequential(nn.ConvTranspose2d(8, 8, 4, 2, 1), nn.BatchNorm2d(8), nn.ReLU(inplace=True)))
        self.to_pixels = nn.ConvTranspose2d(8, num_channels, 4, 2, 1)
        self.vaesim_layers = ([(f"features.{i}", "encoder") for i in range(5)]
                              + [("mean", "mean"), ("logvar", "logvar"), ("expand", "decoder")]
                              + [(f"up.{i}", "decoder") for i in range(3)] + [("to_pixels", "output")])

    def encode(self, x):
        mean, logvar = self.fc(self.features(x).flatten(1)).chunk(2, dim=1)
        return self.mean(mean), self.logvar(torch.tanh(logvar) * 4)

    def decode(self, z):
        return self.to_pixels(self.up(self.expand(z).view(-1, 16, 4, 4)))


def make_vae(num_channels: int, latent_dim: int) -> BNConvVAE:
    return BNConvVAE(num_channels, latent_dim)
