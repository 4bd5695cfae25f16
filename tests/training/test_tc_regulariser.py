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


def _mws_tc_textbook(sample, mean, logvar, dataset_size):
    """Chen et al. (2018) minibatch weighted sampling, with its -log(N B) constants, in float64 loops."""
    import math

    batch, dims = sample.shape
    log_nb = math.log(dataset_size * batch)

    def log_normal(z, mu, lv):
        return -0.5 * (math.log(2 * math.pi) + lv + (z - mu) ** 2 / math.exp(lv))

    total = 0.0
    for i in range(batch):
        joint = [sum(log_normal(sample[i, j], mean[k, j], logvar[k, j]) for j in range(dims)) for k in range(batch)]
        log_qz = math.log(sum(math.exp(v) for v in joint)) - log_nb
        marginals = 0.0
        for j in range(dims):
            terms = [log_normal(sample[i, j], mean[k, j], logvar[k, j]) for k in range(batch)]
            marginals += math.log(sum(math.exp(v) for v in terms)) - log_nb
        total += log_qz - marginals
    return total / batch


def test_logged_mws_tc_is_the_estimator_and_gradients_are_unchanged():
    generator = torch.Generator().manual_seed(5)
    mean = torch.randn(12, 4, generator=generator, dtype=torch.float64) * 0.8
    logvar = torch.randn(12, 4, generator=generator, dtype=torch.float64) * 0.3 - 1.0
    sample = mean + torch.exp(logvar / 2) * torch.randn(12, 4, generator=generator, dtype=torch.float64)
    kl = kl_per_dimension(mean, logvar).sum()
    with_size = make_objective("beta_tc_vae", beta=6.0, dataset_size=737_280)
    without = make_objective("beta_tc_vae", beta=6.0)
    loss, terms = with_size.regularizer(kl, mean, logvar, sample, 0)
    plain_loss, plain_terms = without.regularizer(kl, mean, logvar, sample, 0)
    reference = _mws_tc_textbook(sample.numpy(), mean.numpy(), logvar.numpy(), 737_280)
    assert terms["tc"].item() == pytest.approx(reference, rel=1e-9, abs=1e-9)
    # the optimised quantity (and so every gradient) does not depend on the logged constant
    assert loss.item() == pytest.approx(plain_loss.item(), rel=1e-12)
    import math
    assert terms["tc"].item() - plain_terms["tc"].item() == pytest.approx(3 * math.log(737_280 * 12))
    # stratified sampling estimates the same TC: the logged values are now on one scale
    stratified = make_objective("beta_tc_vae", beta=6.0, sampling="stratified", dataset_size=737_280)
    _, strat_terms = stratified.regularizer(kl, mean, logvar, sample, 0)
    assert abs(strat_terms["tc"].item() - terms["tc"].item()) < abs(plain_terms["tc"].item() - terms["tc"].item())
