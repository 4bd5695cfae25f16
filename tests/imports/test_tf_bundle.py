"""The tensor-bundle reader (no TensorFlow): TensorFlow-written fixture, every dtype, shards, damage caught."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tf_bundle_writer import BFloat16, write_bundle
from vaesim.imports.tf_bundle import BundleError, TensorBundle, crc32c, mask_crc, unmask_crc, _raw_crc_python

FIXTURE = Path(__file__).parent / "fixtures" / "dlib" / "format"


def _bytewise_crc32c(data: bytes) -> int:
    """The textbook bit-by-bit CRC-32C (reflected polynomial 0x82F63B78), independent of the table code."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_matches_the_standard_check_value_and_the_bitwise_definition():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720, B.4)
    assert crc32c(b"") == 0
    rng = np.random.default_rng(1)
    for size in (1, 100, 2047, 2048, 2049, 4 * 4096 - 1, 4 * 4096 + 1, 5 * 4096 + 3, 3 * 2048 + 255):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert crc32c(data) == _bytewise_crc32c(data), size
    big = rng.integers(0, 256, 1_000_003, dtype=np.uint8).tobytes()  # the lane-parallel route
    assert crc32c(big) == _raw_crc_python(big, 0xFFFFFFFF) ^ 0xFFFFFFFF
    for value in (0, 1, 0xFFFFFFFF, 0x12345678):
        assert unmask_crc(mask_crc(value)) == value


def _expected_value(record: dict):
    """The values TensorFlow saved, from expected.json (floats exact; 'nan'/'inf' spelled out; strings base64)."""
    if "values_rule" in record:
        scope: dict = {"np": np}
        exec(record["values_rule"], scope)  # the fixture's own generating rule, e.g. v = (...).reshape(100, 200)
        return scope["v"]
    values = record["values"]
    if record["dtype"] == "string":
        items = [base64.b64decode(v["base64"]) for v in values]
        return np.array(items, dtype=object).reshape(record["shape"])
    values = [float(v) if isinstance(v, str) else v for v in values]  # 'nan', 'inf', '-inf'
    dtype = np.float32 if record["dtype"] == "bfloat16" else record["dtype"]
    return np.array(values, dtype=dtype).reshape(record["shape"])


@pytest.mark.skipif(not FIXTURE.is_dir(), reason="TensorFlow-written fixture missing")
def test_tensorflow_written_bundle_reads_exactly():
    """Every tensor of a bundle written by TensorFlow 2.21's own sharded Saver equals the values it saved."""
    import hashlib

    expected = json.loads((FIXTURE / "expected.json").read_text())
    tensors = expected["tensors"]
    bundle = TensorBundle(FIXTURE / "model.ckpt-7")
    assert bundle.num_shards == 2
    assert set(bundle.entries) == set(tensors)
    dtypes = set()
    for name, record in tensors.items():
        entry = bundle.entries[name]
        assert (entry.dtype, list(entry.shape), entry.shard_id) == (record["dtype"], record["shape"], record["shard"])
        assert (entry.offset, entry.size, entry.crc32c) == tuple(record["index_entry"][k] for k in
                                                                  ("offset", "size", "crc32c")), name
        value = bundle.read(name)
        want = _expected_value(record)
        if record["dtype"] == "string":
            assert value.tolist() == want.tolist(), name
        else:
            assert value.dtype == want.dtype and value.shape == want.shape, name
            assert np.array_equal(value, want, equal_nan=True), name
            assert np.array_equal(np.signbit(value), np.signbit(want)), name  # -0.0 stays -0.0
        if "sha256" in record and record["dtype"] not in ("bfloat16", "string"):
            assert hashlib.sha256(value.astype(value.dtype.newbyteorder("<")).tobytes()).hexdigest() == record["sha256"]
        dtypes.add(record["dtype"])
    assert {"float32", "float64", "float16", "bfloat16", "int32", "int64", "uint8", "int8", "bool", "string"} <= dtypes
    assert {entry.shard_id for entry in bundle.entries.values()} == {0, 1}
    assert any(name.endswith("/Adam_1") for name in bundle.entries) and "global_step" in bundle.entries


@pytest.mark.skipif(not (FIXTURE.parent / "format_multiblock.zip").is_file(), reason="fixture missing")
def test_tensorflow_index_of_several_blocks_reads_exactly(tmp_path):
    """3,000 int32 scalars written by TensorFlow's SaveV2: an index of 4 data blocks (256 KiB each)."""
    import zipfile

    with zipfile.ZipFile(FIXTURE.parent / "format_multiblock.zip") as archive:
        archive.extractall(tmp_path)
    expected = json.loads(next(tmp_path.rglob("expected.json")).read_text())
    prefix = next(tmp_path.rglob("*.index")).with_suffix("")
    bundle = TensorBundle(prefix)
    assert len(bundle.entries) == 3000
    assert expected["index_data_blocks"] == 4
    for i in range(3000):
        name = f"multiblock/{i:05d}/{expected['suffix']}"
        assert int(bundle.read(name)) == 3 * i - 7, name


