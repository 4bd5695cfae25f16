"""A study over imported runs (spec ``imported:``): the same stored scores as the runs trained here, claim 1 not
judged from one checkpoint, published scores beside vaesim's, the report saying where the runs came from."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "imports"))
from dlib_writer import tf_variables, train_config, write_model  # noqa: E402

pytestmark = pytest.mark.slow

GRID = {
    "name": "native",
    "datasets": ["dsprites-procedural"],
    "objectives": [{"name": "beta_vae", "values": [1, 8]}],
    "seeds": [0, 1, 2],
    "training": {"steps": 20, "batch_size": 16, "checkpoints": {"steps": [20]}, "log_every": 10},
    "probe": {"n": 48, "seed": 0, "sample_noise": "shared"},
    "metrics": ["cka", "procrustes"],
    "layers": ["input", "encoder.conv4", "encoder.fc", "encoder.mean", "encoder.logvar", "encoder.variance",
               "encoder.sample", "decoder.fc1", "decoder.deconv3"],
    "comparisons": {"within_run": "self_and_final", "seeds": True, "params": True, "objectives": False,
                    "factors": True, "noise_floor": "final"},
    "device": "cpu",
}
KEY = ["comparison", "metric", "a_objective", "a_param", "a_seed", "a_step", "a_layer", "b_objective", "b_param",
       "b_seed", "b_step", "b_layer"]


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """A study trained here, its final checkpoints written as dlib models, imported, and studied again."""
    from vaesim.imports.dlib import import_dlib
    from vaesim.study import parse_spec, run_study
    from vaesim.training import load_checkpoint

    root = tmp_path_factory.mktemp("imported")
    native = run_study(parse_spec(GRID), root / "native", progress=False)
    runs = pd.read_parquet(native / "runs.parquet").sort_values(["param", "seed"])
    for number, row in enumerate(runs.itertuples()):
        model, _ = load_checkpoint(native / "runs" / row.run_id)
        write_model(root / "zips", number, tf_variables(model.state_dict(), "conv", 1),
                    train_config("beta_vae", {"beta": row.param}, seed=row.seed, steps=20), step=20,
                    scores={("mean", "mig"): {"discrete_mig": 0.01 * number},
                            ("sampled", "mig"): {"discrete_mig": 0.02 * number}})
    summary = import_dlib(root / "zips", root / "import", dataset="dsprites-procedural", progress=False)
    assert len(summary.imported) == 6 and not summary.skipped
    spec = dict(GRID, name="imported", imported=str(root / "import"))
    imported = run_study(parse_spec(spec), root / "study", progress=False)
    from vaesim.report import write_report

    write_report(imported, progress=False)
    return root, native, imported


def test_every_stored_score_equals_the_natively_trained_studys(studies):
    """Step 0 is vaesim's initialisation at the seed (what training starts from), the final step the imported
    weights: every comparison (within runs, seeds, strengths, factors, noise floor) gives the same bits."""
    from vaesim.study import load_results

    _root, native, imported = studies
    a = load_results(native).sort_values(KEY).reset_index(drop=True)
    b = load_results(imported).sort_values(KEY).reset_index(drop=True)
    assert len(a) == len(b) > 500
    assert {"within_run", "seeds", "params", "factors"} <= set(a["comparison"])
    assert a[KEY].equals(b[KEY])
    assert np.array_equal(a["score"].to_numpy(), b["score"].to_numpy(), equal_nan=True)
    assert set(a["a_run"]).isdisjoint(b["a_run"])  # other run ids: their configs differ (adopted, not trained)


def test_runs_table_and_disentanglement_name_the_source(studies):
    from vaesim.study import load_runs
    from vaesim.study.store.tables import load_disentanglement

    _root, native, imported = studies
    assert set(load_runs(native)["source"]) == {"vaesim"}
    runs = load_runs(imported)
    assert sorted(runs["source"]) == [f"dlib:{n}" for n in range(6)]
    assert runs["lr"].isna().all() and (runs["steps"] == 20).all()
    table = load_disentanglement(imported)
    published = table[table["metric"].str.startswith("dlib:")]
    assert sorted(set(published["metric"])) == ["dlib:mean:mig:discrete_mig", "dlib:sampled:mig:discrete_mig"]
    assert len(published) == 12 and (published["step"] == 20).all()
    record = json.loads((imported / "runs" / runs["run_id"].iloc[0] / "imported.json").read_text())
    assert record["run"]["source"]["kind"] == "dlib"


def test_claim_1_is_not_judged_from_one_learned_checkpoint_and_the_report_says_where_runs_came_from(studies):
    _root, _native, imported = studies
    findings = pd.read_csv(imported / "findings.csv")
    claim1 = findings[findings["finding"].str.startswith("claim 1")].iloc[0]
    assert claim1["verdict"] == "not enough data" and ">= 3 learned checkpoints" in claim1["detail"]
    claim2 = findings[findings["finding"].str.startswith("claim 2")]
    assert len(claim2) and (claim2["verdict"] != "not enough data").any()  # judged on the imported runs
    html = (imported / "report.html").read_text()
    assert "6 of 6 runs were trained elsewhere and imported" in html
    assert "disentanglement_lib" in html
    assert "dlib:mean:mig:discrete_mig" in html and "dlib:sampled:mig:discrete_mig" not in html  # headline only


def test_a_spec_selecting_runs_that_were_not_imported_is_refused_before_any_work(studies):
    from vaesim.study import parse_spec, run_study

    root, _native, _imported = studies
    spec = dict(GRID, name="missing", imported=str(root / "import"),
                objectives=[{"name": "beta_vae", "values": [1, 4]}])
    with pytest.raises(ValueError) as refusal:
        run_study(parse_spec(spec), root / "missing", progress=False)
    text = str(refusal.value)
    assert "3 of the spec's runs are not in" in text and str(root / "import") in text and "beta=4 seed 0" in text
    assert not (root / "missing" / "runs").exists()
    with pytest.raises(ValueError, match="has no runs/ folder"):
        run_study(parse_spec(dict(spec, imported=str(root / "nowhere"))), root / "missing", progress=False)


def test_a_damaged_adopted_checkpoint_is_named_and_a_reimport_then_a_rerun_restore_it(studies):
    """Adopted checkpoints are hard links to the import's: damage to one is damage to both, so the rerun names
    the import and asks for the model again; `vaesim import dlib` then rewrites it and the rerun repairs."""
    from vaesim.imports.dlib import import_dlib
    from vaesim.study import StudyFailed, load_results, parse_spec, run_study

    root, _native, imported = studies
    spec = parse_spec(dict(GRID, name="imported", imported=str(root / "import")))
    before = load_results(imported).sort_values(KEY).reset_index(drop=True)
    run_id = sorted(p.name for p in (imported / "runs").iterdir())[0]
    weights = next((imported / "runs" / run_id / "checkpoints").glob("step_00000020.safetensors"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x40
    weights.write_bytes(bytes(data))  # in place: the import's file is the same inode
    with pytest.raises(StudyFailed, match="import the model again"):
        run_study(spec, imported, progress=False)
    again = import_dlib(root / "zips", root / "import", dataset="dsprites-procedural", progress=False)
    assert len(again.imported) == 1 and len(again.already) == 5  # only the damaged model is written again
    run_study(spec, imported, progress=False)
    after = load_results(imported).sort_values(KEY).reset_index(drop=True)
    assert np.array_equal(before["score"].to_numpy(), after["score"].to_numpy(), equal_nan=True)


def test_the_plan_prices_adoption_not_training(studies, tmp_path, capsys):
    from vaesim.cli import main

    root, _native, _imported = studies
    spec = dict(GRID, name="imported", imported=str(root / "import"))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert main(["study", "plan", str(tmp_path / "spec.yaml")]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"6 imported runs adopted from {root / 'import'}" in text and "no training (imported runs)" in text
    # step 0's weights alone: the conv VAE's 0.7 M float32 parameters, no optimiser state
    assert "step 0 initialised here: 2.8 MB each" in text
