"""Study specs: presets, validation messages, checkpoint schedules."""

from __future__ import annotations

import re

import pytest
import yaml

from vaesim.study import checkpoint_steps, load_spec, parse_spec, preset_names, run_study
from vaesim.study.spec import CheckpointSpec


def test_presets_are_shipped():
    assert {"paper", "quick"} <= set(preset_names())


def test_paper_preset_is_the_papers_grid():
    spec = load_spec("paper")
    assert spec.datasets == ["dsprites", "cars3d", "smallnorb"]
    grid = {o.name: (o.values, o.fixed) for o in spec.objectives}
    assert grid == {
        "beta_vae": ([1, 2, 4, 6, 8], {}),
        "beta_tc_vae": ([1, 2, 4, 6, 8], {}),
        "annealed_vae": ([5, 10, 25, 50, 75], {"gamma": 1000, "iteration_threshold": 100000}),
        "dip_vae_ii": ([1, 2, 5, 10, 20], {}),
    }
    assert spec.seeds == [0, 1, 2, 3, 4]
    assert (spec.training.steps, spec.training.batch_size, spec.training.lr) == (300_000, 64, 1e-4)
    assert spec.training.latent_dim == 10
    # 5 evenly spaced checkpoints after training starts, as the authors saved them; step 0 recorded as a baseline
    assert spec.checkpoint_steps() == [60_000, 120_000, 180_000, 240_000, 300_000]
    assert spec.recorded_steps()[0] == 0
    assert (spec.training.init, spec.training.validation_split, spec.probe.sample_noise) == (
        "glorot", 0.1, "independent")
    assert (spec.probe.n, spec.metrics) == (10_000, ["cka", "procrustes"])


def test_quick_preset_is_small_and_procedural():
    spec = load_spec("quick")
    assert spec.datasets == ["dsprites-procedural"]
    runs = len(spec.seeds) * sum(len(o.values) for o in spec.objectives)
    assert runs <= 12 and spec.training.steps <= 1500 and spec.probe.n <= 500
    assert spec.checkpoint_steps() == [0, 10, 43, 186, 800]
    betas = next(o.values for o in spec.objectives if o.name == "beta_vae")
    assert max(betas) >= 32  # strong enough to collapse the posterior in a short run


def test_spec_round_trips_through_yaml(tiny_spec, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(tiny_spec.to_yaml())
    assert load_spec(path) == tiny_spec


def test_unknown_field_names_it_and_the_allowed_ones(tiny_dict):
    tiny_dict["training"]["stpes"] = 5
    with pytest.raises(ValueError, match=r"unknown field 'stpes' in training; allowed fields: steps, batch_size"):
        parse_spec(tiny_dict)


def test_unknown_top_level_field(tiny_dict):
    tiny_dict["seed"] = [0]
    with pytest.raises(ValueError, match=r"unknown field 'seed' in the top level; allowed fields: name, .*seeds"):
        parse_spec(tiny_dict)


def test_wrong_type_names_field_and_value(tiny_dict):
    tiny_dict["training"]["steps"] = "many"
    with pytest.raises(ValueError, match=r"training\.steps: .*integer.*got 'many'"):
        parse_spec(tiny_dict)


@pytest.mark.parametrize("field", ["seeds", "datasets", "objectives"])
def test_empty_grid_is_rejected(tiny_dict, field):
    tiny_dict[field] = []
    with pytest.raises(ValueError, match=rf"{field}: List should have at least 1 item"):
        parse_spec(tiny_dict)


def test_empty_values_are_rejected(tiny_dict):
    tiny_dict["objectives"][0]["values"] = []
    with pytest.raises(ValueError, match=r"objectives\.0\.values: List should have at least 1 item"):
        parse_spec(tiny_dict)


def test_unknown_names_list_allowed_values(tiny_dict):
    tiny_dict["datasets"] = ["mnist"]
    tiny_dict["objectives"][1]["name"] = "wae"
    tiny_dict["metrics"] = ["cka"]
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; allowed values: dsprites") as info:
        parse_spec(tiny_dict)
    assert "objectives.1.name: unknown objective 'wae'; allowed values: beta_vae" in str(info.value)


def test_bad_metric_lists_allowed(tiny_dict):
    tiny_dict["metrics"] = ["cka", "rsa"]
    with pytest.raises(ValueError, match=r"metrics: .*unknown similarity measures \['rsa'\]; known: \['cka', "
                                         r"'cka_debiased', 'procrustes', 'svcca', 'pwcca'"):
        parse_spec(tiny_dict)


def test_wrong_swept_parameter(tiny_dict):
    tiny_dict["objectives"][0]["param"] = "gamma"
    with pytest.raises(ValueError, match=r"objectives\.0\.param: beta_vae is swept over 'beta'"):
        parse_spec(tiny_dict)


def test_duplicates_are_rejected(tiny_dict):
    tiny_dict["seeds"] = [0, 0]
    with pytest.raises(ValueError, match=r"seeds: .*distinct"):
        parse_spec(tiny_dict)


def test_missing_spec_file_or_preset():
    with pytest.raises(FileNotFoundError, match=r"no such file and no preset of that name.*paper"):
        load_spec("no-such-spec.yaml")


def test_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ValueError, match="expected a mapping of fields"):
        load_spec(path)


