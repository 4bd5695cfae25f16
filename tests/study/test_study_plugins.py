"""A study whose spec names plug-in measures (SVCCA, PWCCA, and two from a plug-in module)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from plugin_measure import centred_gram, gram_cosine, mean_abs_corr
from vaesim.similarity import linear_cka, pwcca, svcca
from vaesim.study import load_results, parse_spec, query, run_study, study_status
from vaesim.study import plan as layout

from study_tiny import TINY

pytestmark = pytest.mark.slow


def small_spec():
    spec = copy.deepcopy(TINY)
    spec.update(
        name="plugins",
        objectives=[{"name": "beta_vae", "values": [1]}],
        training=dict(spec["training"], steps=10, checkpoints={"schedule": "even", "count": 2}),
        layers=["encoder.fc", "encoder.mean", "decoder.fc1"],
        keep_activations=["encoder.fc", "encoder.mean", "decoder.fc1"],
        metrics=["cka", "svcca", "pwcca", "mean_abs_corr", "gram_cosine"],
        plugins=["plugin_measure"],
    )
    return spec


def test_study_with_plugin_measures(tmp_path):
    spec = parse_spec(small_spec(), source="plugins")
    out = tmp_path / "study"
    run_study(spec, out, progress=False, threads=1)
    results = load_results(out)
    assert set(results.metric) == {"cka", "svcca", "pwcca", "mean_abs_corr", "gram_cosine"}
    for row in results[results.comparison == "seeds"].itertuples():
        with np.load(out / layout.activations_path(row.a_run, row.a_step)) as a, \
                np.load(out / layout.activations_path(row.b_run, row.b_step)) as b:
            x, y = a[row.a_layer].astype(np.float64), b[row.b_layer].astype(np.float64)
        reference = {"cka": linear_cka, "svcca": svcca, "pwcca": pwcca, "mean_abs_corr": mean_abs_corr,
                     "gram_cosine": lambda p, q: gram_cosine(centred_gram(p), centred_gram(q))}[row.metric](x, y)
        assert row.score == pytest.approx(reference, rel=1e-6, abs=1e-9), (row.metric, row.a_layer, row.b_layer)
    counts = query(out, "select metric, count(*) as n from results group by metric order by metric")
    assert dict(zip(counts.metric, counts.n))["pwcca"] > dict(zip(counts.metric, counts.n))["svcca"]  # both orders
    status = study_status(out)
    assert all(done == total for done, total in status.stages.values())
    assert len(list((out / "summaries").rglob("*.plugins.npz"))) > 0
    assert len(list((out / "summaries").rglob("*.plugins.npz.sha256"))) == len(list((out / "summaries").rglob("*.plugins.npz")))
    run_study(spec, out, progress=False, threads=1)  # resumable: a second run changes nothing
    again = load_results(out)
    assert len(again) == len(results)
    key = ["comparison", "metric", "a_run", "a_step", "a_layer", "b_run", "b_step", "b_layer"]
    assert np.array_equal(again.sort_values(key).score.to_numpy(), results.sort_values(key).score.to_numpy())


def test_spec_rejects_unregistered_measure():
    spec = small_spec()
    spec["plugins"] = []
    spec["metrics"] = ["cka", "no_such_measure"]
    with pytest.raises(ValueError, match="unknown similarity measures"):
        parse_spec(spec, source="bad")
    spec["plugins"] = ["no_such_module_xyz"]
    with pytest.raises(ValueError, match="cannot import plug-in module"):
        parse_spec(spec, source="bad")
