"""`vaesim study plan` and `vaesim study show`: counts from the plan, estimates scaled from a calibration."""

from __future__ import annotations

import pytest
import yaml

from vaesim.cli import main
from vaesim.study.estimate import (
    RUN_LOG_BYTES_PER_STEP,
    Calibration,
    estimate,
    format_plan,
    linear,
    procrustes_pair_seconds,
    spread,
    summary_bytes,
    summary_seconds,
)
from vaesim.study.plan import plan_study

RATES = dict(forward_seconds_per_image=1e-3, gram32_rate=2e10, gemm64_rate=1e10, qr64_rate=5e9,
             centre_seconds_per_value=1e-9, eig_seconds_per_cube=1e-9, disentangle_fractions=(0.01, 0.02),
             disentangle_seconds=(3.0, 5.0), udr_points=(100, 200), udr_seconds=(1.0, 1.5))


def test_linear_goes_through_two_points_and_never_below_zero():
    assert linear((3.0, 5.0), (0.01, 0.02), 0.1) == pytest.approx(3.0 - 2.0 + 200.0 * 0.1)
    assert linear((5.0, 3.0), (1, 2), 10) == pytest.approx(5.0)  # a noisy falling pair: flat, not negative


def test_summary_work_and_bytes_follow_the_storage_routes():
    c = Calibration(seconds_per_step=0.5, checkpoint_bytes=1000, cores=2, seconds=1.0, **RATES)
    n = 100
    # features (p <= n/2): centring only; packed Gram (p > n/2): n^2 p at the float64 rate below MIXED_MIN_WORK;
    # Procrustes with p > n: QR (2 p n^2 - 2/3 n^3) + R^T R (2 n^3)
    assert summary_seconds(n, 40, True, c) == pytest.approx(2 * n * 40 * 1e-9)
    assert summary_seconds(n, 80, False, c) == pytest.approx(2 * n * 80 * 1e-9 + n * n * 80 / 5e9)
    assert summary_seconds(n, 400, True, c) == pytest.approx(
        2 * n * 400 * 1e-9 + (2 * 400 * n**2 - 2 / 3 * n**3) / 5e9 + 2 * n**3 / 1e10)
    packed = n * (n + 1) // 2 * 8
    assert summary_bytes(n, 40, True) == n * 40 * 8 + n * 8
    assert summary_bytes(n, 400, False) == packed + n * 8
    assert summary_bytes(n, 400, True) == 2 * packed + n * 8
    assert summary_bytes(n, 80, True) == n * 80 * 8 + packed + n * 8
    # a layer pair: cross block 2 n r_a r_b, smaller Gram 2 s^2 k, eigvalsh s^3 seconds
    assert procrustes_pair_seconds(n, 400, 30, c) == pytest.approx((2 * n * 100 * 30 + 2 * 30 * 30 * 100) / 1e10
                                                                   + 1e-9 * 30**3)
    # a block that is not tall (2 s > l) takes the SVD in the engine: s^2 l at the SVD rate, no Gram
    assert procrustes_pair_seconds(n, 400, 60, c) == pytest.approx(2 * n * 100 * 60 / 1e10 + 4e-9 * 60**2 * 100)
    svd_rate = Calibration(seconds_per_step=0.5, checkpoint_bytes=1000, cores=2, seconds=1.0,
                           svd_seconds_per_cube=3e-9, **RATES)
    assert procrustes_pair_seconds(n, 400, 60, svd_rate) == pytest.approx(2 * n * 100 * 60 / 1e10
                                                                          + 3e-9 * 60**2 * 100)
    assert spread([4.0, 1.0, 1.0], 2) == 4.0 and spread([1.0] * 4, 2) == 2.0


