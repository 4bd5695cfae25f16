"""Findings on synthetic results stores whose answers are known: each claim holds, fails, or lacks data."""

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


def _layers(synthetic, group: str) -> list[str]:
    return [name for name in synthetic.layers if name.startswith(group + ".")]


# ------------------------------------------------------------------ claim 1
def test_settle_points_match_the_closed_form(synthetic):
    # encoder: 0.5 + 0.5 * t / (0.3 T) >= 0.9 from t = 0.24 T -> settled from the first learned checkpoint 250
    # decoder: 0.5 + 0.5 * t / T >= 0.9 from t = 0.8 T -> 750 gives 0.875, so only the final step 1000
    table = F.convergence_table(synthetic.results())
    assert "input" not in set(table["layer"])
    encoder = table[table["group"] == "encoder"]
    decoder = table[table["group"] == "decoder"]
    assert set(encoder["settled_step"]) == {250}
    assert set(decoder["settled_step"]) == {1000}
    assert np.allclose(encoder["settled_fraction"], 0.25)
    assert np.allclose(table["initial_score"], 0.5) and table["changed"].all()
    assert set(table["n_checkpoints"]) == {4}  # step 0 is the baseline, not a learned checkpoint
    assert len(table) == 8 * (len(synthetic.layers) - 1)
    # progress AUC of the decoder's linear curve (0.5 -> 1 over [0, T]) is 0.5 by the trapezoid rule
    assert np.allclose(decoder["progress_auc"], 0.5)


def test_encoder_settling_first_holds_with_a_paired_test(synthetic):
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == F.HOLDS
    assert row["value"] == pytest.approx(1.0 - 0.25)
    assert row["n"] == 8 and row["ci_low"] == pytest.approx(0.75) and row["ci_high"] == pytest.approx(0.75)
    assert "encoder first in 8/8 runs" in row["detail"]


def test_late_heads_do_not_hide_an_early_trunk(synthetic):
    # trunk (conv1-4, fc) settles at 0.25 of training, the four heads only at the end, like the
    # decoder: per-run mean over encoder layers = (5 * 0.25 + 4 * 1.0) / 9, still before the decoder
    synthetic.head_speed = 1.0
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == F.HOLDS
    assert row["value"] == pytest.approx(1.0 - (5 * 0.25 + 4 * 1.0) / 9)


def test_decoder_settling_first_does_not_hold(synthetic):
    synthetic.encoder_speed, synthetic.decoder_speed = 1.0, 0.3
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == F.DOES_NOT_HOLD
    assert row["value"] == pytest.approx(0.25 - 1.0)


def test_equal_speeds_do_not_hold(synthetic):
    synthetic.encoder_speed = synthetic.decoder_speed = 0.5
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == F.DOES_NOT_HOLD
    assert row["value"] == pytest.approx(0.0)


def test_a_curve_that_crosses_and_falls_back_settles_late(synthetic):
    # The issue's counterexample, with learned checkpoints at 0.2 .. 1.0 of training: encoder curves
    # 0.95, 0.3, 0.5, 0.95 settle at 0.8; decoder curves 0.2, 0.6, 0.92, 0.97 settle at 0.6. A "first
    # crossing" rule would call the encoder settled at 0.2 and the claim "holds".
    synthetic.steps = (0, 200, 400, 600, 800, 1000)
    encoder = {0: 0.2, 200: 0.95, 400: 0.3, 600: 0.5, 800: 0.95}
    decoder = {0: 0.1, 200: 0.2, 400: 0.6, 600: 0.92, 800: 0.97}
    synthetic.curves = {**{l: encoder for l in _layers(synthetic, "encoder")},
                        **{l: decoder for l in _layers(synthetic, "decoder")}}
    table = F.convergence_table(synthetic.results())
    assert set(table.loc[table["group"] == "encoder", "settled_step"]) == {800}
    assert set(table.loc[table["group"] == "decoder", "settled_step"]) == {600}
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == F.DOES_NOT_HOLD
    assert row["value"] == pytest.approx(0.6 - 0.8)


