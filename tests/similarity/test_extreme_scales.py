"""Scale invariance at extreme magnitudes; one degenerate pair is NaN + note, not a failed call (issue 10 item 12)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vaesim.similarity import compare, linear_cka, procrustes_distance, procrustes_similarity
from vaesim.similarity import engine


def _pair():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 12))
    y = x @ rng.normal(size=(12, 9)) + rng.normal(size=(60, 9))
    return x, y


def _textbook_cka(x, y):
    x = x - x.mean(0)
    y = y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def _textbook_procrustes(x, y):
    x = x - x.mean(0)
    y = y - y.mean(0)
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    return np.linalg.svd(x.T @ y, compute_uv=False).sum()


@pytest.mark.parametrize("scale", [1e200, 1e-200, 1e300, 1e-300])
def test_measures_are_scale_invariant_at_extreme_magnitudes(scale):
    x, y = _pair()
    assert linear_cka(scale * x, y) == pytest.approx(_textbook_cka(x, y), rel=1e-12)
    assert linear_cka(x, scale * y) == pytest.approx(_textbook_cka(x, y), rel=1e-12)
    assert procrustes_similarity(scale * x, y) == pytest.approx(_textbook_procrustes(x, y), rel=1e-12)
    assert procrustes_distance(x, scale * y) == pytest.approx(math.acos(_textbook_procrustes(x, y)), rel=1e-12)
    assert linear_cka(scale * x, y, debiased=True) == pytest.approx(linear_cka(x, y, debiased=True), rel=1e-9)


@pytest.mark.parametrize("scale", [1e200, 1e-200])
def test_compare_is_scale_invariant_at_extreme_magnitudes(scale):
    x, y = _pair()
    metrics = ("cka", "cka_debiased", "procrustes")
    plain = compare({"a": {"l": x}, "b": {"l": y}}, metrics=metrics)
    scaled = compare({"a": {"l": scale * x}, "b": {"l": y}}, metrics=metrics)
    np.testing.assert_allclose(scaled["score"], plain["score"], rtol=1e-9)
    assert (scaled["note"] == "").all()


def test_a_numerically_failing_pair_is_nan_with_a_note_and_the_others_are_kept(monkeypatch):
    x, y = _pair()
    monkeypatch.setattr(engine, "CLAMP_TOLERANCE", -2.0)  # every score now counts as out of range
    scores = compare({"a": {"l": x}, "b": {"l": y}}, metrics=("cka", "procrustes"))
    assert len(scores) == 6 and scores["score"].isna().all()
    assert scores["note"].str.contains("outside \\[0, 1\\]").all()
