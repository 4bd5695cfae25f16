"""compare(..., layer_pairs=...): only the chosen layer pairs, each with the score the full call gives it."""

import numpy as np
import pandas as pd
import pytest

from similarity_reference import cka as cka_reference, procrustes as procrustes_reference

from vaesim.similarity import compare, summarise

N = 40
KEY = ["a_model", "a_layer", "b_model", "b_layer", "metric"]


def _model(seed):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(N, 6))
    return {
        "conv": rng.normal(size=(N, 3, 5, 5)) + base[:, :1, None, None],
        "fc": np.maximum(base @ rng.normal(size=(6, 30)), 0),
        "mean": base @ rng.normal(size=(6, 4)),
        "sample": base @ rng.normal(size=(6, 4)) + 0.5 * rng.normal(size=(N, 4)),
        "flat": np.ones((N, 3)),  # zero variance: NaN with a note, as in a full call
    }


@pytest.fixture(scope="module")
def models():
    return {"t0": _model(0), "t1": _model(1), "T": _model(2)}


def _chosen(models):
    pairs = [("t0", "T"), ("t1", "T"), ("t0", "t0")]
    same = {(a, b): [(name, name) for name in models[a]] for a, b in pairs if a != b}
    return pairs, {**same, ("t0", "t0"): [("mean", "sample"), ("conv", "sample")]}


@pytest.mark.parametrize("metrics", [("cka", "procrustes"), ("cka", "cka_debiased", "procrustes", "svcca")])
def test_chosen_layer_pairs_are_exactly_the_rows_of_the_full_call(models, metrics):
    pairs, layer_pairs = _chosen(models)
    full = compare(models, metrics=metrics, model_pairs=pairs)
    part = compare(models, metrics=metrics, model_pairs=pairs, layer_pairs=layer_pairs)
    wanted = [(a, la, b, lb) for a, b in pairs for la, lb in layer_pairs[(a, b)]]
    assert [tuple(r) for r in part[KEY[:4]].drop_duplicates().itertuples(index=False)] == wanted
    assert len(part) == len(wanted) * len(metrics)  # every measure here is symmetric: one row per pair
    merged = part.merge(full, on=KEY, suffixes=("", "_full"), how="left", validate="one_to_one")
    # the same computation for each chosen pair: bit for bit, NaN (zero variance) where the full call has NaN
    both = merged["score"].to_numpy(), merged["score_full"].to_numpy()
    assert np.array_equal(*both, equal_nan=True)
    assert (merged["note"] == merged["note_full"]).all()
    assert merged.loc[merged["a_layer"] == "flat", "score"].isna().all()


def test_chosen_scores_equal_float64_textbook_values(models):
    pairs, layer_pairs = _chosen(models)
    part = compare(models, metrics=("cka", "procrustes"), model_pairs=pairs, layer_pairs=layer_pairs)
    checked = 0
    for row in part[part["a_layer"] != "flat"].itertuples():
        x = np.asarray(models[row.a_model][row.a_layer], np.float64).reshape(N, -1)
        y = np.asarray(models[row.b_model][row.b_layer], np.float64).reshape(N, -1)
        expected = cka_reference(x, y) if row.metric == "cka" else procrustes_reference(x, y)
        assert row.score == pytest.approx(expected, abs=1e-9), row
        checked += 1
    assert checked == 2 * (2 * 4 + 2)


def test_unnamed_model_pairs_keep_every_layer_pair_and_summaries_work(models):
    summaries = {key: {name: summarise(value, metrics=("cka", "procrustes")) for name, value in layers.items()}
                 for key, layers in models.items()}
    full = compare(summaries, model_pairs=[("t0", "T"), ("t1", "t1")])
    part = compare(summaries, model_pairs=[("t0", "T"), ("t1", "t1")], layer_pairs={("t0", "T"): [("fc", "fc")]})
    assert len(part[part["a_model"] == "t1"]) == len(full[full["a_model"] == "t1"]) == 2 * 15
    pd.testing.assert_frame_equal(part[part["a_model"] == "t1"].reset_index(drop=True),
                                  full[full["a_model"] == "t1"].reset_index(drop=True))
    assert part[part["a_model"] == "t0"][["a_layer", "b_layer"]].drop_duplicates().values.tolist() == [["fc", "fc"]]
    empty = compare(summaries, model_pairs=[("t0", "T")], layer_pairs={("t0", "T"): []})
    assert empty.empty and list(empty.columns) == list(full.columns)


def test_bad_layer_pairs_name_what_is_wrong(models):
    with pytest.raises(ValueError, match=r"models\['T'\]\['decoder.fc1'\].*does not exist"):
        compare(models, model_pairs=[("t0", "T")], layer_pairs={("t0", "T"): [("fc", "decoder.fc1")]})
    with pytest.raises(ValueError, match="not compared"):
        compare(models, model_pairs=[("t0", "T")], layer_pairs={("T", "t0"): [("fc", "fc")]})
    with pytest.raises(TypeError, match="must list pairs"):
        compare(models, model_pairs=[("t0", "T")], layer_pairs={("t0", "T"): ["fc"]})
    with pytest.raises(TypeError, match="layer_pairs must be a dict"):
        compare(models, model_pairs=[("t0", "T")], layer_pairs=[("fc", "fc")])


def test_the_torch_device_route_scores_only_the_chosen_pairs(models):
    # the route a GPU takes (here on torch's CPU device): one stacked cross product of the chosen layers only
    pairs, layer_pairs = _chosen(models)
    on_numpy = compare(models, model_pairs=pairs)
    on_torch = compare(models, model_pairs=pairs, layer_pairs=layer_pairs, device="cpu")
    merged = on_torch.merge(on_numpy, on=KEY, suffixes=("", "_numpy"), validate="one_to_one")
    assert len(merged) == len(on_torch) == 2 * sum(len(v) for v in layer_pairs.values())
    live = merged["score_numpy"].notna()
    assert merged.loc[~live, "score"].isna().all()
    np.testing.assert_allclose(merged.loc[live, "score"], merged.loc[live, "score_numpy"], rtol=0, atol=1e-9)
