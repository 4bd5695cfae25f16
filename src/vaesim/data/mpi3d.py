"""MPI3D (Gondal et al. 2019): ``mpi3d_{toy,realistic,real}.npz``.

``images`` (N, 64, 64, 3) uint8 in C-order over the factors object colour,
object shape, object size, camera height, background colour, horizontal axis
40, vertical axis 40: sizes (6, 6, 2, 3, 3, 40, 40) = 1,036,800 images for
``realistic`` and ``real``, (4, 4, 2, 3, 3, 40, 40) for ``toy`` (as
disentanglement_lib). The array is memory-mapped when the archive stores it
uncompressed (the official files do), else read into memory in chunks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaesim.data import npzfile
from vaesim.data.base import IMAGE_SIZE, GroundTruthDataset

FOLDER = "mpi3d"  # below the data root
FACTOR_NAMES = ("object_color", "object_shape", "object_size", "camera_height", "background_color", "horizontal_axis", "vertical_axis")
VARIANT_SIZES = {
    "real": (6, 6, 2, 3, 3, 40, 40),
    "realistic": (6, 6, 2, 3, 3, 40, 40),
    "toy": (4, 4, 2, 3, 3, 40, 40),
}


def filename(variant: str) -> str:
    if variant not in VARIANT_SIZES:
        raise ValueError(f"variant: expected one of {sorted(VARIANT_SIZES)}, got {variant!r}")
    return f"mpi3d_{variant}.npz"


class MPI3D(GroundTruthDataset):
    name = "mpi3d"
    factor_names = FACTOR_NAMES
    num_channels = 3
    description = "MPI3D: a robot arm holding objects, simulated or real"

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        variant: str = "real",
        path: str | Path | None = None,
        factor_sizes: tuple[int, ...] | None = None,
    ):
        from vaesim.data.files import dataset_folder

        self.variant = variant
        self.path = Path(path) if path is not None else dataset_folder(FOLDER, root) / filename(variant)
        if not self.path.exists():
            raise FileNotFoundError(
                f"{self.path}: MPI3D file not found; get it with `vaesim data download mpi3d --variant {variant}` "
                f"or from https://github.com/rr-learning/disentanglement_dataset and put it there"
            )
        self.factor_sizes = tuple(int(s) for s in (factor_sizes or VARIANT_SIZES[variant]))
        if len(self.factor_sizes) != len(FACTOR_NAMES):
            raise ValueError(f"factor_sizes: expected {len(FACTOR_NAMES)} sizes for {FACTOR_NAMES}, got {self.factor_sizes}")
        members = npzfile.list_members(self.path)
        member = npzfile.require_member(self.path, members, "images", ndim=4, trailing=(IMAGE_SIZE, IMAGE_SIZE, 3), kinds="u")
        if member.dtype != np.uint8:
            raise ValueError(f"{self.path}: 'images' has dtype {member.dtype}, expected uint8")
        expected = int(np.prod(self.factor_sizes))
        if member.shape[0] != expected:
            raise ValueError(
                f"{self.path}: 'images' has {member.shape[0]} images, expected {expected} = prod{self.factor_sizes} "
                f"for variant {variant!r} (pass factor_sizes= for another grid)"
            )
        mapped = npzfile.memmap_array(self.path, member)
        self._images = mapped if mapped is not None else np.concatenate(list(npzfile.iter_rows(self.path, member, 65536)))

    def _uint8_images(self, indices: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self._images[indices].transpose(0, 3, 1, 2))
