"""Cars3D (Reed et al. 2015): ``car_*_mesh.mat`` files, one per car model.

Each MATLAB v5 file holds ``im``: uint8 (128, 128, 3, 24, 4) = (H, W, RGB,
azimuth, elevation). Files are taken in sorted name order (183 in the
official archive ``nips2015-analogy-data.tar.gz``, folder ``data/cars``).
Factors: elevation 4, azimuth 24, object 183 (disentanglement_lib's order);
item order is C-order over (elevation, azimuth, object), object fastest:
item (e, a, o) is ``im[:, :, :, a, e]`` of the o-th file. Images are resized
to 64x64 with Pillow's LANCZOS filter, as the references (:func:`resize_uint8`).
``scipy.io.loadmat`` reads only the ``im`` variable and executes nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vaesim.data.base import GroundTruthDataset
from vaesim.data.grid import resize_uint8

logger = logging.getLogger(__name__)

FOLDER = "cars3d"  # below the data root
PATTERN = "car_*_mesh.mat"
MODEL_COUNT = 183  # files (car models) in the official archive
FACTOR_NAMES = ("elevation", "azimuth", "object")
FACTOR_SIZES = (4, 24, 183)


def read_mesh(path: Path) -> np.ndarray:
    """One car file -> uint8 (elevation, azimuth, 3, H, W)."""
    import scipy.io

    with open(path, "rb") as handle:
        header = handle.read(128)
    if header.startswith(b"MATLAB 7.3"):
        raise ValueError(f"{path}: a MATLAB v7.3 (HDF5) file, expected the MATLAB v5 format of the official Cars3D files")
    try:
        content = scipy.io.loadmat(path, variable_names=["im"])
    except (ValueError, OSError, TypeError, IndexError, EOFError, KeyError) as error:  # scipy's errors on bad or cut files
        raise ValueError(f"{path}: expected a MATLAB v5 file with 'im', could not read it ({error}): download it again") from None
    if "im" not in content:
        found = sorted(name for name, _, _ in scipy.io.whosmat(path))
        raise ValueError(f"{path}: expected a variable 'im', found {found}")
    im = content["im"]
    if im.ndim != 5 or im.shape[2] != 3 or im.shape[0] != im.shape[1]:
        raise ValueError(f"{path}: 'im' has shape {im.shape}, expected (H, H, 3, azimuth, elevation) e.g. (128, 128, 3, 24, 4)")
    if im.dtype != np.uint8:
        raise ValueError(f"{path}: 'im' has dtype {im.dtype}, expected uint8")
    return np.ascontiguousarray(im.transpose(4, 3, 2, 0, 1))


class Cars3D(GroundTruthDataset):
    name = "cars3d"
    factor_names = FACTOR_NAMES
    num_channels = 3
    description = "Cars3D: renderings of 183 car models at 4 elevations x 24 azimuths"

    def __init__(self, root: str | Path | None = None, *, directory: str | Path | None = None):
        from vaesim.data.files import dataset_folder, require_files_in

        if directory is None:
            directory = dataset_folder(FOLDER, root)
            require_files_in("cars3d", directory, (PATTERN,), min_count=MODEL_COUNT)
        self.directory = Path(directory)
        self.files = sorted(self.directory.glob(PATTERN))
        if not self.files:
            raise FileNotFoundError(f"{self.directory}: no {PATTERN} files found")
        meshes, first_shape = [], None
        for path in self.files:
            mesh = read_mesh(path)  # (E, A, 3, H, W)
            first_shape = mesh.shape if first_shape is None else first_shape
            if mesh.shape != first_shape:
                raise ValueError(f"{path}: 'im' has grid {mesh.shape}, expected {first_shape} like {self.files[0].name}")
            elevations, azimuths = mesh.shape[:2]
            meshes.append(resize_uint8(mesh.reshape(elevations * azimuths, *mesh.shape[2:])).reshape(elevations, azimuths, 3, 64, 64))
        stacked = np.stack(meshes, axis=2)  # (E, A, O, 3, 64, 64)
        self.factor_sizes = tuple(int(s) for s in stacked.shape[:3])
        if self.factor_sizes != FACTOR_SIZES:
            logger.warning("%s: factor sizes %s differ from the official %s", self.directory, self.factor_sizes, FACTOR_SIZES)
        self._images = stacked.reshape(-1, 3, 64, 64)

    def _uint8_images(self, indices: np.ndarray) -> np.ndarray:
        return self._images[indices]
