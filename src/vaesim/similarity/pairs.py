"""Which layer pairs a ``compare`` call scores, and the checks on its ``models`` argument.

Shared by the engine (built-in measures) and the plug-in layer (registered
measures), so that both score the same pairs in the same order and neither
imports the other's internals.
"""

from __future__ import annotations

from itertools import combinations_with_replacement
from typing import Any, Iterable, Mapping

__all__ = ["COLUMNS", "check_models", "layer_pairs_of", "model_label", "resolve_layer_pairs", "resolve_pairs"]

#: columns of the frame :func:`vaesim.similarity.compare` returns, one row per layer pair and metric
COLUMNS = ["a_model", "a_layer", "b_model", "b_layer", "metric", "score", "n", "note"]


def model_label(model: Any, layer: Any) -> str:
    """``models['run@10']['encoder.fc']``: how an error message names one layer of ``models``."""
    return f"models[{model!r}][{layer!r}]"


def check_models(models: Any) -> None:
    """TypeError / ValueError unless ``models`` is a non-empty ``{model key: {layer name: value}}``."""
    if not isinstance(models, Mapping):
        raise TypeError(
            f"compare: models must be a dict {{model key: {{layer name: activations or LayerSummary}}}}, "
            f"got {type(models).__name__}"
        )
    if not models:
        raise ValueError("compare: models is empty; pass at least one model with at least one layer")
    for key, layers in models.items():
        if not isinstance(layers, Mapping):
            raise TypeError(
                f"compare: models[{key!r}] must be a dict {{layer name: activations or LayerSummary}}, "
                f"got {type(layers).__name__}"
            )
        if not layers:
            raise ValueError(f"compare: models[{key!r}] has no layers; give it at least one layer")


def resolve_pairs(models: Mapping, model_pairs: Iterable | None) -> list[tuple[Any, Any]]:
    """The model pairs to compare: ``model_pairs`` checked, or (None) every unordered pair, each model with itself."""
    keys = list(models)
    if model_pairs is None:
        return list(combinations_with_replacement(keys, 2))
    pairs = []
    for pair in model_pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"compare: each entry of model_pairs must be a pair (a_key, b_key), got {pair!r}")
        for key in pair:
            if key not in models:
                raise ValueError(f"compare: model_pairs names model {key!r}, which is not in models (keys: {keys!r})")
        pairs.append((pair[0], pair[1]))
    return pairs


def resolve_layer_pairs(models: Mapping, pairs: list[tuple[Any, Any]],
                        layer_pairs: Mapping | None) -> dict[tuple[Any, Any], list[tuple[Any, Any]]]:
    """The layer pairs scored for each model pair: ``{(a_key, b_key): [(a_layer, b_layer), ...]}``.

    ``layer_pairs`` ``None``: every layer pair (:func:`layer_pairs_of`). Else ``{(a_key, b_key): [(a_layer,
    b_layer), ...]}``: a model pair named there gets exactly those layer pairs, in that order, each once; a model
    pair not named gets every layer pair. A named layer that the model does not have is an error naming it.
    """
    if layer_pairs is not None and not isinstance(layer_pairs, Mapping):
        raise TypeError("compare: layer_pairs must be a dict {(a_key, b_key): [(a_layer, b_layer), ...]} or None, "
                        f"got {type(layer_pairs).__name__}")
    chosen = {}
    unknown = [key for key in (layer_pairs or {}) if key not in set(pairs)]
    if unknown:
        raise ValueError(f"compare: layer_pairs names model pairs {unknown!r} that are not compared "
                         f"(model pairs: {pairs!r})")
    for a, b in pairs:
        if layer_pairs is None or (a, b) not in layer_pairs:
            chosen[(a, b)] = list(layer_pairs_of(models, a, b))
            continue
        listed = []
        for entry in layer_pairs[(a, b)]:
            if not isinstance(entry, (tuple, list)) or len(entry) != 2:
                raise TypeError(f"compare: layer_pairs[{(a, b)!r}] must list pairs (a_layer, b_layer), "
                                f"got {entry!r}")
            for key, layer in ((a, entry[0]), (b, entry[1])):
                if layer not in models[key]:
                    raise ValueError(f"compare: layer_pairs[{(a, b)!r}] names {model_label(key, layer)}, which "
                                     f"does not exist (layers: {list(models[key])!r})")
            listed.append((entry[0], entry[1]))
        chosen[(a, b)] = list(dict.fromkeys(listed))
    return chosen


def layer_pairs_of(models: Mapping, a: Any, b: Any) -> Iterable[tuple[Any, Any]]:
    """Layer pairs of models ``a`` and ``b``: a model with itself gives each unordered pair once (a layer with
    itself included), two models every ``(a_layer, b_layer)``; in layer order."""
    layers_a = list(models[a])
    if a == b:
        for i, la in enumerate(layers_a):
            for lb in layers_a[i:]:
                yield la, lb
    else:
        for la in layers_a:
            for lb in models[b]:
                yield la, lb
