"""Study files in the wrong shape (issue 21): a garbled failures.json, folders replaced by files or symlinks."""

from __future__ import annotations

import copy

import pytest
import yaml

from study_tiny import TINY

from vaesim.cli import main


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
    assert "failures.json is unreadable" in out and "the next run rewrites it" in out
    assert "pending" in out and "Traceback" not in err
