"""`vaesim import vae-ld`: fixture TSVs written exactly as VAE_learning_dynamics' compute_similarity writes them.

The native store is a synthetic results table in vaesim's layout; the same scores are written as the
authors' files (their layer names, their transposed layout, their info columns, their file names and
hydra folders, labels files included), imported, and compared row by row and finding by finding.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
from synthetic_store import Synthetic  # noqa: E402

from vaesim.cli import main  # noqa: E402
from vaesim.imports import LAYER_MAP, import_vae_ld, read_vae_ld_file  # noqa: E402
from vaesim.models import LAYER_NAMES  # noqa: E402
from vaesim.report.findings import compute_findings  # noqa: E402
from vaesim.study import load_results, query  # noqa: E402

THEIRS = {ours: theirs for theirs, ours in LAYER_MAP.items() if theirs != "encoder/z_log_var"}
LAYERS = tuple(name for name in LAYER_NAMES if name != "encoder.logvar")  # they store exp(logvar) only
KEY = ["comparison", "metric", "a_run", "a_step", "a_layer", "b_run", "b_step", "b_layer"]
DATASET = "dsprites-procedural"


def write_like_compute_similarity(save_path: Path, res: dict, models_info: dict) -> None:
    """The authors' writer, line for line (bin/compute_similarity, compute_similarity_metric)."""
    res = pd.DataFrame(res).T
    for k, v in models_info.items():
        res[k] = v
    res = res.rename_axis("m1", axis="columns")
    res = res.rename_axis("m2")
    res.to_csv(save_path, sep="\t")


def native_results(synthetic: Synthetic) -> pd.DataFrame:
    """Synthetic scores, made dense where the authors' files are (every layer pair of a checkpoint pair)."""
    frame = synthetic.results()
    extra = []
    final = synthetic.steps[-1]
    base = frame[(frame.comparison == "within_run") & (frame.a_step != frame.b_step)]
    for (run, step, metric), part in base.groupby(["a_run", "a_step", "metric"]):
        template = part.iloc[0].to_dict()
        for i, j in itertools.permutations(range(len(LAYERS)), 2):
            extra.append(dict(template, a_layer=LAYERS[i], b_layer=LAYERS[j],
                              score=float(0.3 * np.exp(-abs(i - j) / 4.0)) + (0.01 if metric == "procrustes" else 0)))
    for (run, step, metric), part in frame[frame.comparison == "within_run"].groupby(["a_run", "a_step", "metric"]):
        template = part.iloc[0].to_dict()
        for i, layer in enumerate(LAYERS):
            extra.append(dict(template, comparison="factors", b_run=run, b_step=step, a_step=step, a_layer=layer,
                              b_layer="factors", score=0.05 * i + (0.001 * step / final)))
    frame = pd.concat([frame, pd.DataFrame(extra)], ignore_index=True)
    frame = frame.drop_duplicates(KEY, keep="first")
    return frame.assign(a_epoch=frame.a_step.astype(float), b_epoch=frame.b_step.astype(float), n=0)


def write_fixture_files(native: pd.DataFrame, root: Path) -> int:
    """One TSV per (metric, checkpoint pair) in the authors' hydra folders; labels files for the factors rows."""
    count = 0
    for (metric, a_run, a_step, b_run, b_step, comparison), part in native.groupby(
            ["metric", "a_run", "a_step", "b_run", "b_step", "comparison"]):
        first = part.iloc[0]
        m1 = (first.a_objective, first.a_param_name, first.a_param, int(first.a_seed))
        res: dict = {}
        for row in part.itertuples():
            res.setdefault(THEIRS[row.a_layer], {})[THEIRS[row.b_layer]] = row.score
            if comparison == "within_run" and a_step == b_step:  # their file has the full symmetric matrix
                res.setdefault(THEIRS[row.b_layer], {})[THEIRS[row.a_layer]] = row.score
        # their Flatten / Reshape layers repeat other layers' numbers; vaesim does not import them
        for extra in ("encoder/5", "decoder/reshape"):
            res[extra] = {col: 0.5 for col in next(iter(res.values()))}
        m1_fname = f"{m1[0]}_{m1[2]}_seed_{m1[3]}_epoch_{a_step}"
        folder = root / "compute_similarity" / "latent_10" / DATASET / metric / m1[0] / f"param_{m1[2]}" / f"seed_{m1[3]}"
        if comparison == "factors":
            info = {"m1_name": m1[0], "p1_name": m1[1], "p1_value": m1[2], "m1_seed": m1[3]}
            path = folder / "labels" / f"{metric}_{m1_fname}_labels.tsv"
        else:
            m2 = (first.b_objective, first.b_param_name, first.b_param, int(first.b_seed))
            info = {"m1_name": m1[0], "p1_name": m1[1], "p1_value": m1[2], "m1_seed": m1[3],
                    "m2_name": m2[0], "p2_name": m2[1], "p2_value": m2[2], "m2_seed": m2[3],
                    "m1_epoch": int(a_step), "m2_epoch": int(b_step)}
            folder = folder / m2[0] / f"param_{m2[2]}" / f"seed_{m2[3]}"
            path = folder / f"{metric}_{m1_fname}_{m2[0]}_{m2[2]}_seed_{m2[3]}_epoch_{b_step}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_like_compute_similarity(path, res, info)
        count += 1
    return count


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    synthetic = Synthetic(layers=LAYERS)
    native = native_results(synthetic)
    root = tmp_path_factory.mktemp("vae_ld")
    files = write_fixture_files(native, root / "src")
    summary = import_vae_ld(root / "src", root / "store")
    return native, root, files, summary


