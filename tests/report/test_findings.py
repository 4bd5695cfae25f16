"""Findings on synthetic results stores whose answers are known: each claim holds, fails, or lacks data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

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


def test_decoder_settling_first_is_the_opposite(synthetic):
    synthetic.encoder_speed, synthetic.decoder_speed = 1.0, 0.3
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == F.OPPOSITE_HOLDS
    assert row["value"] == pytest.approx(0.25 - 1.0)


def test_equal_speeds_tie_every_run_and_cannot_decide(synthetic):
    # every run ties (d = 0): the signed-rank test's best achievable p is 1, so no data could pass it
    synthetic.encoder_speed = synthetic.decoder_speed = 0.5
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == "inconclusive (ties/grid)"
    assert row["value"] == pytest.approx(0.0)
    assert "best achievable p with 8 runs and 8 tie(s) = 1 (cannot pass 0.025)" in row["detail"]


def _mix(synthetic, late_runs):
    """The default store, with ``late_runs`` replaced by runs whose encoder and decoder settle together."""
    results = synthetic.results()
    synthetic.encoder_speed = synthetic.decoder_speed = 1.0
    tied = synthetic.results()
    return pd.concat([results[~results["a_run"].isin(late_runs)], tied[tied["a_run"].isin(late_runs)]])


def test_the_issue_grid_with_four_tied_runs_of_six_is_inconclusive_not_failed(synthetic):
    # 6 runs, 4 tie (a coarse checkpoint grid puts both sides "at T"), 2 settle encoder first: the best
    # p the one-sided exact test can reach is 2^-2 = 0.25, so the verdict is "cannot tell"
    synthetic.params = (1.0, 2.0, 4.0)
    row = F.claim_encoder_first(_mix(synthetic, [synthetic.run_id(p, s) for p in (2.0, 4.0) for s in (0, 1)]))
    assert row["verdict"] == "inconclusive (ties/grid)"
    assert row["n"] == 6 and "6 runs and 4 tie(s) = 0.25 (cannot pass 0.025)" in row["detail"]
    d = np.r_[np.zeros(4), 0.75, 0.75]
    walsh = [(d[i] + d[j]) / 2 for i in range(6) for j in range(i, 6)]
    assert row["value"] == pytest.approx(np.median(walsh))  # Hodges-Lehmann: 0.375
    assert f"mean d = {2 * 0.75 / 6:+.3f}" in row["detail"]


def test_one_tied_run_of_eight_still_decides_but_of_six_cannot(synthetic):
    # each direction is tested at 0.025 (two-sided 5%): one tie of 8 leaves a floor of 2^-7 = 0.0078, which
    # passes; one tie of 6 leaves 2^-5 = 0.031, which cannot
    row = F.claim_encoder_first(_mix(synthetic, [synthetic.run_id(4.0, 0)]))
    assert row["verdict"] == F.HOLDS and "8 runs and 1 tie(s) = 0.00781" in row["detail"]
    synthetic.params, synthetic.encoder_speed, synthetic.decoder_speed = (1.0, 2.0, 4.0), 0.3, 1.0
    row = F.claim_encoder_first(_mix(synthetic, [synthetic.run_id(4.0, 0)]))
    assert row["verdict"] == "inconclusive (ties/grid)" and "6 runs and 1 tie(s) = 0.0312 (cannot pass 0.025)" \
        in row["detail"]


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
    assert row["verdict"] == F.OPPOSITE_HOLDS
    assert row["value"] == pytest.approx(0.6 - 0.8)


def test_the_issue_counterexample_with_a_high_initial_score_never_holds(synthetic):
    # Literally as reported: the encoder is at 0.95 at step 0, dips, and comes back: its initial and
    # final states agree, so it counts as "not changed by training" and nothing supports the claim.
    encoder = {0: 0.95, 250: 0.3, 500: 0.5, 750: 0.95}
    decoder = {0: 0.2, 250: 0.6, 500: 0.92, 750: 0.97}
    synthetic.curves = {**{l: encoder for l in _layers(synthetic, "encoder")},
                        **{l: decoder for l in _layers(synthetic, "decoder")}}
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == "inconclusive (ceiling)"
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
    assert row["verdict"] == "inconclusive (ties/grid)" and row["value"] == pytest.approx(0.0)
    assert "24 of" in row["detail"] and "encoder.conv1 (8)" in row["detail"]


def test_layers_that_sampling_noise_keeps_below_the_threshold_are_left_out(synthetic):
    # a decoder whose final state recorded with two eps only reaches CKA 0.6 cannot settle before the
    # final step whatever it learned: its late settle point is noise, not evidence for claim 1
    synthetic.noise_floor = 0.6
    table = F.convergence_table(synthetic.results())
    assert table.loc[table["layer"] == "decoder.fc1", "noise_limited"].all()
    assert not table.loc[table["layer"] == "encoder.conv1", "noise_limited"].any()  # upstream of the noise
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == "inconclusive (ceiling)" and "limited by sampling noise" in row["detail"]
    synthetic.noise_floor = 0.97  # noise leaves the decoder's curves free to settle: the verdict stands
    assert F.claim_encoder_first(synthetic.results())["verdict"] == F.HOLDS
    assert F.baseline_table(synthetic.results()).set_index("layer").loc["decoder.fc1", "noise_floor"] == 0.97


def test_the_noise_floor_is_read_at_every_checkpoint_the_store_measured(synthetic):
    # the final step's floor (0.97) clears the threshold, but the first learned checkpoint's (0.6, a wider
    # posterior) does not: the decoder's early scores cannot reach the threshold whatever it learned
    synthetic.noise_floor_by_step = {250: 0.6, 500: 0.95, 750: 0.96, 1000: 0.97}
    table = F.convergence_table(synthetic.results())
    decoder = table[table["layer"] == "decoder.fc1"]
    assert decoder["noise_limited"].all() and set(decoder["noise_floor_steps"]) == {4}
    assert set(decoder["noise_floor"]) == {0.97} and set(decoder["noise_floor_min"]) == {0.6}
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == "inconclusive (ceiling)" and "measured at every learned checkpoint" in row["detail"]
    synthetic.noise_floor_by_step = {1000: 0.97}  # measured at T only: the verdict stands, and the detail says so
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == F.HOLDS and "measured at 1 of 4 learned checkpoints" in row["detail"]


def test_the_settle_threshold_is_set_per_metric_from_the_untrained_baseline(synthetic):
    # Procrustes here is 0.6 + 0.4 * CKA: unrelated networks (untrained decoders of two seeds, CKA 0.05)
    # score 0.62, so a fixed 0.9 sits near its floor and calls the decoder settled at 0.5 of training
    synthetic.procrustes = lambda cka: 0.6 + 0.4 * cka
    results = synthetic.results()
    cka, _ = F.settle_threshold(results, metric="cka")
    procrustes, text = F.settle_threshold(results, metric="procrustes")
    assert cka == pytest.approx(0.05 + 0.9 * 0.95) and procrustes == pytest.approx(0.62 + 0.9 * 0.38)
    assert "u = 0.620" in text
    fixed = F.claim_encoder_first(results, metric="procrustes", threshold=0.9)
    assert fixed["value"] == pytest.approx(0.5 - 0.25)
    # on each metric's own scale both metrics see the same settle points: d = 1 - 0.25 on both
    for metric in ("cka", "procrustes"):
        row = F.claim_encoder_first(results, metric=metric)
        assert row["verdict"] == F.HOLDS and row["value"] == pytest.approx(0.75)
    assert F.settle_threshold(results[results["a_step"] > 0])[0] == F.CONVERGENCE_THRESHOLD  # no baseline


def test_untrained_networks_cannot_decide(synthetic):
    flat = {0: 0.999, 250: 0.999, 500: 1.0, 750: 1.0}
    synthetic.curves = {name: flat for name in synthetic.layers}
    row = F.claim_encoder_first(synthetic.results())
    assert row["verdict"] == "inconclusive (ceiling)" and math.isnan(row["value"])


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


def test_half_the_runs_settling_encoder_first_is_inconclusive(synthetic):
    results = synthetic.results()
    synthetic.encoder_speed, synthetic.decoder_speed = 1.0, 0.3
    reversed_runs = synthetic.results()
    late = [synthetic.run_id(p, 1) for p in synthetic.params]
    mixed = pd.concat([results[~results["a_run"].isin(late)], reversed_runs[reversed_runs["a_run"].isin(late)]])
    row = F.claim_encoder_first(mixed)
    assert row["verdict"] == "inconclusive (interval contains the null)"
    assert row["value"] == pytest.approx(0.0) and row["ci_low"] < 0 < row["ci_high"]


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


def _three_seeds(synthetic):
    # untrained cross-seed pairs (0, 1), (0, 2), (1, 2) score 0.68, 0.70, 0.72 on the trunk
    synthetic.seeds = (0, 1, 2)
    synthetic.untrained_offset = lambda a, b: {(0, 1): -0.02, (0, 2): 0.0, (1, 2): 0.02}[(a, b)]


def _contrast(row, label):
    """(estimate, verdict) of one contrast, read from a claim 2 row's detail."""
    import re

    match = re.search(rf"{label} ([+-][0-9.]+) \(95% CI \[([+-][0-9.]+), ([+-][0-9.]+)\]: ([a-z ()/]+)\)", row["detail"])
    assert match, row["detail"]
    return float(match.group(1)), float(match.group(2)), float(match.group(3)), match.group(4)


