"""TensorFlow tensor-bundle checkpoints (``prefix.index`` + ``prefix.data-KKKKK-of-NNNNN``), read without TensorFlow.

This is the format TensorFlow's ``Saver`` / ``tf.train.Checkpoint`` write
(tensorflow/core/util/tensor_bundle). Two kinds of file:

* ``prefix.index``: a LevelDB-format table (tensorflow/core/lib/io/table).
  Its last 48 bytes are the *footer*: the BlockHandles (varint64 offset,
  varint64 size) of the metaindex and index blocks, zero-padded to 40 bytes,
  then the magic number ``0xdb4775248b80fb57`` (little-endian). Every block
  is followed by a 5-byte trailer: a compression byte (0 = none) and the
  masked CRC-32C of the block and that byte. A block holds entries
  ``varint32 shared, varint32 unshared, varint32 value_len, key delta,
  value`` (keys are prefix-compressed against the previous key), then the
  restart offsets (uint32 each) and their count (uint32). The index block
  maps each data block's last key to its BlockHandle.
* The table's entries: key ``""`` holds a ``BundleHeaderProto``
  (1: num_shards, 2: endianness, 3: version); every other key is a tensor
  name holding a ``BundleEntryProto`` (1: dtype, 2: shape
  (``TensorShapeProto``: 2: dim {1: size}), 3: shard_id, 4: offset,
  5: size, 6: crc32c (fixed32, masked), 7: slices). The tensor's bytes are
  ``size`` bytes at ``offset`` in shard ``shard_id``, little-endian,
  row-major; their masked CRC-32C is the entry's ``crc32c``.

Protocol buffers are decoded here by their wire format (varints, fixed32,
length-delimited fields) with the field numbers above; nothing of
TensorFlow or protobuf is imported. Every block checksum of the index and
the checksum of every tensor read are verified: a damaged file raises
:class:`BundleError` naming the file and what was expected.

Sliced (partitioned) variables and DT_RESOURCE / DT_VARIANT entries are
listed but cannot be read (:meth:`TensorBundle.read` says so).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

__all__ = ["BundleEntry", "BundleError", "TensorBundle", "crc32c", "mask_crc", "unmask_crc"]

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER = 5

#: TensorFlow's DataType enum -> numpy dtype (``None``: listed, not readable here)
DTYPES: dict[int, str | None] = {
    1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string", 8: "complex64",
    9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16", 18: "complex128", 19: "float16", 22: "uint32",
    23: "uint64", 11: None, 12: None, 13: None, 15: None, 16: None, 20: None, 21: None,
}
DTYPE_NAMES = {11: "qint8", 12: "quint8", 13: "qint32", 15: "qint16", 16: "quint16", 20: "resource", 21: "variant"}


class BundleError(ValueError):
    """A checkpoint file that is not a readable tensor bundle (the message names the file and what is wrong)."""


# ---- CRC-32C (Castagnoli), vectorised over chunks --------------------------------------------------------

_POLY = 0x82F63B78  # reflected Castagnoli polynomial


def _byte_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_POLY if crc & 1 else 0)
        table[byte] = crc
    return table


_TABLE = _byte_table()
_TABLE_LIST = [int(v) for v in _TABLE]


def _zeros_operator(length: int) -> list[int]:
    """The linear map "feed ``length`` zero bytes" on a raw CRC register, as 32 column images (bit i -> image)."""
    one = []  # one zero byte: r -> table[r & 0xff] ^ (r >> 8)
    for bit in range(32):
        r = 1 << bit
        one.append(_TABLE_LIST[r & 0xFF] ^ (r >> 8))
    result = [1 << bit for bit in range(32)]  # identity
    power = one
    while length:
        if length & 1:
            result = [_apply_columns(power, column) for column in result]
        length >>= 1
        if length:
            power = [_apply_columns(power, column) for column in power]
    return result


def _raw_crc_python(data: bytes, register: int = 0) -> int:
    table = _TABLE_LIST
    for byte in data:
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


_CHUNK = 256  # bytes per lane: lanes run side by side in numpy, then join pairwise (a tree of "shift" tables)


def _apply_columns(columns: list[int], value: int) -> int:
    out = 0
    for bit in range(32):
        if value >> bit & 1:
            out ^= columns[bit]
    return out


_LEVEL_COLUMNS: list[list[int]] = []  # level k: the operator "feed _CHUNK * 2**k zero bytes"
_LEVEL_TABLES: list[np.ndarray] = []  # level k: its four byte tables, (4, 256) uint32


def _level_tables(level: int) -> np.ndarray:
    """Byte tables of the operator "feed ``_CHUNK * 2**level`` zero bytes" (built once, by squaring)."""
    while len(_LEVEL_TABLES) <= level:
        if not _LEVEL_COLUMNS:
            columns = _zeros_operator(_CHUNK)
        else:
            previous = _LEVEL_COLUMNS[-1]
            columns = [_apply_columns(previous, column) for column in previous]
        _LEVEL_COLUMNS.append(columns)
        tables = np.zeros((4, 256), dtype=np.uint32)
        for k in range(4):
            for value in range(1, 256):  # linear: t[v] = t[v without its lowest bit] ^ image of that bit
                low = (value & -value).bit_length() - 1
                tables[k, value] = tables[k, value & (value - 1)] ^ columns[8 * k + low]
        _LEVEL_TABLES.append(tables)
    return _LEVEL_TABLES[level]


def _shift(tables: np.ndarray, registers: np.ndarray) -> np.ndarray:
    return (tables[0][registers & 0xFF] ^ tables[1][(registers >> 8) & 0xFF]
            ^ tables[2][(registers >> 16) & 0xFF] ^ tables[3][registers >> 24])


def crc32c(data: bytes | memoryview) -> int:
    """CRC-32C (Castagnoli) of ``data``, as LevelDB and TensorFlow compute it (init and final xor 0xFFFFFFFF).

    CRC is linear over GF(2): the raw register after ``A || B`` is
    ``Z_|B|(reg(A)) ^ raw(B)``, with ``Z_m`` "feed m zero bytes". Large
    inputs are cut into a power of two of 256-byte lanes whose raw CRCs run
    side by side in numpy, then joined pairwise level by level with the
    tables of ``Z_{256 * 2^k}``: the same value as the byte-by-byte loop.
    """
    data = memoryview(data).cast("B")
    n, pos, register = len(data), 0, 0xFFFFFFFF
    while n - pos >= 8 * _CHUNK:
        lanes = 1 << ((n - pos) // _CHUNK).bit_length() - 1
        body = np.frombuffer(data, dtype=np.uint8, count=lanes * _CHUNK, offset=pos).reshape(lanes, _CHUNK).T.copy()
        registers = np.zeros(lanes, dtype=np.uint32)
        eight = np.uint32(8)
        for column in body:
            registers = _TABLE[(registers ^ column) & 0xFF] ^ (registers >> eight)
        level = 0
        while len(registers) > 1:
            registers = _shift(_level_tables(level), registers[0::2]) ^ registers[1::2]
            level += 1
        register = int(_shift(_level_tables(level), np.array([register], dtype=np.uint32))[0]) ^ int(registers[0])
        pos += lanes * _CHUNK
    return _raw_crc_python(data[pos:], register) ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """LevelDB's masked CRC (stored in tables and bundle entries): rotate right 15, add 0xa282ead8."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """Inverse of :func:`mask_crc`."""
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# ---- protocol-buffer wire format ---------------------------------------------------------------------------


