"""Readers that verify, outputs that are recomputed when corrupt, a sandboxed query (issue 10 items 4, 5, 13, 14)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from vaesim.cli import main
from vaesim.study import RESULT_KEY, load_results, load_runs, query, run_study, study_status
from vaesim.study import plan as layout
from vaesim.study.stages.files import verified, write_table
from vaesim.study.store.tables import CorruptStudyFile, result_files

pytestmark = pytest.mark.slow


def _flip_byte(path, offset=None):
    data = bytearray(path.read_bytes())
    position = len(data) // 2 if offset is None else offset
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(RESULT_KEY)).reset_index(drop=True)


def test_corrupt_probe_set_is_recomputed(tiny_copy, tiny_spec):
    before = _sorted(load_results(tiny_copy))
    plan = layout.plan_study(tiny_spec)
    dataset = tiny_spec.datasets[0]
    probe = tiny_copy / layout.probe_path(dataset)
    _flip_byte(probe)
    (tiny_copy / layout.factors_summary_path(dataset)).write_bytes(b"garbage")
    (tiny_copy / layout.probe_info_path(dataset)).write_text("{not json")
    victim = plan.tasks["extract"][0]
    (tiny_copy / victim.outputs[0]).unlink()  # its extraction needs the probe set again
    factors = next(t for t in plan.tasks["compare"] if t.comparison == "factors")
    (tiny_copy / factors.outputs[0]).unlink()  # needs the factors summary and the dataset size again
    run_study(tiny_spec, tiny_copy, progress=False, threads=1)
    assert verified(probe) and verified(tiny_copy / layout.probe_info_path(dataset))
    pd.testing.assert_frame_equal(before, _sorted(load_results(tiny_copy)))


def test_readers_refuse_a_flipped_results_file_and_a_rerun_repairs_it(tiny_copy, tiny_spec, capsys):
    before = _sorted(load_results(tiny_copy))
    victim = result_files(tiny_copy)[3]
    _flip_byte(victim, offset=len(victim.read_bytes()) // 3)
    with pytest.raises(CorruptStudyFile, match=victim.name):
        load_results(tiny_copy)
    with pytest.raises(CorruptStudyFile, match=victim.name):
        query(tiny_copy, "SELECT sum(score) FROM results")
    assert main(["query", str(tiny_copy), "SELECT sum(score) FROM results"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vaesim: error:") and victim.name in err
    status = study_status(tiny_copy)
    assert not status.complete and "1 corrupt" in status.format()
    run_study(tiny_spec, tiny_copy, progress=False, threads=1)
    pd.testing.assert_frame_equal(before, _sorted(load_results(tiny_copy)))
    assert study_status(tiny_copy).complete


def test_truncated_run_table_gives_one_clear_error_and_is_rebuilt(tiny_copy, tiny_spec, capsys):
    runs_before = load_runs(tiny_copy)
    table = tiny_copy / layout.RUNS_TABLE
    table.write_bytes(table.read_bytes()[:200])
    assert main(["query", str(tiny_copy), "SELECT count(*) FROM runs"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "runs.parquet" in err and "Traceback" not in err
    run_study(tiny_spec, tiny_copy, progress=False, threads=1)
    pd.testing.assert_frame_equal(runs_before, load_runs(tiny_copy))


def test_files_outside_the_plan_are_not_read(tiny_copy):
    before = _sorted(load_results(tiny_copy))
    source = result_files(tiny_copy)[0]
    for suffix in ("", ".sha256"):
        shutil.copy(str(source) + suffix, str(tiny_copy / "results" / "extra.parquet") + suffix)
    after = _sorted(load_results(tiny_copy))
    pd.testing.assert_frame_equal(before, after)
    assert query(tiny_copy, "SELECT count(*) AS n FROM results")["n"].iloc[0] == len(before)


def test_query_cannot_touch_files_outside_the_study(finished_tiny, tmp_path):
    assert query(finished_tiny, "SELECT count(*) AS n FROM runs")["n"].iloc[0] == 8
    target = tmp_path / "leak.csv"
    for sql in ("SELECT * FROM read_csv('/etc/passwd')", f"COPY (SELECT 1) TO '{target}'",
                f"ATTACH '{tmp_path / 'x.db'}'", "INSTALL httpfs", "SET enable_external_access = true",
                f"COPY (SELECT 1) TO '{finished_tiny / 'results' / 'x.csv'}'"):
        with pytest.raises(ValueError, match="query failed"):
            query(finished_tiny, sql)
    assert not target.exists() and not (finished_tiny / "results" / "x.csv").exists()


def test_nan_scores_are_stored_as_nan_not_null(tmp_path):
    frame = pd.DataFrame({"name": ["a", "b", "c"], "score": [0.5, np.nan, 1.0]})
    path = write_table(tmp_path / "t.parquet", frame)
    table = pq.read_table(path)
    assert table.column("score").null_count == 0
    import duckdb

    con = duckdb.connect()
    assert con.execute(f"SELECT count(*) FROM read_parquet('{path}') WHERE isnan(score)").fetchall() == [(1,)]
    con.close()


def test_run_tables_hold_the_finished_runs_when_one_run_fails(tiny_copy, tiny_spec, monkeypatch):
    import vaesim.training
    from vaesim.study import StudyFailed, load_training_metrics

    plan = layout.plan_study(tiny_spec)
    victim = plan.runs[1].run_id
    run_dir = tiny_copy / layout.run_dir(victim)
    for name in (layout.CHECKPOINT_SUMS, "DONE", "checkpoints/step_00000020.json"):  # killed before the end
        (run_dir / name).unlink()
    for name in (layout.RUNS_TABLE, layout.TRAINING_METRICS_TABLE):
        (tiny_copy / name).unlink()
    real_train = vaesim.training.train

    def failing(config, out, **kwargs):
        if victim in str(out):
            raise RuntimeError("disk on fire")
        return real_train(config, out, **kwargs)

    monkeypatch.setattr(vaesim.training, "train", failing)
    with pytest.raises(StudyFailed, match=rf"train/{victim}: RuntimeError: disk on fire"):
        run_study(tiny_spec, tiny_copy, progress=False, threads=1)
    runs = load_runs(tiny_copy)
    assert len(runs) == 7 and victim not in set(runs.run_id)
    assert victim not in set(load_training_metrics(tiny_copy).run_id)
    monkeypatch.setattr(vaesim.training, "train", real_train)  # the run can finish: the tables get all 8
    run_study(tiny_spec, tiny_copy, progress=False, threads=1)
    assert sorted(load_runs(tiny_copy).run_id) == sorted(run.run_id for run in plan.runs)


def test_a_damaged_training_log_is_rewritten_by_retraining_its_run(tiny_copy, tiny_spec):
    """verify promises "retrains run ... from the start"; the rerun does so, and the log is as trained."""
    from vaesim.study.store.verify import verify_study

    plan = layout.plan_study(tiny_spec)
    victim = plan.runs[1].run_id
    log = tiny_copy / layout.run_dir(victim) / "metrics.jsonl"
    original = log.read_bytes()
    log.write_bytes(original.replace(b'"loss": ', b'"loss": 1', 1))  # still valid JSON, different numbers
    assert "retrains run" in verify_study(tiny_copy).format()
    run_study(tiny_spec, tiny_copy, progress=False, threads=1)
    assert log.read_bytes() == original
    assert verify_study(tiny_copy).ok
    assert sorted(load_runs(tiny_copy).run_id) == sorted(run.run_id for run in plan.runs)


def test_printed_hint_commands_are_shell_quoted(tmp_path):
    import shlex

    odd = tmp_path / "my study; rm -rf x"
    odd.mkdir()
    (odd / "spec.yaml").write_text("name: x\n")
    with pytest.raises(FileNotFoundError) as raised:
        load_runs(odd)
    hint = str(raised.value).split("`")[1]
    assert shlex.split(hint)[-1] == str(odd)  # the path comes back as one word
