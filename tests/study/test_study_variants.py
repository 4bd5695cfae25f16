"""Variants of a study (issue 19, item 5): a second probe set on the same checkpoints, used by the report."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from vaesim.cli import main
from vaesim.study import load_results
from vaesim.study.run.variants import VARIANT_FILE, check_name, make_variant, study_variants, variant_spec
from vaesim.study.spec import load_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def with_probe_variant(tmp_path_factory, finished_tiny):
    """A copy of the finished tiny study with a second probe set (seed 1) made by the command line."""
    import shutil

    study = tmp_path_factory.mktemp("variant") / "study"
    shutil.copytree(finished_tiny, study)
    before = {p: p.stat().st_mtime_ns for p in (study / "runs").rglob("*") if p.is_file()}
    assert main(["study", "variant", str(study), "--probe-seed", "1", "--threads", "1", "--no-progress"]) == 0
    return study, before


def test_a_second_probe_set_reuses_the_checkpoints_and_records_other_images(with_probe_variant):
    study, before = with_probe_variant
    variant = study / "variants" / "probe-seed-1"
    # The trained runs are the study's own files, linked (not copied, not retrained) and untouched.
    for path, mtime in before.items():
        linked = variant / path.relative_to(study)
        assert linked.stat().st_ino == path.stat().st_ino, linked
        assert path.stat().st_mtime_ns == mtime
    spec = load_spec(variant / "spec.yaml", import_plugins=False)
    assert spec.probe.seed == 1 and spec.disentanglement is None
    assert spec.comparisons.layer_pairs == "matching"  # only what the verdicts read
    # Other images: the probe files differ, and so do the scores of the same layer pairs.
    parent_probe = sorted((study / "probes").glob("*.npz"))
    variant_probe = sorted((variant / "probes").glob("*.npz"))
    assert parent_probe and variant_probe and parent_probe[0].read_bytes() != variant_probe[0].read_bytes()
    key = ["comparison", "metric", "a_run", "a_step", "a_layer", "b_run", "b_step", "b_layer"]
    parent, other = load_results(study), load_results(variant)
    merged = parent.merge(other, on=key, suffixes=("", "_variant"))
    assert len(merged) == len(other) < 0.3 * len(parent)  # every pair it keeps is one the study stores
    assert set(other["comparison"]) == set(parent["comparison"])
    assert (merged["score"] != merged["score_variant"]).mean() > 0.5
    found, skipped = study_variants(study)
    assert [v.name for v in found] == ["probe-seed-1"] and skipped == []
    assert "probe seed 1" in found[0].describe() and "matching layer pairs" in found[0].describe()
    # resuming it with other layer pairs would mix two kinds of result: refused, naming the fix
    with pytest.raises(ValueError, match="compares layer pairs 'matching'.*--layer-pairs matching"):
        make_variant(study, "probe", probe_seed=1, layer_pairs="all")
    # The study itself is intact: its verify ignores the variant, and the variant verifies on its own.
    assert main(["study", "verify", str(study)]) == 0
    assert main(["study", "verify", str(variant)]) == 0


def test_the_report_recomputes_every_verdict_on_the_variant(with_probe_variant):
    from vaesim.report.report import findings_of, read_latents, read_store, study_variants as report_variants

    study, _ = with_probe_variant
    tables, note = report_variants(study)
    assert list(tables) == ["second probe set (probe-seed-1)"]
    assert "probe seed 1" in note and "No rerun is stored" in note
    _, results, runs = read_store(study)
    findings, table = findings_of(study, results, runs, read_latents(study), "cka")
    checked = table[table["check"] == "second probe set (probe-seed-1)"]
    assert set(checked["finding"]) == set(findings["finding"])  # every verdict, recomputed on other images
    for row in checked[checked["changed"]].itertuples():  # a changed word names the probe set in the label
        label = findings.set_index("finding").loc[row.finding, "robustness"]
        assert label.startswith("fragile") and "second probe set" in label


def test_an_unfinished_variant_is_named_and_not_used(with_probe_variant, tmp_path):
    import shutil

    study, _ = with_probe_variant
    copy = tmp_path / "study"
    shutil.copytree(study, copy, symlinks=True)
    (copy / "variants" / "probe-seed-1" / "runs.parquet").unlink()
    found, skipped = study_variants(copy)
    assert found == [] and len(skipped) == 1 and "not finished" in skipped[0]
    (copy / "variants" / "probe-seed-1" / VARIANT_FILE).write_text("[1, 2]")
    found, skipped = study_variants(copy)
    assert found == [] and "not a variant record" in skipped[0]


def test_a_damaged_variant_is_named_as_damaged_and_resumed_through_study_variant(with_probe_variant, tmp_path):
    import shlex
    import shutil

    from vaesim.study import study_status

    study, _ = with_probe_variant
    copy = tmp_path / "study"
    shutil.copytree(study, copy, symlinks=True)
    variant = copy / "variants" / "probe-seed-1"
    result = sorted(variant.glob("results/*.parquet"))[0]
    result.write_bytes(result.read_bytes()[:-7] + b"damaged")  # fails its checksum
    status = study_status(variant)
    assert not status.complete
    advice = f"vaesim study variant {shlex.quote(str(copy))} --probe-seed 1 --name probe-seed-1 --layer-pairs matching"
    assert status.rerun_command == advice
    assert advice in status.format()
    found, skipped = study_variants(copy)
    assert found == [] and len(skipped) == 1
    assert "1 file problem(s)" in skipped[0] and "not finished" not in skipped[0] and advice in skipped[0], skipped


def test_bad_variant_requests_are_refused_before_any_work(finished_tiny, tmp_path, tiny_spec):
    with pytest.raises(ValueError, match="a seed other than the study's own"):
        variant_spec(tiny_spec, "probe", probe_seed=tiny_spec.probe.seed)
    with pytest.raises(ValueError, match="plain folder name"):
        check_name("../elsewhere")
    with pytest.raises(FileNotFoundError, match="not a study directory"):
        make_variant(tmp_path, "probe", probe_seed=1)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "spec.yaml").write_text((finished_tiny / "spec.yaml").read_text())
    with pytest.raises(ValueError, match="runs are not trained yet"):
        make_variant(unfinished, "probe", probe_seed=1)
    assert not (unfinished / "variants").exists()


def test_a_rerun_records_its_environment_and_reproduces_a_thread_independent_store(finished_tiny, tmp_path,
                                                                                    monkeypatch):
    """A rerun with another CPU count: vaesim's files do not depend on it, so every score is the same and no
    verdict changes; the variant says how it was made, and resuming it in another environment is refused."""
    import shutil

    from vaesim.report.report import study_variants as report_variants

    study = tmp_path / "study"
    shutil.copytree(finished_tiny, study)
    monkeypatch.setenv("VAESIM_CPUS", "1")
    variant = make_variant(study, "rerun", threads=1, progress=False)
    found, _ = study_variants(study)
    assert [v.kind for v in found] == ["rerun"]
    assert "VAESIM_CPUS=1" in found[0].describe()
    key = ["comparison", "metric", "a_run", "a_step", "a_layer", "b_run", "b_step", "b_layer"]
    parent = load_results(study).sort_values(key).reset_index(drop=True)
    again = load_results(variant).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(parent, again)  # bit for bit: the thread count is not a re-seed here
    tables, note = report_variants(study)
    assert list(tables) == ["rerun (rerun)"] and "VAESIM_CPUS=1" in note
    monkeypatch.setenv("VAESIM_CPUS", "2")
    with pytest.raises(ValueError, match="resume it in the same environment"):
        make_variant(study, "rerun", threads=1, progress=False)