def _varint(buffer: bytes | memoryview, pos: int, where: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buffer):
            raise BundleError(f"{where}: a varint runs past the end of its record (truncated or not a bundle)")
        byte = buffer[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise BundleError(f"{where}: a varint is longer than 10 bytes (not a bundle)")


def _fields(message: bytes | memoryview, where: str) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of each field of a serialized protocol-buffer message."""
    pos = 0
    while pos < len(message):
        key, pos = _varint(message, pos, where)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(message, pos, where)
        elif wire == 1:
            value, pos = bytes(message[pos:pos + 8]), pos + 8
        elif wire == 2:
            length, pos = _varint(message, pos, where)
            value, pos = bytes(message[pos:pos + length]), pos + length
        elif wire == 5:
            value, pos = bytes(message[pos:pos + 4]), pos + 4
        else:
            raise BundleError(f"{where}: protocol-buffer wire type {wire} is not one a bundle uses (not a bundle)")
        if pos > len(message):
            raise BundleError(f"{where}: a field runs past the end of its record (truncated or not a bundle)")
        yield number, wire, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass(frozen=True)
class BundleEntry:
    """Where one tensor lies: dtype name, shape, shard, byte offset and size, masked CRC-32C, sliced or not."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None
    sliced: bool = False

    @property
    def readable(self) -> bool:
        """True when :meth:`TensorBundle.read` can return this tensor (not sliced, a plain dtype)."""
        return not self.sliced and self.dtype in _READABLE


_READABLE = {name for name in DTYPES.values() if name is not None}


def _parse_entry(name: str, message: bytes, where: str) -> BundleEntry:
    dtype_code, shape, shard, offset, size, crc, sliced = 0, [], 0, 0, 0, None, False
    for number, wire, value in _fields(message, where):
        if number == 1 and wire == 0:
            dtype_code = value
        elif number == 2 and wire == 2:
            for dim_number, dim_wire, dim in _fields(value, where):
                if dim_number == 2 and dim_wire == 2:
                    size_value = 0
                    for f_number, f_wire, f_value in _fields(dim, where):
                        if f_number == 1 and f_wire == 0:
                            size_value = _signed64(f_value)
                    shape.append(size_value)
        elif number == 3 and wire == 0:
            shard = value
        elif number == 4 and wire == 0:
            offset = value
        elif number == 5 and wire == 0:
            size = value
        elif number == 6 and wire == 5:
            crc = struct.unpack("<I", value)[0]
        elif number == 7:
            sliced = True
    dtype = DTYPES.get(dtype_code) or DTYPE_NAMES.get(dtype_code, f"DataType {dtype_code}")
    return BundleEntry(name, dtype, tuple(shape), shard, offset, size, crc, sliced)


# ---- the LevelDB table of the index -------------------------------------------------------------------------


def _block_handle(buffer: bytes, pos: int, where: str) -> tuple[int, int, int]:
    offset, pos = _varint(buffer, pos, where)
    size, pos = _varint(buffer, pos, where)
    return offset, size, pos


def _read_block(data: bytes, offset: int, size: int, where: str) -> bytes:
    end = offset + size
    if end + BLOCK_TRAILER > len(data):
        raise BundleError(f"{where}: a block at byte {offset} (size {size}) runs past the end of the file "
                          f"({len(data)} bytes; truncated)")
    block = data[offset:end]
    compression = data[end]
    stored = struct.unpack("<I", data[end + 1:end + BLOCK_TRAILER])[0]
    actual = crc32c(data[offset:end + 1])
    if unmask_crc(stored) != actual:
        raise BundleError(f"{where}: the block at byte {offset} fails its CRC-32C (stored {unmask_crc(stored):#010x}, "
                          f"computed {actual:#010x}): the file is damaged")
    if compression != 0:
        raise BundleError(f"{where}: the block at byte {offset} is compressed (type {compression}); TensorFlow "
                          "writes bundle indexes uncompressed, so this is not a bundle index")
    return block


def _block_entries(block: bytes, where: str) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise BundleError(f"{where}: a block of {len(block)} bytes is too short to hold its restart count")
    restarts = struct.unpack("<I", block[-4:])[0]
    limit = len(block) - 4 - 4 * restarts
    if limit < 0:
        raise BundleError(f"{where}: a block claims {restarts} restart points, more than fit in {len(block)} bytes")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos, where)
        unshared, pos = _varint(block, pos, where)
        value_length, pos = _varint(block, pos, where)
        if shared > len(key) or pos + unshared + value_length > limit:
            raise BundleError(f"{where}: a table entry at byte {pos} is malformed (not a bundle index)")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + value_length]
        pos += value_length