def test_missing_dataset_files_fail_before_any_work(tiny_dict, tmp_path):
    tiny_dict["datasets"] = ["dsprites"]
    tiny_dict["dataset_root"] = str(tmp_path / "empty")
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match=r"dataset 'dsprites': missing .*vaesim data download"):
        run_study(parse_spec(tiny_dict), out, progress=False)
    assert not out.exists()


def test_objective_parameter_rejected_before_any_work(tiny_dict, tmp_path):
    tiny_dict["objectives"][0]["fixed"] = {"capacity": 3}
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"objectives\.0 \(beta_vae, beta=1\.0\): .*no parameter 'capacity'"):
        run_study(parse_spec(tiny_dict), out, progress=False)
    assert not out.exists()


@pytest.mark.parametrize(
    "checkpoints, steps, expected",
    [
        ({"schedule": "even", "count": 5}, 300_000, [0, 75_000, 150_000, 225_000, 300_000]),
        ({"schedule": "even", "count": 3}, 20, [0, 10, 20]),
        ({"schedule": "even", "count": 4, "include_init": False}, 100, [25, 50, 75, 100]),
        ({"schedule": "log", "count": 4, "log_first": 10}, 1000, [0, 10, 100, 1000]),
        ({"steps": [0, 7]}, 20, [0, 7, 20]),
    ],
)
def test_checkpoint_steps(checkpoints, steps, expected):
    assert checkpoint_steps(CheckpointSpec(**checkpoints), steps) == expected


def test_checkpoint_beyond_training_is_rejected(tiny_dict):
    tiny_dict["training"]["checkpoints"] = {"steps": [0, 50]}
    with pytest.raises(ValueError, match=r"last checkpoint 50 is beyond training\.steps=20"):
        parse_spec(tiny_dict)


def test_documented_example_spec_is_valid():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "docs" / "example-study.yaml"
    spec = load_spec(path)
    assert spec.checkpoint_steps()[0] == 0 and spec.checkpoint_steps()[-1] == spec.training.steps


@pytest.mark.parametrize("path, value, field", [
    ("training.architecture", "resnet", "training.architecture"),
    ("training.reconstruction", "laplace", "training.reconstruction"),
    ("training.adam_betas", [2, 3], "training.adam_betas"),
    ("seeds", [0, 2**32], "seeds"),
    ("probe.seed", 2**70, "probe.seed"),
    ("training.lr", float("inf"), "training.lr"),
    ("training.adam_eps", float("inf"), "training.adam_eps"),
    ("objectives.1.fixed", {"lambda_d": float("nan")}, "objectives.1.fixed"),
    ("objectives.0.values", [-1, 8], "objectives.0.values"),
    ("training.steps", True, "training.steps"),
    ("training.batch_size", 16.5, "training.batch_size"),
    ("probe.n", "64", "probe.n"),
])
def test_bad_values_are_refused_before_any_work_naming_the_field(tiny_dict, path, value, field):
    """Issue 10 item 9: each of these passed validation and failed (or ran nonsense) later."""
    target = tiny_dict
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value
    with pytest.raises(ValueError, match=re.escape(field)):
        parse_spec(tiny_dict)


