"""Data files whose headers lie: refused before any allocation (issue 10 item 11)."""

from __future__ import annotations

import gzip
import io
import zipfile

import numpy as np
import pytest

from vaesim.data import npzfile
from vaesim.data.smallnorb import _read_bytes, norb_header, parse_norb_matrix


def _npy_with_header(shape, dtype="|u1", payload=b"\x00" * 16) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + payload


def _npz(path, members: dict[str, bytes], compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name + ".npy", data)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_npz_header_declaring_a_trillion_images_is_refused_before_allocating(tmp_path, compression):
    path = tmp_path / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    _npz(path, {"imgs": _npy_with_header((10**12, 64, 64))}, compression)
    with pytest.raises(ValueError, match=r"array 'imgs' declares shape \(1000000000000, 64, 64\) "
                                         r"\(4,096,000,000,000,000 bytes\), but the file holds 16 bytes"):
        npzfile.list_members(path)


def test_npz_dims_whose_product_overflows_int64_are_refused(tmp_path):
    path = tmp_path / "x.npz"
    _npz(path, {"imgs": _npy_with_header((2**40, 2**40, 2**40))})
    with pytest.raises(ValueError, match="declares shape"):
        npzfile.list_members(path)


def test_empty_dataset_array_is_named(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, imgs=np.zeros((0, 64, 64), dtype=np.uint8))
    members = npzfile.list_members(path)
    with pytest.raises(ValueError, match=r"array 'imgs' holds no examples"):
        npzfile.require_member(path, members, "imgs", ndim=3)


def test_shapes3d_declaring_150_million_rows_in_a_small_file_is_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    from vaesim.data.shapes3d import Shapes3D

    path = tmp_path / "3dshapes.h5"
    with h5py.File(path, "w") as handle:  # datasets declared, never written: nothing stored
        handle.create_dataset("images", shape=(150_000_000, 64, 64, 3), dtype=np.uint8)
        handle.create_dataset("labels", shape=(150_000_000, 6), dtype=np.float64)
    assert path.stat().st_size < 10_000
    with pytest.raises(ValueError, match=r"dataset 'images' declares shape \(150000000, 64, 64, 3\)"):
        Shapes3D(path=path)


def test_norb_dims_whose_product_overflows_are_refused(tmp_path):
    path = tmp_path / "smallnorb-x-dat.mat"
    header = np.array([0x1E3D4C55, 4, 2**31 - 1, 2**31 - 1, 2**31 - 1, 2**31 - 1], dtype="<i4").tobytes()
    path.write_bytes(header + b"\x00" * 64)
    with pytest.raises(ValueError, match=r"needs \d+ data bytes, found 64: truncated"):
        parse_norb_matrix(path)


def test_norb_gzip_is_read_with_a_size_cap(tmp_path):
    path = tmp_path / "smallnorb-x-dat.mat.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(norb_header((5000,), "uint8") + b"\x00" * 5000)
    assert len(_read_bytes(path)) == 5000 + len(norb_header((5000,), "uint8"))
    with pytest.raises(ValueError, match=r"decompresses to more than 1,000 bytes"):
        _read_bytes(path, limit=1000)
