"""Reconstructions and latent traversals: checked against the model's own forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaesim.models import build_vae
from vaesim.report import pictures as P


@pytest.fixture(scope="module")
def model_and_images():
    torch.manual_seed(0)
    model = build_vae(num_channels=1, latent_dim=4).eval()
    images = np.random.default_rng(0).random((5, 1, 64, 64), dtype=np.float32)
    return model, images


def _decode_via_forward(model, image, code):
    """Logits of ``code`` through ``model.forward``: noise chosen so that the sample equals ``code``."""
    x = torch.as_tensor(image[None])
    with torch.no_grad():
        mean, logvar = model.encode(x)
        noise = (torch.as_tensor(code[None], dtype=torch.float32) - mean) / torch.exp(0.5 * logvar)
        return torch.sigmoid(model(x, noise).logits)[0].numpy()


def test_reconstruction_decodes_the_posterior_mean(model_and_images):
    model, images = model_and_images
    out = P.reconstruct(model, images)
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    with torch.no_grad():
        mean, _ = model.encode(torch.as_tensor(images))
    for i in range(len(images)):
        np.testing.assert_allclose(out[i], _decode_via_forward(model, images[i], mean[i].numpy()), atol=1e-5)


def test_traversal_sets_one_coordinate_and_keeps_the_others(model_and_images):
    model, images = model_and_images
    values = np.array([-2.0, 0.5, 2.0])
    grid = P.traverse(model, images[0], dims=[3, 1], values=values)
    assert grid.shape == (2, 3, 1, 64, 64)
    with torch.no_grad():
        mean = model.encode(torch.as_tensor(images[:1]))[0][0].numpy()
    for row, dim in enumerate([3, 1]):
        for col, value in enumerate(values):
            code = mean.copy()
            code[dim] = value
            np.testing.assert_allclose(grid[row, col], _decode_via_forward(model, images[0], code), atol=1e-5)
    assert not np.allclose(grid[0, 0], grid[0, 2])  # the coordinate matters to an untrained decoder


def test_latent_kl_matches_the_textbook_formula_in_float64(model_and_images):
    model, images = model_and_images
    with torch.no_grad():
        mean, logvar = (t.double().numpy() for t in model.encode(torch.as_tensor(images)))
    expected = (0.5 * (mean**2 + np.exp(logvar) - logvar - 1.0)).mean(0)
    np.testing.assert_allclose(P.latent_kl(model, images), expected, rtol=1e-4, atol=1e-7)  # float32 maths


def test_representative_runs_take_the_lowest_seed_of_each_model():
    import pandas as pd

    runs = pd.DataFrame({"run_id": list("abcdef"), "dataset": "d", "objective": ["beta_vae"] * 4 + ["dip"] * 2,
                         "param_name": "p", "param": [4.0, 4.0, 1.0, 1.0, 10.0, 10.0], "seed": [1, 0, 1, 0, 1, 0]})
    chosen = P.representative_runs(runs)
    assert chosen["run_id"].tolist() == ["d", "b", "f"]


def test_missing_checkpoints_are_named(tmp_path):
    with pytest.raises(P.NoCheckpoints, match="no probe set"):
        P.probe_images(tmp_path, "dsprites-procedural")
    with pytest.raises(P.NoCheckpoints, match="no checkpoints in"):
        P.load_model(tmp_path, "some-run")
