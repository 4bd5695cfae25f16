"""Checksummed files of a study directory: how every stage writes an output and how it is trusted again.

Every output is written atomically, data file first and its
``<file>.sha256`` sidecar last (:func:`write_checksum`), so a killed task
leaves nothing that a later run trusts; :func:`verified` checks a file
against its sidecar, so a truncated or flipped file is detected, reported
and recomputed instead of being read. :func:`write_table` writes a Parquet
table the store and ``vaesim query`` read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vaesim.study.plan import checksum_path
from vaesim.utils import atomic_path, atomic_write_text, sha256_file

logger = logging.getLogger(__name__)


def write_checksum(path: str | os.PathLike) -> None:
    """Write ``path``'s SHA-256 sidecar (after ``path`` itself is in place)."""
    atomic_write_text(checksum_path(str(path)), sha256_file(path) + "\n")


def file_exists(path: str | os.PathLike) -> bool:
    """True when ``path`` is a file; False also when it cannot be looked at (a folder above it this user may not
    enter: a rerun sets that folder aside and recomputes what it held)."""
    try:
        return Path(path).is_file()
    except OSError:
        return False


def is_written(path: str | os.PathLike) -> bool:
    """True when ``path`` and its checksum sidecar both exist (not verified)."""
    return file_exists(path) and file_exists(checksum_path(str(path)))


def verified(path: str | os.PathLike, cache=None) -> bool:
    """True when ``path`` exists and matches its sidecar; logs a warning naming a bad file.

    ``cache``: a :class:`vaesim.study.store.hashcache.HashCache` to take an unchanged file's digest from.
    """
    path = Path(path)
    sidecar = Path(checksum_path(str(path)))
    if not file_exists(path) or not file_exists(sidecar):
        return False
    try:
        expected = sidecar.read_text().strip()
        actual = cache.digest(path) if cache is not None else sha256_file(path)
    except OSError as error:  # unreadable by this user (a rerun sets it aside), or an I/O error
        logger.warning("cannot read %s or its sidecar (%s); it is not trusted and a rerun recomputes it",
                       path, error.strerror or error)
        return False
    if actual != expected:
        logger.warning("corrupt file %s: SHA-256 %s does not match its sidecar %s; it will be recomputed",
                       path, actual[:12], expected[:12])
        return False
    return True


def unreadable(path: Path, *, want_dir: bool) -> str | None:
    """What this user may not do with ``path`` that a run needs (None: nothing is missing).

    A run reads every file it keeps and reads, enters and writes every folder;
    a file or folder without those permissions (``chmod 000``, another owner)
    cannot be trusted or repaired in place, so it is set aside like an entry
    of the wrong kind. (For root, :func:`os.access` grants everything.)
    """
    if want_dir:
        if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
            return "a folder this user cannot read, enter or write"
    elif not os.access(path, os.R_OK):
        return "a file this user cannot read"
    return None


def discard(path: str | os.PathLike) -> None:
    """Remove ``path`` and its sidecar (a corrupt or stale output)."""
    for victim in (Path(path), Path(checksum_path(str(path)))):
        victim.unlink(missing_ok=True)


def write_table(path: str | os.PathLike, frame: pd.DataFrame, schema: pa.Schema | None = None,
                *, checksum: bool = False) -> Path:
    """Write ``frame`` as Parquet atomically (and its checksum sidecar if asked).

    Float NaN stays NaN (pandas' conversion would store it as NULL, and
    ``isnan(score)`` in SQL would then find none of the NaN scores). Float
    columns are written without min/max statistics: those skip NaN, and
    DuckDB trusts them to fold ``isnan(score)`` to false.
    """
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    for index, field in enumerate(table.schema):
        if pa.types.is_floating(field.type) and field.name in frame:
            values = pa.array(frame[field.name].to_numpy(dtype=field.type.to_pandas_dtype()), type=field.type,
                              from_pandas=False)
            table = table.set_column(index, field, values)
    plain = [field.name for field in table.schema if not pa.types.is_floating(field.type)]
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, write_statistics=plain)
    if checksum:
        write_checksum(path)
    return Path(path)