def test_trunk_agreement_above_the_untrained_baseline_holds(synthetic):
    _three_seeds(synthetic)
    row = F.claim_encoder_agreement(synthetic.results(), comparison="params")
    assert row["verdict"] == F.HOLDS
    # value: beyond shared init = A (0.95, same seed across strengths) - C (0.5, each run's initial to final)
    assert row["value"] == pytest.approx(0.95 - 0.5) and row["n"] == 3
    # beyond untrained (pairs of different seeds on both sides): T 0.95 - U 0.7, each untrained seed pair
    # counting once; the jackknife over seeds widens its interval by the untrained pairs' spread
    estimate, low, high, verdict = _contrast(row, "beyond untrained")
    assert estimate == pytest.approx(0.25, abs=5e-4) and 0 < low < estimate < high and verdict == F.HOLDS
    assert _contrast(row, "heads less")[0] == pytest.approx((0.95 - 0.5) - (0.6 - 0.5), abs=5e-4)
    assert "shared initial weights" in row["detail"] and "3 untrained seed pair(s) over 3 seeds" in row["detail"]


def test_trunk_agreement_within_the_spread_of_untrained_pairs_is_inconclusive(synthetic):
    _three_seeds(synthetic)
    synthetic.untrained_trunk, synthetic.head_agreement = 0.95, 0.3  # T = mean U, heads well apart
    row = F.claim_encoder_agreement(synthetic.results(), comparison="params")
    assert row["verdict"] == "inconclusive (interval contains the null)"
    estimate, low, high, verdict = _contrast(row, "beyond untrained")
    assert low < 0 < high and estimate == pytest.approx(0.0, abs=5e-4)


