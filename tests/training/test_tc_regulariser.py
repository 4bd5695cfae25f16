"""beta-TC-VAE's regulariser lowers the total correlation of the codes it trains (Chen et al. 2018)."""

import pytest
import torch

from vaesim.models import kl_per_dimension, make_objective, total_correlation


def short_run(beta: float, seed: int, steps: int = 200) -> float:
    """Train a small MLP VAE (8-d data from 2 independent uniform factors, 4 latents) through the
    ``beta_tc_vae`` regulariser hook; return the minibatch TC estimate on 512 held-out points (float64)."""
    generator = torch.Generator().manual_seed(100 + seed)
    mixing = torch.randn(2, 8, generator=generator)
    data = (torch.rand(4096, 2, generator=generator) * 2 - 1) @ mixing + 0.05 * torch.randn(4096, 8, generator=generator)
    torch.manual_seed(seed)
    encoder = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    decoder = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    objective = make_objective("beta_tc_vae", beta=beta)
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=3e-3)
    for step in range(steps):
        x = data[torch.randint(0, 4096, (64,))]
        mean, logvar = encoder(x).chunk(2, dim=1)
        sample = mean + torch.exp(logvar / 2) * torch.randn_like(mean)
        reconstruction = (decoder(sample) - x).square().sum(1).mean() / (2 * 0.05**2)  # Gaussian, sigma 0.05
        regularizer, _ = objective.regularizer(kl_per_dimension(mean, logvar).sum(), mean, logvar, sample, step)
        loss = reconstruction + regularizer
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        mean, logvar = encoder(data[-512:]).chunk(2, dim=1)
        noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(0))
        sample = mean + torch.exp(logvar / 2) * noise
        return total_correlation(sample.double(), mean.double(), logvar.double()).item()


@pytest.mark.parametrize("seed", [0, 1])
def test_beta_above_one_lowers_the_estimated_tc(seed):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead
    try:
        plain, penalised = short_run(1.0, seed), short_run(8.0, seed)
    finally:
        torch.set_num_threads(threads)
    assert penalised < plain - 1.0, (plain, penalised)
