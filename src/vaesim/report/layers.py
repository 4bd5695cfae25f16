"""Layer order and layer groups used by findings and figures.

The order of layers (input to output) is ``vaesim.models.LAYER_NAMES``; this
module only classifies names, it keeps no copy of the list.

Groups (used by the paper's claims 1 and 2):

- ``input`` is neither encoder nor decoder: it never changes over training, so
  it is left out of learning dynamics (its similarity with its final state is 1
  at every step).
- encoder layers: every name starting with ``encoder.`` (convolutions, dense,
  mean, log-variance, variance, sampled);
- decoder layers: every name starting with ``decoder.`` (dense, transposed
  convolutions, output logits);
- the "heads" of claim 2: ``encoder.mean``, ``encoder.logvar``,
  ``encoder.variance``; the "trunk": the other encoder layers before them
  (``encoder.conv*``, ``encoder.fc``). ``encoder.sample`` is in neither claim-2
  group: it mixes the heads with noise.
"""

from __future__ import annotations

from collections.abc import Iterable

ENCODER_PREFIX = "encoder."
DECODER_PREFIX = "decoder."
HEAD_LAYERS = ("encoder.mean", "encoder.logvar", "encoder.variance")
SAMPLE_LAYER = "encoder.sample"
MEAN_LAYER = "encoder.mean"
INPUT_LAYER = "input"
FACTORS_LAYER = "factors"


_GROUP_RANK = {"input": 0, "encoder": 1, "decoder": 2, "other": 3}


def canonical_layers() -> tuple[str, ...]:
    """``vaesim.models.LAYER_NAMES``: every layer name of the conv VAE, input to output."""
    from vaesim.models import LAYER_NAMES

    return tuple(LAYER_NAMES)


def _position(name: str) -> int:
    import vaesim.models as models

    for names in (models.LAYER_NAMES, getattr(models, "FC_LAYER_NAMES", ())):
        if name in names:
            return list(names).index(name)
    return len(models.LAYER_NAMES)


def order_layers(layers: Iterable[str]) -> list[str]:
    """Sort layer names input to output (distinct names, each once).

    Input first, then encoder then decoder layers, each in the order of the
    architecture's layer list (``vaesim.models.LAYER_NAMES``, or the
    fully-connected variant's list); unknown names (e.g. ``factors``) go last,
    alphabetically.
    """
    return sorted(set(layers), key=lambda name: (_GROUP_RANK[layer_group(name)], _position(name), name))


def is_encoder(layer: str) -> bool:
    return layer.startswith(ENCODER_PREFIX)


def is_decoder(layer: str) -> bool:
    return layer.startswith(DECODER_PREFIX)


def is_trunk(layer: str) -> bool:
    """Encoder layers other than the mean/variance heads and the sampled layer (claim 2)."""
    return is_encoder(layer) and layer not in HEAD_LAYERS and layer != SAMPLE_LAYER


def layer_group(layer: str) -> str:
    """One of ``"input"``, ``"encoder"``, ``"decoder"``, ``"other"``."""
    if layer == INPUT_LAYER:
        return "input"
    if is_encoder(layer):
        return "encoder"
    if is_decoder(layer):
        return "decoder"
    return "other"
