"""Claim 1's recording: the decoder on a fixed code (``probe.decoder_input: final_mean``), noise floors per step."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from study_tiny import TINY

from vaesim.study import load_results, parse_spec, run_study
from vaesim.study.plan import noise_floor_steps, noise_layers, plan_study


def fixed_code_dict() -> dict:
    spec = copy.deepcopy(TINY)
    spec["objectives"] = [{"name": "beta_vae", "values": [4]}]
    spec["seeds"] = [0]
    spec["probe"] = {"n": 64, "seed": 0, "decoder_input": "final_mean"}
    spec["comparisons"] = {"within_run": "final", "across_steps": "final", "seeds": False, "params": False,
                           "objectives": False, "factors": False, "noise_floor": "every"}
    spec["keep_activations"] = []
    return spec


def test_task_ids_of_a_default_spec_are_those_planned_before_decoder_input_existed():
    # studies on disk are resumed by task id: a new option at its default must not rename a task
    ids = {task.task_id for task in plan_study(parse_spec(copy.deepcopy(TINY))).tasks["compare"]}
    assert len(ids) == 54
    assert {"compare/noise_floor/dsprites-procedural_beta_vae_beta=1_seed=0_2b960773_0dee04b1",
            "compare/within_run/dsprites-procedural_beta_vae_beta=1_seed=0_2b960773_6569ff78",
            "compare/seeds/dsprites-procedural_beta_vae_beta=1_step=0_2c64f898"} <= ids


def test_noise_floor_every_step_and_a_fixed_decoder_code_in_the_plan():
    spec = parse_spec(fixed_code_dict())
    steps = spec.recorded_steps()
    assert steps[0] == 0 and len(steps) >= 3
    assert noise_floor_steps(spec) == tuple(steps[1:])
    # on a fixed code the decoder is not driven by eps: only the sampled layer has a noise floor
    assert noise_layers(spec.layer_names(), "final_mean") == ["encoder.sample"]
    plan = plan_study(spec)
    extract = plan.tasks["extract"]
    assert {t.step for t in extract if t.resample} == set(steps[1:])
    assert {(t.decoder_input, t.final_step) for t in extract} == {("final_mean", steps[-1])}
    (floor,) = [t for t in plan.tasks["compare"] if t.comparison == "noise_floor"]
    assert [p[1] for p in floor.pairs] == list(steps[1:])
    default = parse_spec({**fixed_code_dict(), "probe": {"n": 64, "seed": 0},
                          "comparisons": {**fixed_code_dict()["comparisons"], "noise_floor": True}})
    assert noise_floor_steps(default) == (steps[-1],)
    off = parse_spec({**fixed_code_dict(), "comparisons": {**fixed_code_dict()["comparisons"], "noise_floor": False}})
    assert noise_floor_steps(off) == ()


def test_a_bad_decoder_input_is_refused_naming_the_choices():
    spec = fixed_code_dict()
    spec["probe"]["decoder_input"] = "mean"
    with pytest.raises(ValueError, match="decoder_input"):
        parse_spec(spec)


@pytest.fixture(scope="module")
def fixed_code_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("fixed-code") / "study"
    run_study(parse_spec(fixed_code_dict()), out, progress=False, threads=1)
    return out


def test_the_stored_decoder_scores_are_those_of_the_decoder_on_the_final_mean_code(fixed_code_study):
    from vaesim.activations import extract_activations, mean_code
    from vaesim.data import ProbeSet
    from vaesim.similarity import linear_cka
    from vaesim.study import plan as layout
    from vaesim.training import load_checkpoint

    results = load_results(fixed_code_study)
    within = results[(results["comparison"] == "within_run") & (results["metric"] == "cka")
                     & (results["a_layer"] == results["b_layer"])]
    run_id = within["a_run"].iloc[0]
    steps = sorted(set(within["a_step"]))
    final = steps[-1]
    probe = ProbeSet.load(fixed_code_study / layout.probe_path("dsprites-procedural"))
    images = probe.images
    run_dir = fixed_code_study / layout.run_dir(run_id)
    code = mean_code(load_checkpoint(run_dir, final)[0], images)
    layers = ["decoder.fc1", "decoder.fc2", "decoder.deconv1"]
    recorded = {s: extract_activations(load_checkpoint(run_dir, s)[0], images, layers=layers, decoder_code=code)
                for s in steps}
    for step in steps:
        for layer in layers:
            stored = within[(within["a_step"] == step) & (within["b_step"] == final) & (within["a_layer"] == layer)]
            expected = linear_cka(recorded[step][layer], recorded[final][layer])
            assert float(stored["score"].iloc[0]) == pytest.approx(expected, abs=1e-6), (step, layer)


def test_the_noise_floor_is_measured_at_every_learned_checkpoint_and_only_for_the_sampled_layer(fixed_code_study):
    results = load_results(fixed_code_study)
    floor = results[results["comparison"] == "noise_floor"]
    steps = sorted(set(results.loc[results["comparison"] == "within_run", "a_step"]))
    assert sorted(set(floor["a_step"])) == steps[1:]
    assert set(floor["a_layer"]) == {"encoder.sample"} and (floor["a_layer"] == floor["b_layer"]).all()
    assert set(floor["metric"]) == {"cka", "procrustes"}
    assert isinstance(floor, pd.DataFrame) and np.isfinite(floor["score"]).all()
    assert (floor["score"] < 1.0).all()  # a second eps moves the sample


def test_summaries_as_a_cache_give_the_same_fixed_code_scores_bit_for_bit(fixed_code_study, tmp_path):
    spec = fixed_code_dict()
    spec["summaries"] = "cache"
    out = tmp_path / "cached"
    run_study(parse_spec(spec), out, progress=False, threads=1)
    columns = ["comparison", "a_run", "a_step", "a_layer", "b_run", "b_step", "b_layer", "metric"]
    stored = load_results(fixed_code_study).sort_values(columns).reset_index(drop=True)
    cached = load_results(out).sort_values(columns).reset_index(drop=True)
    stored_summaries = [p for p in (out / "summaries").rglob("step_*.npz")]
    assert stored_summaries == []  # nothing but the latents tables was written per checkpoint
    pd.testing.assert_frame_equal(stored, cached, check_exact=True)


def test_latents_recorded_before_the_covariance_column_existed_still_load(fixed_code_study, tmp_path):
    import shutil

    from vaesim.study.plan import plan_study
    from vaesim.study.stages.files import write_table
    from vaesim.study.stages.store import collect_latents

    study = tmp_path / "older"
    shutil.copytree(fixed_code_study, study)
    files = sorted(study.rglob("step_*.latents.parquet"))
    assert files
    for path in files:  # as an older vaesim wrote them
        write_table(path, pd.read_parquet(path).drop(columns=["mean_cov_sq"]), checksum=True)
    task = plan_study(parse_spec(fixed_code_dict())).tasks["store"][0]
    old = collect_latents(study, task, {run.run_id for run in task.runs})
    new = collect_latents(fixed_code_study, task, {run.run_id for run in task.runs})
    assert list(old.columns) == list(new.columns) and len(old) == len(new) > 0
    assert old["mean_cov_sq"].isna().all() and new["mean_cov_sq"].notna().all()
    pd.testing.assert_frame_equal(old.drop(columns="mean_cov_sq"), new.drop(columns="mean_cov_sq"))
