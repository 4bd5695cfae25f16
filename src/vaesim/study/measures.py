"""Plug-in similarity measures in a study: importing them, storing their per-layer summaries.

A spec's ``metrics:`` may name any measure registered with
:func:`vaesim.similarity.register_measure`; ``plugins:`` lists the modules
that register them (imported when the spec is read and again in every
worker before a task runs). ``svcca`` and ``pwcca`` need no module.

The extract and probe stages write the plug-in summaries of each checkpoint
(or of the probe factors) next to the built-in summary file, as
``<summary>.plugins.npz`` with a checksum sidecar: one array per stored
field, no pickle, one JSON metadata entry. A summary must be a numpy array
or a dict of numpy arrays (or None values).
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import yaml

from vaesim.utils import atomic_path

__all__ = [
    "builtin_metrics",
    "import_plugins",
    "import_study_plugins",
    "load_plugin_summaries",
    "plugin_metrics",
    "plugin_path",
    "save_plugin_summaries",
]

FORMAT = "vaesim-plugin-summaries"


def plugin_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    """The names in ``metrics`` that are not built into the engine."""
    from vaesim.similarity.registry import BUILTIN

    return tuple(m for m in metrics if m not in BUILTIN)


def builtin_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    """The built-in names in ``metrics``; ``("cka",)`` when there are none (the stored summary needs one)."""
    from vaesim.similarity.registry import BUILTIN

    chosen = tuple(m for m in metrics if m in BUILTIN)
    return chosen or ("cka",)


def plugin_path(summary_path: str) -> str:
    """Where the plug-in summaries that go with ``summary_path`` (a ``.npz``) live."""
    return summary_path.removesuffix(".npz") + ".plugins.npz"


def import_plugins(modules: Iterable[str], where: str = "plugins") -> None:
    """Import each module (each registers its measures); ValueError naming a module that fails."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:
            raise ValueError(f"{where}: cannot import plug-in module {module!r} ({type(error).__name__}: {error}); "
                             "it must be importable on the Python path of every worker") from None


def import_study_plugins(root: str | os.PathLike) -> None:
    """Import the ``plugins:`` modules recorded in ``root/spec.yaml`` (nothing when absent)."""
    spec_file = Path(root) / "spec.yaml"
    if not spec_file.is_file():
        return
    data = yaml.safe_load(spec_file.read_text()) or {}
    modules = data.get("plugins") or []
    if modules:
        import_plugins(modules, where=f"{spec_file}: plugins")


def _fields(value: Any, where: str) -> dict[str, np.ndarray | None] | np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if item is not None and not isinstance(item, np.ndarray):
                raise TypeError(f"{where}: field {key!r} is {type(item).__name__}; a stored summary holds numpy arrays")
            out[str(key)] = item
        return out
    raise TypeError(f"{where}: the summary is {type(value).__name__}; to be stored by a study a plug-in summary "
                    "must be a numpy array or a dict of numpy arrays")


def save_plugin_summaries(path: str | os.PathLike, summaries: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write ``{layer: {measure: summary}}`` atomically; a summary object shared by measures is stored once."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"format": FORMAT, "version": 1, "layers": []}
    for li, (layer, by_measure) in enumerate(summaries.items()):
        slots: dict[int, str] = {}
        entry = {"layer": str(layer), "measures": {}}
        for measure, value in by_measure.items():
            if id(value) in slots:
                entry["measures"][measure] = entry["measures"][slots[id(value)]]
                continue
            prefix = f"{li}.{measure}"
            fields = _fields(value, f"plug-in summary {measure!r} of layer {layer!r}")
            if isinstance(fields, np.ndarray):
                arrays[prefix] = fields
                entry["measures"][measure] = {"kind": "array", "key": prefix}
            else:
                keys = {}
                for name, item in fields.items():
                    if item is not None:
                        arrays[f"{prefix}.{name}"] = item
                    keys[name] = None if item is None else f"{prefix}.{name}"
                entry["measures"][measure] = {"kind": "dict", "keys": keys}
            slots[id(value)] = measure
        meta["layers"].append(entry)
    arrays["__meta__"] = np.array(json.dumps(meta))
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return path


def load_plugin_summaries(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read :func:`save_plugin_summaries` output: ``{layer: {measure: summary}}``."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as archive:
        if "__meta__" not in archive.files:
            raise ValueError(f"{path} is not a vaesim plug-in summary file (no __meta__ entry)")
        meta = json.loads(str(archive["__meta__"]))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        out: dict[str, dict[str, Any]] = {}
        for entry in meta["layers"]:
            layer = {}
            for measure, slot in entry["measures"].items():
                if slot["kind"] == "array":
                    layer[measure] = archive[slot["key"]]
                else:
                    layer[measure] = {k: None if key is None else archive[key] for k, key in slot["keys"].items()}
            out[entry["layer"]] = layer
    return out
