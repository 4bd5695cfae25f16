"""The HTML report and the ``vaesim report`` command on synthetic study directories."""

from __future__ import annotations

import base64
import re
import time

import pandas as pd
import pytest

from synthetic_store import Synthetic
from vaesim.cli import main
from vaesim.report import HOLDS, NOT_ENOUGH_DATA, load_findings, write_report
from vaesim.report.figures import FIGURES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return Synthetic().write_study(tmp_path_factory.mktemp("study") / "synthetic")


@pytest.fixture(scope="module")
def report(study):
    return write_report(study)


def test_report_is_self_contained_with_every_figure(study, report):
    page = report.read_text()
    assert report == study / "report.html"
    images = re.findall(r"<img [^>]*src='([^']*)'", page)
    drawn = [name for name, *_ in FIGURES if name != "factors"]  # the synthetic store has no 'factors' rows
    # + the training curves and KL per dimension (training_metrics.parquet)
    assert len(images) == len(drawn) + 2
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
    # nothing fetched from elsewhere
    assert not re.search(r"(src|href)=['\"](https?:|//)", page)
    for name in drawn:
        assert (study / "figures" / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
        assert b"<svg" in (study / "figures" / f"{name}.svg").read_bytes()[:500]


def test_report_shows_spec_runs_and_findings(study, report):
    page = report.read_text()
    assert "id='findings'" in page and "id='runs'" in page
    assert "beta_vae-beta8-s1" in page  # a run of the runs table
    assert "synthetic" in page  # spec.yaml content
    findings = load_findings(study)
    assert list(findings.columns) == ["finding", "value", "verdict", "definition", "detail", "ci_low", "ci_high", "n",
                                      "robustness"]
    claim1 = findings[findings["finding"].str.startswith("claim 1")].iloc[0]
    assert claim1["verdict"] == HOLDS and claim1["value"] == pytest.approx(0.75)
    for verdict in findings["verdict"]:
        assert verdict in page
    assert "id='baselines'" in page and "id='diagnostic'" in page  # the baselines the verdicts are read against
    baselines = pd.read_csv(study / "baselines.csv").set_index("layer")
    assert baselines.loc["encoder.conv1", "untrained_seeds"] == pytest.approx(0.7)
    claim3 = findings[findings["finding"].str.startswith("claim 3")].iloc[0]
    assert claim3["verdict"] == HOLDS  # read from the study's latents.parquet


def test_missing_data_skips_figures_with_a_note(tmp_path):
    synthetic = Synthetic(params=(2.0,), seeds=(0,), steps=(1000,))
    study = synthetic.write_study(tmp_path / "tiny")
    page = write_report(study).read_text()
    assert "not drawn:" in page
    assert "<strong>Learning dynamics (claim 1)</strong>: not drawn:" in page
    findings = load_findings(study)
    assert findings.loc[findings["finding"].str.startswith("claim 1"), "verdict"].item() == NOT_ENOUGH_DATA


def test_empty_store_still_writes_a_report(tmp_path):
    study = tmp_path / "empty"
    study.mkdir()
    (study / "spec.yaml").write_text("name: empty\n")
    page = write_report(study).read_text()
    assert "The results store is empty" in page
    # every similarity figure, the reconstructions and the two training figures
    assert page.count("not drawn:") == len(FIGURES) + 3
    assert "No provenance.json" in page


def test_report_command_prints_findings_and_path(study, capsys):
    assert main(["report", str(study)]) == 0
    out = capsys.readouterr().out
    assert "claim 1: encoder layers settle before decoder layers" in out
    assert str((study / "report.html").resolve()) in out


def test_report_command_on_a_non_study_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "is not a study directory" in err and "spec.yaml" in err


def test_unknown_metric_is_named(study):
    with pytest.raises(ValueError, match="metric 'cosine' is not in the results"):
        write_report(study, metric="cosine")


def test_training_section_draws_the_stored_curves(study, report):
    from matplotlib import pyplot as plt

    from vaesim.report.training_figures import figure_kl_per_dimension, figure_training_curves
    from vaesim.study import load_training_metrics

    page = report.read_text()
    assert "id='fig-training_curves'" in page and "id='fig-kl_per_dimension'" in page
    metrics = load_training_metrics(study)
    fig = figure_training_curves(metrics)
    loss_ax = fig.axes[0]
    line = next(l for l in loss_ax.get_lines() if l.get_label() == "beta_vae beta=8")
    # mean over the 2 seeds of 1000 / (1 + step / 100) + 8
    assert list(line.get_xdata()) == list(range(0, 1001, 100))
    assert line.get_ydata()[0] == pytest.approx(1008.0) and line.get_ydata()[-1] == pytest.approx(1000 / 11 + 8)
    plt.close(fig)
    fig = figure_kl_per_dimension(metrics)
    panels = [ax for ax in fig.axes if ax.has_data()]
    assert len(panels) == 4  # one per beta, lowest seed; never averaged over strengths
    dim2 = next(l for l in panels[0].get_lines() if l.get_label() == "z2")
    assert dim2.get_ydata()[-1] == pytest.approx(2.0)
    plt.close(fig)


def test_runs_table_shows_short_ids_and_provenance_is_reported(tmp_path):
    from vaesim.study.store.provenance import PROVENANCE_FILE, ProvenanceRecorder, read_provenance

    study = Synthetic(params=(1.0, 2.0), seeds=(0,)).write_study(tmp_path / "s")
    recorder = ProvenanceRecorder(study, command="vaesim study run quick --out s")
    recorder.stage("train", 125.0, 4)
    recorder.stage("compare", 3.5, 2)
    again = ProvenanceRecorder(study, command="vaesim study run quick --out s")  # a resumed session
    again.stage("train", 0.1, 0)
    record = read_provenance(study)
    assert [s["stages"]["train"]["tasks"] for s in record["sessions"]] == [4, 0]
    assert (study / PROVENANCE_FILE).stat().st_size > 0
    page = write_report(study).read_text()
    assert "Run session 1" in page and "Run session 2" in page and "2 min 5 s" in page
    assert page.index("<td>train</td>") < page.index("<td>compare</td>")  # run order, not alphabetical
    env = record["sessions"][0]["environment"]
    assert env["python"] and env["torch"] and env["vaesim"] and env["cpu_count"] >= 1
    assert f"<dd>{env['torch']}</dd>" in page


def test_short_run_ids_keep_the_full_id_as_tooltip():
    import pandas as pd

    from vaesim.report.html import table_html

    run_id = "dsprites-procedural_beta_vae_beta=32_seed=1_3beb7559"
    html = table_html(pd.DataFrame({"run_id": [run_id], "seed": [1]}), table_id="runs")
    assert f"<td class='id' title='{run_id}'>3beb7559</td>" in html and "<th>run</th>" in html


def test_each_metric_has_its_own_report_and_neither_overwrites_the_other(tmp_path, capsys):
    study = Synthetic(params=(1.0, 8.0)).write_study(tmp_path / "both")
    assert main(["report", str(study)]) == 0
    cka_page = (study / "report.html").read_text()
    cka_heatmap = (study / "figures" / "heatmap.png").read_bytes()
    assert main(["report", str(study), "--metric", "procrustes"]) == 0
    out = capsys.readouterr().out
    assert str((study / "report-procrustes.html").resolve()) in out
    assert (study / "report.html").read_text() == cka_page
    assert (study / "figures" / "heatmap.png").read_bytes() == cka_heatmap
    assert (study / "figures-procrustes" / "heatmap.png").read_bytes() != cka_heatmap
    assert load_findings(study, "procrustes")["value"].tolist() != load_findings(study)["value"].tolist()
    assert "href='report-procrustes.html'" in cka_page
    assert "href='report.html'" in (study / "report-procrustes.html").read_text()


@pytest.mark.slow
def test_report_writing_prints_progress_lines_whose_counters_move(tmp_path, capsys, monkeypatch):
    """Without a terminal, writing a report says at least once a minute how far it got (here every 0.01 s)."""
    study = Synthetic(params=(2.0, 8.0), seeds=(0,), steps=(0, 1000)).write_study(tmp_path / "small")
    from vaesim.report.commands import report_and_print
    from vaesim.report.report import REPORT_PARTS

    import vaesim.report as report_package
    from vaesim.report.report import write_report as original

    parts = []

    def slow_write_report(study_dir, *, metric, progress, **options):
        def part(name):
            parts.append(name)
            progress(name)
            time.sleep(0.05)  # each part takes longer than the line interval

        return original(study_dir, metric=metric, progress=part, **options)

    monkeypatch.setattr(report_package, "write_report", slow_write_report, raising=False)
    report_and_print(study, progress_every=0.01)
    assert parts == list(REPORT_PARTS) * 2  # the CKA report, then the Procrustes one; one sequence of parts
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("report: part ")]
    seen_parts = [int(re.match(r"report: part (\d+)/", line).group(1)) for line in lines]
    figures = [int(re.search(r", (\d+) figure files written", line).group(1)) for line in lines]
    assert seen_parts == sorted(seen_parts) and seen_parts[-1] == 2 * len(REPORT_PARTS) and len(set(seen_parts)) > 3
    assert figures == sorted(figures) and figures[-1] > figures[0]  # the counter moves


