"""Each objective's loss against an independent float64 computation on a tiny batch."""

import math

import numpy as np
import pytest
import torch

from vaesim.models import (
    OBJECTIVES,
    kl_per_dimension,
    main_param,
    make_objective,
    reconstruction_loss,
    shuffle_codes,
    stratified_log_weights,
    total_correlation,
)


@pytest.fixture
def batch():
    rng = np.random.default_rng(3)
    mean = rng.normal(size=(6, 4))
    logvar = rng.normal(scale=0.5, size=(6, 4))
    sample = mean + np.exp(logvar / 2) * rng.normal(size=(6, 4))
    return mean, logvar, sample


def _t(a):
    return torch.tensor(a, dtype=torch.float64)


def _log_normal(z, mu, logvar):
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / math.exp(logvar))


def _logsumexp(values):
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def brute_force_tc(mean, logvar, sample, weight):
    """TC estimate with explicit loops: weight(i, k) is the importance weight of x_k for z_i."""
    b, d = mean.shape
    total = 0.0
    for i in range(b):
        joint = []
        marginals = [[] for _ in range(d)]
        for k in range(b):
            log_w = math.log(weight(i, k))
            per_dim = [_log_normal(sample[i, j], mean[k, j], logvar[k, j]) for j in range(d)]
            joint.append(log_w + sum(per_dim))
            for j in range(d):
                marginals[j].append(log_w + per_dim[j])
        total += _logsumexp(joint) - sum(_logsumexp(m) for m in marginals)
    return total / b


def test_bernoulli_reconstruction_is_summed_cross_entropy():
    rng = np.random.default_rng(0)
    x = (rng.random((2, 1, 64, 64)) > 0.5).astype(np.float64)
    logits = rng.normal(size=(2, 1, 64, 64))
    p = 1 / (1 + np.exp(-logits))
    expected = -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(2, -1).sum(1)
    np.testing.assert_allclose(reconstruction_loss(_t(x), _t(logits)).numpy(), expected, rtol=1e-10)
    gaussian = ((p - x) ** 2).reshape(2, -1).sum(1)
    np.testing.assert_allclose(reconstruction_loss(_t(x), _t(logits), "gaussian").numpy(), gaussian, rtol=1e-10)
    with pytest.raises(ValueError, match="reconstruction='poisson' is unknown"):
        reconstruction_loss(_t(x), _t(logits), "poisson")


def test_kl_matches_closed_form(batch):
    mean, logvar, _ = batch
    expected = np.mean(0.5 * (mean**2 + np.exp(logvar) - logvar - 1), axis=0)
    np.testing.assert_allclose(kl_per_dimension(_t(mean), _t(logvar)).numpy(), expected, rtol=1e-12)


def test_beta_vae_and_annealed_vae(batch):
    mean, logvar, sample = (_t(a) for a in batch)
    kl = torch.tensor(3.25, dtype=torch.float64)
    reg, terms = make_objective("beta_vae", beta=4).regularizer(kl, mean, logvar, sample, step=10)
    assert reg.item() == pytest.approx(13.0) and terms == {}
    annealed = make_objective("annealed_vae", c_max=5, gamma=1000, iteration_threshold=100)
    reg, terms = annealed.regularizer(kl, mean, logvar, sample, step=20)  # C = 5 * 20 / 100 = 1
    assert terms["capacity"].item() == pytest.approx(1.0)
    assert reg.item() == pytest.approx(1000 * abs(3.25 - 1.0))
    reg, terms = annealed.regularizer(kl, mean, logvar, sample, step=500)  # capped at c_max
    assert terms["capacity"].item() == 5.0 and reg.item() == pytest.approx(1000 * 1.75)


def test_total_correlation_mws_matches_brute_force(batch):
    mean, logvar, sample = batch
    expected = brute_force_tc(mean, logvar, sample, lambda i, k: 1.0)
    got = total_correlation(_t(sample), _t(mean), _t(logvar)).item()
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_total_correlation_stratified_matches_brute_force(batch):
    mean, logvar, sample = batch
    b, n = mean.shape[0], 1000
    m = b - 1

    def weight(i, k):
        if k == i:
            return 1 / n
        if k == (i + 1) % b:
            return (n - m) / (n * m)
        return 1 / m

    expected = brute_force_tc(mean, logvar, sample, weight)
    got = total_correlation(_t(sample), _t(mean), _t(logvar), sampling="stratified", dataset_size=n).item()
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-10)
    assert np.allclose(stratified_log_weights(b, n, dtype=torch.float64).exp().sum(1).numpy(), 1.0)


def test_beta_tc_vae_regulariser_is_kl_plus_weighted_tc(batch):
    mean, logvar, sample = (_t(a) for a in batch)
    kl = torch.tensor(2.0, dtype=torch.float64)
    tc = brute_force_tc(*batch, lambda i, k: 1.0)
    reg, terms = make_objective("beta_tc_vae", beta=6).regularizer(kl, mean, logvar, sample, step=0)
    assert terms["tc"].item() == pytest.approx(tc, rel=1e-10)
    assert reg.item() == pytest.approx(2.0 + 5 * tc, rel=1e-10)
    with pytest.raises(ValueError, match="needs dataset_size"):
        make_objective("beta_tc_vae", beta=2, sampling="stratified").regularizer(kl, mean, logvar, sample, 0)


