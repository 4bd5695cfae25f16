"""Where a dataset's files live and whether they are all there.

Loaders and the registry both use these helpers; this module looks up no
dataset by name (each caller passes its own folder and file patterns), so a
loader never imports the registry: imports run registry -> loaders -> files.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_root() -> Path:
    """``$VAESIM_DATA`` or ``~/.cache/vaesim/data``."""
    env = os.environ.get("VAESIM_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vaesim" / "data"


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
        from vaesim.data.download import source_hint

        raise FileNotFoundError(
            f"dataset {name!r}: missing {', '.join(missing)} in {directory}. "
            f"Fix: `vaesim data download {name} --root {directory.parent}`, or get the files from "
            f"{source_hint(name)} and put them in {directory}"
            + ("; or use 'dsprites-procedural' (no download)" if name == "dsprites" else "")
        )
    return paths