def test_every_contrast_opposite_is_the_opposite(synthetic):
    # trained runs of one seed end further apart (0.4) than each is from its start (C 0.5); trained seeds agree
    # less (0.4) than untrained ones (0.7); the heads moved together more than the trunk
    _three_seeds(synthetic)
    synthetic.trunk_agreement = synthetic.trained_seed_trunk = 0.4
    row = F.claim_encoder_agreement(synthetic.results(), comparison="params")
    assert row["verdict"] == F.OPPOSITE_HOLDS
    assert "Opposite for: beyond shared init, beyond untrained, heads less" in row["detail"]


def test_one_contrast_alone_never_decides(synthetic):
    # issue 32 item 3: trained seeds agree less than untrained ones (opposite), but runs of one seed moved
    # together and the heads less so (both hold): contrasts that disagree decide nothing
    _three_seeds(synthetic)
    synthetic.trained_seed_trunk = 0.6
    row = F.claim_encoder_agreement(synthetic.results(), comparison="params")
    assert row["verdict"] == "inconclusive (contrasts disagree)"
    assert _contrast(row, "beyond untrained")[3] == F.OPPOSITE_HOLDS
    assert _contrast(row, "beyond shared init")[3] == _contrast(row, "heads less")[3] == F.HOLDS
    # heads that moved together as much as the trunk: "heads less" is 0 and undecided, so the claim is too
    synthetic.trained_seed_trunk, synthetic.head_agreement = None, 0.95
    row = F.claim_encoder_agreement(synthetic.results(), comparison="params")
    assert row["verdict"] == "inconclusive (interval contains the null)"
    assert _contrast(row, "heads less")[0] == pytest.approx(0.0, abs=5e-4)


