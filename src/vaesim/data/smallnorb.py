"""smallNORB (LeCun et al. 2004): the NORB binary matrix files, both splits.

Files (``.mat`` or ``.mat.gz``), per split ``training`` (instances 4, 6, 7, 8,
9) and ``testing`` (0, 1, 2, 3, 5):
``smallnorb-5x46789x9x18x6x2x96x96-training-{dat,cat,info}.mat`` and
``smallnorb-5x01235x9x18x6x2x96x96-testing-...``.

NORB binary matrix format (cs.nyu.edu/~ylclab/data/norb-v1.0-small/): a
little-endian header of int32 ``magic``, int32 ``ndim``, then ``max(3,
ndim)`` int32 dimensions (unused trailing ones are 1), then the data in
C order. Magic codes: 0x1E3D4C51 float32, 0x1E3D4C52 packed, 0x1E3D4C53
float64, 0x1E3D4C54 int32, 0x1E3D4C55 uint8, 0x1E3D4C56 int16.

* ``dat``: uint8 (24300, 2, 96, 96), stereo pair; the left camera ``[:, 0]``
  is used, resized to 64x64 with Pillow's LANCZOS filter (as the references)
  (:func:`vaesim.data.grid.resize_uint8`).
* ``cat``: int32 (24300,) category 0..4.
* ``info``: int32 (24300, 4): instance 0..9, elevation 0..8, azimuth 0, 2, ..,
  34 (divided by 2 -> 0..17), lighting 0..5.

Factors: category 5, elevation 9, azimuth 18, lighting 6 (as
disentanglement_lib). The instance is a nuisance variable: each factor
combination has 10 images (one per instance, 48600 images in all);
``index_of`` / ``images_for_factors`` draw the instance with the given
generator, ``ds[i]`` returns image i with its four factors, and
``instances`` holds the instance of each item.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np

from vaesim.data.base import GroundTruthDataset
from vaesim.data.grid import resize_uint8

logger = logging.getLogger(__name__)

MAGIC_DTYPES = {
    0x1E3D4C51: np.dtype("<f4"),
    0x1E3D4C53: np.dtype("<f8"),
    0x1E3D4C54: np.dtype("<i4"),
    0x1E3D4C55: np.dtype("u1"),
    0x1E3D4C56: np.dtype("<i2"),
}
MAGIC_OF = {"uint8": 0x1E3D4C55, "int32": 0x1E3D4C54}
SPLITS = {"training": "smallnorb-5x46789x9x18x6x2x96x96-training", "testing": "smallnorb-5x01235x9x18x6x2x96x96-testing"}
PARTS = ("dat", "cat", "info")
FOLDER = "smallnorb"  # below the data root
FACTOR_NAMES = ("category", "elevation", "azimuth", "lighting")
FACTOR_SIZES = (5, 9, 18, 6)


def filenames() -> list[str]:
    """The six ``.mat`` file names (both splits)."""
    return [f"{stem}-{part}.mat" for stem in SPLITS.values() for part in PARTS]


def _read_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as handle:
                return handle.read()
        except (OSError, EOFError) as error:
            raise ValueError(f"{path}: not a readable gzip file ({error}): truncated or corrupted, download it again") from None
    return path.read_bytes()


def parse_norb_matrix(path: str | Path, *, expect_dtype: str | None = None) -> np.ndarray:
    """Parse one NORB binary matrix file -> numpy array with the header's shape.

    Raises ValueError naming the file when the magic code is unknown or not
    the expected type, the header is short, or the data is truncated.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 8:
        raise ValueError(f"{path}: expected a NORB matrix header (at least 20 bytes), found {len(raw)} bytes")
    magic, ndim = np.frombuffer(raw[:8], dtype="<i4").tolist()
    magic &= 0xFFFFFFFF
    if magic not in MAGIC_DTYPES:
        raise ValueError(
            f"{path}: unknown NORB magic code {magic:#010x}, expected one of "
            f"{', '.join(f'{m:#010x}' for m in MAGIC_DTYPES)} (is this a smallNORB .mat file?)"
        )
    if expect_dtype is not None and magic != MAGIC_OF[expect_dtype]:
        raise ValueError(f"{path}: magic code {magic:#010x} is not {expect_dtype} ({MAGIC_OF[expect_dtype]:#010x})")
    if not 0 <= ndim <= 16:
        raise ValueError(f"{path}: NORB header has ndim={ndim}, expected 0..16")
    header_dims = max(3, ndim)
    header_len = 8 + 4 * header_dims
    if len(raw) < header_len:
        raise ValueError(f"{path}: NORB header needs {header_len} bytes, the file has {len(raw)}: truncated")
    dims = np.frombuffer(raw[8:header_len], dtype="<i4").tolist()[:ndim]
    if any(d < 0 for d in dims):
        raise ValueError(f"{path}: NORB header has negative dimensions {dims}")
    dtype = MAGIC_DTYPES[magic]
    needed = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header_len < needed:
        raise ValueError(
            f"{path}: NORB matrix {tuple(dims)} {dtype} needs {needed} data bytes, found {len(raw) - header_len}: truncated"
        )
    return np.frombuffer(raw, dtype=dtype, count=needed // dtype.itemsize, offset=header_len).reshape(dims)


def norb_header(shape: tuple[int, ...], dtype: str) -> bytes:
    """Header bytes for a NORB matrix of ``shape`` and ``dtype`` in {"uint8", "int32"} (for writers and tests)."""
    dims = list(shape) + [1] * max(0, 3 - len(shape))
    return np.array([MAGIC_OF[dtype], len(shape), *dims], dtype="<i4").tobytes()


def _find(directory: Path, name: str) -> Path:
    for candidate in (directory / name, directory / (name + ".gz")):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{directory / name}: not found (nor .gz)")


def load_split(directory: Path, stem: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One split -> (left images uint8 (N, 96, 96), category (N,), info (N, 4))."""
    dat_path, cat_path, info_path = (_find(directory, f"{stem}-{part}.mat") for part in PARTS)
    dat = parse_norb_matrix(dat_path, expect_dtype="uint8")
    cat = parse_norb_matrix(cat_path, expect_dtype="int32").reshape(-1)
    info = parse_norb_matrix(info_path, expect_dtype="int32")
    if dat.ndim != 4 or dat.shape[1] != 2 or dat.shape[2] != dat.shape[3]:
        raise ValueError(f"{dat_path}: image matrix has shape {dat.shape}, expected (N, 2, H, H) (stereo pairs)")
    if info.ndim != 2 or info.shape[1] != 4 or info.shape[0] != dat.shape[0] or cat.shape[0] != dat.shape[0]:
        raise ValueError(
            f"{info_path}: info shape {info.shape} / {cat_path.name} length {cat.shape[0]} do not match "
            f"{dat.shape[0]} images: expected ({dat.shape[0]}, 4) and ({dat.shape[0]},)"
        )
    return np.ascontiguousarray(dat[:, 0]), cat, info  # copy: frees the right camera and the raw bytes


class SmallNORB(GroundTruthDataset):
    name = "smallnorb"
    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES
    num_channels = 1
    description = "smallNORB (both splits, left camera, 64x64): toys under varying pose and light"

    def __init__(self, root: str | Path | None = None, *, directory: str | Path | None = None):
        from vaesim.data.files import dataset_folder, require_files_in

        if directory is None:
            directory = dataset_folder(FOLDER, root)
            require_files_in("smallnorb", directory, tuple(filenames()))
        self.directory = Path(directory)
        images, tables, instances = [], [], []
        for stem in SPLITS.values():
            left, cat, info = load_split(self.directory, stem)
            table = np.stack([cat, info[:, 1], info[:, 2] // 2, info[:, 3]], axis=1).astype(np.int64)
            bad = (table < 0) | (table >= np.asarray(FACTOR_SIZES))
            if bad.any() or (info[:, 2] % 2 != 0).any():
                row = int(np.argmax(bad.any(axis=1) | (info[:, 2] % 2 != 0)))
                raise ValueError(
                    f"{self.directory}/{stem}: factors (category, elevation, azimuth, lighting) = "
                    f"{(int(cat[row]), *info[row, 1:].tolist())} at row {row} are outside "
                    f"category 0..4, elevation 0..8, azimuth 0,2,..,34, lighting 0..5"
                )
            images.append(left)
            tables.append(table)
            instances.append(info[:, 0].astype(np.int64))
        stacked = np.concatenate(images)
        self._images = resize_uint8(stacked[:, None])  # (N, 1, 64, 64)
        self.instances = np.concatenate(instances)
        self._set_factor_table(np.concatenate(tables))

    def _uint8_images(self, indices: np.ndarray) -> np.ndarray:
        return self._images[indices]