def test_the_issue_counterexample_with_a_high_initial_score_never_holds(synthetic):
    # Literally as reported: the encoder is at 0.95 at step 0, dips, and comes back: its initial and
    # final states agree, so it counts as "not changed by training" and nothing supports the claim.
    encoder = {0: 0.95, 250: 0.3, 500: 0.5, 750: 0.95}
    decoder = {0: 0.2, 250: 0.6, 500: 0.92, 750: 0.97}
    synthetic.curves = {**{l: encoder for l in _layers(synthetic, "encoder")},
                        **{l: decoder for l in _layers(synthetic, "decoder")}}
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == F.NOT_ENOUGH_DATA
    assert "not changed by training" in row["detail"]


def test_layers_that_training_did_not_change_are_left_out(synthetic):
    # conv1-conv3 are at 0.99 of their final state at initialisation (as on dSprites): they must not
    # count as "learned at once"; the verdict comes from the layers that moved
    early = {0: 0.99, 250: 0.995, 500: 0.999, 750: 1.0}
    synthetic.curves = {name: early for name in ("encoder.conv1", "encoder.conv2", "encoder.conv3")}
    synthetic.encoder_speed = synthetic.decoder_speed = 1.0  # everything that moved settles at the end
    table = F.convergence_table(synthetic.results())
    assert not table.loc[table["layer"] == "encoder.conv1", "changed"].any()
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == F.DOES_NOT_HOLD and row["value"] == pytest.approx(0.0)
    assert "24 of" in row["detail"] and "encoder.conv1 (8)" in row["detail"]


def test_layers_that_sampling_noise_keeps_below_the_threshold_are_left_out(synthetic):
    # a decoder whose final state recorded with two eps only reaches CKA 0.6 cannot settle before the
    # final step whatever it learned: its late settle point is noise, not evidence for claim 1
    synthetic.noise_floor = 0.6
    table = F.convergence_table(synthetic.results())
    assert table.loc[table["layer"] == "decoder.fc1", "noise_limited"].all()
    assert not table.loc[table["layer"] == "encoder.conv1", "noise_limited"].any()  # upstream of the noise
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == F.NOT_ENOUGH_DATA and "limited by sampling noise" in row["detail"]
    synthetic.noise_floor = 0.97  # noise leaves the decoder's curves free to settle: the verdict stands
    assert F.claim_encoder_first(synthetic.results())["verdict"] == F.HOLDS
    assert F.baseline_table(synthetic.results()).set_index("layer").loc["decoder.fc1", "noise_floor"] == 0.97


def test_untrained_networks_give_not_enough_data(synthetic):
    flat = {0: 0.999, 250: 0.999, 500: 1.0, 750: 1.0}
    synthetic.curves = {name: flat for name in synthetic.layers}
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == F.NOT_ENOUGH_DATA and math.isnan(row["value"])


def test_without_the_initial_state_there_is_no_baseline(synthetic):
    synthetic.steps = (250, 500, 750, 1000)
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == F.NOT_ENOUGH_DATA
    assert "step 0" in row["detail"]


def test_too_few_checkpoints_or_runs_is_not_enough_data(synthetic):
    synthetic.steps = (0, 500, 1000)  # two learned checkpoints
    assert F.claim_encoder_first(synthetic.results())["verdict"] == F.NOT_ENOUGH_DATA
    synthetic.steps, synthetic.params = (0, 250, 500, 750, 1000), (1.0, 2.0)  # 4 runs: p >= 1/16 at best
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == F.NOT_ENOUGH_DATA and row["n"] == 4


def test_half_the_runs_settling_encoder_first_does_not_hold(synthetic):
    results = synthetic.results()
    synthetic.encoder_speed, synthetic.decoder_speed = 1.0, 0.3
    reversed_runs = synthetic.results()
    late = [synthetic.run_id(p, 1) for p in synthetic.params]
    mixed = pd.concat([results[~results["a_run"].isin(late)], reversed_runs[reversed_runs["a_run"].isin(late)]])
    row = F.claim_encoder_first(mixed)
    assert row["verdict"] == F.DOES_NOT_HOLD
    assert row["value"] == pytest.approx(0.0)


def test_convergence_ignores_orientation(synthetic):
    results = synthetic.results()
    assert F.claim_encoder_first(swap_sides(results)) == F.claim_encoder_first(results)