def test_fixture_file_is_the_authors_layout(imported):
    _, root, _, _ = imported
    pair = next((root / "src").rglob("cka_beta_vae_1.0_seed_0_epoch_0_beta_vae_2.0_seed_0_epoch_0.tsv"))
    header = pair.read_text().splitlines()[0].split("\t")
    assert header[0] == "m2" and header[-10:] == ["m1_name", "p1_name", "p1_value", "m1_seed", "m2_name", "p2_name",
                                                  "p2_value", "m2_seed", "m1_epoch", "m2_epoch"]
    labels = next((root / "src").rglob("cka_beta_vae_1.0_seed_0_epoch_500_labels.tsv"))
    assert labels.read_text().splitlines()[0].split("\t") == ["m2", "labels", "m1_name", "p1_name", "p1_value",
                                                              "m1_seed"]
    info, scores = read_vae_ld_file(labels)
    assert info["labels"] and info["m1_epoch"] == 500 and info["metric"] == "cka" and list(scores.columns) == ["labels"]


def test_import_equals_native_rows(imported):
    native, root, files, summary = imported
    store = load_results(root / "store")
    assert summary.files == files and summary.rows == len(native) == len(store)
    assert set(summary.unmapped) == {"encoder/5", "decoder/reshape"}  # Flatten / Reshape copies, not imported
    assert all(count > 0 for count in summary.unmapped.values())
    cols = KEY + ["dataset", "a_objective", "a_param_name", "a_param", "a_seed", "a_epoch", "b_objective",
                  "b_param_name", "b_param", "b_seed", "b_epoch", "n", "note"]
    left = native.sort_values(KEY)[cols + ["score"]].reset_index(drop=True)
    right = store.sort_values(KEY)[cols + ["score"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(left[cols].astype(str), right[cols].astype(str))
    assert np.array_equal(left.score.to_numpy(), right.score.to_numpy())  # the TSV round trip is exact


def test_import_findings_equal_native_findings(imported):
    native, root, _, _ = imported
    store = load_results(root / "store")
    mine = compute_findings(native[store.columns.tolist()], None)
    theirs = compute_findings(store, None)
    pd.testing.assert_frame_equal(mine, theirs)
    assert (mine.verdict != "not enough data").any()


def test_report_and_query_run_on_the_import(imported, capsys):
    _, root, _, _ = imported
    counts = query(root / "store", "select comparison, count(*) as n from results group by 1 order by 1")
    assert set(counts.comparison) == {"factors", "params", "seeds", "within_run"}
    assert main(["query", str(root / "store"), "select count(*) from results where metric = 'procrustes'"]) == 0
    assert main(["report", str(root / "store")]) == 0
    assert (root / "store" / "report.html").is_file()


def test_the_report_reads_an_imported_store_as_one(imported):
    """No advice that needs a study, no provenance or probe-stage excuses, a diagnostic at a stated size, epochs
    on the x axes (the authors checkpoint by epoch)."""
    import html as html_lib
    import re

    from vaesim.report.figures import figure_layer_pairs, figure_learning_dynamics, step_label
    from vaesim.study import load_runs

    _, root, _, _ = imported
    store = root / "store"
    if not (store / "report.html").is_file():
        assert main(["report", str(store)]) == 0
    page = html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", (store / "report.html").read_text())))
    for misleading in ("rerun the study's extract and store stages", "No provenance.json",
                       "the study's probe stage has not run", "random 4 x", "trained elsewhere and imported"):
        assert misleading not in page, misleading
    assert "These scores were computed by VAE_learning_dynamics" in page
    assert "Imported store: its scores were computed by VAE_learning_dynamics" in page
    assert "an imported store holds similarity scores, not models" in page
    assert "n = 500 (the store does not record how many examples its scores used)" in page
    assert "random 500 x 500" in page
    findings = pd.read_csv(store / "findings.csv")
    assert not findings["detail"].astype(str).str.contains("rerun the study").any()
    results, runs = load_results(store), load_runs(store)
    assert step_label(runs) == "epoch" and step_label(None) == "training step"
    assert figure_layer_pairs(results, runs).axes[0].get_xlabel() == "epoch"
    assert "epoch" in {ax.get_xlabel() for ax in figure_learning_dynamics(results, runs).axes}


def test_cli_import_and_errors(imported, tmp_path, capsys):
    _, root, files, _ = imported
    assert main(["import", "vae-ld", str(root / "src"), "--out", str(tmp_path / "s")]) == 0
    assert f"imported {files} files" in capsys.readouterr().out
    assert main(["import", "vae-ld", str(root / "src"), "--out", str(tmp_path / "s")]) == 2
    assert "already holds results" in capsys.readouterr().err
    assert main(["import", "vae-ld", str(tmp_path / "nothing"), "--out", str(tmp_path / "t")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cka_x.tsv").write_text("a\tb\n1\t2\n")
    assert main(["import", "vae-ld", str(bad), "--out", str(tmp_path / "u")]) == 2
    assert "model-info columns" in capsys.readouterr().err
