"""Probe sets: a fixed, seeded sample of unique examples, saved with a study.

The paper measures every checkpoint on the same inputs (up to 10,000 unique
examples drawn with a fixed seed). A probe set stores those inputs exactly:
images as uint8 (every dataset here is 8-bit, so the float images are
``uint8 / 255`` exactly), factors, item indices and the dataset name, in an
``.npz`` written atomically and read with ``allow_pickle=False``.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaesim.data.base import GroundTruthDataset, uint8_to_float

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(repr=False)
class ProbeSet:
    """A fixed sample: ``images_uint8`` (n, C, 64, 64), ``factors`` int64 (n, F), ``indices`` int64 (n,)."""

    dataset: str
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    indices: np.ndarray
    factors: np.ndarray
    images_uint8: np.ndarray
    seed: int

    @property
    def images(self) -> np.ndarray:
        """float32 (n, C, 64, 64) in [0, 1]."""
        return uint8_to_float(self.images_uint8)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __repr__(self) -> str:
        """One line (shapes, not the arrays): a REPL stays readable."""
        shape = "x".join(map(str, self.images_uint8.shape))
        return (f"ProbeSet(dataset={self.dataset!r}, n={len(self)}, images={shape} uint8, "
                f"factors={dict(zip(self.factor_names, self.factor_sizes))}, seed={self.seed})")

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` atomically (no pickles: names are stored as a unicode array)."""
        from vaesim.utils import atomic_path

        path = Path(path)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(
                tmp,
                format_version=np.int64(FORMAT_VERSION),
                dataset=np.str_(self.dataset),
                factor_names=np.asarray(self.factor_names, dtype=np.str_),
                factor_sizes=np.asarray(self.factor_sizes, dtype=np.int64),
                indices=self.indices.astype(np.int64),
                factors=self.factors.astype(np.int64),
                images_uint8=self.images_uint8.astype(np.uint8),
                seed=np.int64(self.seed),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ProbeSet":
        """Read a probe set written by :meth:`save`; ValueError naming the file if it is not one."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: probe set not found")
        keys = ("dataset", "factor_names", "factor_sizes", "indices", "factors", "images_uint8", "seed")
        try:
            with np.load(path, allow_pickle=False) as archive:
                present = set(archive.files)
                data = {k: archive[k] for k in keys if k in present}
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path}: could not read the probe set ({error}): corrupted or truncated") from None
        missing = [k for k in keys if k not in data]
        if missing:
            raise ValueError(f"{path}: not a vaesim probe set, missing arrays {missing}")
        probe = cls(
            dataset=str(data["dataset"]),
            factor_names=tuple(str(n) for n in data["factor_names"]),
            factor_sizes=tuple(int(s) for s in data["factor_sizes"]),
            indices=data["indices"],
            factors=data["factors"],
            images_uint8=data["images_uint8"],
            seed=int(data["seed"]),
        )
        n = len(probe.indices)
        if probe.factors.shape != (n, len(probe.factor_names)) or probe.images_uint8.shape[0] != n:
            raise ValueError(f"{path}: inconsistent probe set: {n} indices, factors {probe.factors.shape}, images {probe.images_uint8.shape}")
        return probe


def make_probe_set(dataset: GroundTruthDataset, n: int, seed: int) -> ProbeSet:
    """Draw ``n`` unique items with ``np.random.default_rng(seed)`` (sorted by index).

    ``n`` larger than the dataset is capped at its length (logged).
    """
    if int(n) < 1:
        raise ValueError(f"probe set size n: expected a positive integer, got {n}")
    total = len(dataset)
    if n > total:
        logger.warning("probe set for %s: n=%d exceeds the %d items; using all of them", dataset.name, n, total)
        n = total
    rng = np.random.default_rng(int(seed))
    indices = np.sort(rng.choice(total, size=int(n), replace=False)).astype(np.int64)
    images = np.concatenate(
        [dataset.uint8_images(indices[start : start + 1024]) for start in range(0, len(indices), 1024)]
    )
    return ProbeSet(
        dataset=dataset.name,
        factor_names=tuple(dataset.factor_names),
        factor_sizes=tuple(int(s) for s in dataset.factor_sizes),
        indices=indices,
        factors=dataset.factors(indices),
        images_uint8=images,
        seed=int(seed),
    )
