"""Helpers shared by loaders: factor tables, grid checks, Lanczos resizing (as the references)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def is_c_order_grid(table: np.ndarray, sizes: tuple[int, ...]) -> bool:
    """True when row i of ``table`` (N, F) equals ``np.unravel_index(i, sizes)``."""
    if table.shape != (int(np.prod(sizes)), len(sizes)):
        return False
    codes = np.ravel_multi_index(tuple(np.asarray(table, dtype=np.int64).T), sizes)
    return bool(np.array_equal(codes, np.arange(codes.size)))


def values_to_indices(values: np.ndarray, path: Path, what: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """Factor values (N, F) -> factor indices (N, F) by rank among each column's distinct values."""
    if not np.isfinite(values).all():
        raise ValueError(f"{path}: {what} contains NaN or infinite values")
    indices = np.empty(values.shape, dtype=np.int64)
    levels = []
    for j in range(values.shape[1]):
        distinct, inverse = np.unique(values[:, j], return_inverse=True)
        indices[:, j] = inverse.reshape(-1)
        levels.append(distinct)
    return indices, levels


def resize_uint8(images: np.ndarray, size: int = 64) -> np.ndarray:
    """Resize uint8 images (N, C, H, W) -> uint8 (N, C, size, size) with Pillow's LANCZOS filter.

    What both references do for smallNORB and Cars3D
    (``PIL.Image.resize(..., ANTIALIAS)``, ANTIALIAS being LANCZOS): a
    Lanczos-3 kernel widened by the downscale factor, rounded to uint8 by
    Pillow. C is 1 (greyscale, mode "L") or 3 (RGB, resized as one image, as
    Pillow does).
    """
    from PIL import Image

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"resize_uint8: expected images shaped (N, 1 or 3, H, W), got {images.shape}")
    if images.shape[-2:] == (size, size):
        return np.ascontiguousarray(images, dtype=np.uint8)
    out = np.empty((*images.shape[:2], size, size), dtype=np.uint8)
    for index, image in enumerate(images.astype(np.uint8, copy=False)):
        pixels = image[0] if image.shape[0] == 1 else np.ascontiguousarray(image.transpose(1, 2, 0))
        resized = np.asarray(Image.fromarray(pixels).resize((size, size), Image.LANCZOS))
        out[index] = resized[None] if resized.ndim == 2 else resized.transpose(2, 0, 1)
    return out
