"""Addresses and the task plan: stable, content-derived, complete, no duplicates."""

from __future__ import annotations

import re
import pytest

from vaesim.models import LAYER_NAMES
from vaesim.study import parse_spec, plan_study
from study_tiny import expected_pairs

from vaesim.study.plan import comparison_groups, plan_runs, spec_differences


def test_run_ids_are_readable_and_stable(tiny_spec, tiny_dict):
    runs = plan_runs(tiny_spec)
    assert len(runs) == 8 and len({r.run_id for r in runs}) == 8
    assert re.fullmatch(r"dsprites-procedural_beta_vae_beta=8_seed=1_[0-9a-f]{8}", runs[3].run_id)
    again = plan_runs(parse_spec(tiny_dict))
    assert [r.run_id for r in again] == [r.run_id for r in runs]


def test_fields_that_do_not_matter_keep_every_address(tiny_spec, tiny_dict):
    tiny_dict["description"] = "other words"
    tiny_dict["resources"] = {"train": {"num_cpus": 3, "num_gpus": 0.5}, "max_retries": 4}
    other = plan_study(parse_spec(tiny_dict))
    assert [t.task_id for t in other.all_tasks()] == [t.task_id for t in plan_study(tiny_spec).all_tasks()]


def test_a_training_field_changes_run_addresses(tiny_spec, tiny_dict):
    tiny_dict["training"]["lr"] = 3e-4
    before = {r.run_id for r in plan_runs(tiny_spec)}
    after = {r.run_id for r in plan_runs(parse_spec(tiny_dict))}
    assert not before & after


def test_adding_a_seed_keeps_existing_runs(tiny_spec, tiny_dict):
    tiny_dict["seeds"] = [0, 1, 2]
    before = {r.run_id for r in plan_runs(tiny_spec)}
    after = {r.run_id for r in plan_runs(parse_spec(tiny_dict))}
    assert before < after and len(after - before) == 4


def test_metrics_change_compare_addresses_only(tiny_spec, tiny_dict):
    tiny_dict["metrics"] = ["cka"]
    a, b = plan_study(tiny_spec), plan_study(parse_spec(tiny_dict))
    assert [t.task_id for t in a.tasks["train"]] == [t.task_id for t in b.tasks["train"]]
    assert not {t.task_id for t in a.tasks["compare"]} & {t.task_id for t in b.tasks["compare"]}


def test_pairs_per_comparison_match_hand_count(tiny_spec):
    groups = comparison_groups(tiny_spec, plan_runs(tiny_spec))
    counted = {}
    for comparison, _label, pairs in groups:
        counted[comparison] = counted.get(comparison, 0) + len(pairs)
    assert counted == expected_pairs(tiny_spec)


def test_pairs_are_unique_and_respect_the_grouping(tiny_spec):
    runs = {r.run_id: r for r in plan_runs(tiny_spec)}
    seen = set()
    for comparison, _label, pairs in comparison_groups(tiny_spec, list(runs.values())):
        for a_run, a_step, b_run, b_step in pairs:
            key = (comparison, a_run, a_step, b_run, b_step)
            assert key not in seen
            seen.add(key)
            a, b = runs[a_run], runs[b_run]
            if comparison == "seeds":
                assert (a.objective, a.param, a_step) == (b.objective, b.param, b_step) and a.seed != b.seed
            elif comparison == "params":
                assert (a.objective, a.seed, a_step) == (b.objective, b.seed, b_step) and a.param != b.param
            elif comparison == "objectives":
                assert a.seed == b.seed and a_step == b_step and a.objective != b.objective
            elif comparison == "within_run":
                assert a_run == b_run and a_step <= b_step


def test_within_run_final_mode(tiny_dict):
    tiny_dict["comparisons"] = {"within_run": "final", "seeds": False, "params": False, "objectives": False,
                                "factors": False, "noise_floor": False}
    spec = parse_spec(tiny_dict)
    groups = comparison_groups(spec, plan_runs(spec))
    assert {c for c, _, _ in groups} == {"within_run"}
    final = spec.checkpoint_steps()[-1]
    assert all(b_step == final for _, _, pairs in groups for _, _, _, b_step in pairs)
    assert sum(len(p) for _, _, p in groups) == 8 * 3


def test_noise_floor_records_the_final_step_twice(tiny_dict):
    from vaesim.study.plan import noise_layers, resampled_path

    spec = parse_spec(tiny_dict)
    plan = plan_study(spec)
    final = spec.recorded_steps()[-1]
    resampling = [task for task in plan.tasks["extract"] if task.resample]
    assert {task.step for task in resampling} == {final} and len(resampling) == 8
    assert all(resampled_path(task.run_id, final) in task.outputs for task in resampling)
    floors = [task for task in plan.tasks["compare"] if task.comparison == "noise_floor"]
    assert len(floors) == 8 and all(task.pairs[0][1] == task.pairs[0][3] == final for task in floors)
    # a corrupt final summary recomputed from a compare task writes the same outputs as the planned extraction
    within = next(task for task in plan.tasks["compare"] if task.comparison == "within_run")
    run_id = within.pairs[0][0]
    planned = next(task for task in resampling if task.run_id == run_id)
    assert within.extract_task(run_id, final) == planned
    assert noise_layers(spec.layer_names()) == ["encoder.sample", "decoder.fc1", "decoder.fc2", "decoder.deconv1"]
    for off in ({"noise_floor": False}, None):
        changed = dict(tiny_dict, comparisons=off) if off else dict(tiny_dict, probe={"n": 64, "sample_noise": "shared"})
        assert not any(t.comparison == "noise_floor" for t in plan_study(parse_spec(changed)).tasks["compare"])


