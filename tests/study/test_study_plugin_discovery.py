"""Where plug-in measures are found: beside the spec file, on the Python path, as installed entry points."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from study_tiny import TINY
from vaesim.study import parse_spec

SRC = str(Path(__file__).resolve().parents[2] / "src")

MODULE = textwrap.dedent('''
    import numpy as np
    from vaesim.similarity import register_measure

    def {name}(x, y):
        return float(abs(np.corrcoef(x.reshape(len(x), -1).mean(1), y.reshape(len(y), -1).mean(1))[0, 1]))

    def register():
        register_measure("{name}", {name})
''')


def spec_with(metrics, plugins=()):
    spec = copy.deepcopy(TINY)
    spec.update(metrics=["cka", *metrics], plugins=list(plugins))
    return spec


def run_cli(args, cwd):
    env = {**os.environ, "PYTHONPATH": SRC}  # the console script's path: not the spec's folder, not the cwd
    script = "import sys; from vaesim.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_a_plugin_module_beside_the_spec_is_found_by_the_command_and_by_the_study_directory(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "beside_measure.py").write_text(MODULE.format(name="beside_corr") + "register()\n")
    spec_file = folder / "study.yaml"
    spec_file.write_text(yaml.safe_dump(spec_with(["beside_corr"], ["beside_measure"])))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    planned = run_cli(["study", "plan", str(spec_file), "--no-calibrate"], cwd=elsewhere)
    assert planned.returncode == 0, planned.stderr

    from vaesim.study.run.runner import prepare_directory
    from vaesim.study.spec import load_spec

    study = tmp_path / "study"
    prepare_directory(load_spec(spec_file), study, force=False)  # records where the module was found
    assert json.loads((study / "plugin-dirs.json").read_text()) == {"beside_measure": str(folder.resolve())}
    status = run_cli(["study", "status", str(study)], cwd=elsewhere)  # reads the recorded spec, finds the module
    assert status.returncode == 0, status.stderr
    assert "train" in status.stdout


def test_a_missing_plugin_module_is_reported_under_plugins_not_metrics(tmp_path):
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(yaml.safe_dump(spec_with(["absent_corr"], ["absent_measure_module"])))
    # `study run` imports plug-ins (the inspecting `study plan --no-calibrate` never does: see
    # test_inspection_runs_no_code.py); the spec check fails before any work
    done = run_cli(["study", "run", str(spec_file), "--out", str(tmp_path / "out")], cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0] == f"vaesim: error: study spec {spec_file} is invalid:"
    assert lines[1] == ("  - plugins: cannot import plug-in module 'absent_measure_module' "
                        "(ModuleNotFoundError: No module named 'absent_measure_module'); expected a module "
                        f"on the Python path or a file absent_measure_module.py in {tmp_path.resolve()} "
                        "(beside the spec); got ['absent_measure_module']")
    assert not any(line.lstrip(" -").startswith("metrics") for line in lines)
    assert "Traceback" not in done.stderr


def test_installed_entry_points_register_measures_without_a_plugins_line(tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "vaesim_ep_demo-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vaesim-ep-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[vaesim.measures]\nep_corr = vaesim_ep_demo:register\n"
                                           "ep_broken = vaesim_ep_missing\n")
    (site / "vaesim_ep_demo.py").write_text(MODULE.format(name="ep_corr"))
    monkeypatch.syspath_prepend(str(site))
    spec = parse_spec(spec_with(["ep_corr"]))
    assert spec.metrics == ["cka", "ep_corr"]
    from vaesim.similarity.registry import measure_names

    assert "ep_corr" in measure_names()
    with pytest.raises(ValueError, match=r"entry point ep_broken = 'vaesim_ep_missing' \(group vaesim.measures\) "
                                         r"cannot be loaded \(ModuleNotFoundError"):
        parse_spec(spec_with(["ep_broken"]))