def test_estimate_counts_every_stage_of_the_plan(tiny_spec):
    plan = plan_study(tiny_spec)
    calibration = Calibration(seconds_per_step=0.5, checkpoint_bytes=1000, cores=2, seconds=1.0, **RATES)
    widths = {name: 100 for name in tiny_spec.layer_names()}
    estimates = estimate(plan, calibration, widths)
    by_stage = {e.stage: e for e in estimates}
    assert [e.stage for e in estimates] == ["probe", "train", "extract", "compare", "disentangle", "store"]
    assert sum(e.tasks for e in estimates) == len(plan.all_tasks())  # every task counted, disentangle too
    runs, steps = 8, 20  # the tiny grid: 2 objectives x 2 values x 2 seeds, 20 steps; 2 at once on 2 cores
    assert by_stage["train"].tasks == runs and by_stage["train"].seconds == pytest.approx(runs * steps * 0.5 / 2)
    checkpoints = len(tiny_spec.recorded_steps())
    logged = steps // tiny_spec.training.log_every + checkpoints  # metrics rows, checkpoint JSON and sums
    assert by_stage["train"].bytes == runs * checkpoints * 1000 + runs * logged * RUN_LOG_BYTES_PER_STEP
    assert by_stage["extract"].tasks == runs * checkpoints
    assert by_stage["compare"].tasks == len(plan.tasks["compare"]) and by_stage["compare"].seconds > 0
    text = format_plan(plan, estimates, calibration)
    assert "total" in text and "disentangle" in text and "8 runs" in text


def test_plan_counts_tasks_without_calibrating(capsys):
    assert main(["study", "plan", "paper", "--no-calibrate"]) == 0
    captured = capsys.readouterr()
    lines = {line.split()[0]: line.split()[1] for line in captured.out.splitlines()[1:]}
    assert lines["train"] == "300"  # 4 objectives x 5 values x 5 seeds x 3 datasets
    assert "study 'paper': 300 runs" in captured.out
    assert "vaesim data download" in captured.err  # the paper's data files are not here: said, not fatal


