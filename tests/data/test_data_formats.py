"""Loaders read tiny files written in each dataset's real format, through the public interface."""

import gzip
import logging

import numpy as np
import pytest

from data_writers import (
    cars_value,
    grid_table,
    marker_image,
    norb_value,
    write_cars3d,
    write_dsprites,
    write_mpi3d,
    write_shapes3d,
    write_smallnorb,
)
from vaesim.data import get_dataset, require_files
from vaesim.data.dsprites import FILENAME as DSPRITES_FILE
from vaesim.data.smallnorb import SPLITS, norb_header, parse_norb_matrix


def _marker_index(image: np.ndarray) -> int:
    """Decode the item index written by marker_image from a (C, 64, 64) float image."""
    row = image[0, 0, :16] > 0.5
    return int(sum(int(bit) << k for k, bit in enumerate(row)))


def _check_interface(ds, indices):
    images = ds.images(indices)
    assert images.dtype == np.float32 and images.shape == (len(indices), ds.num_channels, 64, 64)
    assert images.min() >= 0.0 and images.max() <= 1.0
    factors = ds.factors(indices)
    assert factors.dtype == np.int64 and factors.shape == (len(indices), len(ds.factor_sizes))
    image, factor_row = ds[int(indices[0])]
    np.testing.assert_array_equal(image, images[0])
    np.testing.assert_array_equal(factor_row, factors[0])


# -- dSprites -----------------------------------------------------------------


