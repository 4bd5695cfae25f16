"""Where a dataset's files live and whether they are all there.

Loaders and the registry both use these helpers; this module looks up no
dataset by name (each caller passes its own folder and file patterns), so a
loader never imports the registry: imports run registry -> loaders -> files
-> sources.
"""

from __future__ import annotations

import math
import os
import shlex
from pathlib import Path

from vaesim.data.sources import source_hint

#: deflate (zip, gzip) cannot expand data by more than about 1032:1
MAX_DEFLATE_RATIO = 1100


def default_root() -> Path:
    """``$VAESIM_DATA``, else ``$XDG_CACHE_HOME/vaesim/data``, else ``~/.cache/vaesim/data``."""
    env = os.environ.get("VAESIM_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    # the XDG base directory spec: a relative $XDG_CACHE_HOME is invalid and ignored
    base = Path(cache).expanduser() if cache and Path(cache).expanduser().is_absolute() else Path.home() / ".cache"
    return base / "vaesim" / "data"


def dataset_folder(folder: str, root: str | os.PathLike | None = None) -> Path:
    """Folder of a dataset's files: ``<root>/<folder>`` (``root`` None: :func:`default_root`)."""
    base = Path(root).expanduser() if root is not None else default_root()
    return base / folder


def match_files(directory: Path, patterns: tuple[str, ...]) -> list[tuple[str, list[Path]]]:
    """(pattern, files found) for each expected file name or glob pattern in ``directory``.

    A plain file name also matches its ``.gz`` form.
    """
    found = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matches = sorted(directory.glob(pattern))
        else:
            matches = [p for p in (directory / pattern, directory / (pattern + ".gz")) if p.exists()][:1]
        found.append((pattern, matches))
    return found


def check_declared_size(path: Path, what: str, shape: tuple[int, ...], itemsize: int, stored: int, *,
                        compressed: bool) -> int:
    """Bytes ``shape`` x ``itemsize`` declares (exact integer), refused before any allocation when they cannot fit.

    ``stored``: bytes the file really holds for it (compressed bytes when
    ``compressed``). A header that declares more than the file can hold
    (a truncated file, or a lying header: a 1,672-byte file declaring 1.5e8
    images) raises ValueError naming the file, the declared shape and the sizes.
    """
    if any(int(d) < 0 for d in shape):
        raise ValueError(f"{path}: {what} declares negative dimensions {tuple(shape)}")
    declared = math.prod(int(d) for d in shape) * int(itemsize)  # Python integers: no overflow
    limit = stored * MAX_DEFLATE_RATIO if compressed else stored
    if declared > limit:
        raise ValueError(
            f"{path}: {what} declares shape {tuple(int(d) for d in shape)} ({declared:,} bytes), but the file holds "
            f"{stored:,} {'compressed ' if compressed else ''}bytes for it: the header is wrong or the file is "
            "truncated; download it again")
    return declared


def require_examples(path: Path, what: str, count: int) -> None:
    """An empty dataset is refused by name (instead of an IndexError later)."""
    if count <= 0:
        raise ValueError(f"{path}: {what} holds no examples; expected a non-empty dataset file")


def require_files_in(name: str, directory: Path, patterns: tuple[str, ...], min_count: int = 1) -> list[Path]:
    """Paths of dataset ``name``'s files in ``directory``; FileNotFoundError naming what is missing and the fix.

    ``min_count``: how many files each glob pattern must match.
    """
    paths, missing = [], []
    for pattern, matches in match_files(directory, patterns):
        if not matches:
            missing.append(pattern)
        elif len(matches) < min_count:
            missing.append(f"{pattern} ({len(matches)} of {min_count} files present)")
        paths.extend(matches)
    if missing:
        raise FileNotFoundError(
            f"dataset {name!r}: missing {', '.join(missing)} in {directory}. "
            f"Fix: `vaesim data download {name} --data-root {shlex.quote(str(directory.parent))}`, "
            f"or get the files from "
            f"{source_hint(name)} and put them in {directory}"
            + ("; or use 'dsprites-procedural' (no download)" if name == "dsprites" else "")
        )
    return paths