def test_duplicate_yaml_keys_are_refused(tmp_path, tiny_dict):
    import yaml

    text = yaml.safe_dump(tiny_dict) + "seeds: [5]\n"  # a second 'seeds' that PyYAML would silently keep
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"duplicate key 'seeds'"):
        load_spec(path)


def test_binary_garbage_spec_names_the_file(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load_spec(path)


@pytest.mark.parametrize("change, message", [
    ({"device": "cuda:3"}, "device: 'cuda:3'"),
    ({"probe": {"n": 10_000_000, "seed": 0}}, "probe.n: 10,000,000 examples asked for, but dsprites-procedural has"),
    ({"training": {"batch_size": 10_000_000}}, "training.batch_size: 10,000,000 is larger than"),
])
def test_sizes_and_devices_this_machine_cannot_serve_are_refused_before_any_work(tiny_dict, tmp_path, change,
                                                                                 message):
    import torch

    from vaesim.study import run_study

    if "device" in change and torch.cuda.device_count() > 3:
        pytest.skip("this machine has a cuda:3")
    for key, value in change.items():
        if isinstance(value, dict):
            tiny_dict[key].update(value)
        else:
            tiny_dict[key] = value
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=re.escape(message)):
        run_study(parse_spec(tiny_dict), out, progress=False)
    assert not out.exists()


def test_a_study_that_does_not_fit_on_disk_is_refused_with_the_numbers(tiny_dict, tmp_path, monkeypatch):
    from vaesim.study import budget, run_study

    monkeypatch.setattr(budget, "free_disk", lambda path: 10_000)
    with pytest.raises(ValueError, match=r"needs about [\d.,]+ GiB of disk .* but 0.00 GiB is free"):
        run_study(parse_spec(tiny_dict), tmp_path / "never", progress=False)
    assert not (tmp_path / "never").exists()


def test_every_spec_problem_is_reported_at_once(tmp_path):
    from vaesim.study.run.runner import load_checked_spec

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({
        "name": "bad", "datasets": ["dsprites", "shapes3d", "mnist"], "dataset_root": str(tmp_path / "none"),
        "objectives": [{"name": "beta_vae", "values": [1]}, {"name": "vae", "values": [2]}],
        "seeds": [0, 0], "training": {"steps": 10, "bogus": 1}, "probe": {"n": 10},
    }))
    with pytest.raises(ValueError) as caught:
        load_checked_spec(path)
    text = str(caught.value)
    # pydantic round, names round and files round in one message
    assert "seeds: entries must be distinct; got [0, 0] (remove the repeats)" in text
    assert text.count("got [0, 0]") == 1 and "Value error" not in text
    assert "unknown field 'bogus' in training" in text
    assert "datasets: unknown dataset 'mnist'" in text
    assert "objectives.1.name: unknown objective 'vae'" in text
    assert "dataset 'dsprites': missing" in text and "dataset 'shapes3d': missing" in text


def test_all_missing_datasets_are_named_together(tiny_dict, tmp_path):
    tiny_dict["datasets"] = ["dsprites", "cars3d"]
    tiny_dict["dataset_root"] = str(tmp_path / "empty")
    with pytest.raises(FileNotFoundError) as caught:
        run_study(parse_spec(tiny_dict), tmp_path / "out", progress=False)
    assert "dataset 'dsprites': missing" in str(caught.value) and "dataset 'cars3d': missing" in str(caught.value)