HALF_SPEC = """\
name: half
datasets: [dsprites-procedural]
objectives:
  - {name: beta_vae, values: [1, 4]}
seeds: [0]
training: {steps: 10, batch_size: 8, checkpoints: {schedule: even, count: 2}}
probe: {n: 32, seed: 0}
metrics: [cka]
layers: [encoder.mean]
device: cpu
"""


def test_report_of_an_unfinished_study_or_beside_a_live_runner_says_so(tmp_path, capsys):
    import json
    import os
    import socket

    study = tmp_path / "half"
    study.mkdir()
    (study / "spec.yaml").write_text(HALF_SPEC)
    assert main(["report", str(study)]) == 0
    err = capsys.readouterr().err
    assert f"vaesim: warning: the study in {study} is not finished (tasks done: probe 0/1, train 0/2, " in err
    assert "this report shows only what is stored" in err and "vaesim study run" in err
    assert "is not finished" in (study / "report.html").read_text()

    (study / "running.json").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                    "executor": "local", "started": time.time()}))
    assert main(["report", str(study)]) == 0
    err = capsys.readouterr().err
    assert f"vaesim: warning: a runner is working on {study} now (pid {os.getpid()}" in err
    assert "rerun `vaesim report" in err



def test_tables_never_show_minus_zero_and_finding_values_share_one_precision():
    from vaesim.report.html import _number, _value, findings_html, table_html

    assert _number(-0.0) == "0" and _number(float(pd.Series([-0.0001]).round(3)[0])) == "0"
    assert "-0<" not in table_html(pd.DataFrame({"gap": [-0.0001, 0.5]}).round(3), table_id="t")
    assert [_value(v) for v in (0.9, 0.87341, 1.0, -0.0004, 12345.6)] == ["0.900", "0.873", "1.000", "0.000",
                                                                            "12,346"]
    findings = pd.DataFrame({"verdict": ["holds", "holds"], "finding": ["a", "b"], "definition": ["", ""],
                             "value": [0.9, 0.87341], "detail": ["", ""]})
    cells = re.findall(r"<td class='num'>([^<]*)</td>", findings_html(findings))
    assert cells == ["0.900", "0.873"]


