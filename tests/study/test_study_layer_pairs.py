"""``comparisons.layer_pairs: matching``: only the pairs the findings read, each with the score ``all`` stores."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from study_tiny import TINY

from vaesim.report import write_report
from vaesim.report.collapse import mean_sample_similarity
from vaesim.report.figures import LAYER_PAIRS
from vaesim.report.findings import compute_findings
from vaesim.study import load_latents, load_results, load_runs, parse_spec, run_study
from vaesim.study.estimate import _compare_rows
from vaesim.study.plan import MATCHABLE, SAME_CHECKPOINT_PAIRS, matching_layer_pairs, plan_study

KEY = ["comparison", "metric", "a_run", "a_step", "a_layer", "b_run", "b_step", "b_layer"]


def matching_dict() -> dict:
    spec = copy.deepcopy(TINY)
    spec["comparisons"] = {"layer_pairs": "matching"}
    return spec


def test_matching_renames_only_the_narrowed_tasks_and_keeps_their_model_pairs():
    full = {(t.comparison, t.pairs): t for t in plan_study(parse_spec(copy.deepcopy(TINY))).tasks["compare"]}
    matching = {(t.comparison, t.pairs): t for t in plan_study(parse_spec(matching_dict())).tasks["compare"]}
    assert full.keys() == matching.keys()  # the same model pairs, grouped the same way
    for key, task in matching.items():
        narrowed = key[0] in MATCHABLE
        assert task.layer_pairs == ("matching" if narrowed else "all")
        assert (task.task_id != full[key].task_id) == narrowed  # another result file; never mixed with "all"
        assert full[key].layer_pairs == "all"


def test_the_pairs_the_report_reads_on_one_checkpoint_are_kept():
    # the study layer names them itself (no import of the report): the two lists must agree
    assert set(LAYER_PAIRS) <= set(SAME_CHECKPOINT_PAIRS)
    layers = ["input", "encoder.fc", "encoder.mean", "encoder.sample", "decoder.fc1"]
    assert matching_layer_pairs(True, layers, layers) == [("input", "encoder.sample"),
                                                          ("encoder.mean", "encoder.sample")]
    assert matching_layer_pairs(True, ["encoder.fc"], ["encoder.fc"]) == []
    assert matching_layer_pairs(False, layers, ["decoder.fc1", "encoder.fc"]) == [("encoder.fc", "encoder.fc"),
                                                                               ("decoder.fc1", "decoder.fc1")]


@pytest.fixture(scope="module")
def matching_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("matching") / "study"
    run_study(parse_spec(matching_dict()), out, progress=False, threads=1)
    return out


def _rule(rows):
    """True where a row is one that ``matching`` keeps."""
    same_checkpoint = (rows["a_run"] == rows["b_run"]) & (rows["a_step"] == rows["b_step"])
    kept_self = np.array([(a, b) in SAME_CHECKPOINT_PAIRS for a, b in zip(rows["a_layer"], rows["b_layer"])])
    narrowed = rows["comparison"].isin(MATCHABLE)
    return ~narrowed | np.where(same_checkpoint & (rows["comparison"] == "within_run"), kept_self,
                                rows["a_layer"] == rows["b_layer"])


def test_a_matching_study_stores_exactly_the_matching_rows_of_a_full_one(matching_study, finished_tiny):
    full, part = load_results(finished_tiny), load_results(matching_study)
    assert _rule(part).all()
    wanted = full[_rule(full)]
    assert len(part) == len(wanted) and len(part) < 0.3 * len(full)
    merged = part.merge(wanted, on=KEY, suffixes=("", "_full"), how="inner", validate="one_to_one")
    assert len(merged) == len(part)
    # the same checkpoints (deterministic training on one thread) and the same computation for each kept pair
    assert np.array_equal(merged["score"].to_numpy(), merged["score_full"].to_numpy(), equal_nan=True)
    assert set(part["comparison"]) == set(full["comparison"])
    assert len(part[(part["comparison"] == "within_run") & (part["a_layer"] != part["b_layer"])]) > 0  # mean/sample
    # the planner's estimate counts the rows each study stores, layer pair by layer pair
    for spec, stored in ((copy.deepcopy(TINY), full), (matching_dict(), part)):
        tasks = plan_study(parse_spec(spec)).tasks["compare"]
        assert sum(_compare_rows(task, 2)[0] for task in tasks) == len(stored)


def test_the_findings_of_a_matching_study_are_those_of_a_full_one(matching_study, finished_tiny):
    for metric in ("cka", "procrustes"):
        found = [compute_findings(load_results(d), load_runs(d), latents=load_latents(d), metric=metric)
                 for d in (finished_tiny, matching_study)]
        columns = [c for c in found[0].columns if c in ("finding", "verdict", "value", "numbers", "n")]
        assert len(found[0]) >= 3
        for column in columns:
            assert found[0][column].astype(str).tolist() == found[1][column].astype(str).tolist(), (metric, column)
        assert len(mean_sample_similarity(load_results(matching_study), metric=metric)) > 0


def test_a_matching_study_reports_and_says_which_views_lack_layer_pairs(matching_study):
    report = write_report(matching_study, robustness=False)
    html = report.read_text()
    assert "claim 1" in html and "claim 3" in html
    figures = {p.stem for p in (matching_study / "figures").glob("*.png")}
    # what the findings read is drawn; the layer x layer map is not, and the page says why
    assert {"learning_dynamics", "layer_pairs", "agreement", "posterior_collapse", "factors"} <= figures
    assert "heatmap" not in figures
    assert "only matching layers were scored" in html and "layer_pairs all" in html