@pytest.mark.parametrize("name,factor", [("dip_vae_i", 10.0), ("dip_vae_ii", 1.0)])
def test_dip_vae_covariance_terms_match_numpy(batch, name, factor):
    mean, logvar, sample = batch
    cov = np.cov(mean, rowvar=False, bias=True)
    if name == "dip_vae_ii":
        cov = cov + np.diag(np.exp(logvar).mean(0))
    off = sum(cov[i, j] ** 2 for i in range(4) for j in range(4) if i != j)
    diag = sum((cov[i, i] - 1) ** 2 for i in range(4))
    objective = make_objective(name, lambda_od=2.0)
    assert objective.lambda_d == factor * 2.0
    kl = torch.tensor(1.5, dtype=torch.float64)
    reg, terms = objective.regularizer(kl, _t(mean), _t(logvar), _t(sample), step=0)
    assert terms["dip_off_diagonal"].item() == pytest.approx(off, rel=1e-10)
    assert terms["dip_diagonal"].item() == pytest.approx(diag, rel=1e-10)
    assert reg.item() == pytest.approx(1.5 + 2.0 * off + factor * 2.0 * diag, rel=1e-10)
    explicit = make_objective(name, lambda_od=2.0, lambda_d=0.5)
    assert explicit.regularizer(kl, _t(mean), _t(logvar), _t(sample), 0)[0].item() == pytest.approx(1.5 + 2 * off + 0.5 * diag)


def test_factor_vae_tc_term_and_discriminator_step(batch):
    torch.manual_seed(0)
    objective = make_objective("factor_vae", gamma=10, latent_dim=4).double()
    mean, logvar, sample = (_t(a) for a in batch)
    linears = [m for m in objective.discriminator if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 7 and linears[0].out_features == 1000 and linears[-1].out_features == 2
    h = batch[2]
    for layer in linears[:-1]:
        h = h @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()
        h = np.where(h > 0, h, 0.2 * h)
    logits = h @ linears[-1].weight.detach().numpy().T + linears[-1].bias.detach().numpy()
    expected_tc = np.mean(logits[:, 0] - logits[:, 1])
    kl = torch.tensor(0.5, dtype=torch.float64)
    reg, terms = objective.regularizer(kl, mean, logvar, sample, step=0)
    assert terms["tc"].item() == pytest.approx(expected_tc, rel=1e-8)
    assert reg.item() == pytest.approx(0.5 + 10 * expected_tc, rel=1e-8)
    assert objective.optimizer().defaults["betas"] == (0.5, 0.9) and objective.optimizer().defaults["lr"] == 1e-4

    # One discriminator step is one Adam step on -(0.5 E log p0(z) + 0.5 E log p1(shuffled z)).
    reference = make_objective("factor_vae", gamma=10, latent_dim=4).double()
    reference.load_state_dict(objective.state_dict())
    torch.manual_seed(5)
    shuffled = shuffle_codes(sample)
    reference.discriminator_loss(sample, shuffled).backward()
    grads = [p.grad.clone() for p in reference.parameters()]
    before = [p.detach().clone() for p in objective.parameters()]
    torch.manual_seed(5)
    objective.extra_step(sample)
    for old, new, grad in zip(before, objective.parameters(), grads):
        expected = old - 1e-4 * grad / (grad.abs() + 1e-8)  # Adam's first step (bias-corrected)
        torch.testing.assert_close(new.detach(), expected, rtol=1e-6, atol=1e-9)


def test_shuffle_codes_permutes_each_dimension_independently():
    torch.manual_seed(0)
    z = torch.arange(40, dtype=torch.float64).reshape(10, 4)
    shuffled = shuffle_codes(z)
    for j in range(4):
        assert sorted(shuffled[:, j].tolist()) == z[:, j].tolist()
    assert not torch.equal(shuffled, z)


def test_registry_names_params_and_errors():
    assert list(OBJECTIVES) == ["beta_vae", "annealed_vae", "beta_tc_vae", "dip_vae_i", "dip_vae_ii", "factor_vae"]
    assert [main_param(n) for n in OBJECTIVES] == ["beta", "c_max", "beta", "lambda_od", "lambda_od", "gamma"]
    with pytest.raises(ValueError, match="objective 'vae' is unknown; valid objectives: beta_vae, annealed_vae"):
        make_objective("vae")
    with pytest.raises(ValueError, match="has no parameter 'gamma'; valid parameters: beta"):
        make_objective("beta_vae", gamma=2)
    assert make_objective("annealed_vae", c_max=10).params() == {"c_max": 10.0, "gamma": 1000.0, "iteration_threshold": 100000}
