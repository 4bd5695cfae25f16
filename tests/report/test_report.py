"""The HTML report and the ``vaesim report`` command on synthetic study directories."""

from __future__ import annotations

import base64
import re

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
    assert len(images) == len(FIGURES)
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
    # nothing fetched from elsewhere
    assert not re.search(r"(src|href)=['\"](https?:|//)", page)
    for name, *_ in FIGURES:
        assert (study / "figures" / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
        assert b"<svg" in (study / "figures" / f"{name}.svg").read_bytes()[:500]


def test_report_shows_spec_runs_and_findings(study, report):
    page = report.read_text()
    assert "id='findings'" in page and "id='runs'" in page
    assert "beta_vae-beta8-s1" in page  # a run of the runs table
    assert "synthetic" in page  # spec.yaml content
    findings = load_findings(study)
    assert list(findings.columns) == ["finding", "value", "verdict", "definition", "detail", "ci_low", "ci_high", "n"]
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
    assert page.count("not drawn:") == len(FIGURES)


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
