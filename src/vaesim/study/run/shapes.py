"""Study entries of the wrong kind: a folder replaced by a file, a file by a folder, a broken symlink, an
entry this user cannot read.

Before a run writes anything, every planned output and every folder above
it is checked. An entry of the wrong kind (a plain file where ``results/``
belongs, a folder where ``runs.parquet`` belongs, a symlink where vaesim
writes a file, a symlink that leads nowhere or to the wrong kind, a file or
folder this user may not read) is moved into ``set-aside/`` inside the
study, never deleted, with one warning line each; the run then recomputes
what belongs there. A symlinked folder that leads to a real folder (``runs/``
on another disk) is kept.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path, PurePosixPath

from vaesim.study.stages.files import unreadable

logger = logging.getLogger(__name__)

SET_ASIDE = "set-aside"

__all__ = ["SET_ASIDE", "set_aside_wrong_kinds"]


def set_aside_wrong_kinds(out_dir: Path, outputs: list[str]) -> list[str]:
    """Move every entry of the wrong kind among ``outputs`` (paths relative to ``out_dir``) and their folders.

    Returns one line per entry moved (also logged as a warning). Only called while holding the study's lock.
    """
    folders, files = set(), set()
    for output in outputs:
        parts = PurePosixPath(output).parts
        files.add(output)
        folders.update(str(PurePosixPath(*parts[:i])) for i in range(1, len(parts)))
    moved = []
    for folder in sorted(folders, key=lambda f: (f.count("/"), f)):  # outer folders first
        line = _check(out_dir, folder, want_dir=True)
        if line:
            moved.append(line)
    for name in sorted(files):
        line = _check(out_dir, name, want_dir=False)
        if line:
            moved.append(line)
    return moved


def _check(out_dir: Path, name: str, *, want_dir: bool) -> str | None:
    path = out_dir / name
    if not os.path.lexists(path):
        return None
    if path.is_symlink():
        leads_to = os.path.realpath(path)
        if want_dir and os.path.isdir(leads_to):
            return None  # a folder kept elsewhere on purpose
        what = (f"a symlink to {leads_to}, which does not exist" if not os.path.lexists(leads_to)
                else f"a symlink to {leads_to}" + ("" if want_dir else " (vaesim writes this file itself)"))
    elif want_dir and not path.is_dir():
        what = "a file where a folder belongs"
    elif not want_dir and path.is_dir():
        what = "a folder where a file belongs"
    elif not want_dir and not path.is_file():
        what = "not a regular file (a FIFO, device or socket)"
    elif refused := unreadable(path, want_dir=want_dir):
        what = refused
    else:
        return None
    target = _free_name(out_dir / SET_ASIDE / name)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(path, target)
    except PermissionError:
        # Moving a folder to another parent rewrites its "..": that needs write permission on the folder itself.
        # An owner may grant it; the folder's content is not touched.
        if not (path.is_dir() and path.lstat().st_uid == os.geteuid()):
            raise PermissionError(f"{path} is {what} and cannot be moved aside by this user; fix its permissions "
                                  f"(or move it away) and rerun") from None
        os.chmod(path, path.lstat().st_mode | 0o700)
        os.replace(path, target)
    line = (f"{path} was {what}: moved to {target.relative_to(out_dir)} (kept, not read); "
            "this run recomputes what belongs there")
    logger.warning(line)
    return line


def _free_name(target: Path) -> Path:
    if not os.path.lexists(target):
        return target
    for k in range(1, 10_000):
        candidate = target.with_name(f"{target.name}.{k}")
        if not os.path.lexists(candidate):
            return candidate
    raise FileExistsError(f"{target}: too many entries set aside under this name; clear {target.parent}")