def test_provenance_lists_stages_in_run_order():
    from vaesim.report.html import provenance_html
    from vaesim.study.plan import STAGES

    stages = {name: {"tasks": 1, "seconds": 1.0} for name in sorted(STAGES)}  # the file sorts its keys
    page = provenance_html({"sessions": [{"started": "now", "command": "vaesim demo", "stages": stages}]}, {})
    shown = re.findall(r"<tr><td>([a-z]+)</td>", page)
    assert shown == list(STAGES) and shown.index("disentangle") < shown.index("store")


def test_report_says_when_the_models_are_barely_trained():
    from vaesim.report.report import training_notes

    short = pd.DataFrame({"steps": [2000, 2000], "active_dims": [0, 1]})
    notes = training_notes(short)
    assert notes[0].startswith("The models are barely trained: 2,000 steps, 0.67% of the seed paper's 300,000")
    assert "blurred blobs" in notes[0] and "median active dimensions 0.5" in notes[1]
    assert training_notes(pd.DataFrame({"steps": [300_000], "active_dims": [6]})) == []
    assert training_notes(None) == []


def test_every_link_of_every_report_resolves(tmp_path, capsys):
    from html_links import linked_files, unresolved_links

    study = Synthetic(params=(1.0, 2.0, 4.0, 8.0)).write_study(tmp_path / "links")
    assert main(["report", str(study)]) == 0
    out = capsys.readouterr().out
    assert f"also: {(study / 'report-procrustes.html').resolve()}" in out
    for name in ("report.html", "report-procrustes.html"):
        page = study / name
        assert unresolved_links(page) == [], name
    assert "report-procrustes.html" in linked_files(study / "report.html")
    assert "report.html" in linked_files(study / "report-procrustes.html")
    # one metric alone links only to the reports that exist
    alone = Synthetic(params=(1.0, 2.0)).write_study(tmp_path / "alone")
    page = write_report(alone)
    assert unresolved_links(page) == [] and "report-procrustes.html" not in linked_files(page)


