"""plot_layer_heatmap and plot_score_by_step draw any compare() table (and a study's results) as they are."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import vaesim
from vaesim.report import plot_layer_heatmap, plot_score_by_step
from vaesim.similarity import compare


@pytest.fixture(scope="module")
def activations():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(60, 5))
    layers_a = {"conv": base @ rng.normal(size=(5, 40)), "fc": np.tanh(base @ rng.normal(size=(5, 12))),
                "mean": base[:, :3] + 0.1 * rng.normal(size=(60, 3))}
    layers_b = {"conv": base @ rng.normal(size=(5, 40)) + rng.normal(size=(60, 40)), "fc": rng.normal(size=(60, 12))}
    return layers_a, layers_b


def test_heatmap_draws_a_compare_table_cell_for_cell(activations):
    a, b = activations
    table = compare({"a": a, "b": b}, metrics=("cka",), model_pairs=[("a", "b")])
    fig = plot_layer_heatmap(table)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    expected = table.pivot(index="a_layer", columns="b_layer", values="score").loc[list(a), list(b)].to_numpy()
    np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), expected)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(a)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(b)
    assert ax.get_xlabel() == "layer of b" and ax.get_ylabel() == "layer of a"
    cells = [t for t in ax.texts]
    assert len(cells) == len(a) * len(b)
    assert {t.get_text() for t in cells} == {f"{v:.2f}" for v in expected.ravel()}
    assert fig.axes[1].get_ylabel() == "cka"  # the colour bar


def test_heatmap_of_a_model_with_itself_is_the_full_symmetric_matrix(activations):
    a, _ = activations
    table = compare({"a": a}, metrics=("cka", "procrustes"))  # each unordered layer pair once
    assert len(table) == 2 * 6
    ax = plot_layer_heatmap(table, metric="procrustes").axes[0]
    matrix = np.asarray(ax.images[0].get_array())
    assert matrix.shape == (3, 3)
    np.testing.assert_array_equal(matrix, matrix.T)
    rows = table[table.metric == "procrustes"]
    for row in rows.itertuples():
        i, j = list(a).index(row.a_layer), list(a).index(row.b_layer)
        assert matrix[i, j] == row.score


def test_heatmap_into_a_given_axes_and_of_a_compare_models_table():
    torch = pytest.importorskip("torch")
    net_a = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    net_b = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    table = vaesim.compare_models(net_a, net_b, torch.randn(40, 6), names=("relu net", "tanh net"))
    fig = Figure()
    ax = fig.add_subplot()
    assert vaesim.plot_layer_heatmap(table, ax=ax) is fig
    assert np.asarray(ax.images[0].get_array()).shape == (2, 2)
    assert ax.get_ylabel() == "layer of relu net" and "tanh net" in ax.get_title()


def test_heatmap_refuses_what_it_cannot_draw_as_it_is(activations):
    a, b = activations
    table = compare({"a": a, "b": b}, metrics=("cka", "procrustes"))
    with pytest.raises(ValueError, match=r"metrics \['cka', 'procrustes'\]; choose one with metric="):
        plot_layer_heatmap(table)
    with pytest.raises(ValueError, match="3 model pairs"):
        plot_layer_heatmap(table, metric="cka")
    ax = plot_layer_heatmap(table, metric="cka", a_model="a", b_model="b").axes[0]
    assert np.asarray(ax.images[0].get_array()).shape == (3, 2)
    with pytest.raises(ValueError, match=r"lacks the columns \['a_layer', 'b_layer'\]"):
        plot_layer_heatmap(pd.DataFrame({"layer": ["x"], "score": [0.5]}))
    with pytest.raises(TypeError, match="must be a pandas DataFrame"):
        plot_layer_heatmap(table.to_dict())
    twice = pd.concat([table, table])
    with pytest.raises(ValueError, match="2 rows for a_layer='conv', b_layer='conv'"):
        plot_layer_heatmap(twice, metric="cka", a_model="a", b_model="b")


def checkpoint_table(activations) -> pd.DataFrame:
    """compare() tables of three checkpoints joined with a step column, two seeds each."""
    a, _ = activations
    rng = np.random.default_rng(1)
    frames = []
    for step in (0, 100, 1000):
        for seed in (0, 1):
            noisy = {k: v + (1.0 / (1 + step)) * rng.normal(size=v.shape) * (1 + seed) for k, v in a.items()}
            frame = compare({"final": a, "ckpt": noisy}, metrics=("cka",), model_pairs=[("final", "ckpt")])
            frames.append(frame.assign(step=step, seed=seed))
    return pd.concat(frames, ignore_index=True)


def test_score_by_step_draws_one_line_per_layer_pair(activations):
    table = checkpoint_table(activations)
    pairs = [("conv", "conv"), ("fc", "fc")]
    ax = plot_score_by_step(table, layer_pairs=pairs).axes[0]
    assert len(ax.lines) == 2
    for line, (la, lb) in zip(ax.lines, pairs):
        rows = table[(table.a_layer == la) & (table.b_layer == lb)]
        expected = rows.groupby("step")["score"].mean()
        np.testing.assert_array_equal(line.get_xdata(), expected.index.to_numpy())
        np.testing.assert_allclose(line.get_ydata(), expected.to_numpy())
        assert line.get_label() == f"{la} (mean of 2 rows)"
    assert ax.get_xlabel() == "training step" and ax.get_ylabel() == "cka"
    assert len(ax.collections) == 2  # the min-max band of the two seeds


def test_score_by_step_reads_a_study_results_table():
    results = pd.DataFrame({
        "comparison": "seeds", "metric": "cka", "a_run": "r0", "b_run": "r1", "a_step": [0, 10, 100, 1000] * 2,
        "b_step": [0, 10, 100, 1000] * 2, "a_layer": ["encoder.fc"] * 4 + ["encoder.mean"] * 4,
        "b_layer": ["encoder.fc"] * 4 + ["encoder.mean"] * 4, "score": np.linspace(0.1, 0.9, 8),
    })
    ax = plot_score_by_step(results).axes[0]
    assert [line.get_label() for line in ax.lines] == ["encoder.fc", "encoder.mean"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), results.score[4:])
    assert ax.get_xscale() == "symlog"  # steps over three decades


def test_score_by_step_refuses_a_table_without_steps(activations):
    a, b = activations
    table = compare({"a": a, "b": b}, metrics=("cka",), model_pairs=[("a", "b")])
    with pytest.raises(ValueError, match=r"lacks the columns \['step'\]"):
        plot_score_by_step(table)
    with pytest.raises(ValueError, match=r"layer_pairs \[\('conv', 'nope'\)\] are not in the table"):
        plot_score_by_step(checkpoint_table(activations), layer_pairs=[("conv", "nope")])
