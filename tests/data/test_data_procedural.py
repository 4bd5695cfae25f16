"""The procedural dSprites renderer: shapes, invariances and the grid layout."""

import numpy as np
import pytest

from vaesim.data import get_dataset, render_dsprites
from vaesim.data.procedural import FACTOR_SIZES, ORIENTATIONS, SCALES, load_or_build_cache, render

SQUARE, ELLIPSE, HEART = 0, 1, 2


def _one(shape=0, scale=5, orientation=0, pos_x=16, pos_y=16) -> np.ndarray:
    return render(np.array([[shape, scale, orientation, pos_x, pos_y]]))[0]


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(mask)
    return rows.mean(), cols.mean()


def test_grid_matches_the_dsprites_factors():
    ds = get_dataset("dsprites-procedural")
    assert ds.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert ds.factor_sizes == (3, 6, 40, 32, 32) and len(ds) == 737280
    np.testing.assert_allclose(SCALES, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert ORIENTATIONS[0] == 0.0 and ORIENTATIONS[-1] == 2 * np.pi and len(ORIENTATIONS) == 40
    # posY fastest, as in the official file.
    np.testing.assert_array_equal(ds.factors([1, 32]), [[0, 0, 0, 0, 1], [0, 0, 0, 1, 0]])
    image, factors = ds[123456]
    assert image.shape == (1, 64, 64) and image.dtype == np.float32 and set(np.unique(image)) <= {0.0, 1.0}
    np.testing.assert_array_equal(image[0], render(factors[None])[0])


def test_square_area_matches_geometry_and_grows_with_scale():
    # A axis-aligned square of side 2 * 10 px * scale: its pixel count is (side)^2 up to one boundary row/col.
    for shape in (SQUARE, ELLIPSE, HEART):
        areas = [int(_one(shape, scale=s).sum()) for s in range(6)]
        assert all(a < b for a, b in zip(areas, areas[1:])), (shape, areas)
    for s, scale in enumerate(SCALES):
        side = 20 * scale
        assert abs(_one(SQUARE, scale=s).sum() - side**2) <= 2 * side + 1
    # Ellipse u^2 + 4 v^2 <= 1 has area pi * a * b with a = 10 s, b = 5 s.
    ellipse = _one(ELLIPSE, scale=5).sum()
    assert abs(ellipse - np.pi * 10 * 5) / (np.pi * 50) < 0.05


def test_rotation_by_two_pi_returns_the_same_image():
    for shape in (SQUARE, ELLIPSE, HEART):
        for pos in ((0, 0), (13, 27), (31, 31)):
            np.testing.assert_array_equal(_one(shape, 3, 0, *pos), _one(shape, 3, 39, *pos))


def test_heart_has_two_lobes_up_and_a_tip_down():
    heart_up = _one(HEART, 5, 0)
    rows = np.nonzero(heart_up)[0]
    widths = heart_up.sum(axis=1)[rows.min() : rows.max() + 1]
    # Wide rows in the upper half, a point at the bottom.
    assert widths[: len(widths) // 2].max() > 2 * widths[-2:].max()
    top_row = heart_up[rows.min()]
    assert top_row[:32].sum() > 0 and top_row[32:].sum() > 0 and top_row[31:33].sum() == 0  # two lobes, a notch
    # Mirror symmetric about the vertical axis through its centre: at posX=0 the centre is the pixel edge x=16.
    left_heart = _one(HEART, 5, 0, pos_x=0)[:, :32]
    assert left_heart.any() and (left_heart == left_heart[:, ::-1]).all()
    # Orientation pi (index 20 of 40 over [0, 2pi] is 20/39 * 2pi, close to pi): tip up.
    rotated = _one(HEART, 5, 20)
    rrows = np.nonzero(rotated)[0]
    rwidths = rotated.sum(axis=1)[rrows.min() : rrows.max() + 1]
    assert rwidths[len(rwidths) // 2 :].max() > 2 * rwidths[:2].max()


def test_counter_clockwise_rotation():
    # Ellipse major axis along the columns at 0; at orientation index 5 (~46 deg) it runs from lower-left to upper-right.
    flat = _one(ELLIPSE, 5, 0)
    rows, cols = np.nonzero(flat)
    assert np.ptp(cols) > 1.8 * np.ptp(rows)
    tilted = _one(ELLIPSE, 5, 5)
    rows, cols = np.nonzero(tilted)
    # A filled ellipse with axes 2:1 at angle t has corr(row, col) = -(4 - 1) / (4 + 1) * sin(2 t) on screen:
    # negative (up and to the right) for a counter-clockwise turn of ~46 degrees, positive at ~138 degrees.
    assert np.corrcoef(rows, cols)[0, 1] < -0.5
    rows, cols = np.nonzero(_one(ELLIPSE, 5, 15))
    assert np.corrcoef(rows, cols)[0, 1] > 0.5


def test_positions_move_the_centroid_monotonically():
    for shape in (SQUARE, ELLIPSE, HEART):
        xs = [_centroid(_one(shape, 2, 7, px, 10))[1] for px in range(32)]
        ys = [_centroid(_one(shape, 2, 7, 10, py))[0] for py in range(32)]
        assert all(a < b for a, b in zip(xs, xs[1:])) and all(a < b for a, b in zip(ys, ys[1:]))
        assert 31 < xs[-1] - xs[0] < 33  # the centre spans 32 px
    # Sprites never touch the border anywhere in the grid (largest scale, any orientation, extreme positions).
    corners = np.array([[s, 5, o, x, y] for s in range(3) for o in range(40) for x in (0, 31) for y in (0, 31)])
    masks = render(corners)
    border = masks[:, 0].any() | masks[:, -1].any() | masks[:, :, 0].any() | masks[:, :, -1].any()
    assert not border


def test_shapes_differ_and_rendering_is_deterministic():
    rng = np.random.default_rng(0)
    factors = np.stack([rng.integers(0, s, 300) for s in FACTOR_SIZES], axis=1)  # more than one 128-row pass
    first = render_dsprites(factors)
    np.testing.assert_array_equal(first, render(factors))
    # Batch composition does not matter: each row renders alone to the same image.
    for row in (0, 100, 255):
        np.testing.assert_array_equal(render(factors[row : row + 1])[0], first[row])
    a, b, c = (_one(shape, 5, 0) for shape in (SQUARE, ELLIPSE, HEART))
    assert (a != b).sum() > 50 and (a != c).sum() > 50 and (b != c).sum() > 50


def test_render_rejects_bad_factors():
    with pytest.raises(ValueError, match=r"expected integer factor indices \(B, 5\).*got shape \(2, 4\)"):
        render(np.zeros((2, 4), int))
    with pytest.raises(ValueError, match=r"out of range for sizes \(3, 6, 40, 32, 32\)"):
        render(np.array([[3, 0, 0, 0, 0]]))


def test_cache_holds_the_rendered_grid(tmp_path):
    sizes = (3, 2, 3, 2, 2)
    path = tmp_path / "cache.npy"
    packed = load_or_build_cache(path, chunk_size=10, factor_sizes=sizes)
    grid = np.stack(np.unravel_index(np.arange(72), sizes), axis=1)
    np.testing.assert_array_equal(np.unpackbits(packed, axis=-1).astype(bool), render(grid))
    stamp = path.stat().st_mtime_ns
    again = load_or_build_cache(path, factor_sizes=sizes)
    assert path.stat().st_mtime_ns == stamp and isinstance(again, np.memmap)
    assert not list(tmp_path.glob(".tmp-*"))


def test_dataset_reads_an_existing_cache(tmp_path):
    from vaesim.data.procedural import RENDER_VERSION

    path = tmp_path / "dsprites-procedural" / f"dsprites_procedural_v{RENDER_VERSION}.npy"
    path.parent.mkdir()
    # A sparse file of the right shape: all-zero except one rendered row.
    cache = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(737280, 64, 8))
    factors = np.array([[2, 5, 3, 10, 20]])
    index = int(np.ravel_multi_index(tuple(factors.T), FACTOR_SIZES)[0])
    cache[index] = np.packbits(render(factors)[0], axis=-1)
    cache.flush()
    del cache
    ds = get_dataset("dsprites-procedural", root=tmp_path, cache=True)
    np.testing.assert_array_equal(ds.images([index])[0, 0], render(factors)[0])
    assert ds.images([index + 1]).max() == 0  # read from the cache, not re-rendered
