"""Shapes3D (Burgess & Kim 2018): ``3dshapes.h5``.

Layout: ``images`` (480000, 64, 64, 3) uint8 and ``labels`` (480000, 6)
float64 factor values: floor hue 10, wall hue 10, object hue 10, scale 8,
shape 4, orientation 15, C-order (orientation fastest). Factor indices are
the rank of each label among its column's distinct values; when the labels
are in C-order grid order (the official file) indexing is exact arithmetic.

Images are read lazily from the HDF5 file per batch (sorted unique indices,
one read per batch); ``in_memory=True`` loads them all (5.9 GB for the full
file).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from vaesim.data.base import IMAGE_SIZE, GroundTruthDataset
from vaesim.data.grid import is_c_order_grid, values_to_indices

logger = logging.getLogger(__name__)

FOLDER = "shapes3d"  # below the data root
FILENAME = "3dshapes.h5"
FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
FACTOR_SIZES = (10, 10, 10, 8, 4, 15)


class Shapes3D(GroundTruthDataset):
    name = "shapes3d"
    factor_names = FACTOR_NAMES
    num_channels = 3
    description = "Shapes3D (3dshapes.h5): 3D scenes, 6 factors"

    def __init__(self, root: str | Path | None = None, *, path: str | Path | None = None, in_memory: bool = False):
        import h5py

        from vaesim.data.files import dataset_folder, require_files_in

        if path is None:
            path = require_files_in("shapes3d", dataset_folder(FOLDER, root), (FILENAME,))[0]
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as error:
            raise ValueError(
                f"{self.path}: expected an HDF5 file with 'images' and 'labels', could not open it ({error}); "
                "it is probably truncated or corrupted: download it again"
            ) from None
        images, labels = self._datasets()
        values = np.asarray(labels[...], dtype=np.float64)
        table, levels = values_to_indices(values, self.path, "'labels'")
        self.factor_sizes = tuple(len(level) for level in levels)
        self.factor_values = levels
        if self.factor_sizes != FACTOR_SIZES:
            logger.warning("%s: factor sizes %s differ from the official %s", self.path, self.factor_sizes, FACTOR_SIZES)
        if not is_c_order_grid(table, self.factor_sizes):
            self._set_factor_table(table)
        self._in_memory = bool(in_memory)
        self._images = images[...] if in_memory else images
        self._pid = os.getpid()

    def _image_source(self):
        """The images array; a process forked or spawned from the owner (DataLoader workers) reopens the file."""
        if not self._in_memory and (self._images is None or self._pid != os.getpid()):
            import h5py

            self._file = h5py.File(self.path, "r")
            self._images = self._file["images"]
            self._pid = os.getpid()
        return self._images

    def __getstate__(self):
        state = dict(self.__dict__)
        if not self._in_memory:
            state["_file"] = None
            state["_images"] = None
        return state

    def _datasets(self):
        for key in ("images", "labels"):
            if key not in self._file:
                raise ValueError(f"{self.path}: expected datasets 'images' and 'labels', found {sorted(self._file.keys())}")
        images, labels = self._file["images"], self._file["labels"]
        if images.ndim != 4 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3) or images.dtype != np.uint8:
            raise ValueError(
                f"{self.path}: 'images' has shape {images.shape} dtype {images.dtype}, expected (N, 64, 64, 3) uint8"
            )
        if labels.ndim != 2 or labels.shape != (images.shape[0], 6) or labels.dtype.kind not in "fiu":
            raise ValueError(
                f"{self.path}: 'labels' has shape {labels.shape} dtype {labels.dtype}, "
                f"expected ({images.shape[0]}, 6) numeric"
            )
        return images, labels

    def _uint8_images(self, indices: np.ndarray) -> np.ndarray:
        unique, inverse = np.unique(indices, return_inverse=True)
        source = self._image_source()
        if isinstance(source, np.ndarray):
            block = source[unique]
        else:
            block = source[unique.tolist()] if unique.size > 1 else source[int(unique[0])][None]
        return np.ascontiguousarray(block[inverse.reshape(-1)].transpose(0, 3, 1, 2))  # (B, 3, 64, 64)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
