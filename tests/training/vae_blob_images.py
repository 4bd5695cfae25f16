"""Tiny image sets for the training tests (a module, not a conftest, so its name is unique)."""

import numpy as np


def blob_images(n: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, 1, 64, 64): squares of random size at random positions (a tiny dSprites)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 1, 64, 64), np.uint8)
    for i in range(n):
        size = int(rng.integers(8, 20))
        x, y = rng.integers(0, 64 - size, 2)
        images[i, 0, y : y + size, x : x + size] = 255
    return images
