"""The metric diagnostic of the paper's appendix: inflation with width, unrelated (row-permuted) data."""

from __future__ import annotations

import numpy as np
import pytest

from vaesim.similarity.diagnostics import row_permuted_scores, width_sweep


def _textbook_cka(x: np.ndarray, y: np.ndarray) -> float:
    x = x - x.mean(0)
    y = y - y.mean(0)
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def test_width_sweep_matches_a_textbook_cka_of_the_same_draws():
    table = width_sweep(50, [5, 200], repeats=2, seed=4, metrics=("cka",))
    rng = np.random.default_rng(4)
    expected = []
    for width in (5, 200):
        scores = []
        for _ in range(2):
            x, y = rng.standard_normal((50, width)), rng.standard_normal((50, width))
            scores.append(_textbook_cka(x, y))
        expected.append(np.mean(scores))
    assert np.allclose(table["mean"], expected, rtol=1e-10)


def test_unrelated_matrices_look_similar_when_width_outgrows_n():
    table = width_sweep(40, [2, 40, 1000], repeats=3, seed=0).pivot(index="width", columns="metric", values="mean")
    assert table.loc[2, "cka"] < 0.2
    assert table.loc[1000, "cka"] > 0.85  # independent noise, yet "similar"
    assert list(table["cka"]) == sorted(table["cka"])  # grows with the width
    assert (table["procrustes"] >= table["cka"]).all()  # Procrustes above CKA on unrelated data
    assert np.all(np.abs(table["cka_debiased"]) < 0.05)  # the debiased estimator is not fooled


def test_row_permuted_copy_scores_low_with_cka_and_higher_with_procrustes():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 20)) @ rng.normal(size=(20, 20))
    scores = row_permuted_scores(x, seed=2)
    assert scores["cka"] < 0.2 and scores["procrustes"] > scores["cka"]
    same = row_permuted_scores(x, x[:, ::-1].copy(), seed=2)
    assert same["cka"] < 0.2
    with pytest.raises(ValueError, match="same number of rows"):
        row_permuted_scores(x, x[:10])


def test_width_sweep_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n must be >= 4"):
        width_sweep(3, [2])
    with pytest.raises(ValueError, match="widths must be positive"):
        width_sweep(10, [0])
