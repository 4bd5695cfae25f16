"""Pure-Python + numpy writer of TensorFlow V2 tensor-bundle checkpoints, for tests.

Files: ``<prefix>.data-%05d-of-%05d`` (raw tensor bytes) and ``<prefix>.index``.
Data shards: tensors' little-endian C-order bytes, concatenated in the order given, no
padding (BundleWriter's default data_alignment is 1). A DT_STRING tensor of N elements is
``varint64 len_0..len_{N-1}`` + ``fixed32 mask_crc(crc32c(L))`` + the string bytes, where
``L`` = the lengths as consecutive uint32 LE (TF source: uint64 if > 2**32-1; untested).
Entry crc (BundleEntryProto.crc32c) = ``mask_crc(crc32c(stored bytes))``; for strings the
crc runs over ``L + masked length-crc (4 bytes) + string bytes`` (not the varints).
``mask_crc(c) = (((c >> 15) | (c << 17)) + 0xa282ead8) mod 2**32``.

Index = LevelDB table (tensorflow/core/lib/io/table_builder, no compression):
  * data blocks: entries ``varint32 shared, varint32 non_shared, varint32 value_len,
    key[shared:], value``, restart point every 16 entries, then fixed32 restart offsets +
    fixed32 count; a block is cut once bytes + 4*restarts + 4 >= block_size. Every block
    has a trailer: type byte 0 + fixed32 mask_crc(crc32c(block + type byte)).
  * an empty metaindex block; the index block (restart interval 1): per data block,
    key = FindShortestSeparator(last key, next block's first key) (last block:
    FindShortSuccessor(last key)) -> BlockHandle (varint64 offset, varint64 size).
  * 48-byte footer: metaindex + index handles zero-padded to 40 bytes, then the magic
    0xdb4775248b80fb57 as fixed64 LE.
Keys sorted bytewise. Key "" holds BundleHeaderProto {num_shards=1 int32, endianness=2
enum LITTLE=0, version=3 VersionDef{producer=1: 1}}; each tensor name holds
BundleEntryProto {dtype=1 enum, shape=2 TensorShapeProto{dim=2 repeated {size=1 int64}},
shard_id=3 int32, offset=4 int64, size=5 int64, crc32c=6 fixed32}. proto3: zero scalars
are omitted, ``shape`` is always present (empty for scalars).

Verified against TensorFlow 2.21.0: tf.train.load_checkpoint reads back every dtype in
DTYPES + bfloat16 + strings (scalars, 0-element, 4-D, 5 MB, ~200 long names, 1/2/3
shards, block_size 64/4096/262144). With block_size=262144 (TF's default) the .index and
data files are byte-identical to TF's SaveV2 (+ MergeV2Checkpoints for several shards),
also for a 6000-key index over 3 data blocks (TF shortens separators). Our default 4096
makes small indexes span several blocks. TF on read: flipped data byte -> "Checksum does
not match" (string lengths/length-crc: "The length checksum does not match"); bad index
block/footer -> "block checksum mismatch"/"bad magic number"; bad index data block ->
NotFound for its keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import reduce
from operator import xor
from pathlib import Path

import numpy as np

__all__ = ["BFloat16", "crc32c", "mask_crc", "write_bundle", "DTYPES"]

# numpy dtype -> TF DataType enum value.
DTYPES = {np.dtype(k): v for k, v in dict(
    float32=1, float64=2, int32=3, uint8=4, int16=5, int8=6, complex64=8, int64=9, bool=10,
    uint16=17, complex128=18, float16=19, uint32=22, uint64=23).items()}
DT_STRING, DT_BFLOAT16 = 7, 14
_MAGIC = 0xDB4775248B80FB57
_MASK32 = 0xFFFFFFFF


class BFloat16:
    """Marks a uint16 array (any shape) as holding bfloat16 bit patterns (DT_BFLOAT16)."""

    def __init__(self, bits: np.ndarray):
        self.bits = np.asarray(bits)
        if self.bits.dtype != np.uint16:
            raise TypeError("BFloat16 wants a uint16 array of bit patterns")


# ---------------------------------------------------------------- crc32c (Castagnoli)
_TABLE = np.arange(256, dtype=np.uint32)
for _ in range(8):  # reflected polynomial 0x82F63B78
    _TABLE = np.where(_TABLE & 1, (_TABLE >> 1) ^ np.uint32(0x82F63B78), _TABLE >> 1)
_TABLE_L = [int(v) for v in _TABLE]
_LANES = 1024


def _raw_update(state: int, data: bytes) -> int:
    """Register update without pre/post inversion (an affine map of ``state``)."""
    for b in data:
        state = _TABLE_L[(state ^ b) & 0xFF] ^ (state >> 8)
    return state


def crc32c(data: bytes) -> int:
    """CRC-32C (init and xorout 0xFFFFFFFF, reflected) of ``data`` -> int in [0, 2**32)."""
    data = bytes(data)
    lane_len = len(data) // _LANES
    if lane_len < 64:
        return _raw_update(_MASK32, data) ^ _MASK32
    # Run 1024 lanes in parallel with numpy, then fold them: feeding a lane of length L
    # from state s gives  Z(s) ^ lane_crc  where Z = "feed L zero bytes", linear in s.
    lanes = np.frombuffer(data, np.uint8, _LANES * lane_len).reshape(_LANES, lane_len)
    st = np.zeros(_LANES, np.uint32)
    basis = np.uint32(1) << np.arange(32, dtype=np.uint32)  # images of unit vectors under Z
    for j in range(lane_len):
        st = _TABLE[(st ^ lanes[:, j]) & 0xFF] ^ (st >> 8)
        basis = _TABLE[basis & 0xFF] ^ (basis >> 8)
    cols = [int(v) for v in basis]
    state = _MASK32
    for lane_crc in st.tolist():
        state = lane_crc ^ reduce(xor, (c for i, c in enumerate(cols) if state >> i & 1), 0)
    return _raw_update(state, data[_LANES * lane_len:]) ^ _MASK32


def mask_crc(crc: int) -> int:
    """LevelDB/TF masking: rotate right by 15 and add 0xa282ead8 (mod 2**32)."""
    crc &= _MASK32
    return ((((crc >> 15) | (crc << 17)) & _MASK32) + 0xA282EAD8) & _MASK32


# ---------------------------------------------------------------- encodings
def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _u32(v: int) -> bytes:  # fixed32 LE
    return int(v).to_bytes(4, "little")


def _pb_int(field: int, v: int) -> bytes:  # proto3 varint scalar: omitted when 0
    return _varint(field << 3) + _varint(v & 0xFFFFFFFFFFFFFFFF) if v else b""


def _pb_msg(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _entry_proto(dtype: int, shape: tuple, shard: int, offset: int, size: int, crc: int) -> bytes:
    shape_pb = b"".join(_pb_msg(2, _pb_int(1, d)) for d in shape)
    crc_pb = b"\x35" + _u32(crc) if crc else b""  # field 6, wire type 5 (fixed32)
    return (_pb_int(1, dtype) + _pb_msg(2, shape_pb) + _pb_int(3, shard)
            + _pb_int(4, offset) + _pb_int(5, size) + crc_pb)


def _tensor_bytes(value) -> tuple[int, tuple, bytes, int]:
    """-> (TF dtype enum, shape, bytes as stored in the data file, unmasked crc32c)."""
    if isinstance(value, BFloat16):
        dtype, arr = DT_BFLOAT16, value.bits
    else:
        arr = np.asarray(value)
        if arr.dtype.kind in "OSU":
            return _string_bytes(arr)
        dtype = DTYPES.get(arr.dtype.newbyteorder("="))
        if dtype is None:
            raise TypeError(f"unsupported dtype {arr.dtype}")
    data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
    return dtype, arr.shape, data, crc32c(data)


def _string_bytes(arr: np.ndarray) -> tuple[int, tuple, bytes, int]:
    elems = [e.encode() if isinstance(e, str) else bytes(e) for e in arr.reshape(-1).tolist()]
    lengths = b"".join(_varint(len(e)) for e in elems)
    len_crc_in = b"".join(len(e).to_bytes(4 if len(e) <= _MASK32 else 8, "little") for e in elems)
    len_crc = _u32(mask_crc(crc32c(len_crc_in)))
    body = b"".join(elems)
    return DT_STRING, arr.shape, lengths + len_crc + body, crc32c(len_crc_in + len_crc + body)


# ---------------------------------------------------------------- LevelDB table
def _common(a: bytes, b: bytes) -> int:
    n, i = min(len(a), len(b)), 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _separator(start: bytes, limit: bytes) -> bytes:
    i, n = _common(start, limit), min(len(start), len(limit))
    if i < n and start[i] < 0xFF and start[i] + 1 < limit[i]:
        return start[:i] + bytes([start[i] + 1])
    return start


def _successor(key: bytes) -> bytes:
    for i, b in enumerate(key):
        if b != 0xFF:
            return key[:i] + bytes([b + 1])
    return key


class _Block:
    def __init__(self, restart_interval: int = 16):
        self.buf, self.restarts, self.count, self.last = bytearray(), [0], 0, b""
        self.interval = restart_interval

    def add(self, key: bytes, value: bytes) -> None:
        if self.count == self.interval:
            self.restarts.append(len(self.buf))
            self.count = 0
        shared = _common(self.last, key) if self.count else 0
        self.buf += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
        self.buf += key[shared:] + value
        self.last, self.count = key, self.count + 1

    def size_estimate(self) -> int:
        return len(self.buf) + 4 * len(self.restarts) + 4

    def finish(self) -> bytes:
        return bytes(self.buf) + b"".join(map(_u32, self.restarts)) + _u32(len(self.restarts))


def _table(items: list[tuple[bytes, bytes]], block_size: int) -> bytes:
    out, index, block, pending = bytearray(), _Block(1), _Block(), None  # TF: index interval 1

    def write_block(b: _Block) -> bytes:
        raw = b.finish() + b"\x00"
        handle = _varint(len(out)) + _varint(len(raw) - 1)
        out.extend(raw + _u32(mask_crc(crc32c(raw))))
        return handle

    last = b""
    for key, value in items:
        if pending is not None:
            index.add(_separator(last, key), pending)
            pending = None
        block.add(key, value)
        last = key
        if block.size_estimate() >= block_size:
            pending, block = write_block(block), _Block()
    if block.buf:
        pending = write_block(block)
    if pending is not None:
        index.add(_successor(last), pending)
    meta = write_block(_Block())
    idx = write_block(index)
    out += (meta + idx).ljust(40, b"\x00") + _MAGIC.to_bytes(8, "little")
    return bytes(out)


# ---------------------------------------------------------------- bundle
def write_bundle(prefix: str | Path, tensors: Mapping[str, object], *, num_shards: int = 1,
                 shard_of: Callable[[str], int] | None = None,
                 block_size: int = 4096) -> list[Path]:
    """Write ``tensors`` (name -> ndarray / BFloat16 / object-or-bytes array) as a bundle.

    ``shard_of(name)`` picks the shard in [0, num_shards); default: round-robin over
    the mapping's order. Within a shard tensors go in mapping order. Returns the
    written paths: the data shards in order, then the index.
    """
    prefix = Path(prefix)
    entries, shards = {}, [bytearray() for _ in range(num_shards)]
    for i, (name, value) in enumerate(tensors.items()):
        shard = shard_of(name) if shard_of is not None else i % num_shards
        if not 0 <= shard < num_shards:
            raise ValueError(f"shard {shard} for {name!r} out of range")
        dtype, shape, data, crc = _tensor_bytes(value)
        entries[name.encode()] = _entry_proto(
            dtype, tuple(int(d) for d in shape), shard, len(shards[shard]), len(data),
            mask_crc(crc))
        shards[shard] += data
    paths = [prefix.parent / f"{prefix.name}.data-{k:05d}-of-{num_shards:05d}"
             for k in range(num_shards)]
    for path, data in zip(paths, shards):
        path.write_bytes(bytes(data))
    header = _pb_int(1, num_shards) + _pb_msg(3, _pb_int(1, 1))  # endianness LITTLE=0 omitted
    items = [(b"", header)] + sorted(entries.items())
    index = prefix.parent / f"{prefix.name}.index"
    index.write_bytes(_table(items, block_size))
    return paths + [index]
