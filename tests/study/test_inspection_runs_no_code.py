"""Inspecting a study runs none of its code (issue 21): `study status`, `study verify`, `query`, `report` and
`study plan --no-calibrate` never import the `plugins:` of a stored spec, nor a module planted in the study folder.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from study_tiny import TINY

from vaesim.cli import main

PLANTED = "planted_plugin_{tag}"


def planted_study(root: Path, tag: str) -> tuple[Path, Path]:
    """A study folder whose spec names a plug-in module that sits in the folder and leaves a marker when imported."""
    root.mkdir()
    marker = root / "IMPORTED"
    module = PLANTED.format(tag=tag)
    (root / f"{module}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "from vaesim.similarity import register_measure\n"
        "register_measure('planted_measure', lambda x, y: 0.5)\n")
    spec = copy.deepcopy(TINY)
    spec.update(plugins=[module], metrics=["cka", "planted_measure"])
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    (root / "results").mkdir()  # readers then plan the study to know its results files
    return root, marker


@pytest.mark.parametrize("command", ["status", "verify", "query", pytest.param("report", marks=pytest.mark.slow), "plan"])
def test_inspecting_commands_never_import_a_studys_plugins(tmp_path, monkeypatch, command, capsys):
    study, marker = planted_study(tmp_path / "study", command)
    monkeypatch.syspath_prepend(str(study))  # the planted module is importable, as with PYTHONPATH=. in the folder
    argv = {"status": ["study", "status", str(study)], "verify": ["study", "verify", str(study)],
            "query": ["query", str(study), "SELECT count(*) AS n FROM results"],
            "report": ["report", str(study)], "plan": ["study", "plan", str(study / "spec.yaml"), "--no-calibrate"]}
    code = main(argv[command])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert not marker.exists(), f"`vaesim {command}` imported the study's plug-in module"
    assert PLANTED.format(tag=command) not in sys.modules
    if command in ("status", "plan", "query"):
        assert code == 0, err
    if command == "status":
        assert "pending" in out


def test_run_still_imports_the_plugins_it_computes_with(tmp_path, monkeypatch):
    from vaesim.study.spec import load_spec, parse_spec

    study, marker = planted_study(tmp_path / "study", "run")
    monkeypatch.syspath_prepend(str(study))
    spec = load_spec(study / "spec.yaml")  # what `study run` does: the plug-in registers its measure
    assert marker.exists() and "planted_measure" in spec.metrics
    # without plug-in modules, a name nothing registers is still refused when plug-ins are not imported
    plain = dict(yaml.safe_load((study / "spec.yaml").read_text()), plugins=[], metrics=["cka", "no_such_measure"])
    with pytest.raises(ValueError, match="unknown similarity measures"):
        parse_spec(plain, import_plugins=False)


def test_python_dash_m_in_a_study_folder_does_not_import_a_planted_library(tmp_path):
    study, marker = planted_study(tmp_path / "study", "dashm")
    (study / "duckdb.py").write_text(f"from pathlib import Path\nPath({str(study / 'DUCKDB')!r}).write_text('ran')\n"
                                     "raise SystemExit('planted duckdb ran')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p.endswith("src")))
    done = subprocess.run([sys.executable, "-m", "vaesim.cli", "query", ".", "SELECT 1 AS one", "--csv"],
                          cwd=study, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["one", "1"]
    assert not (study / "DUCKDB").exists() and not marker.exists()
