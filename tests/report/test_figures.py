"""Figures drawn from synthetic stores: layer order, colour families, graceful skips, MDS."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from vaesim.models import LAYER_NAMES
from vaesim.report import figures as FG


def _close(fig):
    plt.close(fig)


def test_heatmap_rows_and_columns_go_input_to_output(synthetic):
    fig = FG.figure_heatmap(synthetic.results())
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(LAYER_NAMES)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(LAYER_NAMES)
    matrix = ax.images[0].get_array()
    # diagonal = synthetic agreement of the same layer across beta 1 and beta 8: heads 0.6, trunk 0.95
    assert matrix[LAYER_NAMES.index("encoder.mean"), LAYER_NAMES.index("encoder.mean")] == pytest.approx(0.6)
    assert matrix[1, 1] == pytest.approx(0.95)
    assert "beta=1" in ax.get_ylabel() and "beta=8" in ax.get_xlabel()
    _close(fig)


def test_learning_dynamics_colours_encoder_blue_decoder_orange(synthetic):
    fig = FG.figure_learning_dynamics(synthetic.results())
    lines = {line.get_label(): line for line in fig.axes[0].get_lines() if not line.get_label().startswith("_")}
    assert list(lines) == list(LAYER_NAMES[1:])  # input excluded, order kept
    for name, line in lines.items():
        red, _, blue, _ = line.get_color()
        assert (blue > red) if name.startswith("encoder.") else (red > blue), name
    conv1 = lines["encoder.conv1"].get_ydata()
    assert conv1[-1] == pytest.approx(1.0) and conv1[0] == pytest.approx(0.5)
    _close(fig)


def test_embedding_vectorises_each_runs_upper_triangle(synthetic):
    info, vectors = FG.similarity_vectors(synthetic.results())
    assert len(info) == 8
    n_layers = len(LAYER_NAMES)
    assert vectors.shape == (8, n_layers * (n_layers - 1) // 2)
    fig = FG.figure_embedding(synthetic.results())
    assert len(fig.axes) == 2
    _close(fig)


def test_classical_mds_reproduces_planar_distances():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(7, 2))
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    embedded = FG.classical_mds(distances, 2)
    recovered = np.linalg.norm(embedded[:, None] - embedded[None], axis=-1)
    np.testing.assert_allclose(recovered, distances, atol=1e-10)


def test_figures_without_data_raise_not_enough_data(synthetic):
    synthetic.steps = (1000,)
    synthetic.params = (2.0,)
    results = synthetic.results()
    for function in (FG.figure_learning_dynamics, FG.figure_layer_pairs, FG.figure_embedding):
        with pytest.raises(FG.NotEnoughData):
            function(results)
    with pytest.raises(FG.NotEnoughData, match="no rows of metric 'cka'"):
        FG.figure_heatmap(results.iloc[:0])


def test_make_figures_records_skips(tmp_path, synthetic):
    synthetic.steps = (1000,)
    outputs = FG.make_figures(synthetic.results(), synthetic.runs(), tmp_path)
    skipped = {o.name for o in outputs if o.skipped}
    assert {"learning_dynamics", "layer_pairs"} <= skipped
    drawn = [o for o in outputs if not o.skipped]
    assert drawn and all(o.png.is_file() and o.svg.is_file() for o in drawn)
    assert {p.name for p in tmp_path.iterdir()} == {f"{o.name}.{s}" for o in drawn for s in ("png", "svg")}
