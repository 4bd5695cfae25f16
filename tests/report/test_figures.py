"""Figures drawn from synthetic stores: layer order, colour families, graceful skips, MDS."""

from __future__ import annotations

import matplotlib
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
    assert "regularisation" not in ax.get_title() and "averaged over 2 seeds" in ax.get_title()
    _close(fig)


def _labelled_lines(ax):
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def _min_colour_distance(colours) -> float:
    rgb = np.array([matplotlib.colors.to_rgb(c) for c in colours])
    return min(np.linalg.norm(a - b) for i, a in enumerate(rgb) for b in rgb[i + 1:])


def test_learning_dynamics_has_a_panel_per_model_and_distinguishable_layers(synthetic):
    fig = FG.figure_learning_dynamics(synthetic.results())
    n_models = len(synthetic.params)
    encoder_axes, decoder_axes = fig.axes[:n_models], fig.axes[n_models:2 * n_models]
    encoder = [n for n in LAYER_NAMES[1:] if n.startswith("encoder.")]
    decoder = [n for n in LAYER_NAMES[1:] if n.startswith("decoder.")]
    for model_index, (enc_ax, dec_ax) in enumerate(zip(encoder_axes, decoder_axes)):
        beta = f"beta={synthetic.params[model_index]:g}"  # never averaged over strengths
        assert beta in enc_ax.get_title() and beta in dec_ax.get_title() and "mean over 2 seeds" in enc_ax.get_title()
        enc, dec = _labelled_lines(enc_ax), _labelled_lines(dec_ax)
        assert list(enc) == encoder and list(dec) == decoder  # input excluded, order kept
        assert all(line.get_linestyle() == "-" for line in enc.values())
        assert all(line.get_linestyle() == "--" for line in dec.values())
        assert _min_colour_distance([line.get_color() for line in enc.values()]) > 0.2
        assert _min_colour_distance([line.get_color() for line in dec.values()]) > 0.2
        # the threshold is named on the y axis, not by a label inside the plot where the curves run
        assert not any("settled" in text.get_text() for text in enc_ax.texts + dec_ax.texts)
    # the findings' per-metric threshold (0.05 + 0.9 * 0.95 from the untrained baseline), not a constant 0.9
    assert "0.905 settled" in [t.get_text() for t in encoder_axes[0].get_yticklabels()]  # shared y axis: 1st column
    assert [line.get_ydata()[0] for line in encoder_axes[0].get_lines() if line.get_linestyle() == ":"] == \
        [pytest.approx(0.905)]
    conv1 = _labelled_lines(encoder_axes[0])["encoder.conv1"].get_ydata()
    assert conv1[-1] == pytest.approx(1.0) and conv1[0] == pytest.approx(0.5)
    ticks = [t.get_text() for t in decoder_axes[0].get_xticklabels()]
    assert ticks[-1] == "final\n1000"
    _close(fig)


def test_posterior_collapse_has_one_column_per_objective(synthetic):
    import pandas as pd

    other = synthetic.__class__(objective="dip_vae_ii", param_name="lambda_od", params=(1.0, 10.0))
    results = pd.concat([synthetic.results(), other.results()], ignore_index=True)
    runs = pd.concat([synthetic.runs(), other.runs()], ignore_index=True)
    fig = FG.figure_posterior_collapse(results, runs)
    axes = [ax for ax in fig.axes if ax.has_data()]
    assert len(axes) == 4  # (similarity, active dims) x (beta_vae, dip_vae_ii)
    assert sorted(ax.get_xlabel() for ax in axes) == ["beta (beta_vae)", "beta (beta_vae)",
                                                      "lambda_od (dip_vae_ii)", "lambda_od (dip_vae_ii)"]
    for ax in axes:  # each panel shows only its own objective's strengths, and every legend entry is drawn
        xs = {float(x) for line in ax.get_lines() for x in line.get_xdata()}
        assert xs == ({1.0, 10.0} if "lambda_od" in ax.get_xlabel() else set(synthetic.params))
        legend = ax.get_legend()
        if legend is not None:
            assert [t.get_text() for t in legend.get_texts()] == ["one run (seed)", "mean over seeds"]
    _close(fig)


def test_posterior_collapse_shows_the_noise_only_expectation_and_burda_active_dimensions(synthetic):
    fig = FG.figure_posterior_collapse(synthetic.results(), synthetic.runs(), latents=synthetic.latents())
    similarity, active = [ax for ax in fig.axes if ax.has_data()]
    labels = [t.get_text() for t in similarity.get_legend().get_texts()]
    assert labels == ["one run (seed)", "mean over seeds", "noise-only expectation", "its bounds (covariances unknown)"]
    expected = similarity.collections[1].get_offsets()  # the open circles: (strength, expectation) per run
    by_strength = {float(x): float(y) for x, y in expected}
    assert by_strength[8.0] == pytest.approx(synthetic.expected_mean_sample(8))
    assert active.get_ylabel() == "active dimensions (Cov(E[z|x]) > 0.01)"
    points = {float(x): float(y) for x, y in active.collections[0].get_offsets()}
    assert points == {1.0: 9.0, 2.0: 8.0, 4.0: 6.0, 8.0: 2.0}  # 10 - passive at the final step
    _close(fig)


