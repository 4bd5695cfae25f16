"""Sizes are checked against memory before any work; a failed task attempt is one log line (issue 23 items 6, 10)."""

from __future__ import annotations

import logging

import pytest
import yaml

from vaesim.cli import main
from vaesim.study import budget
from vaesim.study.run.executors import LocalExecutor
from vaesim.study.spec import TaskResources


@pytest.mark.parametrize("section, field, value", [
    ("training", "batch_size", 700_000),
    ("training", "latent_dim", 2_000_000),
    ("disentanglement", "udr_points", 10_000_000_000),
])
def test_a_size_beyond_memory_is_refused_before_any_work(tiny_dict, tmp_path, monkeypatch, capsys, section, field,
                                                         value):
    monkeypatch.setattr(budget, "available_memory", lambda: 4 * 2**30)
    tiny_dict.setdefault(section, {})[field] = value
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_dict))
    out = tmp_path / "study"
    assert main(["study", "run", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vaesim: error: study spec {section}.{field} = {value:,}: ")
    assert "of memory, but 4.00 GiB is available" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_checkpoint_count_beyond_the_steps_is_refused_at_once(tiny_dict, tmp_path, capsys):
    tiny_dict["training"]["checkpoints"] = {"count": 1_000_000_000}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_dict))
    assert main(["study", "plan", str(spec), "--no-calibrate"]) == 2
    err = capsys.readouterr().err
    assert "checkpoints.count: 1,000,000,000 asked for, but a run of 20 steps has at most 21" in err


def test_the_plan_size_is_checked_against_memory(tiny_spec, monkeypatch):
    monkeypatch.setattr(budget, "available_memory", lambda: 2**20)  # 1 MiB: the tiny plan needs more
    spec = tiny_spec.model_copy(update={"training": tiny_spec.training.model_copy(
        update={"steps": 10**12, "checkpoints": tiny_spec.training.checkpoints.model_copy(update={"count": 10**9})})})
    with pytest.raises(ValueError, match=r"training.checkpoints.count = 1,000,000,000: the task plan of 8 run\(s\)"):
        budget.check_memory(spec)


class _Task:
    task_id = "train/x"


def test_a_failed_attempt_is_one_line_and_its_traceback_needs_verbose(monkeypatch, caplog):
    import vaesim.study.run.executors as executors

    def diverge(*args):
        raise RuntimeError("training diverged: the loss became inf at step 3")

    monkeypatch.setattr(executors, "run_task", diverge)
    with caplog.at_level(logging.WARNING, logger="vaesim"):
        outcome = LocalExecutor(max_retries=1).run("dir", [_Task()], TaskResources(), lambda item: None)
    assert len(outcome.failures) == 1
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"task train/x failed (attempt {i} of 2): RuntimeError: training diverged: the loss became inf "
                     f"at step 3" for i in (1, 2)]
    assert not any(r.exc_info for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vaesim"):  # -v
        LocalExecutor(max_retries=0).run("dir", [_Task()], TaskResources(), lambda item: None)
    assert any("Traceback" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("summaries, cap_gb, refused", [
    ("keep", 50.0, True),  # every checkpoint's summaries stored: ~9 TB at the paper's n = 10,000
    ("cache", 50.0, False),  # none stored (the disk check counted them all and refused the paper preset)
    ("planned", 50.0, False),  # at most the cap
    ("planned", 200.0, True),  # a cap beyond the free disk
])
def test_the_disk_check_counts_the_summaries_each_setting_stores(monkeypatch, tmp_path, summaries, cap_gb, refused):
    from vaesim.study.spec import load_spec

    spec = load_spec("paper").model_copy(update={"summaries": summaries, "summaries_cap_gb": cap_gb})
    monkeypatch.setattr(budget, "available_memory", lambda: 64 * 2**30)
    monkeypatch.setattr(budget, "free_disk", lambda _path: 100 * 10**9)  # 100 GB free
    if refused:
        with pytest.raises(ValueError, match=r"the study needs about .* of disk for its probe sets and summaries"):
            budget.check_budget(spec, tmp_path / "study")
    else:
        budget.check_budget(spec, tmp_path / "study")