@pytest.mark.slow
def test_plan_measures_and_prints_disk_and_time(tmp_path, tiny_dict, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_dict))
    assert main(["study", "plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "calibration (" in out and "ms per training step" in out
    assert any(line.split()[0] == "train" and ("MB" in line or "KB" in line) for line in out.splitlines()[2:])


def test_show_prints_a_preset_that_loads_back(tmp_path, capsys):
    from vaesim.study import load_spec

    assert main(["study", "show", "quick"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("#")  # the preset's comments are kept
    copy = tmp_path / "mine.yaml"
    copy.write_text(text)
    assert load_spec(copy) == load_spec("quick")
    assert main(["study", "show", "nope"]) == 2
    assert "preset 'nope' does not exist; presets: evidence, paper, quick, training-length" in capsys.readouterr().err


@pytest.mark.parametrize("load, busy, says", [
    (0.1, 1.0, "Calibrated at load 0.1 (1-minute average) on 2 usable cores, an idle machine"),
    (3.2, 1.0, "Calibrated at load 3.2 (1-minute average) on 2 usable cores: other work was running, so these times "
               "are this load's"),
    (6.0, 0.4, "this machine is busy, training got 40% of its threads' time. As loaded now: "),
])
def test_the_plan_says_at_what_load_it_calibrated_and_what_an_idle_machine_gives(tiny_spec, load, busy, says):
    plan = plan_study(tiny_spec)
    calibration = Calibration(seconds_per_step=0.5, checkpoint_bytes=1000, cores=2, seconds=1.0, busy=busy,
                              load=load, **RATES)
    estimates = estimate(plan, calibration, {name: 100 for name in tiny_spec.layer_names()})
    text = " ".join(format_plan(plan, estimates, calibration).split())
    assert says in text
    if busy < 0.8:  # the idle figure beside the loaded one: training's share of the time scaled by busy
        from vaesim.study.estimate import human_seconds

        total = sum(e.seconds for e in estimates)
        assert f"on an idle machine about {human_seconds(total * busy)}" in text


def test_task_memory_holds_every_compared_checkpoints_summaries_and_the_plan_prints_it(tiny_spec, tiny_dict, tmp_path,
                                                                                    capsys):
    from vaesim.data.registry import get_spec
    from vaesim.study.budget import layer_widths
    from vaesim.study.estimate import COMPARE_WORKING_FACTOR, PROCESS_BYTES, task_memory

    plan = plan_study(tiny_spec)
    widths = layer_widths(tiny_spec, get_spec(tiny_spec.datasets[0]).num_channels)
    memory = {stage: need for stage, need, _ in task_memory(plan, widths)}
    n, procrustes = tiny_spec.probe.n, "procrustes" in tiny_spec.metrics
    per_model = sum(summary_bytes(n, widths[name], procrustes) for name in tiny_spec.layer_names() if name in widths)
    involved = max(len({(p[0], p[1]) for p in task.pairs} | {(p[2], p[3]) for p in task.pairs})
                   for task in plan.tasks["compare"])
    # summaries computed in the task and small (summaries: cache, below the spill size): all held at once
    cached = plan_study(tiny_spec.model_copy(update={"summaries": "cache"}))
    held = {stage: need for stage, need, _ in task_memory(cached, widths)}
    activations = n * sum(widths[name] for name in tiny_spec.layer_names() if name in widths) * 4
    assert held["compare"] == PROCESS_BYTES + int(involved * per_model * (1 + COMPARE_WORKING_FACTOR)) + activations
    # summaries read from files are memory-mapped: the task's own memory does not grow with its checkpoints
    # (beyond the factors of one model pair, only the engine's bounded factor cache grows)
    from vaesim.similarity.engine import FACTOR_CACHE_BYTES

    more = tiny_spec.model_copy(update={"seeds": [0, 1, 2, 3, 4, 5]})
    mapped_more = {s: need for s, need, _ in task_memory(plan_study(more), widths)}["compare"]
    held_more = {s: need for s, need, _ in task_memory(plan_study(more.model_copy(update={"summaries": "cache"})),
                                                       widths)}["compare"]
    more_involved = max(len({(p[0], p[1]) for p in task.pairs} | {(p[2], p[3]) for p in task.pairs})
                        for task in plan_study(more).tasks["compare"])
    assert more_involved > involved
    assert held_more - held["compare"] == pytest.approx((more_involved - involved) * per_model
                                                        * (1 + COMPARE_WORKING_FACTOR), abs=2)
    assert 0 <= mapped_more - memory["compare"] <= FACTOR_CACHE_BYTES
    assert memory["extract"] > PROCESS_BYTES + 2 * n * sum(widths.values()) * 4 and memory["train"] > PROCESS_BYTES
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_dict))
    assert main(["study", "plan", str(path)]) == 0
    assert "peak memory of one task: train " in capsys.readouterr().out


def test_a_compare_task_beyond_the_memory_available_is_refused_before_any_work(tiny_spec, tmp_path, monkeypatch):
    from vaesim.study import budget, run_study

    monkeypatch.setattr(budget, "available_memory", lambda: 2 * 10**9)  # enough for the spec checks, not for this
    monkeypatch.setattr("vaesim.study.estimate.COMPARE_WORKING_FACTOR", 1e4)  # a compare task of terabytes
    cached = tiny_spec.model_copy(update={"summaries": "cache"})  # small summaries computed in the task: held
    with pytest.raises(ValueError, match=r"study spec: a compare task needs about .* of memory \(the summaries of "
                                         r"\d+ checkpoints at once") as error:
        run_study(cached, tmp_path / "study", progress=False, threads=1)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "study" / "runs").exists()  # no work done


def test_an_extract_task_beyond_the_memory_available_is_refused_before_any_work(tiny_spec, tmp_path, monkeypatch):
    from vaesim.study import budget, run_study

    monkeypatch.setattr(budget, "available_memory", lambda: 2 * 10**9)
    monkeypatch.setattr("vaesim.study.estimate.PROCESS_BYTES", 3 * 10**9)  # every task beyond it
    with pytest.raises(ValueError, match=r"study spec: an extract task needs about .* of memory \(one checkpoint's "
                                         r"\d+ layers on \d+ images and their summaries\), but .* is available; "
                                         r"a smaller probe.n") as error:
        run_study(tiny_spec, tmp_path / "study", progress=False, threads=1)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "study" / "runs").exists()
