"""compare_models: two torch models in one call, equal to recording the layers and calling compare().

References: the exact estimator against ``LayerRecorder`` + ``compare`` (the study's route) and against the
float64 textbook CKA; the minibatch estimator against a float64 textbook of Nguyen et al. 2021 (per-batch
unbiased HSIC of uncentred Grams, Song et al. 2012 eq. 5, summed). Tolerances: the float64 routes agree to
rounding (1e-9); a float32-product Gram (``n^2 p >= MIXED_MIN_WORK``) moves a score by O(u) = O(6e-8) relative
(bound in vaesim.similarity.summary), so those are held to 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import similarity_reference as ref
import vaesim
from vaesim.activations import LayerRecorder
from vaesim.similarity import compare, compare_models
from vaesim.similarity import models as models_module
from vaesim.similarity.summary import MIXED_MIN_WORK

LAYERS = ["conv1", "conv2", "fc", "out"]
N = 128  # conv1 has 8192 features: n^2 p = 2^27 = MIXED_MIN_WORK, the float32-product route of compare()


class SmallCNN(nn.Module):
    """32 x 32 binary images -> conv 32 (8192 features) -> conv 16 (1024) -> dropout -> dense 32 -> dense 4."""

    def __init__(self, seed: int, inplace: bool = False):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(1, 32, 4, 2, 1)  # (B, 32, 16, 16)
        self.act1 = nn.ReLU(inplace=inplace)
        self.conv2 = nn.Conv2d(32, 16, 4, 2, 1)  # (B, 16, 8, 8)
        self.act2 = nn.ReLU(inplace=inplace)
        self.drop = nn.Dropout(0.5)  # eval mode matters
        self.fc = nn.Linear(1024, 32)
        self.out = nn.Linear(32, 4)

    def forward(self, x):
        x = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.out(torch.relu(self.fc(self.drop(x.flatten(1)))))


@pytest.fixture(scope="module")
def images():
    return (torch.rand(N, 1, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.5).float()


@pytest.fixture(scope="module")
def models():
    return SmallCNN(0), SmallCNN(1)


def recorded(model, images, batch=48):
    """{layer: (n, p) float32} by LayerRecorder, in eval mode."""
    model.eval()
    with LayerRecorder(model, LAYERS) as recorder, torch.no_grad():
        for start in range(0, len(images), batch):
            model(images[start:start + batch])
    return recorder.arrays()


def reference_table(models, images, metrics):
    acts = {"a": recorded(models[0], images), "b": recorded(models[1], images)}
    return compare(acts, metrics=metrics, model_pairs=[("a", "b")]), acts


def assert_same_table(got, expected, rtol):
    assert list(got.columns) == list(expected.columns)
    key = ["a_model", "a_layer", "b_model", "b_layer", "metric", "n", "note"]
    assert got[key].reset_index(drop=True).equals(expected[key].reset_index(drop=True))
    np.testing.assert_allclose(got["score"].to_numpy(), expected["score"].to_numpy(), rtol=rtol, atol=rtol)


# ---------------------------------------------------------------- exact estimator


def test_the_test_layer_takes_compares_float32_route():
    assert N * N * 32 * 16 * 16 >= MIXED_MIN_WORK


@pytest.mark.parametrize("layer_bytes", [64 << 20, 4 * 8192 * 40], ids=["held", "streamed"])
def test_exact_equals_recorder_and_compare(models, images, layer_bytes, monkeypatch):
    monkeypatch.setattr(models_module, "_DIAGONAL_ROWS", 16)  # a block's own tile in several row slices
    metrics = ("cka", "cka_debiased")
    expected, acts = reference_table(models, images, metrics)
    got = compare_models(*models, images, layers=LAYERS, metrics=metrics, batch_size=48, layer_bytes=layer_bytes)
    # held whole: the very summaries of compare(); streamed (conv1 in 4 blocks of 40 rows across batches of 48):
    # float32-product Gram tiles, within the O(u) bound
    assert_same_table(got, expected, rtol=1e-12 if layer_bytes == 64 << 20 else 1e-6)
    for row in got[got.metric == "cka"].itertuples():
        textbook = ref.cka(acts["a"][row.a_layer], acts["b"][row.b_layer])
        assert row.score == pytest.approx(textbook, abs=1e-6)


def test_streamed_float64_route_matches_to_rounding(models, images):
    """A wide layer below the float32 threshold (n = 64: n^2 p < MIXED_MIN_WORK) is streamed in float64."""
    x = images[:64]
    expected, _ = reference_table(models, x, ("cka", "cka_debiased"))
    got = compare_models(*models, x, layers=LAYERS, metrics=("cka", "cka_debiased"), batch_size=24,
                         layer_bytes=4 * 8192 * 10)  # 7 blocks of 10 rows
    assert_same_table(got, expected, rtol=1e-9)


def test_streamed_passes_run_only_as_deep_as_needed(models, images):
    calls = {"conv1": 0, "out": 0}
    handles = [getattr(models[0], name).register_forward_hook(
        lambda *_args, name=name: calls.__setitem__(name, calls[name] + 1)) for name in calls]
    try:
        compare_models(*models, images, layers=LAYERS, batch_size=32, layer_bytes=4 * 8192 * 64)
    finally:
        for handle in handles:
            handle.remove()
    assert calls["out"] == 4  # pass 0 only: 4 batches
    assert calls["conv1"] == 4 + 2  # pass 1 reads rows 64..127 again (2 batches), up to conv1 only


def test_procrustes_and_plugin_metrics_hold_every_layer(models, images):
    metrics = ("cka", "procrustes", "svcca")
    expected, _ = reference_table(models, images, metrics)
    got = compare_models(*models, images, layers=LAYERS, metrics=metrics, batch_size=48, layer_bytes=1000)
    assert_same_table(got, expected, rtol=1e-12)


@pytest.mark.parametrize("form", ["loader", "list", "numpy"])
def test_data_forms_give_the_same_table(models, images, form):
    expected = compare_models(*models, images, layers=LAYERS, batch_size=32, layer_bytes=4 * 8192 * 50)
    if form == "loader":  # (images, labels) batches, as torchvision datasets give
        data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.zeros(N)), batch_size=32)
    elif form == "list":
        data = [images[i:i + 32] for i in range(0, N, 32)]
    else:
        data = images.numpy()
    got = compare_models(*models, data, layers=LAYERS, layer_bytes=4 * 8192 * 50,
                         batch_size=32 if form == "numpy" else None)
    assert_same_table(got, expected, rtol=1e-12)


def test_batch_cuts_do_not_change_the_exact_scores(models, images):
    one = compare_models(*models, images, layers=LAYERS, batch_size=N)
    many = compare_models(*models, images, layers=LAYERS, batch_size=7, layer_bytes=4 * 8192 * 30)
    np.testing.assert_allclose(many["score"], one["score"], rtol=1e-6, atol=1e-6)


def test_in_place_activations_are_recorded_before_they_change(images):
    a, b = SmallCNN(0, inplace=True), SmallCNN(1, inplace=True)
    got = compare_models(a, b, images, layers=["conv1", "conv2"], batch_size=64)
    with torch.no_grad():
        conv1 = [m.conv1(images).flatten(1).numpy() for m in (a, b)]  # before the in-place ReLU
        conv2 = [m.conv2(torch.relu(m.conv1(images))).flatten(1).numpy() for m in (a, b)]
    expected = compare({"a": {"conv1": conv1[0], "conv2": conv2[0]}, "b": {"conv1": conv1[1], "conv2": conv2[1]}},
                       metrics=("cka",), model_pairs=[("a", "b")])
    np.testing.assert_allclose(got["score"], expected["score"], rtol=1e-9, atol=1e-9)


def test_training_flags_are_restored(images):
    a, b = SmallCNN(0), SmallCNN(1)
    a.train()
    a.drop.eval()  # a submodule's own flag, not the model's
    b.eval()
    expected = compare_models(SmallCNN(0).eval(), SmallCNN(1).eval(), images, layers=LAYERS)
    got = compare_models(a, b, images, layers=LAYERS)  # eval inside: dropout off, same scores
    np.testing.assert_allclose(got["score"], expected["score"], rtol=1e-12)
    assert a.training and not a.drop.training and a.fc.training and not b.training


def test_layer_specs_names_and_default_layers(models, images):
    a, b = models
    pair = compare_models(a, b, images, layers=(["conv1", "fc"], ["out"]), names=("seed0", "seed1"))
    assert list(zip(pair.a_layer, pair.b_layer)) == [("conv1", "out"), ("fc", "out")]
    assert set(pair.a_model) == {"seed0"} and set(pair.b_model) == {"seed1"}
    renamed = compare_models(a, b, images, layers={"first": "conv1", "last": "out"})
    assert list(dict.fromkeys(renamed.a_layer)) == ["first", "last"]
    per_model = compare_models(a, b, images, layers={"a": ["conv2"], "b": {"top": "fc"}})
    assert list(zip(per_model.a_layer, per_model.b_layer)) == [("conv2", "top")]
    default = compare_models(a, b, images)  # leaf modules with parameters: not the ReLUs or the dropout
    assert list(dict.fromkeys(default.a_layer)) == LAYERS and len(default) == 16


def test_a_model_with_itself_scores_one_on_the_diagonal(models, images):
    table = compare_models(models[0], models[0], images, layers=LAYERS, layer_bytes=4 * 8192 * 50)
    same = table[table.a_layer == table.b_layer]
    np.testing.assert_allclose(same["score"], 1.0, atol=1e-6)


def test_shuffled_loader_is_refused_when_a_layer_is_streamed(models, images):
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images), batch_size=32, shuffle=True)
    with pytest.raises(ValueError, match="same examples in the same order"):
        compare_models(*models, loader, layers=LAYERS, layer_bytes=4 * 8192 * 50)
    compare_models(*models, loader, layers=LAYERS)  # held whole: one pass, any order is fine


def test_one_pass_iterator_works_unless_a_second_pass_is_needed(models, images):
    def batches():
        return (images[i:i + 32] for i in range(0, N, 32))

    assert len(compare_models(*models, batches(), layers=LAYERS)) == 16
    with pytest.raises(TypeError, match="one-pass iterator"):
        compare_models(*models, batches(), layers=LAYERS, layer_bytes=4 * 8192 * 50)


def test_errors_name_the_input(models, images):
    a, b = models
    with pytest.raises(TypeError, match="model_b must be a torch.nn.Module"):
        compare_models(a, "b", images)
    with pytest.raises(ValueError, match=r"model_a \(SmallCNN\) has no module named \['conv9'\]"):
        compare_models(a, b, images, layers=["conv9"])
    with pytest.raises(ValueError, match="estimator must be one of"):
        compare_models(a, b, images, estimator="sampled")
    with pytest.raises(TypeError, match="wrap it: torch.utils.data.DataLoader"):
        compare_models(a, b, torch.utils.data.TensorDataset(images))
    with pytest.raises(ValueError, match="batch_size applies to a tensor"):
        compare_models(a, b, [images], batch_size=8)
    with pytest.raises(ValueError, match="metrics must be a non-empty list"):
        compare_models(a, b, images, metrics=("cka_typo",))
    with pytest.raises(TypeError, match="batch 0 of data must be a tensor"):
        compare_models(a, b, [{"image": images}])


def test_top_level_export():
    assert vaesim.compare_models is compare_models


# ---------------------------------------------------------------- minibatch estimator


def textbook_minibatch(models, images, batch):
    """Nguyen et al. 2021 in float64: sum over batches of the unbiased HSIC of uncentred linear Grams."""
    sums = {}
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        acts = [{k: v.astype(np.float64) for k, v in recorded(m, chunk, batch).items()} for m in models]
        for la in LAYERS:
            for lb in LAYERS:
                k, l = acts[0][la] @ acts[0][la].T, acts[1][lb] @ acts[1][lb].T
                sums[(la, lb)] = sums.get((la, lb), 0.0) + ref.unbiased_hsic(k, l)
            for side in (0, 1):
                x = acts[side][la]
                sums[(side, la)] = sums.get((side, la), 0.0) + ref.unbiased_hsic(x @ x.T, x @ x.T)
    return np.array([sums[(la, lb)] / np.sqrt(sums[(0, la)] * sums[(1, lb)]) for la in LAYERS for lb in LAYERS])


@pytest.mark.parametrize("batch", [32, 64])
def test_minibatch_equals_the_float64_textbook(models, images, batch):
    assert batch * batch * 8192 < MIXED_MIN_WORK  # float64 products (the float32 route: next test)
    got = compare_models(*models, images, layers=LAYERS, estimator="minibatch", batch_size=batch)
    assert set(got.metric) == {"cka_minibatch"} and set(got.n) == {N}
    np.testing.assert_allclose(got["score"], textbook_minibatch(models, images, batch), rtol=1e-9, atol=1e-9)


def test_minibatch_float32_products_stay_within_1e_6(models, images):
    assert N * N * 8192 >= MIXED_MIN_WORK  # one batch of 128: conv1's Gram is a float32 product
    got = compare_models(*models, images, layers=LAYERS, estimator="minibatch", batch_size=N)
    np.testing.assert_allclose(got["score"], textbook_minibatch(models, images, N), atol=1e-6)


def test_minibatch_depends_on_the_batches_but_a_single_batch_is_the_debiased_cka(models, images):
    whole = compare_models(*models, images, layers=LAYERS, estimator="minibatch", batch_size=N)
    debiased = compare_models(*models, images, layers=LAYERS, metrics=("cka_debiased",))
    np.testing.assert_allclose(whole["score"], debiased["score"], atol=1e-6)


def test_minibatch_refuses_tiny_batches_and_other_metrics(models, images):
    with pytest.raises(ValueError, match="has 2 examples.*more than 3"):
        compare_models(*models, images[:34], layers=LAYERS, estimator="minibatch", batch_size=32)
    with pytest.raises(ValueError, match="linear CKA only"):
        compare_models(*models, images, estimator="minibatch", metrics=("procrustes",))


def offset_net(seed):
    """conv (B, 32, 16, 16) with 500 added to every output (8192 features: float32 products at n = 128), dense 4."""
    torch.manual_seed(seed)
    conv = nn.Conv2d(1, 32, 4, 2, 1)
    with torch.no_grad():
        conv.bias += 500.0
    return nn.Sequential(conv, nn.Flatten(), nn.Linear(8192, 4))


def offset_activations(nets, images):
    with torch.no_grad():
        return [{"0": net[0](images).flatten(1).double().numpy(), "2": net(images).double().numpy()} for net in nets]


def test_minibatch_float32_route_survives_large_offsets(images):
    """A wide layer with a 500 offset: uncentred Grams cancel ~6 of their digits (all of float32's); shifted
    first, the float32 route stays within 1e-6 of the float64 textbook."""
    nets = offset_net(0), offset_net(1)
    got = compare_models(*nets, images, layers=["0", "2"], estimator="minibatch", batch_size=N)
    acts = offset_activations(nets, images)
    # one batch: the unbiased HSIC of the whole set, textbook in float64 on centred features (translation
    # invariant; the uncentred float64 textbook itself loses ~6 digits to the offset)
    expected = [ref.cka_debiased(acts[0][la], acts[1][lb], centre=True) for la in ("0", "2") for lb in ("0", "2")]
    np.testing.assert_allclose(got["score"], expected, atol=1e-6)


def test_exact_streamed_float32_route_survives_large_offsets(images):
    nets = offset_net(0), offset_net(1)
    got = compare_models(*nets, images, layers=["0", "2"], metrics=("cka", "cka_debiased"), batch_size=48,
                         layer_bytes=4 * 8192 * 40)
    acts = offset_activations(nets, images)
    pairs = [(la, lb) for la in ("0", "2") for lb in ("0", "2")]
    np.testing.assert_allclose(got[got.metric == "cka"]["score"],
                               [ref.cka(acts[0][la], acts[1][lb]) for la, lb in pairs], atol=1e-6)
    np.testing.assert_allclose(got[got.metric == "cka_debiased"]["score"],
                               [ref.cka_debiased(acts[0][la], acts[1][lb]) for la, lb in pairs], atol=1e-6)
