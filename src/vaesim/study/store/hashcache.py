"""A cache of verified SHA-256 digests, so that a restart does not read the whole store again.

Like git's index: for each file it holds the digest computed from the file's
bytes and the file's stat at that moment (size, mtime and ctime in
nanoseconds, inode, device). A later lookup trusts the cached digest only
while all five are unchanged; any write, truncation, replacement (an atomic
rename gives a new inode) or ``touch`` changes them, and the file is read
again. What the cache cannot see is a change that leaves the stat as it was
(a disk's bit rot, or a write that resets mtime *and* ctime, which needs
root and a changed clock): ``vaesim study verify`` without ``--fast`` reads
every byte and never trusts the cache.

The cache lives in the study directory as ``.hash-cache.json`` (written
atomically, by the runner only, which holds the study's lock); a missing,
unreadable or foreign cache is an empty one.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from vaesim.utils import atomic_write_json, sha256_file

__all__ = ["CACHE_FILE", "HashCache"]

logger = logging.getLogger(__name__)

CACHE_FILE = ".hash-cache.json"
FORMAT = "vaesim-hash-cache"


def _stamp(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]


class HashCache:
    """Verified digests of a study's files by relative path; ``hits``/``misses`` count lookups."""

    def __init__(self, root: str | os.PathLike, entries: dict[str, list] | None = None,
                 values: dict[str, list] | None = None) -> None:
        self.root = Path(root)
        self.entries: dict[str, list] = dict(entries or {})
        self.values: dict[str, list] = dict(values or {})
        self.hits = 0
        self.misses = 0
        self._changed = False

    @classmethod
    def load(cls, root: str | os.PathLike) -> "HashCache":
        """The cache of study ``root`` (empty when there is none or it cannot be read)."""
        path = Path(root) / CACHE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
                raise ValueError(f"format {data.get('format')!r}")
            entries = {str(k): v for k, v in data["files"].items()
                       if isinstance(v, list) and len(v) == 6 and isinstance(v[5], str)}
            values = {str(k): v for k, v in (data.get("values") or {}).items() if isinstance(v, list) and len(v) == 6}
        except FileNotFoundError:
            entries, values = {}, {}
        except (OSError, ValueError, AttributeError) as error:
            logger.info("%s is not a usable hash cache (%s); every file is read", path, error)
            entries, values = {}, {}
        return cls(root, entries, values)

    def _key(self, path: Path) -> str:
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return str(Path(path).resolve())

    def digest(self, path: str | os.PathLike) -> str:
        """SHA-256 of ``path``: the cached one while the file's stat is unchanged, else read and cached.

        Raises what :func:`vaesim.utils.sha256_file` raises (FileNotFoundError, OSError).
        """
        path = Path(path)
        stat = os.stat(path)
        key = self._key(path)
        entry = self.entries.get(key)
        stamp = _stamp(stat)
        if entry is not None and entry[:5] == stamp:
            self.hits += 1
            return entry[5]
        self.misses += 1
        digest = sha256_file(path)
        after = os.stat(path)
        if _stamp(after) == stamp:  # unchanged while it was read: the digest is the file's
            self.entries[key] = [*stamp, digest]
            self._changed = True
        return digest

    def remember(self, path: str | os.PathLike, compute):
        """``compute()`` (a JSON value derived from ``path``'s content alone, e.g. a checked record's field),
        cached like a digest: computed again only when ``path``'s stat changed. Exceptions of ``compute`` pass
        through and nothing is cached."""
        path = Path(path)
        stamp = _stamp(os.stat(path))
        key = self._key(path)
        entry = self.values.get(key)
        if entry is not None and entry[:5] == stamp:
            self.hits += 1
            return entry[5]
        self.misses += 1
        value = compute()
        if _stamp(os.stat(path)) == stamp:
            self.values[key] = [*stamp, value]
            self._changed = True
        return value

    def known(self, path: str | os.PathLike) -> bool:
        """True when ``path``'s digest is cached for its current stat (it would not be read)."""
        try:
            entry = self.entries.get(self._key(Path(path)))
            return entry is not None and entry[:5] == _stamp(os.stat(path))
        except OSError:
            return False

    def save(self) -> None:
        """Write the cache (only entries of files that still exist), when anything changed."""
        if not self._changed:
            return
        kept = {key: entry for key, entry in self.entries.items() if (self.root / key).is_file()}
        values = {key: entry for key, entry in self.values.items() if (self.root / key).is_file()}
        atomic_write_json(self.root / CACHE_FILE, {"format": FORMAT, "version": 1, "files": kept, "values": values})
        self._changed = False
