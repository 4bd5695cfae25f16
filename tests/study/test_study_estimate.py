"""`vaesim study plan` and `vaesim study show`: counts from the plan, estimates scaled from a calibration."""

from __future__ import annotations

import pytest
import yaml

from vaesim.cli import main
from vaesim.study.estimate import Calibration, estimate, format_plan, scale
from vaesim.study.plan import plan_study


def test_scale_follows_the_power_law_through_two_points():
    assert scale((1.0, 4.0), (10, 20), 40) == pytest.approx(16.0)  # n^2
    assert scale((1.0, 2.0), (10, 20), 40) == pytest.approx(4.0)  # n^1
    assert scale((1.0, 1.0), (10, 20), 40) == pytest.approx(2.0)  # never below linear
    assert scale((1.0, 16.0), (10, 20), 40) == pytest.approx(64.0)  # never above n^2


def test_estimate_scales_a_known_calibration_by_hand(tiny_spec):
    plan = plan_study(tiny_spec)
    calibration = Calibration(seconds_per_step=0.5, checkpoint_bytes=1000, sizes=(32, 64),
                              extract_seconds=(1.0, 4.0), summary_bytes=(100, 400), pair_seconds=(0.1, 0.4),
                              model_seconds=(0.0, 0.0), seconds=1.0)
    by_stage = {e.stage: e for e in estimate(plan, calibration)}
    runs, steps, n = 8, 20, 64  # the tiny grid: 2 objectives x 2 values x 2 seeds, 20 steps, 64 probe images
    assert by_stage["train"].tasks == runs and by_stage["train"].seconds == pytest.approx(runs * steps * 0.5)
    checkpoints = len(tiny_spec.recorded_steps())
    assert by_stage["train"].bytes == runs * checkpoints * 1000
    assert by_stage["extract"].tasks == runs * checkpoints
    assert by_stage["extract"].seconds == pytest.approx(runs * checkpoints * 4.0)  # measured at n = 64 already
    assert by_stage["extract"].bytes == runs * checkpoints * 400
    assert by_stage["compare"].tasks == len(plan.tasks["compare"])
    text = format_plan(plan, list(by_stage.values()), calibration)
    assert "total" in text and "extract" in text and "8 runs" in text


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
    assert "preset 'nope' does not exist; presets: paper, quick" in capsys.readouterr().err
