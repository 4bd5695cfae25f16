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


def _architecture_lists() -> tuple[tuple[str, ...], ...]:
    import vaesim.models as models
    from vaesim.models.plugin_table import registered_tables

    lists = (models.LAYER_NAMES, getattr(models, "FC_LAYER_NAMES", ()),
             *(table.layer_names() for table in registered_tables()))
    return tuple(tuple(names) for names in lists if names)


def order_layers(layers: Iterable[str]) -> list[str]:
    """Sort layer names input to output (distinct names, each once).

    The order is that of the architecture's layer list that covers the most
    of the names (``vaesim.models.LAYER_NAMES``, the fully-connected
    variant's list, or a plug-in architecture's registered table); names outside it follow by group (input, encoder,
    decoder), and names of no model layer (e.g. ``factors``) go last,
    alphabetically.
    """
    unique = set(layers)
    reference = max(_architecture_lists(), key=lambda names: len(unique & set(names)))
    position = {name: index for index, name in enumerate(reference)}
    return sorted(unique, key=lambda name: (_GROUP_RANK[layer_group(name)], position.get(name, len(position)), name))


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
