"""The ground-truth dataset interface shared by every loader.

A ground-truth dataset is a set of 64x64 images, each labelled by the indices
of its generative factors (Locatello et al. 2019, "disentanglement_lib").
Images are held compactly (uint8, or bit-packed for binary sprites) and
converted to float32 in [0, 1] one batch at a time.

Two layouts are covered:

* a complete grid (dSprites, Shapes3D, Cars3D, MPI3D, the procedural
  renderer): item ``i`` has factors ``np.unravel_index(i, factor_sizes)``
  (C order, the last factor fastest), so ``index_of`` is exact;
* a table of factors with nuisance variation (smallNORB's instance,
  the handwritten digits' writer): several items share the same factors and
  ``index_of`` / ``images_for_factors`` draw one of them with a seeded
  generator, as disentanglement_lib does for smallNORB.
"""

from __future__ import annotations

import logging
from typing import Iterator

import numpy as np

logger = logging.getLogger(__name__)

IMAGE_SIZE = 64


def as_index_array(indices, length: int, *, name: str = "indices") -> np.ndarray:
    """Validate item indices: int64 (B,) with 0 <= i < length (negative indices wrap)."""
    array = np.asarray(indices)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise TypeError(f"{name}: expected integer item indices, got dtype {array.dtype}")
    array = array.astype(np.int64).reshape(-1)
    array = np.where(array < 0, array + length, array)
    bad = (array < 0) | (array >= length)
    if bad.any():
        raise ValueError(
            f"{name}: expected indices in [0, {length}), got {int(np.asarray(indices).reshape(-1)[np.argmax(bad)])}"
        )
    return array


def uint8_to_float(images: np.ndarray) -> np.ndarray:
    """uint8 images (..., C, H, W) with 0..255 -> float32 ``u / 255`` (correctly rounded) in [0, 1]."""
    out = images.astype(np.float32)
    out /= np.float32(255.0)
    return out


