"""A researcher's own VAE (an architecture plug-in) through a whole study: train, extract, compare, store, report.

The plug-ins live in tests/models/plugins and are copied beside each spec,
where a study finds them (as a researcher's ``my_vae.py`` next to
``study.yaml``); the commands that only read the study run none of their code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from vaesim.study import load_results, load_spec, plan_study, run_study

PLUGINS = Path(__file__).parents[1] / "models" / "plugins"
ROOT = Path(__file__).parents[2]


def _spec(folder: Path, architecture: str, **overrides) -> Path:
    """A spec beside a copy of the plug-in, under a name of its own (``<module>_<folder>``): a module of the same
    name imported by another test from elsewhere would otherwise be the one found."""
    module, _, factory = architecture.partition(":")
    if (PLUGINS / f"{module}.py").is_file():
        module_copy = f"{module}_{folder.name.replace('-', '_')}"
        shutil.copy(PLUGINS / f"{module}.py", folder / f"{module_copy}.py")
        architecture = f"{module_copy}:{factory}"
        if "architecture" in overrides.get("training", {}):
            overrides["training"] = {**overrides["training"], "architecture": architecture}
    spec = {
        "name": "own",
        "datasets": ["dsprites-procedural"],
        "objectives": [{"name": "beta_vae", "values": [4]}],
        "seeds": [0, 1, 2, 3, 4],
        "training": {"steps": 30, "batch_size": 16, "architecture": architecture, "lr": 1e-3,
                     "checkpoints": {"schedule": "even", "count": 5}, "log_every": 10},
        "probe": {"n": 64, "seed": 0},
        "metrics": ["cka"],
        "comparisons": {"params": False, "objectives": False, "factors": False},
        "device": "cpu",
        **overrides,
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _reader(study: Path, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that never has the plug-in on its path; it fails if imported."""
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        study = Path({str(study)!r})
        {textwrap.indent(textwrap.dedent(code), '        ').strip()}
        assert not [m for m in sys.modules if '_vae' in m], [m for m in sys.modules if '_vae' in m]
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd="/",
                          env=env)


@pytest.fixture(scope="module")
def mlp_study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlp")
    # decoder layers recorded on the final mean code: their curves follow the decoder's own weights (claim 1)
    spec = load_spec(_spec(folder, "mlp_vae:make_vae", probe={"n": 64, "seed": 0, "decoder_input": "final_mean"}))
    run_study(spec, folder / "study", workers=2, progress=False)
    return folder / "study"


def test_an_mlp_plugin_study_records_its_own_layers_and_judges_claim_1(mlp_study):
    from vaesim.report import write_report

    results = load_results(mlp_study)
    layers = set(results["a_layer"])
    assert {"encoder.enc.h1", "encoder.enc.h2", "encoder.mean", "decoder.dec1", "decoder.dec2",
            "decoder.output", "input", "encoder.sample"} <= layers
    assert not {"encoder.conv1", "decoder.fc1"} & layers
    # the study's runs say what they are: the plug-in's name and its source's hash are part of the run id's input
    architecture = yaml.safe_load((mlp_study / "spec.yaml").read_text())["training"]["architecture"]
    assert architecture.startswith("mlp_vae_") and architecture.endswith(":make_vae")
    run = plan_study(load_spec(mlp_study / "spec.yaml", import_plugins=False)).runs[0]
    assert run.config["architecture"] == architecture and len(run.config["architecture_sha256"]) == 64
    write_report(mlp_study)
    findings = pd.read_csv(mlp_study / "findings.csv")
    claim1 = findings[findings["finding"].str.startswith("claim 1")].iloc[0]
    # judged from the roles' layers: every one of the 5 runs has changed layers of role encoder and decoder;
    # five runs are one short of what the exact two-sided test needs (2^-5 > 0.025)
    assert "5 of 5 run(s) have layers changed by training in both the encoder and the decoder; needs >= 6" in \
        claim1["detail"], claim1.to_dict()


def test_reading_a_plugin_study_runs_none_of_its_code(mlp_study):
    done = _reader(mlp_study, """
        from vaesim.study import query, study_status
        from vaesim.study.store.verify import verify_study
        status = study_status(study)
        assert status.complete, status
        report = verify_study(study)
        assert not report.problems, report
        order = query(study, "SELECT DISTINCT r.a_layer, l.position FROM results r JOIN layers l "
                             "ON r.a_layer = l.layer ORDER BY l.position")["a_layer"].tolist()
        assert order == ["input", "encoder.enc.h1", "encoder.enc.h2", "encoder.mean", "encoder.logvar",
                         "encoder.variance", "encoder.sample", "decoder.dec1", "decoder.dec2", "decoder.output"], order
        from vaesim.report import write_report
        write_report(study)
    """)
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_bn_conv_plugin_runs_every_comparison_type_and_changed_code_makes_new_runs(tmp_path):
    spec_file = _spec(tmp_path, "bn_conv_vae:make_vae", seeds=[0, 1],
                      objectives=[{"name": "beta_vae", "values": [1, 8]}, {"name": "dip_vae_ii", "values": [1]}],
                      comparisons={},  # every type
                      training={"steps": 8, "batch_size": 8, "architecture": "bn_conv_vae:make_vae",
                                "checkpoints": {"schedule": "even", "count": 2}})
    spec = load_spec(spec_file)
    run_study(spec, tmp_path / "study", workers=1, progress=False)
    results = load_results(tmp_path / "study")
    assert set(results["comparison"]) == {"within_run", "seeds", "params", "objectives", "factors", "noise_floor"}
    assert np.isfinite(results["score"]).mean() > 0.95
    assert {f"encoder.features.{i}" for i in range(5)} | {f"decoder.up.{i}" for i in range(3)} <= set(results["a_layer"])
    before = {run.run_id for run in plan_study(spec).runs}
    source = tmp_path / f"{spec.training.architecture.split(':')[0]}.py"
    source.write_text(source.read_text() + "\n# a changed line: other code, other runs\n")
    after = {run.run_id for run in plan_study(load_spec(spec_file)).runs}
    assert before.isdisjoint(after)


def test_the_builtin_conv_as_a_plugin_gives_the_builtins_scores_bit_for_bit(tmp_path):
    grid = {"seeds": [0], "objectives": [{"name": "beta_vae", "values": [1, 8]}],
            "probe": {"n": 48, "seed": 0, "sample_noise": "shared"},  # the eps may not depend on the run id
            "comparisons": {"seeds": False, "objectives": False, "noise_floor": False},
            "metrics": ["cka", "procrustes"]}
    tables = []
    for name, architecture in (("builtin", "conv"), ("plugin", "builtin_conv:make_vae")):
        folder = tmp_path / name
        folder.mkdir()
        training = {"steps": 6, "batch_size": 16, "architecture": architecture,
                    "checkpoints": {"schedule": "even", "count": 2}}
        run_study(load_spec(_spec(folder, architecture, training=training, **grid)), folder / "study", workers=1,
                  progress=False)
        table = load_results(folder / "study")
        keys = ["comparison", "metric", "a_layer", "b_layer", "a_step", "b_step", "a_param", "b_param"]
        tables.append(table.sort_values(keys).reset_index(drop=True)[keys + ["score"]])
    assert len(tables[0]) > 500
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)
