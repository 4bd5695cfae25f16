"""StreamingCKA equals the in-memory result for any split into batches."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import similarity_reference as ref
from vaesim.similarity import StreamingCKA, linear_cka


def _stream(x, y, cuts, debiased):
    acc = StreamingCKA(debiased=debiased)
    bounds = [0, *sorted(set(cuts)), len(x)]
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if stop > start:
            acc.update(x[start:stop], y[start:stop])
    return acc.compute()


@settings(max_examples=30, deadline=None)
@given(
    st.integers(8, 60), st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**31 - 1),
    st.lists(st.integers(1, 59), max_size=6), st.booleans(),
)
def test_streaming_equals_in_memory(n, px, py, seed, cuts, debiased):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, px)) + rng.normal(size=px) * 10
    y = x[:, :1] * rng.normal(size=py) + rng.normal(size=(n, py))
    cuts = [c for c in cuts if c < n]
    assert _stream(x, y, cuts, debiased) == pytest.approx(linear_cka(x, y, debiased=debiased), abs=1e-9)


@pytest.mark.parametrize("debiased", [False, True])
def test_streaming_float32_large_offset_one_row_first_batch(debiased):
    rng = np.random.default_rng(4)
    n = 500
    signal = rng.normal(size=(n, 3))
    x = (np.maximum(signal @ rng.normal(size=(3, 40)), 0) + 1e3).astype(np.float32)
    y = (signal @ rng.normal(size=(3, 20)) + 0.5 * rng.normal(size=(n, 20)) + 300).astype(np.float32)
    expected = (ref.cka_debiased if debiased else ref.cka)(x.astype(np.float64), y.astype(np.float64))
    streamed = _stream(x, y, [1, 2, 77, 300], debiased)
    assert streamed == pytest.approx(expected, abs=1e-6)
    assert streamed == pytest.approx(linear_cka(x, y, debiased=debiased), abs=1e-9)


def test_streaming_errors():
    rng = np.random.default_rng(0)
    acc = StreamingCKA()
    acc.update(rng.normal(size=(5, 3)), rng.normal(size=(5, 2)))
    with pytest.raises(ValueError, match=r"x has 4 features but earlier batches had 3"):
        acc.update(rng.normal(size=(5, 4)), rng.normal(size=(5, 2)))
    with pytest.raises(ValueError, match=r"x has 5 examples but y has 4"):
        acc.update(rng.normal(size=(5, 3)), rng.normal(size=(4, 2)))
    with pytest.raises(ValueError, match=r"y: expected finite values"):
        acc.update(rng.normal(size=(2, 3)), np.array([[1.0, np.inf], [0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"StreamingCKA: expected at least 4 examples"):
        StreamingCKA(debiased=True).update(rng.normal(size=(3, 2)), rng.normal(size=(3, 2))).compute()
    constant = StreamingCKA().update(np.ones((6, 2)), rng.normal(size=(6, 2)))
    with pytest.raises(ValueError, match=r"x has zero variance over the 6 examples"):
        constant.compute()
    with pytest.raises(TypeError, match=r"x: expected numeric activations"):
        StreamingCKA().update(np.array([["a"]] * 3), rng.normal(size=(3, 1)))