class GroundTruthDataset:
    """Base class: factor bookkeeping, batching and torch views.

    Subclasses set ``name``, ``factor_names``, ``factor_sizes``,
    ``num_channels`` and implement ``_uint8_images(indices) -> uint8
    (B, C, 64, 64)`` with values 0..255. Grid datasets are done then; table
    datasets also call :meth:`_set_factor_table`.
    """

    name: str = "dataset"
    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()
    num_channels: int = 1
    description: str = ""

    _factor_table: np.ndarray | None = None  # (N, F) int64 for non-grid datasets
    _groups_order: np.ndarray | None = None
    _groups_start: np.ndarray | None = None
    _groups_count: np.ndarray | None = None

    # -- size and factors --------------------------------------------------
    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    @property
    def is_grid(self) -> bool:
        """True when item i is exactly the C-order grid cell of its factors."""
        return self._factor_table is None

    def __len__(self) -> int:
        if self._factor_table is not None:
            return int(self._factor_table.shape[0])
        return int(np.prod(self.factor_sizes, dtype=np.int64))

    def factors(self, indices) -> np.ndarray:
        """Factor indices of items: int64 (B, F)."""
        idx = as_index_array(indices, len(self))
        if self._factor_table is not None:
            return self._factor_table[idx]
        return np.stack(np.unravel_index(idx, self.factor_sizes), axis=1).astype(np.int64)

    def _check_factors(self, factors) -> np.ndarray:
        array = np.asarray(factors)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != self.num_factors:
            raise ValueError(
                f"factors for {self.name!r}: expected shape (B, {self.num_factors}) for factors "
                f"{self.factor_names}, got {np.shape(factors)}"
            )
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"factors for {self.name!r}: expected integer factor indices, got dtype {array.dtype}")
        sizes = np.asarray(self.factor_sizes)
        bad = (array < 0) | (array >= sizes)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"factors for {self.name!r}: factor {self.factor_names[col]!r} must be in "
                f"[0, {sizes[col]}), got {array[row, col]} (row {row})"
            )
        return array.astype(np.int64)

    def index_of(self, factors, rng: np.random.Generator | None = None) -> np.ndarray:
        """Item index for each factor row: int64 (B,).

        Grid datasets: exact (``np.ravel_multi_index``). Table datasets: one of
        the items with those factors, drawn with ``rng`` (default seed 0), the
        nuisance variable (e.g. smallNORB's instance) being left free.
        """
        array = self._check_factors(factors)
        if self._factor_table is None:
            return np.ravel_multi_index(tuple(array.T), self.factor_sizes).astype(np.int64)
        rng = np.random.default_rng(0) if rng is None else rng
        codes = np.ravel_multi_index(tuple(array.T), self.factor_sizes)
        counts = self._groups_count[codes]
        if (counts == 0).any():
            missing = array[np.argmax(counts == 0)].tolist()
            raise ValueError(f"factors for {self.name!r}: no item has factors {missing}")
        pick = (rng.random(len(codes)) * counts).astype(np.int64)
        return self._groups_order[self._groups_start[codes] + pick]

    def _set_factor_table(self, table: np.ndarray) -> None:
        """Register the (N, F) factor table of a non-grid dataset and index its groups."""
        table = np.ascontiguousarray(table, dtype=np.int64)
        codes = np.ravel_multi_index(tuple(table.T), self.factor_sizes)
        order = np.argsort(codes, kind="stable")
        counts = np.bincount(codes, minlength=int(np.prod(self.factor_sizes)))
        self._factor_table = table
        self._groups_order = order.astype(np.int64)
        self._groups_count = counts
        self._groups_start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n factor rows drawn uniformly and independently per factor: int64 (n, F)."""
        if self._factor_table is not None:
            # Only combinations that exist (every one does for smallNORB; digits has one factor).
            present = np.flatnonzero(self._groups_count > 0)
            codes = present[rng.integers(0, len(present), size=int(n))]
            return np.stack(np.unravel_index(codes, self.factor_sizes), axis=1).astype(np.int64)
        return np.stack([rng.integers(0, size, size=int(n)) for size in self.factor_sizes], axis=1).astype(np.int64)

    # -- images ----------------------------------------------------------------
    def _uint8_images(self, indices: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise TypeError(f"{type(self).__name__} must implement _uint8_images")

    def uint8_images(self, indices) -> np.ndarray:
        """Compact images of items: uint8 (B, C, 64, 64), 0..255."""
        idx = as_index_array(indices, len(self))
        if idx.size == 0:
            return np.zeros((0, self.num_channels, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        return self._uint8_images(idx)

    def images(self, indices) -> np.ndarray:
        """Images of items: float32 (B, C, 64, 64) in [0, 1]."""
        return uint8_to_float(self.uint8_images(indices))

    def images_for_factors(self, factors, rng: np.random.Generator | None = None) -> np.ndarray:
        """Images for factor rows (B, F): float32 (B, C, 64, 64)."""
        return self.images(self.index_of(factors, rng))

    def __getitem__(self, index) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"{self.name}[...]: expected an integer index, got {type(index).__name__}")
        idx = np.array([index])
        return self.images(idx)[0], self.factors(idx)[0]

    # -- training views ------------------------------------------------------------
    def iterate_batches(
        self, batch_size: int, seed: int, *, steps: int | None = None, start_step: int = 0
    ) -> Iterator[np.ndarray]:
        """Yield training batches float32 (batch_size, C, 64, 64), sampled with replacement.

        Batch ``k`` uses the generator ``default_rng([seed, k])``, so a resumed
        run (``start_step=k``) sees exactly the batches it would have seen;
        ``steps=None`` iterates forever.
        """
        for step, indices in self.batch_indices(batch_size, seed, steps=steps, start_step=start_step):
            yield self.images(indices)

    def batch_indices(
        self, batch_size: int, seed: int, *, steps: int | None = None, start_step: int = 0
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (step, int64 (batch_size,) item indices) as :meth:`iterate_batches` uses."""
        if int(batch_size) < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
        step = int(start_step)
        while steps is None or step < start_step + steps:
            rng = np.random.default_rng([int(seed), step])
            yield step, rng.integers(0, len(self), size=int(batch_size), dtype=np.int64)
            step += 1

    def batch_sampler(self, batch_size: int, seed: int, *, steps: int | None = None, start_step: int = 0):
        """A torch BatchSampler-like iterable of index lists (same batches as :meth:`iterate_batches`)."""
        dataset = self

        class _Sampler:
            def __iter__(self):
                for _, indices in dataset.batch_indices(batch_size, seed, steps=steps, start_step=start_step):
                    yield indices.tolist()

            def __len__(self):
                if steps is None:
                    raise TypeError("an endless batch sampler has no length")
                return int(steps)

        return _Sampler()

    def torch_dataset(self):
        """A ``torch.utils.data.Dataset`` view: item -> (float32 tensor (C,64,64), int64 tensor (F,)).

        It also implements ``__getitems__`` so a DataLoader with a batch sampler
        assembles each batch with one vectorised call.
        """
        from vaesim.data.torch_view import TorchGroundTruth

        return TorchGroundTruth(self)

    def describe(self) -> dict:
        """Name, factors and size, for ``vaesim data info``."""
        return {
            "name": self.name,
            "factor_names": list(self.factor_names),
            "factor_sizes": [int(s) for s in self.factor_sizes],
            "num_channels": int(self.num_channels),
            "length": len(self),
        }

    def __repr__(self) -> str:
        factors = ", ".join(f"{n}={s}" for n, s in zip(self.factor_names, self.factor_sizes))
        return f"<{type(self).__name__} {self.name!r}: {len(self)} images, {self.num_channels}ch, {factors}>"

