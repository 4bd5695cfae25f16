"""Writers of tiny files in each dataset's real on-disk format (for the loader tests).

Every image encodes its own item index so a test can check that item i holds
the image of item i: pixel values are chosen as simple functions of the index.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from vaesim.data.smallnorb import SPLITS, norb_header


def marker_image(index: int, channels: int | None = None) -> np.ndarray:
    """A 64x64 binary image with the bits of ``index`` set along the first row, plus one pixel at row 1."""
    image = np.zeros((64, 64), dtype=np.uint8)
    for bit in range(16):
        image[0, bit] = (index >> bit) & 1
    image[1, index % 64] = 1
    if channels is None:
        return image
    return np.repeat(image[..., None], channels, axis=-1) * np.uint8(255 // (1 + index % 3))


def grid_table(sizes) -> np.ndarray:
    return np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), axis=1).astype(np.int64)


def write_dsprites(path: Path, sizes=(1, 3, 2, 2, 2, 2), *, order=None, metadata=None, imgs=None) -> np.ndarray:
    """An official-layout dSprites npz; returns latents_classes as written (row order ``order``)."""
    classes = grid_table(sizes)
    if order is not None:
        classes = classes[order]
    codes = np.ravel_multi_index(tuple(classes.T), sizes)
    if imgs is None:
        imgs = np.stack([marker_image(int(c)) for c in codes])
    values = classes.astype(np.float64) / 10.0
    extra = {} if metadata is None else {"metadata": metadata}
    np.savez_compressed(path, imgs=imgs, latents_classes=classes, latents_values=values, **extra)
    return classes


def write_shapes3d(path: Path, sizes=(2, 2, 2, 2, 1, 3), *, order=None) -> np.ndarray:
    import h5py

    classes = grid_table(sizes)
    if order is not None:
        classes = classes[order]
    codes = np.ravel_multi_index(tuple(classes.T), sizes)
    images = np.stack([marker_image(int(c), channels=3) for c in codes])
    labels = classes * 0.25 + np.arange(6) * 10.0  # real-valued labels, increasing with the index
    with h5py.File(path, "w") as handle:
        handle.create_dataset("images", data=images, chunks=(4, 64, 64, 3))
        handle.create_dataset("labels", data=labels)
    return classes


def norb_value(split_row: int, split: int, camera: int) -> int:
    """Pixel value of a constant smallNORB test image."""
    return (7 * split_row + 100 * split + 50 * camera) % 256


def write_smallnorb(directory: Path, *, gz: bool = False) -> dict:
    """Both splits with real NORB headers; 2 categories x 2 instances x 2 elevations x 2 azimuths x 2 lightings.

    Returns the (category, instance, elevation, azimuth, lighting) rows per split.
    """
    directory.mkdir(parents=True, exist_ok=True)
    instances = {"training": (4, 6), "testing": (0, 1)}
    written = {}
    for split_id, (split, stem) in enumerate(SPLITS.items()):
        rows = [
            (c, i, e, a, l)
            for c in (0, 3)
            for i in instances[split]
            for e in (0, 8)
            for a in (0, 34)
            for l in (0, 5)
        ]
        n = len(rows)
        dat = np.empty((n, 2, 96, 96), dtype=np.uint8)
        for r in range(n):
            for camera in (0, 1):
                dat[r, camera] = norb_value(r, split_id, camera)
        cat = np.array([row[0] for row in rows], dtype="<i4")
        info = np.array([row[1:] for row in rows], dtype="<i4")
        blobs = {
            "dat": norb_header(dat.shape, "uint8") + dat.tobytes(),
            "cat": norb_header(cat.shape, "int32") + cat.tobytes(),
            "info": norb_header(info.shape, "int32") + info.tobytes(),
        }
        for part, blob in blobs.items():
            name = directory / f"{stem}-{part}.mat"
            if gz:
                with gzip.open(str(name) + ".gz", "wb") as handle:
                    handle.write(blob)
            else:
                name.write_bytes(blob)
        written[split] = rows
    return written


def cars_value(obj: int, azimuth: int, elevation: int) -> int:
    return (obj * 40 + azimuth * 7 + elevation * 3) % 200


def write_cars3d(directory: Path, objects: int = 3, azimuths: int = 3, elevations: int = 2, size: int = 16) -> None:
    """``car_NNN_mesh.mat`` files with ``im`` (size, size, 3, azimuths, elevations) uint8.

    Channel 0 is a left/right pattern (value v on the left half, v + 50 on the
    right), channel 1 a top/bottom one, channel 2 constant v.
    """
    import scipy.io

    directory.mkdir(parents=True, exist_ok=True)
    for obj in range(objects):
        im = np.zeros((size, size, 3, azimuths, elevations), dtype=np.uint8)
        for a in range(azimuths):
            for e in range(elevations):
                v = cars_value(obj, a, e)
                im[:, : size // 2, 0, a, e] = v
                im[:, size // 2 :, 0, a, e] = v + 50
                im[: size // 2, :, 1, a, e] = v
                im[size // 2 :, :, 1, a, e] = v + 50
                im[:, :, 2, a, e] = v
        # Names sort in object order; a non-matching file must be ignored.
        scipy.io.savemat(directory / f"car_{obj:03d}_mesh.mat", {"im": im}, do_compression=True)
    (directory / "README.txt").write_text("not a car")


def write_mpi3d(path: Path, sizes=(2, 1, 1, 1, 1, 2, 3), *, compressed: bool = False) -> None:
    n = int(np.prod(sizes))
    images = np.stack([marker_image(i, channels=3) for i in range(n)])
    (np.savez_compressed if compressed else np.savez)(path, images=images)