def test_model_styles_separate_objectives_and_order_strengths():
    import pandas as pd

    models = pd.DataFrame({"objective": ["beta_vae"] * 3 + ["dip_vae_ii"], "param_name": ["beta"] * 3 + ["lambda_od"],
                           "param": [1.0, 4.0, 32.0, 10.0]})
    styles = FG.model_styles(models)
    colours = [matplotlib.colors.to_rgb(styles[key][0]) for key in styles]
    assert _min_colour_distance(colours) > 0.15
    # darker = stronger within an objective; no colour is pale (low contrast on white)
    luminance = [0.2126 * r + 0.7152 * g + 0.0722 * b for r, g, b in colours]
    assert luminance[0] > luminance[1] > luminance[2] and max(luminance) < 0.8
    assert styles[("beta_vae", "beta", 1.0)][1] != styles[("dip_vae_ii", "lambda_od", 10.0)][1]


def test_factors_figure_shows_each_layer_per_step_and_model(synthetic):
    import pandas as pd

    results = synthetic.results()
    rows = []
    for (run, objective, param, seed, step, layer), _ in results.groupby(
            ["a_run", "a_objective", "a_param", "a_seed", "a_step", "a_layer"]):
        base = results.iloc[0].to_dict()
        rows.append({**base, "comparison": "factors", "metric": "cka", "a_run": run, "b_run": run,
                     "a_objective": objective, "b_objective": objective, "a_param": param, "b_param": param,
                     "a_seed": seed, "b_seed": seed, "a_step": step, "b_step": step, "a_layer": layer,
                     "b_layer": "factors", "score": step / 1000 * (LAYER_NAMES.index(layer) + 1) / 16})
    table = FG.factors_table(pd.DataFrame(rows))
    conv1 = table[(table["layer"] == "encoder.conv1") & (table["param"] == 1.0)].set_index("step")["score"]
    assert conv1.to_dict() == pytest.approx({s: s / 1000 * 2 / 16 for s in synthetic.steps})
    fig = FG.figure_factors(pd.concat([results, pd.DataFrame(rows)], ignore_index=True))
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == len(synthetic.params)
    assert [t.get_text() for t in image_axes[0].get_yticklabels()] == list(LAYER_NAMES)
    _close(fig)


def test_embedding_vectorises_each_runs_upper_triangle(synthetic):
    info, vectors = FG.similarity_vectors(synthetic.results())
    assert len(info) == 8
    n_layers = len(LAYER_NAMES)
    assert vectors.shape == (8, n_layers * (n_layers - 1) // 2)
    fig = FG.figure_embedding(synthetic.results())
    assert len(fig.axes) == 2
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes] == [("MDS dimension 1", "MDS dimension 2")] * 2
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


def test_agreement_figure_shows_the_untrained_baseline_its_verdict_subtracts(synthetic):
    from vaesim.report.findings import baseline_table

    results = synthetic.results()
    fig = FG.figure_agreement(results)
    ax = fig.axes[0]
    (line,) = [l for l in ax.get_lines() if l.get_label().startswith("baseline: untrained networks")]
    baseline = baseline_table(results).set_index("layer")["untrained_seeds"].dropna()
    order = [t.get_text() for t in ax.get_xticklabels()]
    assert list(line.get_xdata()) == [order.index(name) for name in baseline.index]
    assert list(line.get_ydata()) == list(baseline.to_numpy())
    assert any(t.get_text().startswith("baseline: untrained networks") for t in ax.get_legend().get_texts())
    _close(fig)


def test_the_report_modules_leave_a_users_matplotlib_backend_alone(tmp_path, synthetic):
    """Importing and drawing with vaesim.report keeps the notebook's backend and adds no pyplot figure."""
    import subprocess
    import sys

    script = ("import matplotlib; matplotlib.use('pdf'); import matplotlib.pyplot as plt; "
              "import vaesim.report.figures, vaesim.report.pictures, vaesim.report.training_figures, "
              "vaesim.report.selection, vaesim.report.report; print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "pdf"
    before = plt.get_fignums()
    fig = FG.figure_agreement(synthetic.results())
    assert plt.get_fignums() == before  # not a pyplot figure: nothing to show or leak in a notebook
    png, svg = FG.save_figure(fig, tmp_path, "agreement")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and svg.read_text().lstrip().startswith("<?xml")
