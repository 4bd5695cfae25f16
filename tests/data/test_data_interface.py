"""The shared dataset interface: factors <-> indices, batches, training views, errors."""

import numpy as np
import pytest
import torch

from vaesim.data import DATASETS, get_dataset, require_files


@pytest.fixture(scope="module")
def procedural():
    return get_dataset("dsprites-procedural")


def test_names_in_the_contract():
    assert set(DATASETS) == {
        "dsprites", "dsprites-procedural", "color-dsprites", "noisy-dsprites",
        "shapes3d", "smallnorb", "cars3d", "mpi3d", "digits",
    }
    for name in ("dsprites-procedural", "color-dsprites", "noisy-dsprites", "digits"):
        assert require_files(name) == []


def test_index_factor_round_trip_matches_ravel(procedural):
    rng = np.random.default_rng(0)
    indices = rng.integers(0, len(procedural), 500)
    factors = procedural.factors(indices)
    # Independent reference: mixed-radix digits of the index, last factor fastest.
    expected = []
    for i in indices:
        digits = []
        for size in reversed(procedural.factor_sizes):
            digits.append(i % size)
            i //= size
        expected.append(digits[::-1])
    np.testing.assert_array_equal(factors, expected)
    np.testing.assert_array_equal(procedural.index_of(factors), indices)


def test_sample_factors_and_images_for_factors(procedural):
    factors = procedural.sample_factors(2000, np.random.default_rng(1))
    assert factors.shape == (2000, 5) and factors.dtype == np.int64
    for j, size in enumerate(procedural.factor_sizes):
        assert factors[:, j].min() == 0 and factors[:, j].max() == size - 1
    images = procedural.images_for_factors(factors[:8])
    np.testing.assert_array_equal(images, procedural.images(procedural.index_of(factors[:8])))


def test_bad_indices_and_factors(procedural):
    with pytest.raises(ValueError, match=r"expected indices in \[0, 737280\), got 737280"):
        procedural.images([737280])
    with pytest.raises(TypeError, match=r"expected integer item indices, got dtype float64"):
        procedural.factors(np.array([1.5]))
    with pytest.raises(ValueError, match=r"expected shape \(B, 5\).*got \(2, 3\)"):
        procedural.index_of(np.zeros((2, 3), int))
    with pytest.raises(ValueError, match=r"factor 'scale' must be in \[0, 6\), got 6"):
        procedural.index_of([[0, 6, 0, 0, 0]])
    with pytest.raises(TypeError, match=r"expected an integer index, got str"):
        procedural["3"]
    with pytest.raises(ValueError, match=r"dataset name: expected one of dsprites, .*got 'mnist'"):
        get_dataset("mnist")
    with pytest.raises(TypeError, match=r"get_dataset\('digits'\):.*unexpected keyword"):
        get_dataset("digits", colour=True)


def test_iterate_batches_is_seeded_and_resumable(procedural):
    first = list(procedural.iterate_batches(16, seed=3, steps=4))
    again = list(procedural.iterate_batches(16, seed=3, steps=4))
    resumed = list(procedural.iterate_batches(16, seed=3, steps=2, start_step=2))
    other = next(iter(procedural.iterate_batches(16, seed=4, steps=1)))
    assert all(b.shape == (16, 1, 64, 64) and b.dtype == np.float32 for b in first)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(first[2:], resumed):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other)


def test_torch_dataloader_view(procedural):
    view = procedural.torch_dataset()
    assert len(view) == len(procedural)
    loader = torch.utils.data.DataLoader(view, batch_sampler=procedural.batch_sampler(8, seed=0, steps=3))
    batches = list(loader)
    assert len(batches) == 3
    images, factors = batches[1]
    assert images.shape == (8, 1, 64, 64) and images.dtype == torch.float32 and factors.dtype == torch.int64
    _, indices = list(procedural.batch_indices(8, seed=0, steps=2))[1]
    np.testing.assert_array_equal(images.numpy(), procedural.images(indices))
    np.testing.assert_array_equal(factors.numpy(), procedural.factors(indices))
    image, factor = view[5]
    assert image.shape == (1, 64, 64) and factor.tolist() == [0, 0, 0, 0, 5]


@pytest.mark.parametrize("name", ["color-dsprites", "noisy-dsprites"])
def test_variants_are_seeded_per_item(name, procedural):
    ds = get_dataset(name, seed=7)
    idx = np.array([3, 500, 70000])
    a = ds.images(idx)
    np.testing.assert_array_equal(a[1], ds.images([500])[0])  # independent of the batch
    np.testing.assert_array_equal(a, get_dataset(name, seed=7).images(idx))
    assert not np.array_equal(a, get_dataset(name, seed=8).images(idx))
    mask = procedural.images(idx)[:, 0] > 0.5
    assert a.shape == (3, 3, 64, 64)
    u8 = np.round(a * 255)
    np.testing.assert_array_equal(u8 / np.float32(255), a)  # exactly 8-bit levels
    if name == "color-dsprites":
        colours = a.transpose(0, 2, 3, 1)[mask]  # (pixels, 3)
        assert (a.transpose(0, 2, 3, 1)[~mask] == 0).all() and colours.min() >= 128 / 255
        per_image = [np.unique(a[k].transpose(1, 2, 0)[mask[k]], axis=0) for k in range(3)]
        assert all(len(c) == 1 for c in per_image)  # one colour per sprite
    else:
        assert (a.transpose(0, 2, 3, 1)[mask] == 1).all()
        background = a.transpose(0, 2, 3, 1)[~mask]
        # Uniform noise on 256 levels: mean 0.5, variance (256^2 - 1) / 12 / 255^2.
        assert abs(background.mean() - 0.5) < 0.01
        assert abs(background.var() - (256**2 - 1) / 12 / 255**2) < 0.003


def test_colour_distribution_is_uniform_on_the_upper_half():
    ds = get_dataset("color-dsprites", seed=0)
    from vaesim.data.dsprites import item_random_bytes

    raw = item_random_bytes(0, np.arange(20000), 3, stream=1)
    levels = 128 + (raw >> 1).astype(int)
    counts = np.bincount(levels.ravel(), minlength=256)[128:]
    assert levels.min() == 128 and levels.max() == 255
    # Chi-square against uniform over 128 levels (df = 127; 99.9% quantile ~ 181).
    expected = levels.size / 128
    assert ((counts - expected) ** 2 / expected).sum() < 181
    assert ds.num_channels == 3
