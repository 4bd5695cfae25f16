"""The minimal dataset protocol training needs, and an in-memory adapter.

Training reads only ``len(ds)``, ``ds.num_channels`` and
``ds.images(indices) -> float32 (B, C, 64, 64) in [0, 1]``; every
``vaesim.data`` dataset provides them, and :class:`ImageArray` wraps any
array or tensor of images.
"""

from __future__ import annotations

import numpy as np
import torch


class ImageArray:
    """Images held in memory, (N, C, 64, 64) (or (N, 64, 64) for one channel).

    uint8 storage is read as ``value / 255`` (the project's convention, as in
    ``vaesim.data``); floats must lie in [0, 1].
    Storing uint8 keeps batch assembly cheap: a gather then one conversion.
    """

    def __init__(self, images) -> None:
        array = images.detach().cpu().numpy() if torch.is_tensor(images) else np.asarray(images)
        if array.ndim == 3:
            array = array[:, None]
        if array.ndim != 4 or array.shape[2:] != (64, 64):
            raise ValueError(f"ImageArray: expected images shaped (N, C, 64, 64), got {array.shape}; resize to 64x64 first")
        if array.dtype == np.uint8:
            self._scale = 1.0 / 255.0
        elif np.issubdtype(array.dtype, np.floating):
            if array.size and (array.min() < 0 or array.max() > 1):
                raise ValueError(
                    f"ImageArray: float images must lie in [0, 1], got range [{array.min()}, {array.max()}]; rescale them"
                )
            array = array.astype(np.float32, copy=False)
            self._scale = 1.0
        else:
            raise TypeError(f"ImageArray: expected uint8 or float images, got dtype {array.dtype}")
        self._storage = np.ascontiguousarray(array)
        self.num_channels = int(array.shape[1])

    def __len__(self) -> int:
        return int(self._storage.shape[0])

    def images(self, indices) -> np.ndarray:
        """float32 (B, C, 64, 64) in [0, 1]."""
        batch = self._storage[np.asarray(indices, dtype=np.int64)]
        if batch.dtype == np.float32:
            return batch
        return batch.astype(np.float32) * np.float32(self._scale)


def check_image_source(dataset) -> None:
    """TypeError naming what is missing when ``dataset`` lacks the training protocol."""
    missing = [name for name in ("__len__", "num_channels", "images") if not hasattr(dataset, name)]
    if missing:
        raise TypeError(
            f"train: dataset {type(dataset).__name__} lacks {missing}; expected an object with __len__, "
            "num_channels and images(indices) -> float32 (B, C, 64, 64) (wrap a tensor with vaesim.training.ImageArray)"
        )
