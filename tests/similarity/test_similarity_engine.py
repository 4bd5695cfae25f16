"""compare(), summaries and their files: equal to the single-pair functions, right rows, clear errors."""

import math

import numpy as np
import pandas as pd
import pytest

from vaesim.similarity import (
    COLUMNS,
    LayerSummary,
    compare,
    linear_cka,
    load_summaries,
    procrustes_similarity,
    save_summaries,
    summarise,
)
from vaesim.similarity.summary import pack_upper, unpack_upper

ALL = ("cka", "cka_debiased", "procrustes")
SINGLE = {
    "cka": linear_cka,
    "cka_debiased": lambda x, y: linear_cka(x, y, debiased=True),
    "procrustes": procrustes_similarity,
}
N = 24


def _model(seed, n=N):
    """Layers covering every storage route: p <= n/2, n/2 < p <= n, p > n, conv-shaped, offset."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 5))
    return {
        "latent": (base @ rng.normal(size=(5, 3))).astype(np.float32),
        "fc": np.maximum(base @ rng.normal(size=(5, 18)), 0) + 100.0,
        "conv": rng.normal(size=(n, 4, 6, 6)) + base[:, :1, None, None],
        "wide": (np.maximum(base @ rng.normal(size=(5, 300)), 0) + 1e3).astype(np.float32),
    }


@pytest.fixture(scope="module")
def models():
    return {"m0": _model(0), "m1": _model(1), "m2": _model(2)}


def _check_against_single(frame, models):
    assert list(frame.columns) == COLUMNS
    for row in frame.itertuples():
        x = models[row.a_model][row.a_layer]
        y = models[row.b_model][row.b_layer]
        expected = SINGLE[row.metric](x, y)
        assert row.score == pytest.approx(expected, abs=1e-9), row
        assert row.n == N and row.note == ""


def test_compare_equals_single_pair_functions(models):
    frame = compare(models, metrics=ALL)
    _check_against_single(frame, models)
    # every unordered model pair incl. self; self: unordered layer pairs incl. diagonal
    layers = len(models["m0"])
    self_pairs, cross_pairs = layers * (layers + 1) // 2, layers * layers
    assert len(frame) == len(ALL) * (3 * self_pairs + 3 * cross_pairs)
    own = frame[(frame.a_model == "m1") & (frame.b_model == "m1") & (frame.metric == "cka")]
    assert len(own) == self_pairs
    assert set(map(frozenset, zip(own.a_layer, own.b_layer))) == {
        frozenset((a, b)) for a in models["m1"] for b in models["m1"]
    }
    cross = frame[(frame.a_model == "m0") & (frame.b_model == "m2") & (frame.metric == "procrustes")]
    assert set(zip(cross.a_layer, cross.b_layer)) == {(a, b) for a in models["m0"] for b in models["m2"]}


def test_saved_summaries_give_the_same_table(models, tmp_path):
    direct = compare(models, metrics=ALL)
    loaded = {}
    for key, layers in models.items():
        path = save_summaries(tmp_path / f"{key}.npz", {name: summarise(x, name=name, metrics=ALL) for name, x in layers.items()})
        loaded[key] = load_summaries(path)
        assert list(loaded[key]) == list(layers)
    from_disk = compare(loaded, metrics=ALL)
    pd.testing.assert_frame_equal(from_disk, direct, check_exact=False, atol=1e-12)
    assert not list(tmp_path.glob(".tmp-*"))


def test_explicit_model_pairs_sparse_and_dense_paths_agree(models):
    more = dict(models, m3=_model(3), m4=_model(4))
    pairs = [("m3", "m0"), ("m1", "m1")]  # sparse: few of the 15 model pairs
    sparse = compare(more, metrics=ALL, model_pairs=pairs)
    assert list(dict.fromkeys(zip(sparse.a_model, sparse.b_model))) == pairs
    _check_against_single(sparse, more)
    dense = compare(more, metrics=("cka", "cka_debiased"))
    for row in sparse[sparse.metric != "procrustes"].itertuples():
        match = dense[(dense.a_model == row.a_model) & (dense.a_layer == row.a_layer) & (dense.b_model == row.b_model)
                      & (dense.b_layer == row.b_layer) & (dense.metric == row.metric)]
        if len(match):
            assert match.score.iloc[0] == pytest.approx(row.score, abs=1e-12)


def test_empty_model_pairs_give_an_empty_table(models):
    frame = compare(models, model_pairs=[])
    assert frame.empty and list(frame.columns) == COLUMNS


def test_small_blocks_and_torch_backend_agree(models):
    reference = compare(models, metrics=ALL)
    blocked = compare(models, metrics=ALL, block_bytes=4096)  # one triangle row per block
    pd.testing.assert_frame_equal(blocked, reference, check_exact=False, atol=1e-12)
    on_torch = compare(models, metrics=ALL, device="cpu")
    pd.testing.assert_frame_equal(on_torch, reference, check_exact=False, atol=1e-10)


def test_summary_storage_is_min_of_gram_and_features():
    rng = np.random.default_rng(0)
    n = 40
    narrow = summarise(rng.normal(size=(n, 10)), metrics=("cka",))
    assert narrow.features is not None and narrow.gram is None
    wide = summarise(rng.normal(size=(n, 500)), metrics=("cka",))
    assert wide.features is None and wide.r is None and wide.gram.shape == (n * (n + 1) // 2,)
    wide_p = summarise(rng.normal(size=(n, 500)), metrics=("procrustes",))
    assert wide_p.r is not None and wide_p.nbytes <= 8 * (n * (n + 1) + n)
    x = rng.normal(size=(n, 500))
    xc = x - x.mean(0)
    np.testing.assert_allclose(summarise(x).full_gram(), xc @ xc.T, atol=1e-9)
    factor = summarise(x).factor()
    np.testing.assert_allclose(factor @ factor.T, xc @ xc.T, atol=1e-9)


def test_packing_round_trip_and_inner_product():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(7, 7)), rng.normal(size=(7, 7))
    k, l = a + a.T, b + b.T
    assert pack_upper(k, scale=True) @ pack_upper(l, scale=True) == pytest.approx(np.sum(k * l))
    np.testing.assert_allclose(unpack_upper(pack_upper(k, scale=True), 7, scale=True, symmetric=True), k)
    np.testing.assert_allclose(unpack_upper(pack_upper(np.triu(a), scale=False), 7, scale=False, symmetric=False), np.triu(a))


def test_zero_variance_layer_gives_nan_with_note_and_others_continue(models):
    broken = {
        "m0": dict(models["m0"], dead=np.full((N, 5), 3.0)),
        "m1": dict(models["m1"], dead32=np.full((N, 2, 3), 0.7, dtype=np.float32)),
    }
    frame = compare(broken, metrics=ALL)
    dead = frame[frame.a_layer.str.startswith("dead") | frame.b_layer.str.startswith("dead")]
    assert len(dead) > 0 and dead.score.isna().all()
    assert dead.note.str.contains(r"zero variance in models\['m[01]'\]\['dead(?:32)?'\]").all()
    both = dead[(dead.a_layer == "dead") & (dead.b_layer == "dead32")]
    assert len(both) == 3
    assert both.note.str.contains("models\\['m0'\\]\\['dead'\\] and models\\['m1'\\]\\['dead32'\\]").all()
    alive = frame.drop(dead.index)
    assert alive.score.notna().all() and (alive.note == "").all()
    _check_against_single(alive, broken)


# ---------------------------------------------------------------- bad input

def test_different_n_names_model_and_layer(models):
    bad = {"m0": models["m0"], "m1": dict(models["m1"], fc=models["m1"]["fc"][:-1])}
    with pytest.raises(ValueError, match=r"models\['m1'\]\['fc'\] has n=23 examples but models\['m0'\]\['latent'\] has n=24"):
        compare(bad)


def test_nan_names_model_and_layer(models):
    conv = models["m1"]["conv"].copy()
    conv[3, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"models\['m1'\]\['conv'\]: expected finite values"):
        compare({"m0": models["m0"], "m1": dict(models["m1"], conv=conv)})


def test_non_numeric_layer_names_model_and_layer(models):
    with pytest.raises(TypeError, match=r"models\['m0'\]\['words'\]: expected numeric activations.*got an array of dtype <U"):
        compare({"m0": {"words": np.array([["a"]] * N)}})


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"metrics": ("cka", "rsa")}, ValueError, r"metrics must be a non-empty subset of"),
        ({"model_pairs": [("m0", "nope")]}, ValueError, r"model_pairs names model 'nope', which is not in models"),
        ({"model_pairs": ["m0"]}, TypeError, r"each entry of model_pairs must be a pair"),
    ],
)
def test_bad_arguments(models, kwargs, error, message):
    with pytest.raises(error, match=message):
        compare(models, **kwargs)


def test_bad_models_container():
    with pytest.raises(TypeError, match=r"models must be a dict"):
        compare([np.zeros((4, 2))])
    with pytest.raises(TypeError, match=r"models\['a'\] must be a dict"):
        compare({"a": np.zeros((4, 2))})
    with pytest.raises(ValueError, match=r"models is empty"):
        compare({})


def test_debiased_needs_four_examples():
    tiny = {"a": {"x": np.random.default_rng(0).normal(size=(3, 2))}}
    with pytest.raises(ValueError, match=r"'cka_debiased' needs n > 3 examples, got n=3"):
        compare(tiny, metrics=("cka_debiased",))


def test_summary_without_factor_cannot_serve_procrustes():
    summary = summarise(np.random.default_rng(0).normal(size=(10, 50)), name="enc", metrics=("cka",))
    with pytest.raises(ValueError, match=r"models\['a'\]\['enc'\] is a LayerSummary without the Procrustes factor"):
        compare({"a": {"enc": summary}}, metrics=("procrustes",))
    assert math.isclose(compare({"a": {"enc": summary}}, metrics=("cka",)).score.iloc[0], 1.0)


def test_load_summaries_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no summary file at .*missing.npz"):
        load_summaries(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match=r"is not a vaesim summary file"):
        load_summaries(tmp_path / "other.npz")
    good = summarise(np.random.default_rng(0).normal(size=(10, 50)), name="enc")
    path = save_summaries(tmp_path / "s.npz", {"enc": good})
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays["l0.gram"] = arrays["l0.gram"][:-1]
    np.savez(tmp_path / "corrupt.npz", **arrays)
    with pytest.raises(ValueError, match=r"layer 'enc' is corrupt: gram shape"):
        load_summaries(tmp_path / "corrupt.npz")
    with pytest.raises(TypeError, match=r"summaries\['enc'\] must be a LayerSummary"):
        save_summaries(tmp_path / "bad.npz", {"enc": np.zeros((3, 3))})
    assert isinstance(load_summaries(path)["enc"], LayerSummary)