def _read_table(path: Path) -> list[tuple[bytes, bytes]]:
    where = str(path)
    data = path.read_bytes()
    if len(data) < FOOTER_SIZE:
        raise BundleError(f"{where}: {len(data)} bytes, shorter than a table footer ({FOOTER_SIZE}); expected a "
                          "TensorFlow checkpoint .index file")
    footer = data[-FOOTER_SIZE:]
    magic = struct.unpack("<Q", footer[-8:])[0]
    if magic != TABLE_MAGIC:
        raise BundleError(f"{where}: no table magic number at its end (found {magic:#018x}, expected "
                          f"{TABLE_MAGIC:#018x}): not a TensorFlow checkpoint .index file, or truncated")
    _meta_offset, _meta_size, pos = _block_handle(footer, 0, where)
    index_offset, index_size, _pos = _block_handle(footer, pos, where)
    entries: list[tuple[bytes, bytes]] = []
    for _last_key, handle in _block_entries(_read_block(data, index_offset, index_size, where), where):
        offset, size, _ = _block_handle(handle, 0, where)
        entries.extend(_block_entries(_read_block(data, offset, size, where), where))
    return entries


# ---- the bundle ---------------------------------------------------------------------------------------------

class TensorBundle:
    """A tensor-bundle checkpoint; ``TensorBundle(prefix)`` reads and checks its index.

    ``prefix`` is the path without suffix (``.../model.ckpt-300000``).
    ``entries`` maps each tensor name to its :class:`BundleEntry`;
    :meth:`read` returns one tensor as a numpy array after checking its
    CRC-32C. Shards are opened lazily, one at a time.
    """

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = Path(prefix)
        self.index_path = Path(f"{self.prefix}.index")
        if not self.index_path.is_file():
            raise BundleError(f"{self.index_path}: no such file; expected a TensorFlow checkpoint "
                              "(PREFIX.index and PREFIX.data-00000-of-0000N)")
        where = str(self.index_path)
        self.num_shards = 1
        self.entries: dict[str, BundleEntry] = {}
        header_seen = False
        for key, value in _read_table(self.index_path):
            if key == b"":
                header_seen = True
                for number, wire, field_value in _fields(value, where):
                    if number == 1 and wire == 0:
                        self.num_shards = int(field_value)
                    elif number == 2 and wire == 0 and field_value != 0:
                        raise BundleError(f"{where}: the bundle is big-endian; only little-endian bundles are read")
                continue
            name = key.decode("utf-8", errors="replace")
            self.entries[name] = _parse_entry(name, value, f"{where} (entry {name!r})")
        if not header_seen:
            raise BundleError(f"{where}: the table has no bundle header (key ''): not a TensorFlow checkpoint index")
        if self.num_shards < 1:
            raise BundleError(f"{where}: the header says {self.num_shards} data shards; expected at least 1")
        for entry in self.entries.values():
            if not entry.sliced and not 0 <= entry.shard_id < self.num_shards:
                raise BundleError(f"{where}: entry {entry.name!r} lies in shard {entry.shard_id}, but the bundle "
                                  f"has {self.num_shards} shard(s)")
        self._open: tuple[int, bytes] | None = None
        self._verified: set[str] = set()  # tensors whose CRC-32C has been checked (read once, trusted after)

    def shard_path(self, shard: int) -> Path:
        """``prefix.data-{shard:05d}-of-{num_shards:05d}``."""
        return Path(f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}")

    def _shard(self, shard: int) -> bytes:
        if self._open is None or self._open[0] != shard:
            path = self.shard_path(shard)
            if not path.is_file():
                raise BundleError(f"{path}: no such file; the index {self.index_path.name} names "
                                  f"{self.num_shards} data shard(s)")
            self._open = (shard, path.read_bytes())
        return self._open[1]

    def verify(self) -> None:
        """Check the CRC-32C of every tensor, read or not (optimiser slots too); BundleError at the first bad one."""
        for name, entry in sorted(self.entries.items(), key=lambda item: (item[1].shard_id, item[1].offset)):
            if entry.readable:
                self.read(name)

    def read(self, name: str, *, verify: bool = True) -> np.ndarray:
        """Tensor ``name`` as a numpy array (bfloat16 as float32, exactly); BundleError when damaged."""
        if name not in self.entries:
            raise KeyError(f"{self.prefix}: no tensor {name!r} in the bundle")
        entry = self.entries[name]
        if entry.sliced or entry.dtype not in _READABLE:
            what = "a sliced (partitioned) variable" if entry.sliced else f"of dtype {entry.dtype}"
            raise BundleError(f"{self.index_path}: tensor {name!r} is {what}, which vaesim does not read")
        data = self._shard(entry.shard_id)
        path = self.shard_path(entry.shard_id)
        if entry.offset + entry.size > len(data):
            raise BundleError(f"{path}: tensor {name!r} lies at bytes {entry.offset}..{entry.offset + entry.size}, "
                              f"past the end of the file ({len(data)} bytes; truncated)")
        raw = memoryview(data)[entry.offset:entry.offset + entry.size]
        count = int(np.prod(entry.shape, dtype=np.int64)) if entry.shape else 1
        if entry.dtype == "string":
            return _read_strings(raw, count, entry, f"{path}: tensor {name!r}", verify)
        if verify and entry.crc32c is not None and name not in self._verified:
            actual = crc32c(raw)
            if unmask_crc(entry.crc32c) != actual:
                raise BundleError(f"{path}: tensor {name!r} fails its CRC-32C (stored {unmask_crc(entry.crc32c):#010x}, "
                                  f"computed {actual:#010x}): the file is damaged")
            self._verified.add(name)
        if entry.dtype == "bfloat16":
            halves = np.frombuffer(raw, dtype="<u2")
            array = (halves.astype(np.uint32) << np.uint32(16)).view(np.float32)
        else:
            dtype = np.dtype(entry.dtype).newbyteorder("<")
            expected = count * dtype.itemsize
            if entry.size != expected:
                raise BundleError(f"{path}: tensor {name!r} has {entry.size} bytes; a {entry.dtype} tensor of shape "
                                  f"{list(entry.shape)} has {expected}")
            array = np.frombuffer(raw, dtype=dtype).astype(np.dtype(entry.dtype), copy=True)
        if array.size != count:
            raise BundleError(f"{path}: tensor {name!r} holds {array.size} values; shape {list(entry.shape)} "
                              f"needs {count}")
        return array.reshape(entry.shape)