class _Unpickled:
    """Unpickling this calls open(marker, "w"): the test sees whether anything was unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_dsprites_official_layout(tmp_path):
    marker = tmp_path / "unpickled"
    metadata = np.array([_Unpickled(marker)], dtype=object)
    (tmp_path / "dsprites").mkdir()
    write_dsprites(tmp_path / "dsprites" / DSPRITES_FILE, metadata=metadata)
    ds = get_dataset("dsprites", root=tmp_path)
    assert not marker.exists(), "the metadata pickle must never be loaded"
    assert ds.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert ds.factor_sizes == (3, 2, 2, 2, 2) and len(ds) == 48 and ds.is_grid
    for index in (0, 1, 17, 47):
        image, factors = ds[index]
        assert _marker_index(image) == index
        assert set(np.unique(image)) <= {0.0, 1.0}
        np.testing.assert_array_equal(factors, np.unravel_index(index, ds.factor_sizes))
    np.testing.assert_array_equal(ds.index_of(ds.factors(np.arange(48))), np.arange(48))
    _check_interface(ds, np.array([5, 0, 5, 33]))


def test_dsprites_rows_out_of_grid_order_use_the_table(tmp_path):
    (tmp_path / "dsprites").mkdir()
    order = np.random.default_rng(3).permutation(48)
    classes = write_dsprites(tmp_path / "dsprites" / DSPRITES_FILE, order=order)
    ds = get_dataset("dsprites", root=tmp_path)
    assert not ds.is_grid
    for index in (0, 9, 40):
        image, factors = ds[index]
        np.testing.assert_array_equal(factors, classes[index, 1:])
        assert _marker_index(image) == np.ravel_multi_index(tuple(classes[index]), (1, 3, 2, 2, 2, 2))
    assert ds.index_of(classes[[9], 1:])[0] == 9


def test_dsprites_pickled_images_are_refused(tmp_path):
    (tmp_path / "dsprites").mkdir()
    path = tmp_path / "dsprites" / DSPRITES_FILE
    marker = tmp_path / "unpickled"
    imgs = np.array([_Unpickled(marker)] * 48, dtype=object)
    write_dsprites(path, imgs=imgs)
    with pytest.raises(ValueError, match=r"'imgs' holds Python objects \(a pickle\)"):
        get_dataset("dsprites", root=tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "imgs, message",
    [
        (np.zeros((48, 32, 32), np.uint8), r"'imgs' has shape \(48, 32, 32\), expected \(N, 64, 64\)"),
        (np.zeros((48, 64, 64), np.float32), r"'imgs' has dtype float32, expected kind 'u'"),
        (np.full((48, 64, 64), 7, np.uint8), r"0/1 pixels, found the value 7"),
        (np.zeros((10, 64, 64), np.uint8), r"has 48 rows but 'imgs' has 10 images"),
    ],
)
def test_dsprites_bad_arrays(tmp_path, imgs, message):
    (tmp_path / "dsprites").mkdir()
    write_dsprites(tmp_path / "dsprites" / DSPRITES_FILE, imgs=imgs)
    with pytest.raises(ValueError, match=message):
        get_dataset("dsprites", root=tmp_path)


def test_dsprites_missing_and_truncated(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing dsprites_ndarray.*vaesim data download dsprites"):
        get_dataset("dsprites", root=tmp_path)
    (tmp_path / "dsprites").mkdir()
    path = tmp_path / "dsprites" / DSPRITES_FILE
    write_dsprites(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"dsprites_ndarray.*npz.*truncated or corrupted"):
        get_dataset("dsprites", root=tmp_path)


def test_colour_and_noisy_over_the_official_file(tmp_path):
    (tmp_path / "dsprites").mkdir()
    write_dsprites(tmp_path / "dsprites" / DSPRITES_FILE)
    binary = get_dataset("dsprites", root=tmp_path)
    idx = np.arange(48)
    mask = binary.images(idx)[:, 0] > 0.5
    colour = get_dataset("color-dsprites", root=tmp_path, base="official", seed=1)
    noisy = get_dataset("noisy-dsprites", root=tmp_path, base="official", seed=1)
    for ds in (colour, noisy):
        assert ds.num_channels == 3 and ds.factor_sizes == binary.factor_sizes
        np.testing.assert_array_equal(ds.factors(idx), binary.factors(idx))
    c = colour.images(idx)
    assert (c.transpose(1, 0, 2, 3)[:, ~mask] == 0).all()  # background stays black
    tint = c.transpose(1, 0, 2, 3)[:, mask]
    assert tint.min() >= 128 / 255 and tint.max() <= 1.0
    n = noisy.images(idx)
    assert (n.transpose(1, 0, 2, 3)[:, mask] == 1.0).all()


# -- Shapes3D -----------------------------------------------------------------


@pytest.mark.parametrize("shuffled", [False, True])
def test_shapes3d_h5(tmp_path, shuffled):
    sizes = (2, 2, 2, 2, 1, 3)
    order = np.random.default_rng(0).permutation(int(np.prod(sizes))) if shuffled else None
    (tmp_path / "shapes3d").mkdir()
    classes = write_shapes3d(tmp_path / "shapes3d" / "3dshapes.h5", sizes, order=order)
    ds = get_dataset("shapes3d", root=tmp_path)
    assert ds.factor_sizes == sizes and ds.num_channels == 3 and ds.is_grid is (not shuffled)
    for index in (0, 7, 47, 7):
        image, factors = ds[index]
        np.testing.assert_array_equal(factors, classes[index])
        code = np.ravel_multi_index(tuple(classes[index]), sizes)
        np.testing.assert_array_equal(image, marker_image(code, channels=3).transpose(2, 0, 1) / np.float32(255))
    batch = np.array([40, 3, 40, 11])  # unsorted with a repeat: one h5 read, original order kept
    images = ds.images(batch)
    assert [_marker_index(im / im.max()) for im in images] == [
        int(np.ravel_multi_index(tuple(classes[i]), sizes)) for i in batch
    ]
    np.testing.assert_array_equal(ds.factors(ds.index_of(classes[[5, 6]])), classes[[5, 6]])
    # A copy sent to a DataLoader worker (pickled) reopens the HDF5 file itself.
    import pickle

    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone.images(batch), images)
    ds.close()


def test_shapes3d_bad_files(tmp_path):
    import h5py

    folder = tmp_path / "shapes3d"
    folder.mkdir()
    path = folder / "3dshapes.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("images", data=np.zeros((4, 64, 64, 1), np.uint8))
        handle.create_dataset("labels", data=np.zeros((4, 6)))
    with pytest.raises(ValueError, match=r"3dshapes.h5: 'images' has shape \(4, 64, 64, 1\).*expected \(N, 64, 64, 3\) uint8"):
        get_dataset("shapes3d", root=tmp_path)
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(ValueError, match=r"3dshapes.h5: expected an HDF5 file.*truncated or corrupted"):
        get_dataset("shapes3d", root=tmp_path)


# -- smallNORB -----------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_smallnorb_binary_matrices(tmp_path, gz):
    rows = write_smallnorb(tmp_path / "smallnorb", gz=gz)
    assert len(require_files("smallnorb", tmp_path)) == 6
    ds = get_dataset("smallnorb", root=tmp_path)
    n_train = len(rows["training"])
    assert len(ds) == n_train + len(rows["testing"]) and ds.factor_sizes == (5, 9, 18, 6)
    for split_id, split in enumerate(("training", "testing")):
        for r in (0, 5, n_train - 1):
            index = r + split_id * n_train
            image, factors = ds[index]
            category, instance, elevation, azimuth, lighting = rows[split][r]
            np.testing.assert_array_equal(factors, [category, elevation, azimuth // 2, lighting])
            assert ds.instances[index] == instance
            # Constant images survive the antialiased resize exactly: the left camera is used.
            np.testing.assert_array_equal(image, np.full((1, 64, 64), norb_value(r, split_id, 0) / np.float32(255)))
    # Instance is a nuisance: index_of draws among the 4 instances having those factors.
    drawn = ds.index_of(np.repeat([[3, 8, 17, 5]], 200, axis=0), np.random.default_rng(0))
    assert set(ds.instances[drawn]) == {0, 1, 4, 6}
    np.testing.assert_array_equal(ds.factors(drawn), np.repeat([[3, 8, 17, 5]], 200, axis=0))
    with pytest.raises(ValueError, match=r"no item has factors \[1, 0, 0, 0\]"):
        ds.index_of([[1, 0, 0, 0]])


def test_norb_header_layout(tmp_path):
    path = tmp_path / "m.mat"
    data = np.arange(6, dtype="<i4")
    path.write_bytes(norb_header(data.shape, "int32") + data.tobytes())
    raw = path.read_bytes()
    # magic 0x1E3D4C54 little-endian, ndim 1, then max(3, ndim) = 3 dims: 6, 1, 1.
    assert raw[:4] == bytes([0x54, 0x4C, 0x3D, 0x1E]) and np.frombuffer(raw[4:20], "<i4").tolist() == [1, 6, 1, 1]
    np.testing.assert_array_equal(parse_norb_matrix(path), data)
    four_d = np.zeros((2, 2, 3, 3), np.uint8)
    path.write_bytes(norb_header(four_d.shape, "uint8") + four_d.tobytes())
    assert np.frombuffer(path.read_bytes()[:24], "<i4").tolist() == [0x1E3D4C55, 4, 2, 2, 3, 3]
    assert parse_norb_matrix(path, expect_dtype="uint8").shape == (2, 2, 3, 3)


def test_smallnorb_bad_files(tmp_path):
    directory = tmp_path / "smallnorb"
    with pytest.raises(FileNotFoundError, match=r"dataset 'smallnorb': missing smallnorb-5x46789.*vaesim data download smallnorb"):
        get_dataset("smallnorb", root=tmp_path)
    write_smallnorb(directory)
    dat = directory / f"{SPLITS['training']}-dat.mat"
    good = dat.read_bytes()
    dat.write_bytes(np.array([0x1E3D4C99], "<i4").tobytes() + good[4:])
    with pytest.raises(ValueError, match=r"training-dat.mat: unknown NORB magic code 0x1e3d4c99"):
        get_dataset("smallnorb", root=tmp_path)
    dat.write_bytes(norb_header((1,), "int32") + good[24:])
    with pytest.raises(ValueError, match=r"training-dat.mat: magic code 0x1e3d4c54 is not uint8"):
        get_dataset("smallnorb", root=tmp_path)
    dat.write_bytes(good[:-100])
    with pytest.raises(ValueError, match=r"training-dat.mat: NORB matrix \(32, 2, 96, 96\) uint8 needs 589824 data bytes, found 589724: truncated"):
        get_dataset("smallnorb", root=tmp_path)
    dat.write_bytes(good)
    gz = directory / f"{SPLITS['testing']}-info.mat"
    gz.rename(str(gz) + ".gz")  # not gzip inside
    with pytest.raises(ValueError, match=r"testing-info.mat.gz: not a readable gzip file"):
        get_dataset("smallnorb", root=tmp_path)


# -- Cars3D -----------------------------------------------------------------


def test_cars3d_mat_files(tmp_path):
    write_cars3d(tmp_path / "cars3d", objects=3, azimuths=3, elevations=2)
    ds = get_dataset("cars3d", root=tmp_path, directory=tmp_path / "cars3d")
    assert ds.factor_names == ("elevation", "azimuth", "object") and ds.factor_sizes == (2, 3, 3)
    for e, a, o in [(0, 0, 0), (1, 2, 0), (0, 1, 2), (1, 2, 2)]:
        index = ds.index_of([[e, a, o]])[0]
        assert index == (e * 3 + a) * 3 + o
        image, factors = ds[int(index)]
        np.testing.assert_array_equal(factors, [e, a, o])
        v = cars_value(o, a, e) / np.float32(255)
        hi = (cars_value(o, a, e) + 50) / np.float32(255)
        assert image[2].min() == image[2].max() == v
        # Left/right in channel 0, top/bottom in channel 1: H and W are not swapped.
        assert image[0, 32, 3] == v and image[0, 32, 60] == hi
        assert image[1, 3, 32] == v and image[1, 60, 32] == hi


def test_cars3d_bad_file(tmp_path):
    import scipy.io

    write_cars3d(tmp_path / "cars3d", objects=2)
    scipy.io.savemat(tmp_path / "cars3d" / "car_009_mesh.mat", {"im": np.zeros((16, 16, 4, 3, 2), np.uint8)})
    with pytest.raises(ValueError, match=r"car_009_mesh.mat: 'im' has shape \(16, 16, 4, 3, 2\), expected \(H, H, 3, azimuth, elevation\)"):
        get_dataset("cars3d", directory=tmp_path / "cars3d")
    scipy.io.savemat(tmp_path / "cars3d" / "car_009_mesh.mat", {"other": np.zeros(3)})
    with pytest.raises(ValueError, match=r"car_009_mesh.mat: expected a variable 'im', found \['other'\]"):
        get_dataset("cars3d", directory=tmp_path / "cars3d")
    (tmp_path / "cars3d" / "car_009_mesh.mat").write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64" + bytes(90))
    with pytest.raises(ValueError, match=r"car_009_mesh.mat: a MATLAB v7.3 \(HDF5\) file, expected the MATLAB v5 format"):
        get_dataset("cars3d", directory=tmp_path / "cars3d")
    (tmp_path / "cars3d" / "car_009_mesh.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(20))
    with pytest.raises(ValueError, match=r"car_009_mesh.mat: expected a MATLAB v5 file with 'im', could not read it"):
        get_dataset("cars3d", directory=tmp_path / "cars3d")
    with pytest.raises(FileNotFoundError, match=r"missing car_\*_mesh.mat \(3 of 183 files present\)"):
        get_dataset("cars3d", root=tmp_path)


# -- MPI3D -----------------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True])
def test_mpi3d_npz(tmp_path, compressed):
    sizes = (2, 1, 1, 1, 1, 2, 3)
    (tmp_path / "mpi3d").mkdir()
    write_mpi3d(tmp_path / "mpi3d" / "mpi3d_toy.npz", sizes, compressed=compressed)
    ds = get_dataset("mpi3d", root=tmp_path, variant="toy", factor_sizes=sizes)
    assert isinstance(ds._images, np.memmap) is (not compressed)
    assert len(ds) == 12 and ds.num_channels == 3
    for index in (0, 5, 11):
        image, factors = ds[index]
        np.testing.assert_array_equal(factors, np.unravel_index(index, sizes))
        np.testing.assert_array_equal(image, marker_image(index, channels=3).transpose(2, 0, 1) / np.float32(255))
    _check_interface(ds, np.array([11, 0, 4]))


def test_mpi3d_bad_files(tmp_path):
    (tmp_path / "mpi3d").mkdir()
    path = tmp_path / "mpi3d" / "mpi3d_real.npz"
    with pytest.raises(FileNotFoundError, match=r"mpi3d_real.npz: MPI3D file not found.*vaesim data download mpi3d"):
        get_dataset("mpi3d", root=tmp_path)
    write_mpi3d(path, (2, 1, 1, 1, 1, 2, 3))
    with pytest.raises(ValueError, match=r"'images' has 12 images, expected 1036800 = prod\(6, 6, 2, 3, 3, 40, 40\)"):
        get_dataset("mpi3d", root=tmp_path)
    np.savez(path, pictures=np.zeros((12, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"expected an array 'images' in the archive, found only \['pictures'\]"):
        get_dataset("mpi3d", root=tmp_path)
    np.savez(path, images=np.zeros((12, 64, 64, 3), np.uint8))
    path.write_bytes(path.read_bytes()[:-2000])
    with pytest.raises(ValueError, match=r"mpi3d_real.npz: expected an .npz \(zip\) archive.*truncated"):
        get_dataset("mpi3d", root=tmp_path, factor_sizes=(2, 1, 1, 1, 1, 2, 3))


# -- digits -------------------------------------------------------------------


def test_digits_are_the_sklearn_images_upsampled():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    ds = get_dataset("digits")
    assert len(ds) == 1797 and ds.factor_names == ("digit",) and ds.factor_sizes == (10,)
    for index in (0, 100, 1796):
        image, factors = ds[index]
        assert factors.tolist() == [bunch.target[index]]
        # Each 8x8 pixel becomes an 8x8 block; its centre (bilinear, align_corners=False)
        # lies between samples, so compare block means with the source (0..16 -> 0..1).
        blocks = image[0].reshape(8, 8, 8, 8).mean(axis=(1, 3))
        assert np.corrcoef(blocks.ravel(), bunch.images[index].ravel())[0, 1] > 0.9
    picked = ds.index_of(np.full((50, 1), 7), np.random.default_rng(1))
    assert (bunch.target[picked] == 7).all() and len(set(picked.tolist())) > 10


def test_resize_is_pillows_lanczos_as_the_references():
    from PIL import Image

    from vaesim.data.grid import resize_uint8

    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (3, 1, 96, 96), dtype=np.uint8)
    colour = rng.integers(0, 256, (2, 3, 128, 128), dtype=np.uint8)
    out_grey, out_colour = resize_uint8(grey), resize_uint8(colour)
    assert out_grey.shape == (3, 1, 64, 64) and out_colour.shape == (2, 3, 64, 64)
    for image, resized in zip(grey, out_grey):
        expected = np.asarray(Image.fromarray(image[0]).resize((64, 64), Image.LANCZOS))
        assert np.array_equal(resized[0], expected)
    for image, resized in zip(colour, out_colour):
        expected = np.asarray(Image.fromarray(image.transpose(1, 2, 0)).resize((64, 64), Image.LANCZOS))
        assert np.array_equal(resized, expected.transpose(2, 0, 1))
    # an edge: Lanczos overshoots (202 beside a 200 plateau), which a triangle (bilinear) filter never does
    edge = np.zeros((1, 1, 96, 96), dtype=np.uint8)
    edge[..., 48:] = 200
    assert resize_uint8(edge)[0, 0, 32].max() > 200
    with pytest.raises(ValueError, match="expected images shaped"):
        resize_uint8(np.zeros((2, 64, 64), dtype=np.uint8))
