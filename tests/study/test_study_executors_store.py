"""Executors (failures collected, retries, process pool) and the store's file handling."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from vaesim.cli import main
from vaesim.study import COMPARISONS, RESULT_KEY, load_results, query, run_study, study_status
from vaesim.study import plan as layout
from vaesim.study.plan import ProbeTask
from vaesim.study.run.executors import LocalExecutor, TaskFailure
from vaesim.study.schema import RESULT_COLUMNS
from vaesim.study.spec import TaskResources
from vaesim.study.stages.files import verified, write_checksum
from vaesim.study.stages.task import STAGE_FUNCTIONS, run_task
from vaesim.study.store.tables import result_files


def fake_tasks(count):
    return [ProbeTask(task_id=f"probe/t{i}", outputs=(f"out/t{i}.txt",), dataset=f"t{i}", n=i, seed=0, metrics=())
            for i in range(count)]


def test_sequential_executor_collects_failures_and_goes_on(tmp_path, monkeypatch):
    calls = []

    def fake_stage(root, task):
        calls.append(task.n)
        if task.n == 1:
            raise RuntimeError("boom in task 1")
        (root / "out").mkdir(exist_ok=True)
        (root / f"out/t{task.n}.txt").write_text("ok")

    monkeypatch.setitem(STAGE_FUNCTIONS, "probe", fake_stage)
    seen = []
    outcome = LocalExecutor(max_retries=2).run(str(tmp_path), fake_tasks(3), TaskResources(), seen.append)
    assert [f.task_id for f in outcome.failures] == ["probe/t1"]
    assert outcome.failures[0].error == "RuntimeError: boom in task 1"
    assert calls == [0, 1, 1, 1, 2]  # task 1 tried 1 + 2 retries, the others once
    assert sorted(r["task_id"] for r in outcome.reports) == ["probe/t0", "probe/t2"]
    assert len(seen) == 3 and isinstance(seen[1], TaskFailure)


def test_retry_recovers_a_transient_failure(tmp_path, monkeypatch):
    attempts = {"n": 0}

    def flaky(root, task):
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise OSError("transient")
        (root / "out").mkdir(exist_ok=True)
        (root / "out/t0.txt").write_text("ok")

    monkeypatch.setitem(STAGE_FUNCTIONS, "probe", flaky)
    outcome = LocalExecutor(max_retries=1).run(str(tmp_path), fake_tasks(1), TaskResources(), lambda item: None)
    assert not outcome.failures and attempts["n"] == 2


def test_finished_task_is_skipped(tmp_path, monkeypatch):
    (tmp_path / "out").mkdir()
    (tmp_path / "out/t0.txt").write_text("done before")
    monkeypatch.setitem(STAGE_FUNCTIONS, "probe", lambda root, task: pytest.fail("should be skipped"))
    report = run_task(str(tmp_path), fake_tasks(1)[0])
    assert report["status"] == "skipped"


@pytest.mark.slow
def test_process_pool_recomputes_like_sequential(tiny_copy, tiny_spec):
    before = load_results(tiny_copy).sort_values(list(RESULT_KEY)).reset_index(drop=True)
    files = result_files(tiny_copy)
    for path in files[::3]:
        path.unlink()
    run_study(tiny_spec, tiny_copy, workers=2, progress=False)
    after = load_results(tiny_copy).sort_values(list(RESULT_KEY)).reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)


@pytest.mark.slow
def test_failed_task_is_reported_and_blocks_only_its_dependants(tiny_copy, tiny_spec, monkeypatch, capsys):
    plan = layout.plan_study(tiny_spec)
    victim = plan.runs[0].run_id
    (tiny_copy / layout.checkpoint_sums_path(victim)).unlink()
    for step in tiny_spec.checkpoint_steps():
        (tiny_copy / layout.summary_path(victim, step)).unlink()
    dependants = [t for t in plan.tasks["compare"] if any(victim in i for i in t.inputs)]
    for task in dependants:
        (tiny_copy / task.outputs[0]).unlink()
    untouched = [p for p in result_files(tiny_copy)]

    def broken_train(root, task):
        raise RuntimeError("GPU fell off the bus")

    monkeypatch.setitem(STAGE_FUNCTIONS, "train", broken_train)
    spec_path = tiny_copy / "spec.yaml"
    assert main(["study", "run", str(spec_path), "--out", str(tiny_copy), "--no-progress", "--threads", "1"]) == 1
    err = capsys.readouterr().err
    assert f"train/{victim}: RuntimeError: GPU fell off the bus" in err
    assert "not run: an upstream task failed" in err
    failures = json.loads((tiny_copy / "failures.json").read_text())
    failed_ids = {f["task_id"] for f in failures}
    assert f"train/{victim}" in failed_ids and {t.task_id for t in dependants} <= failed_ids
    assert result_files(tiny_copy) == untouched  # everything else is kept
    status = study_status(tiny_copy)
    assert not status.complete and "failed last run: train/" in status.format()


def test_checksum_detects_a_flipped_byte(tmp_path, caplog):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abcdef")
    write_checksum(path)
    assert verified(path)
    path.write_bytes(b"abcdeg")
    assert not verified(path)
    assert "corrupt file" in caplog.text and "x.bin" in caplog.text


def test_unfinished_files_are_not_read(finished_tiny):
    folder = finished_tiny / "results"
    tmp = folder / ".tmp-partial.parquet"
    tmp.write_bytes(b"half a file")
    unsummed = folder / "no-sidecar.parquet"
    unsummed.write_bytes(b"no checksum yet")
    try:
        results = load_results(finished_tiny)
        assert tmp not in result_files(finished_tiny) and unsummed not in result_files(finished_tiny)
        assert len(results) == len(load_results(finished_tiny, comparison="within_run")) + sum(
            len(load_results(finished_tiny, comparison=c)) for c in COMPARISONS if c != "within_run")
    finally:
        tmp.unlink()
        unsummed.unlink()


def test_not_a_study_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"is not a study directory \(no spec.yaml\)"):
        load_results(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a study directory"):
        study_status(tmp_path)


def test_query_on_a_study_without_results(tmp_path, tiny_spec):
    (tmp_path / "spec.yaml").write_text(tiny_spec.to_yaml())
    frame = query(tmp_path, "SELECT count(*) AS rows FROM results")
    assert frame.rows.tolist() == [0]
    assert list(load_results(tmp_path).columns) == list(RESULT_COLUMNS)


def test_query_command_prints_a_table(finished_tiny, capsys):
    assert main(["query", str(finished_tiny), "SELECT comparison, count(*) AS n FROM results GROUP BY 1 ORDER BY 1",
                 "--csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "comparison,n" and out[1].startswith("factors,")


def test_status_command(finished_tiny, capsys):
    assert main(["study", "status", str(finished_tiny)]) == 0
    out = capsys.readouterr().out
    assert "train    [" in out and "8/8 done, 0 pending" in out and "complete" in out
