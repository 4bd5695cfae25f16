"""Probe sets: fixed, seeded, unique, exact round trip through an npz."""

import logging

import numpy as np
import pytest

from vaesim.data import ProbeSet, get_dataset, make_probe_set


def test_probe_set_is_seeded_unique_and_exact(tmp_path):
    ds = get_dataset("dsprites-procedural")
    probe = make_probe_set(ds, 300, seed=11)
    assert len(probe) == 300 and len(np.unique(probe.indices)) == 300
    again = make_probe_set(ds, 300, seed=11)
    np.testing.assert_array_equal(probe.indices, again.indices)
    assert not np.array_equal(probe.indices, make_probe_set(ds, 300, seed=12).indices)
    # Same draw as numpy's generator directly (the documented recipe).
    expected = np.sort(np.random.default_rng(11).choice(len(ds), size=300, replace=False))
    np.testing.assert_array_equal(probe.indices, expected)
    np.testing.assert_array_equal(probe.images, ds.images(probe.indices))
    np.testing.assert_array_equal(probe.factors, ds.factors(probe.indices))
    path = probe.save(tmp_path / "probes" / "dsprites.npz")
    loaded = ProbeSet.load(path)
    assert loaded.dataset == "dsprites-procedural" and loaded.factor_names == ds.factor_names
    assert loaded.factor_sizes == ds.factor_sizes and loaded.seed == 11
    np.testing.assert_array_equal(loaded.images, probe.images)
    np.testing.assert_array_equal(loaded.indices, probe.indices)
    assert loaded.images_uint8.dtype == np.uint8
    assert not list((tmp_path / "probes").glob(".tmp-*"))
    with np.load(path, allow_pickle=False) as archive:  # no object arrays inside
        assert all(archive[k].dtype != object for k in archive.files)


def test_probe_set_of_colour_data_is_exact():
    ds = get_dataset("noisy-dsprites", seed=2)
    probe = make_probe_set(ds, 20, seed=0)
    np.testing.assert_array_equal(probe.images, ds.images(probe.indices))


def test_probe_size_is_capped(caplog):
    ds = get_dataset("digits")
    with caplog.at_level(logging.WARNING):
        probe = make_probe_set(ds, 5000, seed=0)
    assert len(probe) == 1797 and "exceeds the 1797 items" in caplog.text
    np.testing.assert_array_equal(probe.indices, np.arange(1797))
    with pytest.raises(ValueError, match=r"probe set size n: expected a positive integer, got 0"):
        make_probe_set(ds, 0, seed=0)


def test_load_rejects_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"probe set not found"):
        ProbeSet.load(tmp_path / "none.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match=r"other.npz: not a vaesim probe set, missing arrays \['dataset'"):
        ProbeSet.load(tmp_path / "other.npz")
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match=r"cut.npz: could not read the probe set"):
        ProbeSet.load(tmp_path / "cut.npz")


def test_probe_set_repr_is_one_short_line_of_shapes():
    probe = make_probe_set(get_dataset("dsprites-procedural"), 50, seed=3)
    text = repr(probe)
    assert "\n" not in text and len(text) < 200
    assert text.startswith("ProbeSet(dataset='dsprites-procedural', n=50, images=50x1x64x64 uint8, factors={'")
    assert text.endswith("seed=3)")
