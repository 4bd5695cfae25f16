"""dSprites from the official file, and its coloured and noisy variants.

Official file (Matthey et al. 2017, github.com/deepmind/dsprites-dataset):
``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` with ``imgs`` (737280, 64,
64) uint8 0/1, ``latents_classes`` and ``latents_values`` (737280, 6): colour
(1 value), shape 3, scale 6, orientation 40, posX 32, posY 32, C-order with
posY fastest. ``metadata`` is a Python-2 pickle: it is never read.

Images are bit-packed on load (64 x 8 bytes per image, 377 MB for the grid,
instead of 3 GB), reading ``imgs`` in chunks. The single-valued colour factor
is dropped, as in disentanglement_lib: factors are (shape, scale,
orientation, posX, posY).

Variants (disentanglement_lib's ColorDSprites and NoisyDSprites), on top of
the official file (``base="official"``) or the procedural renderer
(``base="procedural"``, the default since the official file is rarely present):

* ``color-dsprites``: the sprite is tinted by a colour drawn uniformly from
  [0.5, 1]^3, quantised to 8 bits (128..255 / 255); background black.
* ``noisy-dsprites``: the background is uniform noise in [0, 1]^3 (8-bit
  levels 0..255 / 255), the sprite is white.

The colour or noise of item ``i`` is a pure function of ``(seed, i)``
(SplitMix64 counter hashing), so an item always looks the same whatever batch
it is drawn in, and every image is exactly representable as uint8.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vaesim.data import npzfile
from vaesim.data.base import IMAGE_SIZE, GroundTruthDataset
from vaesim.data.grid import is_c_order_grid
from vaesim.data.procedural import FACTOR_NAMES, FACTOR_SIZES, ProceduralDSprites

logger = logging.getLogger(__name__)

FOLDER = "dsprites"  # below the data root
FILENAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
_CHUNK_ROWS = 16384


class DSprites(GroundTruthDataset):
    """The official dSprites file, bit-packed in memory."""

    name = "dsprites"
    factor_names = FACTOR_NAMES
    num_channels = 1
    description = "dSprites (official npz): binary 2D sprites"

    def __init__(self, root: str | Path | None = None, *, path: str | Path | None = None):
        from vaesim.data.files import dataset_folder, require_files_in

        if path is None:
            path = require_files_in("dsprites", dataset_folder(FOLDER, root), (FILENAME,))[0]
        self.path = Path(path)
        self._packed, table = load_official(self.path)
        self.factor_sizes = tuple(int(s) for s in table.max(axis=0) + 1)
        if tuple(self.factor_sizes) != FACTOR_SIZES:
            logger.warning("%s: factor sizes %s differ from the official %s", self.path, self.factor_sizes, FACTOR_SIZES)
        if not is_c_order_grid(table, self.factor_sizes):
            logger.info("%s: latents_classes are not in C-order grid order; indexing by table", self.path)
            self._set_factor_table(table)

    def masks(self, indices: np.ndarray) -> np.ndarray:
        return np.unpackbits(self._packed[indices], axis=-1).astype(bool)

    def _uint8_images(self, indices: np.ndarray) -> np.ndarray:
        return (self.masks(indices).astype(np.uint8) * np.uint8(255))[:, None]


def load_official(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the official npz -> (packed images uint8 (N, 64, 8), factor indices int64 (N, 5)).

    Raises ValueError naming the file for a missing array, wrong shape or
    dtype, a pickled array, non-binary pixels or a truncated archive.
    """
    members = npzfile.list_members(path)
    imgs = npzfile.require_member(path, members, "imgs", ndim=3, trailing=(IMAGE_SIZE, IMAGE_SIZE), kinds="u")
    classes = npzfile.require_member(path, members, "latents_classes", ndim=2, trailing=(6,), kinds="ui")
    if "latents_values" in members:
        npzfile.require_member(path, members, "latents_values", ndim=2, trailing=(6,), kinds="fui")
    if classes.shape[0] != imgs.shape[0]:
        raise ValueError(
            f"{path}: 'latents_classes' has {classes.shape[0]} rows but 'imgs' has {imgs.shape[0]} images; expected equal"
        )
    table = npzfile.read_array(path, classes).astype(np.int64)
    if (table < 0).any():
        raise ValueError(f"{path}: 'latents_classes' has negative class indices")
    if (table[:, 0] != table[0, 0]).any():
        raise ValueError(f"{path}: expected one colour value (column 0 of 'latents_classes'), found several")
    packed = np.empty((imgs.shape[0], IMAGE_SIZE, IMAGE_SIZE // 8), dtype=np.uint8)
    start = 0
    for chunk in npzfile.iter_rows(path, imgs, _CHUNK_ROWS):
        if chunk.max(initial=0) > 1:
            raise ValueError(f"{path}: 'imgs' must hold 0/1 pixels, found the value {int(chunk.max())}")
        packed[start : start + len(chunk)] = np.packbits(chunk.astype(bool), axis=-1)
        start += len(chunk)
    return packed, table[:, 1:]


# -- coloured / noisy variants ------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(counter: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele et al. 2014) on uint64 counters, element-wise."""
    z = counter + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def item_random_bytes(seed: int, indices: np.ndarray, nbytes: int, stream: int) -> np.ndarray:
    """Pseudo-random bytes that depend only on (seed, stream, item index): uint8 (B, nbytes)."""
    words = -(-nbytes // 8)
    key = splitmix64(np.array([(int(seed) << 8) ^ int(stream)], dtype=np.uint64))
    with np.errstate(over="ignore"):
        counters = indices.astype(np.uint64)[:, None] * np.uint64(words) + np.arange(words, dtype=np.uint64)[None, :]
        hashed = splitmix64(counters ^ key)
    return hashed.view(np.uint8).reshape(len(indices), words * 8)[:, :nbytes]


class DerivedDSprites(GroundTruthDataset):
    """``color-dsprites`` or ``noisy-dsprites`` over a binary dSprites base (3 channels)."""

    num_channels = 3
    factor_names = FACTOR_NAMES

    def __init__(self, variant: str, base: GroundTruthDataset, *, seed: int = 0):
        if variant not in ("color", "noisy"):
            raise ValueError(f"variant: expected 'color' or 'noisy', got {variant!r}")
        self.variant = variant
        self.base = base
        self.seed = int(seed)
        self.name = f"{variant}-dsprites"
        self.factor_sizes = base.factor_sizes
        self.description = f"{variant} dSprites over {base.name}"
        if not base.is_grid:
            self._set_factor_table(base.factors(np.arange(len(base))))

    def __len__(self) -> int:
        return len(self.base)

    def factors(self, indices) -> np.ndarray:
        return self.base.factors(indices)

    def _uint8_images(self, indices: np.ndarray) -> np.ndarray:
        masks = self.base.masks(indices)[:, None]  # (B, 1, 64, 64) bool
        if self.variant == "color":
            colour = np.uint8(128) + (item_random_bytes(self.seed, indices, 3, stream=1) >> np.uint8(1))  # 128..255
            return masks * colour[:, :, None, None]  # (B, 3, 64, 64)
        noise = item_random_bytes(self.seed, indices, 3 * IMAGE_SIZE * IMAGE_SIZE, stream=2)
        noise = noise.reshape(len(indices), 3, IMAGE_SIZE, IMAGE_SIZE)
        return np.where(masks, np.uint8(255), noise)


def make_variant(variant: str, root=None, *, base: str = "procedural", seed: int = 0, **base_options) -> DerivedDSprites:
    """Build ``color-dsprites`` / ``noisy-dsprites`` over ``base`` in {"procedural", "official"}."""
    if base == "procedural":
        base_ds: GroundTruthDataset = ProceduralDSprites(root, **base_options)
    elif base == "official":
        base_ds = DSprites(root, **base_options)
    else:
        raise ValueError(f"base: expected 'procedural' or 'official', got {base!r}")
    return DerivedDSprites(variant, base_ds, seed=seed)
