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
from dataclasses import dataclass
from pathlib import Path

from vaesim.utils import sha256_file

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download failed (network, size or checksum); the message says what to do."""


@dataclass(frozen=True)
class RemoteFile:
    url: str
    filename: str
    sha256: str | None = None  # published value, or None when unknown
    size: int | None = None
    extract: str | None = None  # "cars3d": pull car_*_mesh.mat out of the tar.gz


_NORB = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
# Source of the smallNORB and Shapes3D sizes and SHA-256 values:
# tensorflow/datasets, tensorflow_datasets/datasets/{smallnorb,shapes3d}/checksums.tsv.
SOURCES: dict[str, list[RemoteFile]] = {
    "dsprites": [
        RemoteFile(
            "https://github.com/deepmind/dsprites-dataset/raw/master/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
            "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
        )
    ],
    "shapes3d": [
        RemoteFile(
            "https://storage.googleapis.com/3d-shapes/3dshapes.h5",
            "3dshapes.h5",
            "0a0f6ed98baff276a50f3a081a7434d788da63cb135a98189b2a5b5769be1785",
            267573662,
        )
    ],
    "smallnorb": [
        RemoteFile(_NORB + name, name, sha, size)
        for name, size, sha in [
            ("smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat.gz", 131896188, "5ffd6272a07d32695ee1082a26a41a93a37aab8c28da047f8c34ed348d214873"),
            ("smallnorb-5x46789x9x18x6x2x96x96-training-cat.mat.gz", 348, "2784e542c1922060691090952b6cd6278879a216c90f81476f0f00256d42cdaa"),
            ("smallnorb-5x46789x9x18x6x2x96x96-training-info.mat.gz", 71052, "de7eb932ebe7a4ee16217fead60660d0eb3d23632c2f4d1c51f88c501c17bf32"),
            ("smallnorb-5x01235x9x18x6x2x96x96-testing-dat.mat.gz", 130799817, "cf7104eed3e51174d2f65b66d1e5878b9da233b886f161b0d88f4510ba2c7474"),
            ("smallnorb-5x01235x9x18x6x2x96x96-testing-cat.mat.gz", 347, "ecaf6d5bb8c3bc5eab9cf0258f6d2198dd474e016e374836fc097f2e5ff509ff"),
            ("smallnorb-5x01235x9x18x6x2x96x96-testing-info.mat.gz", 10428, "16adf314226327ee006d1a44db8cfef52773c06c829951d5653a9f6f310248a2"),
        ]
    ],
    "cars3d": [
        RemoteFile("http://www.scottreed.info/files/nips2015-analogy-data.tar.gz", "nips2015-analogy-data.tar.gz", extract="cars3d")
    ],
    "mpi3d": [
        RemoteFile(
            f"https://storage.googleapis.com/disentanglement_dataset/Final_Dataset/mpi3d_{variant}.npz",
            f"mpi3d_{variant}.npz",
        )
        for variant in ("real", "realistic", "toy")
    ],
}
_ALIASES = {"color-dsprites": "dsprites", "noisy-dsprites": "dsprites"}


def sources(name: str) -> list[RemoteFile]:
    """Remote files of a dataset (colour/noisy variants use the dSprites file); [] when none."""
    from vaesim.data.registry import get_spec

    get_spec(name)
    return SOURCES.get(_ALIASES.get(name, name), [])


def source_hint(name: str) -> str:
    """Where a dataset's files come from (base URLs), for error messages; reads no registry."""
    found = SOURCES.get(_ALIASES.get(name, name), [])
    return ", ".join(sorted({f.url.rsplit("/", 1)[0] + "/" for f in found})) if found else "(no download: built in)"


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
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and _verified(dest, sha256, size, remove=False):
        logger.info("%s already present and verified", dest)
        return dest
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    if size is None or have < size:
        _fetch(url, part, have, timeout, dest)
    if not _verified(part, sha256, size, remove=True):
        raise DownloadError(f"{url}: downloaded file failed verification and was removed; run the download again")
    with open(part, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(part, dest)
    if sha256 is None:
        logger.warning("%s: no published SHA-256 is known; its size was checked only (pass --sha256 to pin one)", dest.name)
    return dest


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
    from vaesim.data.registry import dataset_dir

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
    directory = dataset_dir(_ALIASES.get(name, name), root)
    paths = []
    for remote in files:
        target = directory / remote.filename
        if remote.extract == "cars3d" and len(list(directory.glob("car_*_mesh.mat"))) >= 183:
            paths.extend(sorted(directory.glob("car_*_mesh.mat")))
            continue
        path = download_file(
            url or remote.url, target, sha256=sha256 or remote.sha256,
            size=None if url else remote.size, timeout=timeout,
        )
        if remote.extract == "cars3d":
            paths.extend(extract_cars3d(path, directory))
            path.unlink()
        else:
            paths.append(path)
    return paths

