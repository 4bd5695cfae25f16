"""Safe reading of ``.npz`` archives: headers first, never unpickle.

An ``.npz`` is a zip of ``.npy`` members. We read each member's header
(``numpy.lib.format``) before its data, refuse object dtypes (a pickle) with
a clear error, and never touch members we do not need (dSprites' ``metadata``
is a Python-2 pickle). Large members are streamed in row chunks, or
memory-mapped when stored uncompressed.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from vaesim.data.files import check_declared_size, require_examples

_LOCAL_HEADER_SIZE = 30


@dataclass(frozen=True)
class NpyMember:
    """Header of one ``.npy`` member of an ``.npz``."""

    key: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    compressed: bool
    data_offset: int | None  # byte offset of the array data in the .npz when stored uncompressed


def _open_zip(path: Path) -> zipfile.ZipFile:
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(
            f"{path}: expected an .npz (zip) archive, found an unreadable file ({error}); "
            "it is probably truncated or corrupted: download it again"
        ) from None


def _read_header(path: Path, key: str, stream) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    except (ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: member {key!r} is not a valid .npy array ({error})") from None
    return tuple(int(s) for s in shape), np.dtype(dtype), bool(fortran), stream.tell() if hasattr(stream, "tell") else -1


def list_members(path: str | Path) -> dict[str, NpyMember]:
    """Headers of every ``.npy`` member (reads no array data, unpickles nothing)."""
    path = Path(path)
    members: dict[str, NpyMember] = {}
    with _open_zip(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[: -len(".npy")]
            with archive.open(info) as stream:
                shape, dtype, fortran, _ = _read_header(path, key, stream)
                header_len = stream.tell()
            compressed = info.compress_type != zipfile.ZIP_STORED
            # The zip's own sizes must fit the file, and the array header must fit the member.
            check_declared_size(path, f"zip member {info.filename!r}", (info.file_size,), 1,
                                info.compress_size if compressed else path.stat().st_size, compressed=compressed)
            if not dtype.hasobject:  # an object array holds a pickle: require_member refuses it by name
                check_declared_size(path, f"array {key!r}", shape, dtype.itemsize, info.file_size - header_len,
                                    compressed=False)
            offset = None
            if info.compress_type == zipfile.ZIP_STORED:
                with open(path, "rb") as raw:
                    raw.seek(info.header_offset)
                    local = raw.read(_LOCAL_HEADER_SIZE)
                    name_len = int.from_bytes(local[26:28], "little")
                    extra_len = int.from_bytes(local[28:30], "little")
                offset = info.header_offset + _LOCAL_HEADER_SIZE + name_len + extra_len + header_len
            members[key] = NpyMember(key, shape, dtype, fortran, info.compress_type != zipfile.ZIP_STORED, offset)
    return members


def require_member(
    path: str | Path,
    members: dict[str, NpyMember],
    key: str,
    *,
    ndim: int | None = None,
    trailing: tuple[int, ...] | None = None,
    kinds: str = "ui",
) -> NpyMember:
    """Check one member's presence, dtype kind and shape; raise a clear ValueError otherwise."""
    path = Path(path)
    if key not in members:
        raise ValueError(f"{path}: expected an array {key!r} in the archive, found only {sorted(members)}")
    member = members[key]
    if member.dtype.hasobject:
        raise ValueError(
            f"{path}: array {key!r} holds Python objects (a pickle), expected numeric data; "
            "vaesim never unpickles data files: use the official file"
        )
    if member.dtype.kind not in kinds:
        raise ValueError(f"{path}: array {key!r} has dtype {member.dtype}, expected kind {kinds!r} (integer/float)")
    if ndim is not None and len(member.shape) != ndim:
        raise ValueError(f"{path}: array {key!r} has shape {member.shape}, expected {ndim} dimensions")
    if trailing is not None and member.shape[len(member.shape) - len(trailing):] != trailing:
        raise ValueError(f"{path}: array {key!r} has shape {member.shape}, expected (N, {', '.join(map(str, trailing))})")
    if member.shape:
        require_examples(path, f"array {key!r}", member.shape[0])
    return member


def read_array(path: str | Path, member: NpyMember) -> np.ndarray:
    """Read a whole member (allow_pickle=False)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            return archive[member.key]
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: could not read array {member.key!r} ({error}); the file is corrupted or truncated") from None


def memmap_array(path: str | Path, member: NpyMember) -> np.ndarray | None:
    """Memory-map an uncompressed C-order member read-only; None when compressed."""
    if member.compressed or member.fortran_order or member.data_offset is None:
        return None
    path = Path(path)
    needed = member.data_offset + int(np.prod(member.shape)) * member.dtype.itemsize
    if path.stat().st_size < needed:
        raise ValueError(f"{path}: array {member.key!r} needs {needed} bytes, the file has {path.stat().st_size}: truncated")
    return np.memmap(path, dtype=member.dtype, mode="r", offset=member.data_offset, shape=member.shape)


def iter_rows(path: str | Path, member: NpyMember, rows_per_chunk: int) -> Iterator[np.ndarray]:
    """Stream a C-order member in chunks of rows along axis 0 (bounded memory)."""
    path = Path(path)
    if member.fortran_order:
        yield read_array(path, member)
        return
    row_shape = member.shape[1:]
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * member.dtype.itemsize
    remaining = member.shape[0]
    with _open_zip(path) as archive, archive.open(member.key + ".npy") as stream:
        _read_header(path, member.key, stream)
        while remaining > 0:
            count = min(rows_per_chunk, remaining)
            try:
                data = stream.read(count * row_bytes)
            except (zipfile.BadZipFile, EOFError, OSError) as error:
                raise ValueError(f"{path}: array {member.key!r} could not be read ({error}): corrupted or truncated") from None
            if len(data) != count * row_bytes:
                raise ValueError(
                    f"{path}: array {member.key!r} ended early ({len(data)} of {count * row_bytes} bytes in a chunk): truncated"
                )
            yield np.frombuffer(data, dtype=member.dtype).reshape((count, *row_shape))
            remaining -= count