def test_a_spec_selects_beta_tc_vae_stratified_sampling(tmp_path, tiny_dict):
    """`fixed: {sampling: stratified}` reaches the objective that trains, as `--set sampling=stratified` does."""
    from vaesim.models import make_objective
    from vaesim.models.names import CHOICE_PARAMS
    from vaesim.study import plan_study
    from vaesim.study.run.runner import check_inputs
    from vaesim.study.stages.checkpoints import train_config
    from vaesim.training import build_objective

    tiny_dict["objectives"] = [{"name": "beta_tc_vae", "values": [6], "fixed": {"sampling": "stratified"}}]
    path = tmp_path / "tc.yaml"
    path.write_text(yaml.safe_dump(tiny_dict))
    spec = load_spec(path)
    check_inputs(spec)
    task = plan_study(spec).tasks["train"][0]
    assert build_objective(train_config(task), 1000).sampling == "stratified"
    default = dict(tiny_dict, objectives=[{"name": "beta_tc_vae", "values": [6]}])
    other = plan_study(parse_spec(default)).tasks["train"][0]
    assert build_objective(train_config(other), 1000).sampling == "mws" and other.run.run_id != task.run.run_id
    for value in CHOICE_PARAMS["beta_tc_vae"]["sampling"]:  # the torch-free table is the objective's own choices
        assert make_objective("beta_tc_vae", beta=1, sampling=value).sampling == value

    tiny_dict["objectives"] = [{"name": "beta_tc_vae", "values": [6], "fixed": {"sampling": "stratifed"}}]
    with pytest.raises(ValueError, match=r"objectives.0.fixed.sampling: expected one of mws, stratified; "
                                         r"got 'stratifed'"):
        parse_spec(tiny_dict)
    tiny_dict["objectives"] = [{"name": "annealed_vae", "values": [5], "fixed": {"gamma": "lots"}}]
    with pytest.raises(ValueError, match=r"objectives.0.fixed.gamma: expected a number; got 'lots'"):
        parse_spec(tiny_dict)
    tiny_dict["objectives"] = [{"name": "annealed_vae", "values": [5], "fixed": {"gamma": "1000"}}]
    assert parse_spec(tiny_dict).objectives[0].fixed == {"gamma": 1000.0}


def test_tensorboard_in_a_spec_reaches_every_train_task_and_changes_no_output(tiny_dict):
    from vaesim.study import plan_study
    from vaesim.study.plan import spec_differences

    plain = parse_spec(tiny_dict)
    logged = parse_spec(dict(tiny_dict, tensorboard=True))
    assert all(task.tensorboard for task in plan_study(logged).tasks["train"])
    assert not any(task.tensorboard for task in plan_study(plain).tasks["train"])
    assert spec_differences(plain, logged) == []  # a rerun with it on recomputes nothing
    assert [t.run.run_id for t in plan_study(plain).tasks["train"]] == \
        [t.run.run_id for t in plan_study(logged).tasks["train"]]


def test_training_length_preset_is_a_pilot_of_the_evidence_preset():
    """The pilot trains the evidence preset's optimiser 4x as long and compares every checkpoint pair."""
    pilot, evidence = load_spec("training-length"), load_spec("evidence")
    assert pilot.training.steps == 4 * evidence.training.steps
    for field in ("batch_size", "lr", "latent_dim", "init"):
        assert getattr(pilot.training, field) == getattr(evidence.training, field), field
    assert pilot.datasets == evidence.datasets and pilot.probe == evidence.probe
    evidence_settings = {(o.name, v) for o in evidence.objectives for v in o.values}
    assert {(o.name, v) for o in pilot.objectives for v in o.values} <= evidence_settings
    assert pilot.comparisons.within_run == "all" and pilot.comparisons.layer_pairs == "matching"
    steps = pilot.checkpoint_steps()
    # every candidate length from the evidence preset's T on has a checkpoint at exactly T/2
    for T in (evidence.training.steps, 2 * evidence.training.steps, pilot.training.steps):
        assert T in steps and T // 2 in steps
