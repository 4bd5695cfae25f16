"""``digits``: scikit-learn's bundled handwritten digits, upsampled to 64x64.

The 1797 8x8 images of ``sklearn.datasets.load_digits`` (UCI optical
recognition of handwritten digits; pixel values 0..16) are scaled to
0..255 and upsampled to 64x64 with bilinear interpolation
(``torch.nn.functional.interpolate``, ``align_corners=False``), then rounded
to uint8. One factor: the digit class (10 values); the writer is a nuisance,
so ``index_of`` draws one of the images of a class with the given generator.
A small real dataset for end-to-end tests: no download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaesim.data.base import GroundTruthDataset


class Digits(GroundTruthDataset):
    name = "digits"
    factor_names = ("digit",)
    factor_sizes = (10,)
    num_channels = 1
    description = "scikit-learn handwritten digits (1797 images), upsampled to 64x64"

    def __init__(self, root: str | Path | None = None):
        import torch
        import torch.nn.functional as F
        from sklearn.datasets import load_digits

        bunch = load_digits()
        small = torch.from_numpy(bunch.images.astype(np.float32) * np.float32(255.0 / 16.0))[:, None]  # (N, 1, 8, 8)
        large = F.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False)
        self._images = large.round().clamp(0, 255).to(torch.uint8).numpy()  # (N, 1, 64, 64)
        self._set_factor_table(bunch.target.astype(np.int64)[:, None])

    def _uint8_images(self, indices: np.ndarray) -> np.ndarray:
        return self._images[indices]
