"""Dataset names, where their files live, and ``get_dataset``.

Root directory: ``root=`` if given, else ``$VAESIM_DATA``, else
``$XDG_CACHE_HOME/vaesim/data``, else ``~/.cache/vaesim/data``. Each
dataset has its own folder below it:

=====================  ==============================================================
dsprites (+ variants)  ``<root>/dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``
shapes3d               ``<root>/shapes3d/3dshapes.h5``
smallnorb              ``<root>/smallnorb/smallnorb-*-{dat,cat,info}.mat`` (or ``.mat.gz``)
cars3d                 ``<root>/cars3d/car_*_mesh.mat``
mpi3d                  ``<root>/mpi3d/mpi3d_{real,realistic,toy}.npz``
dsprites-procedural    ``<root>/dsprites-procedural/`` (optional render cache)
digits                 shipped with scikit-learn
=====================  ==============================================================
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vaesim.data import cars3d, dsprites, mpi3d, procedural, shapes3d, smallnorb
from vaesim.data.base import GroundTruthDataset
from vaesim.data.files import dataset_folder, default_root, match_files, require_files_in

__all__ = ["DATASETS", "DatasetSpec", "dataset_dir", "default_root", "expected_files", "get_dataset", "get_spec",
           "require_files"]


@dataclass(frozen=True)
class DatasetSpec:
    """Static facts about a dataset (usable without its files)."""

    name: str
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    num_channels: int
    folder: str | None  # sub-folder of the root holding its files; None: nothing on disk
    files: tuple[str, ...]  # file names or glob patterns expected in the folder
    description: str
    build: Callable[..., GroundTruthDataset]
    min_count: int = 1  # for glob patterns: how many files are expected
    size: int | None = None  # examples in the dataset when it is not the product of factor_sizes

    @property
    def num_examples(self) -> int:
        """How many examples the dataset has (known without its files)."""
        return self.size if self.size is not None else math.prod(self.factor_sizes)


def _official_or_procedural_variant(variant: str):
    def build(root=None, **options):
        return dsprites.make_variant(variant, root, **options)

    return build


def _build_digits(root=None, **options):
    from vaesim.data.digits import Digits

    return Digits(root, **options)


_DSPRITES_FACTORS = (procedural.FACTOR_NAMES, procedural.FACTOR_SIZES)

DATASETS: dict[str, DatasetSpec] = {
    "dsprites": DatasetSpec(
        "dsprites", *_DSPRITES_FACTORS, 1, dsprites.FOLDER, (dsprites.FILENAME,),
        "dSprites, official file (Matthey et al. 2017)", dsprites.DSprites,
    ),
    "dsprites-procedural": DatasetSpec(
        "dsprites-procedural", *_DSPRITES_FACTORS, 1, None, (),
        "dSprites grid re-rendered procedurally (offline default; not pixel-identical to the official file)",
        procedural.ProceduralDSprites,
    ),
    "color-dsprites": DatasetSpec(
        "color-dsprites", *_DSPRITES_FACTORS, 3, None, (),
        "dSprites tinted by a random colour in [0.5, 1]^3 (base='procedural' default, or 'official')",
        _official_or_procedural_variant("color"),
    ),
    "noisy-dsprites": DatasetSpec(
        "noisy-dsprites", *_DSPRITES_FACTORS, 3, None, (),
        "dSprites on a uniform-noise background (base='procedural' default, or 'official')",
        _official_or_procedural_variant("noisy"),
    ),
    "shapes3d": DatasetSpec(
        "shapes3d", shapes3d.FACTOR_NAMES, shapes3d.FACTOR_SIZES, 3, shapes3d.FOLDER, (shapes3d.FILENAME,),
        "Shapes3D (Burgess & Kim 2018)", shapes3d.Shapes3D,
    ),
    "smallnorb": DatasetSpec(
        "smallnorb", smallnorb.FACTOR_NAMES, smallnorb.FACTOR_SIZES, 1, smallnorb.FOLDER, tuple(smallnorb.filenames()),
        "smallNORB, both splits, left camera (LeCun et al. 2004)", smallnorb.SmallNORB, size=2 * 24300,
    ),
    "cars3d": DatasetSpec(
        "cars3d", cars3d.FACTOR_NAMES, cars3d.FACTOR_SIZES, 3, cars3d.FOLDER, (cars3d.PATTERN,),
        "Cars3D (Reed et al. 2015)", cars3d.Cars3D, min_count=cars3d.MODEL_COUNT,
    ),
    "mpi3d": DatasetSpec(
        "mpi3d", mpi3d.FACTOR_NAMES, mpi3d.VARIANT_SIZES["real"], 3, mpi3d.FOLDER, (mpi3d.filename("real"),),
        "MPI3D real (Gondal et al. 2019); variant='toy'/'realistic' for the others", mpi3d.MPI3D,
    ),
    "digits": DatasetSpec(
        "digits", ("digit",), (10,), 1, None, (), "scikit-learn handwritten digits upsampled to 64x64", _build_digits,
    ),
}


def get_spec(name: str) -> DatasetSpec:
    if not isinstance(name, str):
        raise TypeError(f"dataset name: expected a string, got {type(name).__name__}")
    if name not in DATASETS:
        raise ValueError(f"dataset name: expected one of {', '.join(DATASETS)}, got {name!r}")
    return DATASETS[name]


def dataset_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """Folder of a dataset's files: ``<root>/<folder>``."""
    spec = get_spec(name)
    return dataset_folder(spec.folder or name, root)


def expected_files(name: str, root=None) -> list[tuple[str, list[Path]]]:
    """(pattern, files found) for each expected file or glob pattern."""
    return match_files(dataset_dir(name, root), get_spec(name).files)


def require_files(name: str, root=None) -> list[Path]:
    """Paths of a dataset's files; FileNotFoundError naming what is missing, where, and the fix.

    Returns ``[]`` for procedural or packaged datasets.
    """
    spec = get_spec(name)
    return require_files_in(name, dataset_dir(name, root), spec.files, spec.min_count)


def get_dataset(name: str, root: str | os.PathLike | None = None, **options) -> GroundTruthDataset:
    """Build a dataset by name (see ``DATASETS``); ``options`` go to its constructor.

    Options: ``dsprites-procedural``: ``cache``; colour/noisy: ``base``
    ("procedural" | "official"), ``seed``; ``shapes3d``: ``in_memory``;
    ``mpi3d``: ``variant``, ``factor_sizes``.
    """
    spec = get_spec(name)
    try:
        return spec.build(root, **options)
    except TypeError as error:
        if "unexpected keyword" in str(error):
            raise TypeError(f"get_dataset({name!r}): {error}; see help(vaesim.data.get_dataset) for options") from None
        raise
