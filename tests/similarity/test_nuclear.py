"""The nuclear norm of a cross block by the eigenvalues of its smaller Gram, and its stated error bound."""

from __future__ import annotations

import numpy as np
import pytest

from vaesim.similarity.nuclear import nuclear_norm, nuclear_norm_gram


def _svd_nuclear(block: np.ndarray) -> float:
    return float(np.linalg.svd(block, compute_uv=False).sum())


def _blocks():
    """Cross blocks of the kinds a study meets: full rank, graded spectra, rank-deficient, tall, wide, tiny."""
    rng = np.random.default_rng(0)
    out = {}
    for name, (r, s) in {"square": (200, 200), "tall": (300, 40), "wide": (30, 400)}.items():
        out[name] = rng.standard_normal((r, s))
        out[f"{name}-graded"] = rng.standard_normal((r, s)) * np.logspace(0, -12, s)
    low = rng.standard_normal((150, 3)) @ rng.standard_normal((3, 150))
    out["rank-3"] = low
    out["rank-3-scaled-1e150"] = low * 1e150
    out["rank-3-scaled-1e-150"] = low * 1e-150
    out["one-by-one"] = np.array([[-3.0]])
    return out


@pytest.mark.parametrize("name", sorted(_blocks()))
def test_the_gram_route_is_within_its_stated_bound_of_the_svd(name):
    block = _blocks()[name]
    exact = _svd_nuclear(block)
    for proven in (False, True):
        value, bound = nuclear_norm_gram(block, proven=proven)
        # the SVD's own error is ~u ||M||_2 per value: allowed on top of the bound
        assert abs(value - exact) <= bound + 1e-13 * exact, (name, proven, value - exact, bound)


def test_a_rank_deficient_block_takes_the_svd_and_a_well_conditioned_one_the_gram_route():
    blocks = _blocks()
    scale = _svd_nuclear(blocks["rank-3"])
    value, method = nuclear_norm(blocks["rank-3"], 1e-9 * scale)
    assert method == "svd"  # 147 zero singular values: sqrt of rounding noise would count ~1e-8 each
    assert value == _svd_nuclear(blocks["rank-3"])
    well = blocks["tall"]
    value, method = nuclear_norm(well, 1e-9 * _svd_nuclear(well))
    assert method == "gram"
    assert value == pytest.approx(_svd_nuclear(well), rel=1e-12)


def test_tolerance_zero_always_takes_the_svd_and_an_empty_block_is_zero():
    block = _blocks()["square"]
    assert nuclear_norm(block, 0.0) == (_svd_nuclear(block), "svd")
    assert nuclear_norm(np.zeros((0, 5)), 1.0) == (0.0, "svd")


def test_the_gram_route_alone_would_miss_the_contract_on_a_rank_deficient_block():
    """Why the bound is checked: without it, the rank-3 block's score would be off by more than its bound
    allows for an accepted block (the sqrt of rounding noise in ~147 zero eigenvalues)."""
    block = _blocks()["rank-3"]
    value, bound = nuclear_norm_gram(block)
    exact = _svd_nuclear(block)
    assert bound > 1e-9 * exact
    assert abs(value - exact) > 1e-13 * exact
