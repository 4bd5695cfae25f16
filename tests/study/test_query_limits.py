"""`vaesim query`: several studies, empty SQL, limits, Ctrl-C, files that lead outside the store, verified
disentanglement tables (issue 20 query items; issue 21 runaway query; issue 23 items 4, 5, 8).

Stores are written by hand in the layout `vaesim import` writes (no training), so each test takes well under a second.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vaesim.cli import main
from vaesim.study import query
from vaesim.study.schema import DISENTANGLEMENT_SCHEMA, RESULT_SCHEMA
from vaesim.study.stages.files import write_table
from vaesim.study.store.tables import CorruptStudyFile, load_disentanglement


def make_store(root: Path, scores: list[float], *, run: str = "beta_vae-beta1-s0") -> Path:
    """A results store with one results file (one row per score) and a runs table."""
    root.mkdir(parents=True)
    rows = [dict(dataset="d", comparison="within_run", metric="cka", a_run=run, a_objective="beta_vae",
                 a_param_name="beta", a_param=1.0, a_seed=0, a_step=i, a_epoch=float(i), a_layer="encoder.conv1",
                 b_run=run, b_objective="beta_vae", b_param_name="beta", b_param=1.0, b_seed=0, b_step=i + 1,
                 b_epoch=float(i + 1), b_layer="encoder.conv1", n=10, score=score, note="")
            for i, score in enumerate(scores)]
    write_table(root / "results" / "imported__0.parquet", pd.DataFrame(rows), RESULT_SCHEMA, checksum=True)
    write_table(root / "runs.parquet", pd.DataFrame([dict(run_id=run, seed=0)]), checksum=True)
    (root / "import.json").write_text(json.dumps({"results_files": ["results/imported__0.parquet"]}))
    (root / "spec.yaml").write_text(yaml.safe_dump({"name": "store", "imported_from": "vae_ld"}))
    return root


def add_disentanglement(root: Path, values: list[float]) -> Path:
    frame = pd.DataFrame([dict(dataset="d", run="beta_vae-beta1-s0", objective="beta_vae", param_name="beta",
                               param=1.0, seed=0, step=100, metric=f"m{i}", value=v) for i, v in enumerate(values)])
    frame = frame[[name for name in DISENTANGLEMENT_SCHEMA.names]]
    return write_table(root / "disentanglement" / "scores.parquet", frame, DISENTANGLEMENT_SCHEMA, checksum=True)


@pytest.fixture
def two_stores(tmp_path):
    return make_store(tmp_path / "a", [0.25, 0.5]), make_store(tmp_path / "b", [0.75], run="beta_vae-beta2-s1")


def test_several_studies_are_queried_together_with_a_study_column(two_stores, capsys):
    a, b = two_stores
    frame = query([a, b], "SELECT study, count(*) AS n, sum(score) AS s FROM results GROUP BY study ORDER BY study")
    assert frame.to_dict("records") == [dict(study=str(a), n=2, s=0.75), dict(study=str(b), n=1, s=0.75)]
    runs = query([a, b], "SELECT study, run_id FROM runs ORDER BY study")
    assert runs.run_id.tolist() == ["beta_vae-beta1-s0", "beta_vae-beta2-s1"]
    assert main(["query", str(a), str(b), "SELECT count(DISTINCT study) AS k FROM results", "--csv"]) == 0
    assert capsys.readouterr().out.split() == ["k", "2"]
    # one study: the columns are as before (no study column)
    assert "study" not in query(a, "SELECT * FROM results").columns


def test_several_studies_stay_inside_the_sandbox(two_stores, tmp_path):
    a, b = two_stores
    (tmp_path / "secret.csv").write_text("x\n1\n")
    for sql in (f"SELECT * FROM read_csv('{tmp_path / 'secret.csv'}')",
                f"SELECT * FROM read_parquet('{tmp_path}/*/results/*.parquet')"):
        with pytest.raises(ValueError, match="query failed"):
            query([a, b], sql)


@pytest.mark.parametrize("sql", ["", "   ", ";", "-- only a comment", "/* a block */ ;", "\n;\n-- x\n"])
def test_a_query_without_a_statement_gets_one_line(two_stores, sql, capsys):
    a, _ = two_stores
    assert main(["query", str(a), sql]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaesim: error: query: the SQL") and "holds no statement" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_runaway_query_stops_at_the_time_limit(two_stores, capsys):
    a, _ = two_stores
    runaway = "SELECT count(*) FROM range(100000000000) x, range(1000) y WHERE x.range + y.range = -1"
    started = time.monotonic()
    assert main(["query", str(a), runaway, "--timeout", "0.5"]) == 2
    assert time.monotonic() - started < 5
    err = capsys.readouterr().err
    assert "stopped after 0.5 s" in err and "--timeout" in err and "Traceback" not in err


def test_ctrl_c_stops_a_running_query_within_a_second(two_stores):
    a, _ = two_stores
    runaway = "SELECT count(*) FROM range(100000000000) x, range(1000) y WHERE x.range + y.range = -1"
    # a shell starts background jobs with SIGINT ignored, and Python then never raises KeyboardInterrupt:
    # give this test the handler an interactive user has, so it tests the query and not how pytest was started
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            query(a, runaway, timeout=0)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - started < 1.5


def test_limits_are_stated_in_help_and_applied(two_stores, capsys):
    a, _ = two_stores
    with pytest.raises(SystemExit):
        main(["query", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("--timeout SECONDS", "(default 300", "--memory-limit SIZE", "(default 4GB)", "--temp-limit SIZE"):
        assert words in text
    settings = query(a, "SELECT current_setting('memory_limit') AS m, current_setting('temp_directory') AS t",
                     memory_limit="256MB")
    assert settings.m.iloc[0] in ("244.1 MiB", "256.0 MB", "256MB")
    spill = Path(settings.t.iloc[0])
    assert spill.name.startswith("vaesim-query-") and not spill.exists()  # private, removed afterwards
    assert main(["query", str(a), "SELECT 1", "--memory-limit", "lots"]) == 2
    assert "--memory-limit: expected a size such as 4GB" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["query", str(a), "SELECT 1", "--timeout", "inf"])
    assert "expected a number of seconds" in capsys.readouterr().err


def test_import_manifest_pointing_outside_the_store_is_refused(two_stores, capsys):
    a, b = two_stores
    manifest = a / "import.json"
    manifest.write_text(json.dumps({"results_files": ["results/imported__0.parquet",
                                                      "../b/results/imported__0.parquet"]}))
    assert main(["query", str(a), "SELECT sum(score) FROM results"]) == 2
    err = capsys.readouterr().err
    assert "lead outside the study directory" in err and "imported__0.parquet" in err
    manifest.write_text(json.dumps({"results_files": [str(b / "results" / "imported__0.parquet")]}))
    with pytest.raises(ValueError, match="outside the study directory"):
        query(a, "SELECT 1")


def test_a_symlinked_table_leading_outside_the_store_is_refused(two_stores):
    a, b = two_stores
    for name in ("runs.parquet", "runs.parquet.sha256"):
        (a / name).unlink()
        (a / name).symlink_to(b / name)
    with pytest.raises(ValueError, match="outside the study directory"):
        query(a, "SELECT * FROM runs")


def test_disentanglement_table_edited_after_its_sidecar_is_refused(two_stores, capsys):
    a, _ = two_stores
    table = add_disentanglement(a, [0.5, 0.25])
    assert query(a, "SELECT sum(value) AS s FROM disentanglement").s.iloc[0] == 0.75
    sidecar = table.with_name(table.name + ".sha256").read_text()
    add_disentanglement(a, [0.5, 0.5])  # a semantic edit ...
    table.with_name(table.name + ".sha256").write_text(sidecar)  # ... that keeps the old sidecar
    assert main(["query", str(a), "SELECT sum(value) FROM disentanglement"]) == 2
    err = capsys.readouterr().err
    assert "do not match their checksum" in err and "scores.parquet" in err
    with pytest.raises(CorruptStudyFile, match="scores.parquet"):
        load_disentanglement(a)  # the report's reader


def test_truncated_disentanglement_table_gets_the_verified_read_error(two_stores, capsys):
    a, _ = two_stores
    table = add_disentanglement(a, [0.5])
    table.write_bytes(table.read_bytes()[:40])
    assert main(["query", str(a), "SELECT * FROM disentanglement"]) == 2
    err = capsys.readouterr().err
    assert "do not match their checksum" in err and "magic" not in err.lower()


def test_a_query_over_the_memory_and_spill_limits_gets_one_line(two_stores, capsys):
    a, _ = two_stores
    grouping = "SELECT count(*) FROM (SELECT x.range AS v, count(*) FROM range(20000000) x GROUP BY v)"
    assert main(["query", str(a), grouping, "--memory-limit", "30MB", "--temp-limit", "5MB"]) == 2
    err = capsys.readouterr().err
    assert "the query needs more than the memory limit (--memory-limit) and the spill space (--temp-limit)" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
