"""Downloads of the public dataset files: resumable, verified, atomic.

``download_file`` fetches a URL into ``<dest>.part`` (resuming with an HTTP
``Range`` request when a partial file exists), checks the size and SHA-256
when they are known, fsyncs and renames the file to ``dest``. A file that
fails its checksum is deleted, never renamed. Offline, the first connection
fails within ``timeout`` seconds with a :class:`DownloadError` that says
where to get the file and where to put it.

Checksums: SHA-256 and sizes are recorded only where a published value was
found (TensorFlow Datasets' checksum files for Shapes3D and smallNORB). For
dSprites' npz, Cars3D and MPI3D no published SHA-256 is known: the download
is then checked for completeness only, a warning says so, and ``--sha256``
lets the user pin a value.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from vaesim.data.registry import dataset_dir, get_spec
from vaesim.data.sources import ALIASES, RemoteFile, remote_files
from vaesim.utils import sha256_file

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download failed (network, size or checksum); the message says what to do."""


def sources(name: str) -> list[RemoteFile]:
    """Remote files of a dataset (colour/noisy variants use the dSprites file); [] when none."""
    get_spec(name)
    return remote_files(name)


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    size: int | None = None,
    timeout: float = 10.0,
) -> Path:
    """Download ``url`` to ``dest``: resumable (``dest.part`` + Range), verified, atomic rename.

    Returns ``dest``. An existing ``dest`` with the right checksum is kept.
    Raises :class:`DownloadError` for network failures (the partial file is
    kept for a resume), a size or SHA-256 mismatch (the partial file is
    removed).
    """
    dest = Path(dest)
    if dest.exists() and _verified(dest, sha256, size, remove=False):
        logger.info("%s already present and verified", dest)
        return dest
    created = [folder for folder in (dest.parent, *dest.parent.parents) if not folder.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    if size is None or have < size:
        try:
            _fetch(url, part, have, timeout, dest)
        except DownloadError:
            _remove_empty(created)  # a failed (offline) download leaves no empty folder behind
            raise
    if not _verified(part, sha256, size, remove=True):
        raise DownloadError(f"{url}: downloaded file failed verification and was removed; run the download again")
    with open(part, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(part, dest)
    if sha256 is None:
        logger.warning("%s: no published SHA-256 is known; its size was checked only (pass --sha256 to pin one)", dest.name)
    return dest


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders this download created (deepest first) that are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (a kept .part file) or already gone
            return


def _fetch(url: str, part: Path, have: int, timeout: float, dest: Path) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "vaesim"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing left to fetch: the part file is complete
            return
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}; get the file by hand and put it at {dest}") from None
    except (urllib.error.URLError, OSError) as error:
        raise DownloadError(
            f"{url}: could not connect ({getattr(error, 'reason', error)}). Offline? Get the file from {url} "
            f"(another machine, a browser) and put it at {dest}"
        ) from None
    with response:
        mode = "ab" if have and response.status == 206 else "wb"
        if have and mode == "wb":
            logger.info("%s: server ignored the Range request; restarting from byte 0", url)
        written = 0
        try:
            with open(part, mode) as handle:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    handle.write(chunk)
                    written += len(chunk)
        except (OSError, urllib.error.URLError, ValueError) as error:
            raise DownloadError(
                f"{url}: the transfer stopped after {written} bytes ({error}); {part} is kept: rerun to resume"
            ) from None
    expected = response.headers.get("Content-Length")
    if expected is not None and written < int(expected):
        raise DownloadError(f"{url}: the transfer stopped after {written} of {expected} bytes; {part} is kept: rerun to resume")


def _verified(path: Path, sha256: str | None, size: int | None, *, remove: bool) -> bool:
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        if remove:
            path.unlink()
            raise DownloadError(f"{path}: size {actual_size} bytes, expected {size}; the file was removed: download again")
        return False
    if sha256 is not None:
        digest = sha256_file(path)
        if digest != sha256.lower():
            if remove:
                path.unlink()
                raise DownloadError(
                    f"{path}: SHA-256 {digest}, expected {sha256.lower()}; the corrupted file was removed: download again"
                )
            return False
    return True


def check_format(path: Path) -> None:
    """Refuse (and remove) a download that is not a file of its expected format (npz, HDF5, NORB, tar.gz)."""
    name = path.name
    try:
        if name.endswith(".npz"):
            from vaesim.data.npzfile import list_members

            if not list_members(path):
                raise ValueError("no arrays in the archive")
        elif name.endswith(".h5"):
            with open(path, "rb") as handle:
                if handle.read(8) != b"\x89HDF\r\n\x1a\n":
                    raise ValueError("no HDF5 signature")
        elif name.endswith(".tar.gz") or name.endswith(".tgz"):
            with tarfile.open(path, "r:gz") as tar:
                tar.next()
        elif ".mat" in name:
            from vaesim.data.smallnorb import parse_norb_matrix

            parse_norb_matrix(path)
    except (ValueError, OSError, EOFError, tarfile.TarError) as error:
        size = path.stat().st_size
        path.unlink(missing_ok=True)
        raise DownloadError(f"{path}: the download ({size:,} bytes) is not a valid {name.split('.', 1)[-1]} file "
                            f"({error}); it was removed. Check the URL, or pin --sha256 of a file you trust") from None


def extract_cars3d(archive: Path, directory: Path) -> list[Path]:
    """Copy ``car_*_mesh.mat`` members of the Cars3D tar.gz into ``directory`` (atomically; nothing else is extracted)."""
    from vaesim.utils import atomic_path

    written = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                base = os.path.basename(member.name)
                if not (member.isfile() and base.startswith("car_") and base.endswith("_mesh.mat")):
                    continue
                source = tar.extractfile(member)
                with atomic_path(directory / base) as tmp, open(tmp, "wb") as out, contextlib.closing(source):
                    for chunk in iter(lambda: source.read(_CHUNK), b""):
                        out.write(chunk)
                written.append(directory / base)
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DownloadError(f"{archive}: could not read the Cars3D archive ({error}); delete it and download again") from None
    if not written:
        raise DownloadError(f"{archive}: no car_*_mesh.mat files inside; expected the nips2015-analogy-data archive")
    return written


def download_dataset(
    name: str,
    root=None,
    *,
    variant: str | None = None,
    sha256: str | None = None,
    url: str | None = None,
    timeout: float = 10.0,
) -> list[Path]:
    """Fetch every file of a dataset into ``<root>/<folder>``; returns the paths written.

    ``url`` / ``sha256`` override the recorded source of a single-file
    dataset (a mirror, or a checksum the user trusts).
    """
    files = sources(name)
    if not files:
        logger.info("%s needs no download", name)
        return []
    if name == "mpi3d":
        wanted = f"mpi3d_{variant or 'real'}.npz"
        files = [f for f in files if f.filename == wanted]
        if not files:
            raise ValueError(f"variant: expected real, realistic or toy, got {variant!r}")
    if (url or sha256) and len(files) != 1:
        raise ValueError(f"--url/--sha256 apply to single-file datasets; {name} has {len(files)} files")
    directory = dataset_dir(ALIASES.get(name, name), root)
    paths = []
    for remote in files:
        target = directory / remote.filename
        if remote.extract == "cars3d" and len(list(directory.glob("car_*_mesh.mat"))) >= 183:
            paths.extend(sorted(directory.glob("car_*_mesh.mat")))
            continue
        pinned = sha256 or remote.sha256
        path = download_file(
            url or remote.url, target, sha256=pinned,
            size=None if url else remote.size, timeout=timeout,
        )
        if pinned is None:  # nothing vouches for these bytes: at least they must be a file of the right format
            check_format(path)
        if remote.extract == "cars3d":
            paths.extend(extract_cars3d(path, directory))
            path.unlink()
        else:
            paths.append(path)
    return paths

