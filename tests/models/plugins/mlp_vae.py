"""An MLP VAE with hidden layers of different widths (a plug-in architecture for the tests)."""

from torch import nn


class MLPVAE(nn.Module):
    def __init__(self, num_channels: int, latent_dim: int) -> None:
        super().__init__()
        pixels = num_channels * 64 * 64
        self.num_channels = num_channels
        self.enc = nn.ModuleDict({"h1": nn.Sequential(nn.Linear(pixels, 96), nn.ReLU()),
                                  "h2": nn.Sequential(nn.Linear(96, 48), nn.ReLU())})
        self.mu = nn.Linear(48, latent_dim)
        self.log_var = nn.Linear(48, latent_dim)
        self.dec1 = nn.Sequential(nn.Linear(latent_dim, 40), nn.Tanh())
        self.dec2 = nn.Sequential(nn.Linear(40, 80), nn.Tanh())
        self.out = nn.Linear(80, pixels)
        self.vaesim_layers = [("enc.h1", "encoder"), ("enc.h2", "encoder"), ("mu", "mean"), ("log_var", "logvar"),
                              ("dec1", "decoder"), ("dec2", "decoder"), ("out", "output")]

    def encode(self, x):
        h = self.enc["h2"](self.enc["h1"](x.flatten(1)))
        return self.mu(h), self.log_var(h)

    def decode(self, z):
        return self.out(self.dec2(self.dec1(z))).view(-1, self.num_channels, 64, 64)


def make_vae(num_channels: int, latent_dim: int) -> MLPVAE:
    return MLPVAE(num_channels, latent_dim)