def _bundle_of_every_kind(tmp_path: Path, shards: int, block_size: int = 4096) -> tuple[Path, dict]:
    rng = np.random.default_rng(0)
    tensors: dict = {f"encoder/layer_{i:03d}/kernel/Adam_1": rng.standard_normal((3, i % 5 + 1)).astype(np.float32)
                     for i in range(150)}
    tensors.update({
        "global_step": np.int64(300000), "f64": rng.standard_normal((2, 3, 4, 5)), "flag": np.array([True, False]),
        "half": np.float16([1.5, -2.0]), "i8": np.int8([-3, 4]), "u8": np.uint8([0, 255]), "i32": np.int32([[7]]),
        "empty": np.zeros((0, 3), np.float32), "text": np.array([b"ab", b"", b"xyz"], dtype=object),
        "bf": BFloat16(np.array([0x3F80, 0xC000, 0x0001], np.uint16)), "big": rng.standard_normal(300_000).astype(np.float32),
    })
    write_bundle(tmp_path / "model.ckpt-5", tensors, num_shards=shards, block_size=block_size)
    return tmp_path / "model.ckpt-5", tensors


@pytest.mark.parametrize("shards, block_size", [(1, 262144), (3, 4096), (2, 64)])
def test_every_dtype_shape_and_shard_reads_back(tmp_path, shards, block_size):
    prefix, tensors = _bundle_of_every_kind(tmp_path, shards, block_size)
    bundle = TensorBundle(prefix)
    assert bundle.num_shards == shards and len(bundle.entries) == len(tensors)
    for name, value in tensors.items():
        got = bundle.read(name)
        if isinstance(value, BFloat16):  # bfloat16 bits b -> the float32 with bits b << 16, exactly
            assert got.dtype == np.float32 and got.tolist() == [1.0, -2.0, np.uint32(1 << 16).view(np.float32)]
        elif name == "text":
            assert got.tolist() == [b"ab", b"", b"xyz"]
        else:
            want = np.asarray(value)
            assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want), name


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_flipped_tensor_byte_is_caught_naming_the_shard_and_tensor(tmp_path):
    prefix, _ = _bundle_of_every_kind(tmp_path, 2)
    bundle = TensorBundle(prefix)
    entry = bundle.entries["big"]
    shard = bundle.shard_path(entry.shard_id)
    _flip(shard, entry.offset + entry.size // 2)
    with pytest.raises(BundleError, match=r"data-0000\d-of-00002: tensor 'big' fails its CRC-32C"):
        TensorBundle(prefix).read("big")
    text = TensorBundle(prefix).entries["text"]
    _flip(TensorBundle(prefix).shard_path(text.shard_id), text.offset + text.size - 1)  # a string's bytes
    with pytest.raises(BundleError, match="'text' fails its CRC-32C"):
        TensorBundle(prefix).read("text")
    assert TensorBundle(prefix).read("global_step") == 300000  # the others are intact and still read


def test_damaged_index_truncation_and_missing_shards_get_one_clear_error(tmp_path):
    (tmp_path / "a").mkdir()
    prefix, _ = _bundle_of_every_kind(tmp_path / "a", 2)
    index = Path(f"{prefix}.index")
    original = index.read_bytes()
    _flip(index, 100)  # inside the first data block: its CRC fails (TensorFlow itself would only miss keys)
    with pytest.raises(BundleError, match=r"model\.ckpt-5\.index: the block at byte 0 fails its CRC-32C"):
        TensorBundle(prefix)
    index.write_bytes(original[: len(original) // 2])
    with pytest.raises(BundleError, match="no table magic number"):
        TensorBundle(prefix)
    index.write_bytes(os.urandom(30))
    with pytest.raises(BundleError, match="shorter than a table footer"):
        TensorBundle(prefix)
    index.write_bytes(original)
    shard = Path(f"{prefix}.data-00001-of-00002")
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 3])
    bundle = TensorBundle(prefix)
    beyond = [e for e in bundle.entries.values() if e.shard_id == 1 and e.offset + e.size > len(data) // 3]
    with pytest.raises(BundleError, match="past the end of the file"):
        bundle.read(beyond[0].name)
    shard.unlink()
    with pytest.raises(BundleError, match="no such file; the index model.ckpt-5.index names 2 data shard"):
        TensorBundle(prefix).read(beyond[0].name)
    with pytest.raises(BundleError, match="no such file; expected a TensorFlow checkpoint"):
        TensorBundle(tmp_path / "nothing")


@pytest.mark.skipif(not FIXTURE.is_dir(), reason="TensorFlow-written fixture missing")
def test_a_flipped_byte_in_the_tensorflow_written_bundle_is_caught(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "format")
    bundle = TensorBundle(tmp_path / "format" / "model.ckpt-7")
    name = "encoder/e1/kernel/Adam_1" if "encoder/e1/kernel/Adam_1" in bundle.entries else sorted(bundle.entries)[-1]
    entry = bundle.entries[name]
    _flip(bundle.shard_path(entry.shard_id), entry.offset + entry.size - 1)
    with pytest.raises(BundleError, match=f"tensor '{name}' fails its CRC-32C"):
        TensorBundle(tmp_path / "format" / "model.ckpt-7").verify()