def _read_strings(raw: memoryview, count: int, entry: BundleEntry, where: str, verify: bool) -> np.ndarray:
    """A DT_STRING tensor: ``count`` varint64 lengths, the masked CRC-32C of the lengths, then the bytes.

    TensorFlow checksums the lengths as fixed-width integers (uint32, little-endian), not as the varints it
    stores; the entry's CRC covers those fixed-width lengths, the 4 checksum bytes and the string bytes.
    """
    lengths, pos = [], 0
    for _ in range(count):
        length, pos = _varint(raw, pos, where)
        lengths.append(length)
    if pos + 4 > len(raw):
        raise BundleError(f"{where}: the string lengths run past the entry's {len(raw)} bytes (damaged)")
    fixed = b"".join(struct.pack("<I", n) if n <= 0xFFFFFFFF else struct.pack("<Q", n) for n in lengths)
    stored_lengths_crc = bytes(raw[pos:pos + 4])
    pos += 4
    values = []
    for length in lengths:
        values.append(bytes(raw[pos:pos + length]))
        pos += length
    if pos != len(raw):
        raise BundleError(f"{where}: string lengths add up to {pos} bytes; the entry holds {len(raw)} (damaged)")
    if verify:
        if struct.unpack("<I", stored_lengths_crc)[0] != mask_crc(crc32c(fixed)):
            raise BundleError(f"{where}: the string lengths fail their CRC-32C: the file is damaged")
        if entry.crc32c is not None:
            actual = crc32c(fixed + stored_lengths_crc + b"".join(values))
            if unmask_crc(entry.crc32c) != actual:
                raise BundleError(f"{where} fails its CRC-32C (stored {unmask_crc(entry.crc32c):#010x}, computed "
                                  f"{actual:#010x}): the file is damaged")
    return np.array(values, dtype=object).reshape(entry.shape)
