"""``dsprites-procedural``: a vectorised re-rendering of the dSprites grid.

It renders the same factor grid and the same three shapes as dSprites
(Matthey et al. 2017): shape {square, ellipse, heart}, scale 6 values in
linspace(0.5, 1), orientation 40 values in linspace(0, 2 pi), posX and posY
32 values each in linspace(0, 1); binary 64x64 images, item order C-order
over (shape, scale, orientation, posX, posY), posY fastest, as in the official
file. **It re-renders the grid: it is not pixel-identical to the official
``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``** (sprite sizes, the heart's
outline and pixel rounding differ slightly). It needs no download, so it is the
offline default for demos and tests.

Geometry (pixel units, pixel centres at j + 0.5):
* centre: column ``16 + 32 * posX``, row ``16 + 32 * posY`` (posY grows downward);
* the sprite's local frame is the image frame rotated by ``orientation``
  (counter-clockwise on screen) and divided by ``scale * HALF_SIZE``
  (HALF_SIZE = 10 px, so a scale-1 square is 20 px wide and never leaves the
  image at any rotation);
* square ``max(|u|, |v|) <= 1``; ellipse ``u^2 + (v / 0.5)^2 <= 1``; heart the
  classic implicit curve ``(X^2 + Y^2 - 1)^3 - X^2 Y^3 <= 0`` with
  ``X = 1.15 u``, ``Y = 0.12 - 1.15 v`` (lobes up, tip down at orientation 0).

Each pixel is tested at its centre (no anti-aliasing), in float32 after a
float64 per-image transform, so the output is deterministic. Orientation
2 pi is reduced to 0 exactly, so orientation index 39 renders the same image
as index 0 (as in the official file, whose grid also includes both ends).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vaesim.data.base import IMAGE_SIZE, GroundTruthDataset

logger = logging.getLogger(__name__)

SHAPES = ("square", "ellipse", "heart")
FOLDER = "dsprites-procedural"  # render cache, below the data root
FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2.0 * np.pi, 40)
POSITIONS = np.linspace(0.0, 1.0, 32)
HALF_SIZE = 10.0  # px, half the side of a scale-1 square
MARGIN = 16.0  # px, centre range is [MARGIN, 64 - MARGIN]
RENDER_VERSION = 1  # bump when the drawing changes: invalidates on-disk caches

_PIXEL_CENTRES = np.arange(IMAGE_SIZE, dtype=np.float32) + np.float32(0.5)


def factor_values(factors: np.ndarray) -> dict[str, np.ndarray]:
    """Map factor indices (B, 5) to values: shape id, scale, orientation (rad), posX, posY."""
    factors = np.asarray(factors, dtype=np.int64)
    return {
        "shape": factors[:, 0],
        "scale": SCALES[factors[:, 1]],
        "orientation": ORIENTATIONS[factors[:, 2]],
        "posX": POSITIONS[factors[:, 3]],
        "posY": POSITIONS[factors[:, 4]],
    }


_RENDER_CHUNK = 128  # rows per vectorised pass: keeps the float32 temporaries in cache


def render(factors: np.ndarray) -> np.ndarray:
    """Render sprites for factor indices (B, 5) -> bool masks (B, 64, 64).

    Vectorised over the batch (in passes of 128 rows): one (B, 64, 64)
    local-coordinate transform, then one inside-test per shape on the rows
    having that shape. Each row's image depends on that row only.
    """
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(FACTOR_SIZES) or not np.issubdtype(factors.dtype, np.integer):
        raise ValueError(f"render: expected integer factor indices (B, 5) {FACTOR_NAMES}, got shape {factors.shape} {factors.dtype}")
    factors = factors.astype(np.int64)
    if ((factors < 0) | (factors >= np.asarray(FACTOR_SIZES))).any():
        raise ValueError(f"render: factor indices out of range for sizes {FACTOR_SIZES}")
    if len(factors) <= _RENDER_CHUNK:
        return _render_rows(factors)
    return np.concatenate([_render_rows(factors[i : i + _RENDER_CHUNK]) for i in range(0, len(factors), _RENDER_CHUNK)])


def _render_rows(factors: np.ndarray) -> np.ndarray:
    values = factor_values(factors)
    theta = np.mod(values["orientation"], 2.0 * np.pi)  # 2 pi -> exactly 0
    extent = values["scale"] * HALF_SIZE
    cos_t = (np.cos(theta) / extent).astype(np.float32)[:, None, None]  # (B, 1, 1)
    sin_t = (np.sin(theta) / extent).astype(np.float32)[:, None, None]
    centre_x = (MARGIN + (IMAGE_SIZE - 2 * MARGIN) * values["posX"]).astype(np.float32)
    centre_y = (MARGIN + (IMAGE_SIZE - 2 * MARGIN) * values["posY"]).astype(np.float32)
    dx = _PIXEL_CENTRES[None, None, :] - centre_x[:, None, None]  # (B, 1, 64) columns
    dy = _PIXEL_CENTRES[None, :, None] - centre_y[:, None, None]  # (B, 64, 1) rows
    # Rotate the image frame by -theta into the sprite frame (screen y points down,
    # so a positive theta turns the sprite counter-clockwise on screen).
    u = cos_t * dx - sin_t * dy  # (B, 64, 64)
    v = sin_t * dx + cos_t * dy
    masks = np.empty(u.shape, dtype=bool)
    shape_ids = values["shape"]
    for shape_id, inside in enumerate((_inside_square, _inside_ellipse, _inside_heart)):
        rows = np.flatnonzero(shape_ids == shape_id)
        if rows.size:
            masks[rows] = inside(u[rows], v[rows])
    return masks


def _inside_square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 1.0


def _inside_ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + 4.0 * v * v <= 1.0


def _inside_heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    x = np.float32(1.15) * u
    y = np.float32(0.12) - np.float32(1.15) * v
    r = x * x + y * y - 1.0
    return r * r * r - x * x * y * y * y <= 0.0


class ProceduralDSprites(GroundTruthDataset):
    """The dSprites grid rendered on demand (see the module docstring).

    Options: ``cache=True`` renders the whole grid once into a bit-packed file
    ``<root>/dsprites-procedural/dsprites_procedural_v{RENDER_VERSION}.npy``
    (737280 x 64 x 8 bytes = 377 MB, written atomically) and memory-maps it
    afterwards; by default images are rendered per batch.
    """

    name = "dsprites-procedural"
    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES
    num_channels = 1
    description = "dSprites factor grid re-rendered procedurally (not pixel-identical to the official file)"

    def __init__(self, root: str | Path | None = None, *, cache: bool = False, chunk_size: int = 8192):
        self._packed = None
        if cache:
            from vaesim.data.files import dataset_folder

            path = dataset_folder(FOLDER, root) / f"dsprites_procedural_v{RENDER_VERSION}.npy"
            self._packed = load_or_build_cache(path, chunk_size=chunk_size)

    def masks(self, indices: np.ndarray) -> np.ndarray:
        """Binary sprites of items: bool (B, 64, 64)."""
        if self._packed is not None:
            return np.unpackbits(self._packed[indices], axis=-1).astype(bool)
        return render(self.factors(indices))

    def _uint8_images(self, indices: np.ndarray) -> np.ndarray:
        return (self.masks(indices).astype(np.uint8) * np.uint8(255))[:, None]


def load_or_build_cache(path: Path, *, chunk_size: int = 8192, factor_sizes: tuple[int, ...] = FACTOR_SIZES) -> np.ndarray:
    """Memory-map the bit-packed grid cache at ``path``, rendering it first if absent.

    Returns uint8 (N, 64, 8), N = prod(factor_sizes) (737280 for the dSprites
    grid): ``np.packbits(mask, axis=-1)`` per image, C-order over
    ``factor_sizes`` (a sub-grid of the full one when smaller sizes are given).
    """
    from vaesim.utils import atomic_path

    total = int(np.prod(factor_sizes))
    expected = (total, IMAGE_SIZE, IMAGE_SIZE // 8)
    if path.exists():
        packed = np.load(path, mmap_mode="r", allow_pickle=False)
        if packed.shape == expected and packed.dtype == np.uint8:
            return packed
        logger.warning("cache %s has shape %s dtype %s, expected %s uint8: rebuilding", path, packed.shape, packed.dtype, expected)
    logger.info("rendering the procedural dSprites grid into %s", path)
    with atomic_path(path, suffix=".npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=expected)
        for start in range(0, total, chunk_size):
            stop = min(total, start + chunk_size)
            idx = np.arange(start, stop)
            grid = np.stack(np.unravel_index(idx, factor_sizes), axis=1)
            out[start:stop] = np.packbits(render(grid), axis=-1)
        out.flush()
        del out
    return np.load(path, mmap_mode="r", allow_pickle=False)
