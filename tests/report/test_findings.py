"""Findings computed on synthetic results stores whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from vaesim.report import findings as F
from vaesim.report.tables import swap_sides


def _by_name(table: pd.DataFrame, prefix: str) -> pd.Series:
    rows = table[table["finding"].str.startswith(prefix)]
    assert len(rows) == 1, f"expected one finding starting with {prefix!r}, got {list(table['finding'])}"
    return rows.iloc[0]


# ------------------------------------------------------------------ claim 1
def test_convergence_steps_match_the_closed_form(synthetic):
    # encoder: 0.5 + 0.5 * t / (0.3 T) >= 0.9 from t = 0.24 T -> first checkpoint 250 (0.25)
    # decoder: 0.5 + 0.5 * t / T >= 0.9 from t = 0.8 T -> 750 gives 0.875, so the final step 1000
    table = F.convergence_table(synthetic.results())
    assert "input" not in set(table["layer"])
    encoder = table[table["group"] == "encoder"]
    decoder = table[table["group"] == "decoder"]
    assert set(encoder["converged_step"]) == {250}
    assert set(decoder["converged_step"]) == {1000}
    assert np.allclose(encoder["converged_fraction"], 0.25)
    assert set(table["n_checkpoints"]) == {5}
    assert len(table) == 8 * (len(synthetic.layers) - 1)


def test_encoder_converging_first_holds(synthetic):
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == F.HOLDS
    assert row["value"] == pytest.approx(1.0 - 0.25)
    assert "encoder first in 8/8 runs" in row["detail"]


def test_late_heads_do_not_hide_an_early_trunk(synthetic):
    # trunk (conv1-4, fc) converges at 0.25 of training, the four heads only at the end, like the
    # decoder: per-run mean over encoder layers = (5 * 0.25 + 4 * 1.0) / 9, still before the decoder
    synthetic.head_speed = 1.0
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == F.HOLDS
    assert row["value"] == pytest.approx(1.0 - (5 * 0.25 + 4 * 1.0) / 9)


def test_decoder_converging_first_does_not_hold(synthetic):
    synthetic.encoder_speed, synthetic.decoder_speed = 1.0, 0.3
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == F.DOES_NOT_HOLD
    assert row["value"] == pytest.approx(0.25 - 1.0)


def test_equal_speeds_do_not_hold(synthetic):
    synthetic.encoder_speed = synthetic.decoder_speed = 0.5
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == F.DOES_NOT_HOLD
    assert row["value"] == pytest.approx(0.0)


def test_too_few_checkpoints_is_not_enough_data(synthetic):
    synthetic.steps = (0, 1000)
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == F.NOT_ENOUGH_DATA
    assert math.isnan(row["value"])


def test_convergence_ignores_orientation(synthetic):
    results = synthetic.results()
    swapped = swap_sides(results)
    assert F.claim_encoder_first(swapped) == F.claim_encoder_first(results)


# ------------------------------------------------------------------ claim 2
def test_agreement_by_layer_means(synthetic):
    table = F.agreement_by_layer(synthetic.results(), comparison="params")
    assert list(table["layer"]) == list(synthetic.layers)  # input-to-output order, every layer
    by_layer = table.set_index("layer")["mean"]
    assert by_layer["encoder.conv1"] == pytest.approx(0.95)
    assert by_layer["encoder.mean"] == pytest.approx(0.6)
    assert set(table["n_pairs"]) == {12}  # C(4, 2) parameter pairs x 2 seeds


def test_trunk_agreement_holds(synthetic):
    row = F.claim_encoder_agreement(synthetic.results(), comparison="params")
    assert row["verdict"] == F.HOLDS
    assert row["value"] == pytest.approx(0.95)


@pytest.mark.parametrize("trunk, heads", [(0.8, 0.6), (0.92, 0.97)])
def test_low_or_below_heads_trunk_does_not_hold(synthetic, trunk, heads):
    synthetic.trunk_agreement, synthetic.head_agreement = trunk, heads
    row = F.claim_encoder_agreement(synthetic.results(), comparison="params")
    assert row["verdict"] == F.DOES_NOT_HOLD
    assert row["value"] == pytest.approx(trunk)


def test_agreement_without_objective_pairs_is_not_enough_data(default_results):
    row = F.claim_encoder_agreement(default_results, comparison="objectives")
    assert row["verdict"] == F.NOT_ENOUGH_DATA


# ------------------------------------------------------------------ claim 3
def test_mean_sample_similarity_per_run(synthetic):
    table = F.mean_sample_similarity(synthetic.results())
    assert len(table) == 8
    expected = 0.95 - 0.05 * table["param"]
    assert np.allclose(table["score"], expected)


def test_collapse_with_strength_holds_and_matches_scipy(synthetic):
    results, runs = synthetic.results(), synthetic.runs()
    rows = F.claims_posterior_collapse(results, runs)
    cka_row, dims_row = rows
    assert cka_row["verdict"] == F.HOLDS and dims_row["verdict"] == F.HOLDS
    params = [p for p, _ in synthetic.run_list()]
    reference = stats.spearmanr(params, [0.95 - 0.05 * p for p in params]).statistic
    assert cka_row["value"] == pytest.approx(reference) == pytest.approx(-1.0)
    dims_reference = stats.spearmanr(runs["param"], runs["active_dims"]).statistic
    assert dims_row["value"] == pytest.approx(dims_reference)


def test_similarity_rising_with_strength_does_not_hold(synthetic):
    synthetic.mean_sample = lambda param: 0.5 + 0.05 * param
    row = F.claims_posterior_collapse(synthetic.results(), None)[0]
    assert row["verdict"] == F.DOES_NOT_HOLD
    assert row["value"] == pytest.approx(1.0)


def test_annealed_capacity_is_a_reversed_strength(synthetic):
    # larger C_max = weaker regulariser: similarity rising with C_max is the paper's direction
    synthetic.objective, synthetic.param_name = "annealed_vae", "c_max"
    synthetic.params = (5.0, 10.0, 25.0)
    synthetic.mean_sample = lambda c_max: 0.5 + 0.01 * c_max
    row = F.claims_posterior_collapse(synthetic.results(), None)[0]
    assert "annealed_vae" in row["finding"]
    assert row["verdict"] == F.HOLDS
    assert row["value"] == pytest.approx(-1.0)


def test_two_strengths_are_not_enough_data(synthetic):
    synthetic.params = (1.0, 4.0)
    rows = F.claims_posterior_collapse(synthetic.results(), synthetic.runs())
    assert [r["verdict"] for r in rows] == [F.NOT_ENOUGH_DATA, F.NOT_ENOUGH_DATA]


# ------------------------------------------------------------------ claim 4
def test_procrustes_above_cka_holds(default_results):
    row = F.claim_procrustes_above_cka(default_results)
    assert row["verdict"] == F.HOLDS
    assert row["value"] == pytest.approx(1.0)


def test_procrustes_below_cka_does_not_hold(synthetic):
    synthetic.procrustes = np.square
    row = F.claim_procrustes_above_cka(synthetic.results())
    assert row["verdict"] == F.DOES_NOT_HOLD
    # equality only where CKA is 0 or 1; unrelated pairs have 0 < CKA < 0.5
    assert row["value"] == pytest.approx(0.0)


# ------------------------------------------------------------------ all
def test_compute_findings_table(synthetic):
    table = F.compute_findings(synthetic.results(), synthetic.runs())
    assert list(table.columns) == list(F.FINDING_COLUMNS)
    assert set(table["verdict"]) <= {F.HOLDS, F.DOES_NOT_HOLD, F.NOT_ENOUGH_DATA}
    assert table["definition"].str.len().min() > 40
    text = F.format_findings(table)
    assert "claim 1" in text and "holds" in text


def test_missing_columns_are_named(default_results):
    with pytest.raises(ValueError, match=r"missing columns \['a_step'\]"):
        F.compute_findings(default_results.drop(columns=["a_step"]))
    with pytest.raises(TypeError, match="expected a pandas DataFrame"):
        F.compute_findings([1, 2])


def test_empty_store_gives_not_enough_data(default_results):
    table = F.compute_findings(default_results.iloc[:0], None)
    assert set(table["verdict"]) == {F.NOT_ENOUGH_DATA}
