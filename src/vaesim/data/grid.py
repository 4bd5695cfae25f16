"""Helpers shared by loaders: factor tables, grid checks, antialiased resizing."""

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


def resize_uint8(images: np.ndarray, size: int = 64, *, chunk: int = 1024) -> np.ndarray:
    """Antialiased resize of uint8 images (N, C, H, W) -> uint8 (N, C, size, size).

    Uses ``torch.nn.functional.interpolate(mode="bilinear", antialias=True,
    align_corners=False)`` (a triangle filter widened by the downscale factor,
    as PIL's BILINEAR resize), then rounds to the nearest integer.
    """
    import torch
    import torch.nn.functional as F

    images = np.asarray(images)
    if images.shape[-2:] == (size, size):
        return np.ascontiguousarray(images, dtype=np.uint8)
    out = np.empty((*images.shape[:2], size, size), dtype=np.uint8)
    for start in range(0, images.shape[0], chunk):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + chunk], dtype=np.float32))
        resized = F.interpolate(batch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + chunk] = resized.round().clamp(0, 255).to(torch.uint8).numpy()
    return out