def test_task_outputs_are_unique_across_the_plan(tiny_spec):
    outputs = [o for t in plan_study(tiny_spec).all_tasks() for o in t.outputs]
    assert len(outputs) == len(set(outputs))


def test_paper_plan_size():
    from vaesim.study import load_spec

    plan = plan_study(load_spec("paper"))
    assert len(plan.runs) == 300
    assert len(plan.tasks["extract"]) == 300 * 6  # 5 learned checkpoints + the initial-state baseline
    assert len(LAYER_NAMES) == 16


def test_spec_differences_name_the_fields(tiny_spec, tiny_dict):
    tiny_dict["training"]["steps"] = 40
    tiny_dict["seeds"] = [0, 1, 2]
    tiny_dict["description"] = "does not matter"
    lines = spec_differences(tiny_spec, parse_spec(tiny_dict))
    assert lines == ["seeds: [0, 1] -> [0, 1, 2]", "training.steps: 20 -> 40"]


@pytest.mark.parametrize("bad", [0, -2, 1.5])
def test_bad_worker_count(tiny_spec, tmp_path, bad):
    from vaesim.study import run_study

    with pytest.raises(ValueError, match="workers must be a positive integer"):
        run_study(tiny_spec, tmp_path / "o", workers=bad, progress=False)
    assert not (tmp_path / "o").exists()


def test_self_and_final_and_final_step_only(tiny_dict):
    tiny_dict["comparisons"] = {"within_run": "self_and_final", "across_steps": "final"}
    spec = parse_spec(tiny_dict)
    steps = spec.recorded_steps()  # [0, 10, 20]
    counted: dict[str, set] = {}
    for comparison, _label, pairs in comparison_groups(spec, plan_runs(spec)):
        counted.setdefault(comparison, set()).update((a_step, b_step) for _, a_step, _, b_step in pairs)
    assert counted["within_run"] == {(0, 0), (10, 10), (20, 20), (0, 20), (10, 20)}
    for comparison in ("seeds", "params", "objectives"):  # the final step and the untrained baseline
        assert counted[comparison] == {(0, 0), (steps[-1], steps[-1])}
    assert counted["factors"] == {(s, s) for s in steps}


def test_the_initial_state_is_always_recorded_but_not_a_scheduled_checkpoint(tiny_dict):
    tiny_dict["training"]["checkpoints"] = {"schedule": "even", "count": 4, "include_init": False}
    tiny_dict["training"]["steps"] = 40
    spec = parse_spec(tiny_dict)
    assert spec.checkpoint_steps() == [10, 20, 30, 40]  # evenly spaced after training starts (the paper's protocol)
    assert spec.recorded_steps() == [0, 10, 20, 30, 40]
    plan = plan_study(spec)
    assert all(run.steps == [0, 10, 20, 30, 40] for run in plan.runs)  # training saves the baseline too
    assert {task.step for task in plan.tasks["extract"]} == {0, 10, 20, 30, 40}


def test_sampling_noise_mode_reaches_extraction_and_the_monitor(tiny_dict):
    spec = parse_spec(tiny_dict)
    assert spec.probe.sample_noise == "independent"
    plan = plan_study(spec)
    assert {task.sample_noise for task in plan.tasks["extract"]} == {"independent"}
    assert {run.config["sample_noise"] for run in plan.runs} == {"independent"}
    tiny_dict["probe"]["sample_noise"] = "shared"
    shared = plan_study(parse_spec(tiny_dict))
    assert {task.sample_noise for task in shared.tasks["compare"]} == {"shared"}
    # the mode changes what is computed: new compare task ids and run addresses
    assert {t.task_id for t in shared.tasks["compare"]}.isdisjoint({t.task_id for t in plan.tasks["compare"]})
    assert spec_differences(spec, parse_spec(tiny_dict)) == ["probe.sample_noise: 'independent' -> 'shared'"]


def test_every_task_kind_is_a_frozen_picklable_record(tiny_spec):
    import dataclasses
    import pickle

    from vaesim.study.plan import CompareTask, ExtractTask, ProbeTask, StoreTask, TrainTask

    plan = plan_study(tiny_spec)
    kinds = {"probe": ProbeTask, "train": TrainTask, "extract": ExtractTask, "compare": CompareTask,
             "store": StoreTask}
    for stage, kind in kinds.items():
        task = plan.tasks[stage][0]
        assert type(task) is kind and task.stage == stage
        assert not hasattr(task, "payload")
        with pytest.raises(dataclasses.FrozenInstanceError):
            task.task_id = "other"
        assert pickle.loads(pickle.dumps(task)) == task  # travels to a pool or a Ray worker unchanged


def test_compare_task_rebuilds_the_planned_extract_task(tiny_spec):
    plan = plan_study(tiny_spec)
    extract = {t.task_id: t for t in plan.tasks["extract"]}
    for task in plan.tasks["compare"]:
        for a_run, a_step, b_run, b_step in task.pairs:
            rebuilt = task.extract_task(a_run, a_step)
            assert rebuilt == extract[rebuilt.task_id]
