"""Layer order and groups come from vaesim.models, input to output."""

import random

from vaesim.models import DECODER_LAYERS, ENCODER_LAYERS, FC_LAYER_NAMES, LAYER_NAMES
from vaesim.report import layers as L


def test_shuffled_layers_come_back_in_model_order():
    for names in (LAYER_NAMES, FC_LAYER_NAMES):
        shuffled = list(names) + ["factors"]
        random.Random(0).shuffle(shuffled)
        assert L.order_layers(shuffled) == [*names, "factors"]


def test_groups_match_the_models_subsets():
    assert [n for n in LAYER_NAMES if L.layer_group(n) == "encoder"] == list(ENCODER_LAYERS)
    assert [n for n in LAYER_NAMES if L.layer_group(n) == "decoder"] == list(DECODER_LAYERS)
    assert L.layer_group("input") == "input" and L.layer_group("factors") == "other"
    trunk = [n for n in LAYER_NAMES if L.is_trunk(n)]
    assert trunk == ["encoder.conv1", "encoder.conv2", "encoder.conv3", "encoder.conv4", "encoder.fc"]
