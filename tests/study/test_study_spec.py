"""Study specs: presets, validation messages, checkpoint schedules."""

from __future__ import annotations

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