def test_report_judges_each_claim_by_both_metrics_and_labels_robustness(study, report):
    page = report.read_text()
    assert "id='by-metric'" in page and "Verdicts by metric: CKA and Procrustes side by side" in page
    assert "procrustes verdict" in page.replace("<wbr>", "")
    assert "id='robustness'" in page and "seed 0 left out" in page and "passive threshold x10 (0.1)" in page
    assert "No second probe set is stored" in page and "No rerun is stored" in page  # what it has not checked
    assert "id='collapse'" in page and "noise-only expectation" in page
    assert "id='support'" in page
    findings = load_findings(study)
    # two seeds: leaving one out leaves too few runs for claim 1, so its "holds" is fragile and not support
    claim1 = findings[findings["finding"].str.startswith("claim 1")].iloc[0]
    assert claim1["robustness"].startswith("fragile: seed 0 left out -> not enough data")
    assert "class='badge fragile'" in page
    assert "Fragile, so neither support nor contradiction: claim 1 (holds)" in page
    robustness = pd.read_csv(study / "robustness.csv")
    assert set(robustness.columns) == {"finding", "check", "verdict", "changed"}


def test_runs_table_and_collapse_figure_use_the_one_passive_definition(study, report):
    from vaesim.report.collapse import final_active_dimensions
    from vaesim.study import load_latents

    page = report.read_text()
    active = final_active_dimensions(load_latents(study))
    # beta 8 at the final step: 8 passive dimensions by Cov_x(E[z|x]) <= 0.01, so 2 active
    assert active["beta_vae-beta8-s0"] == 2
    row = re.search(r"<tr><td class='id' title='beta_vae-beta8-s0'>.*?</tr>", page).group(0)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row)
    header = re.search(r"<table id='runs'><tr>(.*?)</tr>", page).group(1).replace("<wbr>", "")
    names = re.findall(r"<th>([^<]*)</th>", header)
    assert cells[names.index("active_dims")] == "2"
    assert "KL above 0.01" not in page and "KL under 0.01" not in page


def test_disentanglement_scores_per_model_with_chance_levels(tmp_path):
    import json

    from vaesim.study.schema import DISENTANGLEMENT_SCHEMA
    from vaesim.study.stages.files import write_table

    synthetic = Synthetic(params=(1.0, 8.0))
    study = synthetic.write_study(tmp_path / "scored")
    (study / "probes").mkdir(exist_ok=True)
    (study / "probes" / "dsprites-procedural.json").write_text(json.dumps({"factor_sizes": [3, 6, 40, 32, 32]}))
    for param, seed in synthetic.run_list():
        run = synthetic.run_id(param, seed)
        rows = pd.DataFrame([dict(dataset="dsprites-procedural", run=run, objective="beta_vae", param_name="beta",
                                  param=param, seed=seed, step=1000, metric=metric, value=value)
                             for metric, value in (("beta_vae", 0.22 if param == 8 else 0.85), ("mig", 0.3),
                                                   ("modularity", 0.9), ("udr_active_dims", 4.0))])
        path = study / "disentanglement" / run / "step_00001000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_table(path, rows, DISENTANGLEMENT_SCHEMA, checksum=True)
    page = write_report(study, robustness=False).read_text()
    assert "id='disentanglement'" in page and "id='chance'" in page
    # BetaVAE score: chance 1/5 with 5 factors; 0.22 is within 10% of the way to 1 (0.28), 0.85 is not
    assert "0.220 *" in page and "0.850 *" not in page
    assert "Near chance (marked *): beta_vae for 1 of 2 models" in page
    assert "1/F, F = 5 factors" in page and "no chance level follows from the definition" in page
    assert "udr_active_dims" not in re.search(r"<table id='disentanglement'>.*?</table>", page).group(0)


def test_the_demo_preset_says_it_is_a_smoke_test():
    from vaesim.report.report import demo_notes

    (note,) = demo_notes("name: quick\nseeds: [0, 1]\n")
    assert "smoke test" in note and "too small to decide" in note and "vaesim study run evidence" in note
    assert demo_notes("name: paper\n") == [] and demo_notes(": not yaml [") == []


def test_claim_1_says_what_the_decoder_was_recorded_on(study, report, tmp_path):
    import yaml

    from vaesim.report.report import decoder_input_text

    assert "own sample" in decoder_input_text(study)  # the synthetic spec has no decoder_input: the default
    spec = yaml.safe_load((study / "spec.yaml").read_text())
    spec.setdefault("probe", {})["decoder_input"] = "final_mean"
    other = tmp_path / "fixed"
    other.mkdir()
    (other / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert "final mean code" in decoder_input_text(other)
    assert "unreadable" in decoder_input_text(tmp_path / "missing")
    findings = pd.read_csv(study / "findings.csv")
    claim1 = findings[findings["finding"].str.startswith("claim 1")]
    assert len(claim1) and claim1["detail"].str.contains("Decoder layers were recorded on each").all()
