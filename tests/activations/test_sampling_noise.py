"""Sampling noise per model: unrelated networks must not look alike because they share eps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaesim.activations import extract_activations, latent_statistics, mean_code, noise_seed
from vaesim.models import build_vae
from vaesim.similarity import linear_cka

DECODER = ("decoder.fc1", "decoder.fc2", "decoder.deconv1", "decoder.output")


def _untrained(seed: int):
    torch.manual_seed(seed)
    return build_vae(num_channels=1, latent_dim=10)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return (rng.random((200, 1, 64, 64)) < 0.1).astype(np.float32)


def test_noise_seed_is_deterministic_and_differs_per_run_and_step():
    assert noise_seed(0, "run-a", 10) == noise_seed(0, "run-a", 10)
    seeds = {noise_seed(p, r, s) for p in (0, 1) for r in ("run-a", "run-b") for s in (0, 10)}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)
    assert noise_seed(3, "run-a", 10, "shared") == noise_seed(3, "run-b", 99, "shared") == 3
    with pytest.raises(ValueError, match="mode='fresh' is unknown"):
        noise_seed(0, "r", 0, "fresh")


def test_shared_noise_makes_unrelated_networks_look_alike_and_independent_noise_does_not(images):
    a, b = _untrained(0), _untrained(1)
    layers = ("encoder.mean", "encoder.sample", *DECODER)
    shared = [extract_activations(m, images, layers=layers, seed=0) for m in (a, b)]
    independent = [extract_activations(m, images, layers=layers, seed=noise_seed(0, run, 0))
                   for m, run in ((a, "run-a"), (b, "run-b"))]
    # untrained: the posterior variance is ~1, so the sample is mostly eps
    assert linear_cka(shared[0]["encoder.sample"], shared[1]["encoder.sample"]) > 0.95
    assert linear_cka(independent[0]["encoder.sample"], independent[1]["encoder.sample"]) < 0.15
    for layer in DECODER:
        assert linear_cka(shared[0][layer], shared[1][layer]) > 0.5, layer
        assert linear_cka(independent[0][layer], independent[1][layer]) < 0.25, layer
    # within one checkpoint the mean and sampled layers come from one forward pass with one eps
    mean, sample = independent[0]["encoder.mean"], independent[0]["encoder.sample"]
    eps = torch.randn(len(images), 10, generator=torch.Generator().manual_seed(noise_seed(0, "run-a", 0))).numpy()
    variance = extract_activations(a, images, layers=("encoder.variance",), seed=0)["encoder.variance"]
    assert np.allclose(sample, mean + np.sqrt(variance) * eps, atol=1e-5)


def test_latent_statistics_match_the_textbook_formulas():
    rng = np.random.default_rng(2)
    mean = rng.normal(size=(500, 4)) * np.array([1.0, 0.05, 0.001, 2.0])
    logvar = rng.normal(size=(500, 4)) * 0.1 - np.array([3.0, 0.0, 0.0, 2.0])
    table = latent_statistics(mean.astype(np.float32), logvar.astype(np.float32))
    assert list(table["dim"]) == [0, 1, 2, 3]
    assert np.allclose(table["mean_variance"], np.var(mean, axis=0), rtol=1e-5)
    assert np.allclose(table["posterior_variance"], np.exp(logvar).mean(0), rtol=1e-5)
    kl = 0.5 * (mean**2 + np.exp(logvar) - logvar - 1).mean(0)
    assert np.allclose(table["kl"], kl, rtol=1e-5)
    assert list(table["mean_variance"] > 0.01) == [True, False, False, True]  # Burda et al.'s active units
    # correlated dimensions: the squared covariances of each row sum to ||Cov(mu)||_F^2 (np.cov, ddof 0)
    mixed = mean @ rng.normal(size=(4, 4))
    table = latent_statistics(mixed.astype(np.float64), logvar)
    covariance = np.cov(mixed.T, bias=True)
    np.testing.assert_allclose(table["mean_cov_sq"], (covariance**2).sum(axis=1), rtol=1e-10)
    np.testing.assert_allclose(table["mean_cov_sq"].sum(), np.linalg.norm(covariance) ** 2, rtol=1e-10)
    with pytest.raises(ValueError, match="must both be \\(n, D\\)"):
        latent_statistics(mean, logvar[:, :2])


def test_a_fixed_decoder_code_records_the_decoder_on_that_code_and_leaves_the_encoder_as_it_was(images):
    model = _untrained(3)
    code = np.random.default_rng(5).normal(size=(len(images), 10)).astype(np.float32)
    layers = ("encoder.fc", "encoder.sample", "decoder.fc1", "decoder.output")
    plain = extract_activations(model, images, layers=layers, seed=7, batch_size=64)
    fixed = extract_activations(model, images, layers=layers, seed=7, decoder_code=code, batch_size=64)
    assert list(fixed) == list(layers)
    for layer in ("encoder.fc", "encoder.sample"):  # the encoder side sees the images and its own eps
        # the same float32 computation; 1e-5 of the layer's scale allows for kernels that do not promise bit
        # equality between calls (another eps or another input would differ by the scale itself)
        scale = float(np.abs(plain[layer]).max())
        np.testing.assert_allclose(fixed[layer], plain[layer], rtol=0, atol=1e-5 * scale)
    with torch.no_grad():
        logits = model.decoder(torch.from_numpy(code)).reshape(len(images), -1).numpy()
    np.testing.assert_allclose(fixed["decoder.output"], logits, rtol=0, atol=1e-5)
    assert linear_cka(fixed["decoder.output"], plain["decoder.output"]) < 0.99


def test_a_decoder_that_did_not_change_is_recorded_identically_under_a_fixed_code_however_the_encoder_moved(images):
    # the audit's control: a decoder frozen at its initial weights while the encoder trains looked "changed"
    # when fed the model's own sample; with the code held fixed its layers are the same at every checkpoint
    early, late = _untrained(0), _untrained(1)
    late.decoder.load_state_dict(early.decoder.state_dict())
    code = mean_code(late, images)
    assert code.shape == (len(images), 10) and code.dtype == np.float32
    layers = DECODER
    fixed = [extract_activations(m, images, layers=layers, seed=0, decoder_code=code) for m in (early, late)]
    # each checkpoint draws its own eps, as a study does
    sampled = [extract_activations(m, images, layers=layers, seed=noise_seed(0, "run", step))
               for m, step in ((early, 10), (late, 800))]
    for layer in layers:
        np.testing.assert_array_equal(fixed[0][layer], fixed[1][layer])
        assert linear_cka(sampled[0][layer], sampled[1][layer]) < 0.9, layer


def test_a_decoder_code_of_the_wrong_shape_or_with_nan_is_refused_with_the_shapes(images):
    model = _untrained(0)
    with pytest.raises(ValueError, match=r"decoder_code must be shaped \(200, 10\).*got \(200, 3\)"):
        extract_activations(model, images, decoder_code=np.zeros((200, 3)))
    bad = np.zeros((200, 10))
    bad[4, 2] = np.nan
    with pytest.raises(ValueError, match="decoder_code has NaN"):
        extract_activations(model, images, decoder_code=bad)