def test_shared_initial_weights_alone_are_not_learned_agreement(synthetic):
    # issue 32 item 2: nothing learned, each run drifted a little from its seed's initial weights (C 0.85, below
    # the settle threshold: "changed"), so two runs of one seed agree 0.8 because they started together. The
    # old contrasts (A - U = +0.1, A - T = +0.1, pairs of one seed against pairs of different seeds) both held;
    # against pairs of the same kind nothing holds, and nothing is called opposite either.
    _three_seeds(synthetic)
    drift = {0: 0.85, 250: 0.9, 500: 0.95, 750: 0.98}
    synthetic.curves = {name: drift for name in synthetic.layers if name.startswith("encoder.")}
    synthetic.trunk_agreement, synthetic.trained_seed_trunk = 0.8, 0.7  # T = U: training added nothing across seeds
    synthetic.untrained_heads = 0.3  # the old "heads less" then said opposite: a false "opposite holds"
    results = synthetic.results()
    assert F.baseline_table(results).set_index("layer").loc["encoder.conv1", "params_final"] == pytest.approx(0.8)
    row = F.claim_encoder_agreement(results, comparison="params")
    assert row["verdict"] not in (F.HOLDS, F.OPPOSITE_HOLDS), row["detail"]
    assert _contrast(row, "beyond shared init")[0] == pytest.approx(0.8 - 0.85, abs=5e-4)
    assert _contrast(row, "beyond untrained")[0] == pytest.approx(0.0, abs=5e-4)


def test_one_untrained_seed_pair_is_not_an_exact_baseline(synthetic):
    row = F.claim_encoder_agreement(synthetic.results(), comparison="params")  # seeds 0 and 1 only
    assert row["verdict"] == F.NOT_ENOUGH_DATA
    assert "1 seed pair(s) of 2 seed(s)" in row["detail"] and math.isnan(row["value"])


def test_agreement_of_layers_training_did_not_move_is_no_evidence(synthetic):
    # untrained control: every trunk layer at its final state from the start; runs sharing a seed then
    # agree because they share their initial weights, which the verdict must not call learned agreement
    _three_seeds(synthetic)
    flat = {0: 0.999, 250: 0.999, 500: 1.0, 750: 1.0}
    synthetic.curves = {name: flat for name in synthetic.layers}
    row = F.claim_encoder_agreement(synthetic.results(), comparison="params")
    assert row["verdict"] == "inconclusive (ceiling)"
    assert "no trunk layer was changed by training" in row["detail"]