# ------------------------------------------------------------------ baselines and claim 2
def test_baseline_table(synthetic):
    table = F.baseline_table(synthetic.results()).set_index("layer")
    conv = table.loc["encoder.conv1"]
    assert conv["untrained_seeds"] == pytest.approx(0.7)
    assert conv["trained_seeds"] == pytest.approx(0.95)
    assert conv["initial_to_final"] == pytest.approx(0.5)
    assert conv["params_initial"] == pytest.approx(1.0)  # same seed = same initial weights
    assert conv["params_final"] == pytest.approx(0.95)
    assert table.loc["decoder.fc1", "params_initial"] == pytest.approx(0.05)  # downstream of independent noise
    assert math.isnan(conv["objectives_final"])


def test_agreement_by_layer_means(synthetic):
    table = F.agreement_by_layer(synthetic.results(), comparison="params")
    assert list(table["layer"]) == list(synthetic.layers)  # input-to-output order, every layer
    by_layer = table.set_index("layer")["mean"]
    assert by_layer["encoder.conv1"] == pytest.approx(0.95)
    assert by_layer["encoder.mean"] == pytest.approx(0.6)
    assert set(table["n_pairs"]) == {12}  # C(4, 2) parameter pairs x 2 seeds


def test_trunk_agreement_above_the_untrained_baseline_holds(synthetic):
    row = F.claim_encoder_agreement(synthetic.results(), comparison="params")
    assert row["verdict"] == F.HOLDS
    assert row["value"] == pytest.approx(0.95 - 0.7)
    assert row["ci_low"] > 0 and row["n"] == 12
    assert "shared initial weights" in row["detail"]


@pytest.mark.parametrize("trunk, heads, untrained", [(0.7, 0.6, 0.7), (0.92, 0.97, 0.7), (0.95, 0.6, 0.96)])
def test_trunk_at_the_baseline_or_below_the_heads_does_not_hold(synthetic, trunk, heads, untrained):
    synthetic.trunk_agreement, synthetic.head_agreement, synthetic.untrained_trunk = trunk, heads, untrained
    row = F.claim_encoder_agreement(synthetic.results(), comparison="params")
    assert row["verdict"] == F.DOES_NOT_HOLD
    assert row["value"] == pytest.approx(trunk - untrained)


def test_agreement_of_layers_training_did_not_move_is_no_evidence(synthetic):
    # untrained control: every trunk layer at its final state from the start; runs sharing a seed then
    # agree because they share their initial weights, which the verdict must not call learned agreement
    flat = {0: 0.999, 250: 0.999, 500: 1.0, 750: 1.0}
    synthetic.curves = {name: flat for name in synthetic.layers}
    row = F.claim_encoder_agreement(synthetic.results(), comparison="params")
    assert row["verdict"] == F.NOT_ENOUGH_DATA
    assert "no trunk layer was changed by training" in row["detail"]


def test_agreement_without_a_baseline_or_pairs_is_not_enough_data(synthetic, default_results):
    assert F.claim_encoder_agreement(default_results, comparison="objectives")["verdict"] == F.NOT_ENOUGH_DATA
    synthetic.steps = (250, 500, 750, 1000)
    row = F.claim_encoder_agreement(synthetic.results(), comparison="params")
    assert row["verdict"] == F.NOT_ENOUGH_DATA and "baseline" in row["detail"]


# ------------------------------------------------------------------ claim 3
def test_collapse_table_pairs_cka_with_passive_dimensions(synthetic):
    table = F.collapse_table(synthetic.results(), synthetic.latents())
    assert len(table) == 8 * 4 and table["step"].min() == 250  # learned checkpoints only
    expected = [synthetic.passive(p, s / 1000) for p, s in zip(table["param"], table["step"])]
    assert list(table["passive_dims"]) == expected
    assert np.allclose(table["score"], 0.95 - 0.08 * table["passive_dims"])


def test_cka_falling_with_passive_dimensions_holds_and_matches_scipy(synthetic):
    rows = F.claims_posterior_collapse(synthetic.results(), synthetic.latents())
    (row,) = rows
    assert row["verdict"] == F.HOLDS
    table = F.collapse_table(synthetic.results(), synthetic.latents())
    assert row["value"] == pytest.approx(stats.spearmanr(table["score"], table["passive_dims"]).statistic)
    assert row["value"] == pytest.approx(-1.0) and row["ci_high"] < 0 and row["n"] == 8


