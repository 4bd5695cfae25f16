"""Study files in the wrong shape (issue 21): a garbled failures.json, folders replaced by files or symlinks."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml

from study_tiny import TINY

from vaesim.cli import main
from vaesim.study import run_study
from vaesim.study.run.shapes import SET_ASIDE


@pytest.fixture
def fresh_study(tmp_path):
    """A study directory with its recorded spec and nothing computed yet (status works without training)."""
    study = tmp_path / "study"
    study.mkdir()
    (study / "spec.yaml").write_text(yaml.safe_dump(copy.deepcopy(TINY)))
    return study


@pytest.mark.parametrize("garbage", [b"{not json", b"\xff\xfe\x00binary", b"[1, 2, 3]", b'{"task_id": "x"}',
                                     b'[{"task_id": "train/x"}]'])
def test_status_reports_a_garbled_failures_file_and_carries_on(fresh_study, garbage, capsys):
    (fresh_study / "failures.json").write_bytes(garbage)
    assert main(["study", "status", str(fresh_study)]) == 0
    out, err = capsys.readouterr()
    assert "failures.json" in out and "the next run writes it again" in out
    assert "pending" in out and "Traceback" not in err


def study_files(root: Path) -> dict[str, bytes]:
    """Every file a study's readers use (bookkeeping of the last run left out), by relative path."""
    skip = {"provenance.json", "failures.json", ".lock", "running.json"}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in skip and not {".progress", SET_ASIDE} & set(p.relative_to(root).parts)}


@pytest.mark.slow
def test_entries_of_the_wrong_kind_get_one_line_and_a_rerun_restores_them(finished_tiny, tiny_copy, tiny_spec,
                                                                         tmp_path, capsys, caplog):
    reference = study_files(finished_tiny)
    results = sorted((tiny_copy / "results").glob("*.parquet"))
    outside = tmp_path / "elsewhere.parquet"
    outside.write_bytes(results[0].read_bytes())
    shutil.rmtree(tiny_copy / "results")  # results/ replaced by a plain file
    (tiny_copy / "results").write_text("not a folder")
    (tiny_copy / "runs.parquet").unlink()  # a table replaced by a folder
    (tiny_copy / "runs.parquet").mkdir()
    summary = next((tiny_copy / "summaries").rglob("*.npz"))
    summary.unlink()
    summary.symlink_to(tmp_path / "nowhere.npz")  # a dangling symlink
    probe = next((tiny_copy / "probes").rglob("*.npz"))
    probe.unlink()
    probe.symlink_to(outside)  # a symlink leading out of the study
    assert main(["study", "status", str(tiny_copy)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    caplog.clear()
    run_study(tiny_spec, tiny_copy, progress=False, threads=1)
    lines = [r.getMessage() for r in caplog.records if r.name == "vaesim.study.run.shapes"]
    assert len(lines) == 4 and all("moved to set-aside/" in line for line in lines), lines
    assert study_files(tiny_copy) == reference  # bit-identical to the uninterrupted run
    assert (tiny_copy / SET_ASIDE / "results").read_text() == "not a folder"  # kept, not deleted
    assert (tiny_copy / SET_ASIDE / "runs.parquet").is_dir()
    assert main(["study", "verify", str(tiny_copy)]) == 0