def test_agreement_without_a_baseline_or_pairs_is_not_enough_data(synthetic, default_results):
    assert F.claim_encoder_agreement(default_results, comparison="objectives")["verdict"] == F.NOT_ENOUGH_DATA
    synthetic.steps = (250, 500, 750, 1000)
    row = F.claim_encoder_agreement(synthetic.results(), comparison="params")
    assert row["verdict"] == F.NOT_ENOUGH_DATA and "baseline" in row["detail"]


# ------------------------------------------------------------------ all
def test_compute_findings_table(synthetic):
    _three_seeds(synthetic)
    table = F.compute_findings(synthetic.results(), synthetic.runs(), latents=synthetic.latents())
    assert list(table.columns) == list(F.FINDING_COLUMNS)
    assert set(table["verdict"].map(F.verdict_word)) <= set(F.VERDICT_WORDS)
    assert not table["finding"].str.startswith("claim 4").any()  # a metric diagnostic, not a verdict
    assert table["definition"].str.len().min() > 40
    text = F.format_findings(table)
    assert "claim 1" in text and "holds" in text
    # no robustness checks ran on this table: a holds is not counted as support, and the sentence says so
    assert ("It cannot judge (not enough data): claim 2 (objectives). Not checked for robustness, so not counted "
            "as support or contradiction: claim 1 (holds), claim 2 (regularisation strengths) (holds), "
            "claim 3 [beta_vae] (holds).") == F.support_summary(table)
    checked = table.assign(robustness="unchanged by 2 checks: seed 0 left out, seed 1 left out")
    assert ("This study supports: claim 1, claim 2 (regularisation strengths), claim 3 [beta_vae]. It cannot judge "
            "(not enough data): claim 2 (objectives).") == F.support_summary(checked)
    assert F.support_summary(checked.assign(robustness="not checked")) == F.support_summary(table)


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
        "verdict": [F.OPPOSITE_HOLDS, F.HOLDS, "inconclusive (ties/grid)"],
        "robustness": ["unchanged by 4 checks: seed 0 left out"] * 3,
    })
    assert F.support_summary(table) == (
        "This study supports: beyond the paper (encoder-trunk -> dci_disentanglement). The opposite holds for: "
        "beyond the paper (encoder.mean -> udr_lasso). It cannot tell (inconclusive): claim 1.")


def test_verdict_words_are_four():
    assert F.verdict_word("inconclusive (ceiling)") == F.INCONCLUSIVE
    assert F.verdict_word(F.OPPOSITE_HOLDS) == F.OPPOSITE_HOLDS
    with pytest.raises(ValueError, match="'does not hold': expected one of"):
        F.verdict_word("does not hold")


def test_training_length_names_the_curves_still_moving_after_half_the_run(synthetic):
    from vaesim.report.settling import training_length_table, training_length_text

    # Learned checkpoints 250 .. 1000: the one nearest T/2 = 500 is 500. The encoder reaches 1 by 0.3 T
    # (score 1 at 500); the decoder rises linearly, 0.5 + 0.5 t / T = 0.75 at 500: still moving.
    curves = F.convergence_table(synthetic.results())
    table = training_length_table(curves)
    assert set(table["half_step"]) == {500}
    assert table["curves"].sum() == len(curves)
    assert table["below"].sum() == (curves["group"] == "decoder").sum()  # every decoder curve, no encoder curve
    assert table["min_half_score"].min() == pytest.approx(0.75)
    assert "decoder" in table["below_layers"].iloc[0] and "encoder" not in table["below_layers"].iloc[0]
    assert "still moving" in training_length_text(table)
    # Both halves converged by 0.3 T: none below, and the sentence says the runs were trained past convergence.
    synthetic.curves = {layer: {0: 0.5, 250: 0.96, 500: 0.99, 750: 1.0} for layer in synthetic.layers}
    table = training_length_table(F.convergence_table(synthetic.results()))
    assert table["below"].sum() == 0 and len(table)
    assert "trained past convergence" in training_length_text(table)