@pytest.mark.parametrize("mean_sample", [
    lambda p, f, k: 0.5 + 0.04 * k,  # rising with collapse
    lambda p, f, k: 0.9 - 0.1 * ((p * 7 + f * 4) % 3 == 1),  # unrelated to collapse
])
def test_cka_not_tracking_collapse_does_not_hold(synthetic, mean_sample):
    synthetic.mean_sample = mean_sample
    (row,) = F.claims_posterior_collapse(synthetic.results(), synthetic.latents())
    assert row["verdict"] == F.DOES_NOT_HOLD


def test_collapse_claim_needs_collapse_runs_and_latents(synthetic):
    (row,) = F.claims_posterior_collapse(synthetic.results(), None)
    assert row["verdict"] == F.NOT_ENOUGH_DATA and "latents.parquet" in row["detail"]
    synthetic.passive = lambda param, fraction: 0  # no dimension ever passive: nothing to track
    (row,) = F.claims_posterior_collapse(synthetic.results(), synthetic.latents())
    assert row["verdict"] == F.NOT_ENOUGH_DATA
    synthetic.passive, synthetic.params = (lambda p, f: int(round(p * f))), (1.0, 4.0)  # 4 runs
    (row,) = F.claims_posterior_collapse(synthetic.results(), synthetic.latents())
    assert row["verdict"] == F.NOT_ENOUGH_DATA


def test_collapse_claim_applies_only_where_the_parameter_pushes_to_the_prior(synthetic):
    synthetic.objective, synthetic.param_name = "dip_vae_ii", "lambda_od"
    (row,) = F.claims_posterior_collapse(synthetic.results(), synthetic.latents())
    assert row["verdict"] == F.NOT_APPLICABLE and "dip_vae_ii" in row["finding"]
    synthetic.objective, synthetic.param_name = "annealed_vae", "c_max"
    (row,) = F.claims_posterior_collapse(synthetic.results(), synthetic.latents())
    assert row["verdict"] == F.HOLDS


def test_passive_dimensions_follow_burda(synthetic):
    latents = pd.DataFrame({"run_id": "r", "step": 5, "dim": [0, 1, 2, 3],
                            "mean_variance": [0.5, 0.0101, 0.01, 0.0]})
    table = F.passive_dimensions(latents)
    assert table.loc[0, "passive_dims"] == 2 and table.loc[0, "latent_dim"] == 4
    with pytest.raises(ValueError, match="missing columns \\['mean_variance'\\]"):
        F.passive_dimensions(latents.drop(columns="mean_variance"))


# ------------------------------------------------------------------ all
def test_compute_findings_table(synthetic):
    table = F.compute_findings(synthetic.results(), synthetic.runs(), latents=synthetic.latents())
    assert list(table.columns) == list(F.FINDING_COLUMNS)
    assert set(table["verdict"]) <= {F.HOLDS, F.DOES_NOT_HOLD, F.NOT_ENOUGH_DATA, F.NOT_APPLICABLE}
    assert not table["finding"].str.startswith("claim 4").any()  # a metric diagnostic, not a verdict
    assert table["definition"].str.len().min() > 40
    text = F.format_findings(table)
    assert "claim 1" in text and "holds" in text
    assert ("This study supports: claim 1, claim 2 (regularisation strengths), claim 3 [beta_vae]. It cannot judge "
            "(not enough data): claim 2 (objectives).") == F.support_summary(table)


def test_missing_columns_are_named(default_results):
    with pytest.raises(ValueError, match=r"missing columns \['a_step'\]"):
        F.compute_findings(default_results.drop(columns=["a_step"]))
    with pytest.raises(TypeError, match="expected a pandas DataFrame"):
        F.compute_findings([1, 2])


def test_empty_store_gives_not_enough_data(default_results):
    table = F.compute_findings(default_results.iloc[:0], None)
    assert set(table["verdict"]) == {F.NOT_ENOUGH_DATA}


def test_support_summary_names_each_beyond_the_paper_finding_apart():
    import pandas as pd

    table = pd.DataFrame({
        "finding": ["beyond the paper: cross-seed encoder.mean similarity predicts udr_lasso",
                    "beyond the paper: cross-seed encoder-trunk similarity predicts dci_disentanglement",
                    "claim 1: encoder layers settle before decoder layers"],
        "verdict": [F.DOES_NOT_HOLD, F.HOLDS, F.DOES_NOT_HOLD],
    })
    assert F.support_summary(table) == (
        "This study supports: beyond the paper (encoder-trunk -> dci_disentanglement). It does not support: "
        "beyond the paper (encoder.mean -> udr_lasso), claim 1.")
