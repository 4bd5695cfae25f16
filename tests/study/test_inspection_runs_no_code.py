"""Inspecting a study runs none of its code (issue 21): `study status`, `study verify`, `query`, `report` and
`study plan --no-calibrate` never import the `plugins:` of a stored spec, nor a module planted in the study folder.
"""

from __future__ import annotations

import copy
import os
import shutil
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


TORCH_PROBE = ("import atexit, sys\n"
               "atexit.register(lambda: print('TORCH-LOADED' if 'torch' in sys.modules else 'TORCH-NOT-LOADED'))\n"
               "from vaesim.cli import main\n"
               "raise SystemExit(main(sys.argv[1:]))\n")


def _vae_ld_store(root: Path) -> Path:
    """A store imported with `vaesim import vae-ld` from one TSV in the authors' format."""
    import pandas as pd

    from vaesim.imports import import_vae_ld

    src = root / "tsv"
    src.mkdir(parents=True)
    frame = pd.DataFrame({"encoder/1": {"encoder/1": 1.0, "encoder/2": 0.5},
                          "encoder/2": {"encoder/1": 0.5, "encoder/2": 1.0}}).T
    for key, value in {"m1_name": "beta_vae", "p1_name": "beta", "p1_value": 1.0, "m1_seed": 0,
                       "m2_name": "beta_vae", "p2_name": "beta", "p2_value": 1.0, "m2_seed": 0,
                       "m1_epoch": 0, "m2_epoch": 5}.items():
        frame[key] = value
    frame.rename_axis("m1", axis="columns").rename_axis("m2").to_csv(
        src / "cka_beta_vae_1.0_seed_0_epoch_0_beta_vae_1.0_seed_0_epoch_5.tsv", sep="\t")
    import_vae_ld(src, root / "store", dataset="dsprites-procedural")
    return root / "store"


@pytest.mark.slow
@pytest.mark.parametrize("store", ["study", "imported"])
@pytest.mark.parametrize("command", ["status", "verify", "query", "plan"])
def test_inspection_commands_never_import_torch(finished_tiny, tmp_path, store, command):
    """Each inspecting command in a fresh interpreter, on a real study and on an imported store: torch is never
    loaded (it costs seconds on a quiet machine and tens of seconds on a busy one)."""
    if store == "study":  # the tiny study with the default layers (spec.layer_names reads vaesim's own table)
        folder = tmp_path / "study"
        shutil.copytree(finished_tiny, folder)
        spec = yaml.safe_load((folder / "spec.yaml").read_text())
        del spec["layers"]
        (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    else:
        folder = _vae_ld_store(tmp_path)
    if command == "plan" and store == "imported":
        pytest.skip("an imported store has no grid to plan")
    argv = {"status": ["study", "status", str(folder)], "verify": ["study", "verify", str(folder)],
            "query": ["query", str(folder), "SELECT count(*) AS n FROM results"],
            "plan": ["study", "plan", str(folder / "spec.yaml"), "--no-calibrate"]}[command]
    result = subprocess.run([sys.executable, "-c", TORCH_PROBE, *argv], capture_output=True, text=True,
                            timeout=600, cwd=tmp_path)
    # verify on the study whose spec lost `layers` finds the files of the other layers' plan (exit 1): it still ran
    assert result.returncode == (1 if (command, store) == ("verify", "study") else 0), result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip().endswith("TORCH-NOT-LOADED"), (command, store, result.stdout[-500:])
