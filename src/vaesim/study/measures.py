"""Plug-in similarity measures in a study: importing them, storing their per-layer summaries.

A spec's ``metrics:`` may name any measure registered with
:func:`vaesim.similarity.register_measure`; ``plugins:`` lists the modules
that register them (imported when the spec is read and again in every
worker before a task runs). ``svcca`` and ``pwcca`` need no module.

Where a plug-in module is found: on the Python path, else beside the spec
file (``my_measure.py`` next to ``study.yaml``; the folder is then recorded
in the study directory's ``plugin-dirs.json`` so that workers, ``vaesim study
status`` and reruns find it too). An installed package can instead declare
its measures as entry points, one per measure name::

    [project.entry-points."vaesim.measures"]
    my_measure = "my_package.measures"          # importing it registers my_measure
    other = "my_package.measures:register"      # or a function called to register it

A measure named under ``metrics:`` that nothing has registered is looked up
among these entry points; it then needs no ``plugins:`` line.

The extract and probe stages write the plug-in summaries of each checkpoint
(or of the probe factors) next to the built-in summary file, as
``<summary>.plugins.npz`` with a checksum sidecar: one array per stored
field, no pickle, one JSON metadata entry. A summary must be a numpy array
or a dict of numpy arrays (or None values).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import json
import logging
import os
import sys
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
#: the entry-point group of installed plug-in measures (entry point name = measure name)
ENTRY_POINT_GROUP = "vaesim.measures"
#: in a study directory: folders outside the Python path where its plug-in modules were found
PLUGIN_DIRS_FILE = "plugin-dirs.json"

logger = logging.getLogger(__name__)
# folders searched for plug-in modules that are not on the Python path (the spec's own folder, while it is read)
_SEARCH_DIRS: contextvars.ContextVar[tuple[Path, ...]] = contextvars.ContextVar("vaesim_plugin_dirs", default=())
# plug-in module -> the folder it was found in by that search (recorded in the study directory)
FOUND_BESIDE: dict[str, str] = {}


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


def spec_search_dirs(spec_file: str | os.PathLike) -> tuple[Path, ...]:
    """Folders searched for a spec's plug-in modules: the spec's own folder, then those recorded beside it."""
    folder = Path(spec_file).resolve().parent
    dirs = [folder]
    record = folder / PLUGIN_DIRS_FILE
    if record.is_file():
        try:
            dirs += [Path(p) for p in json.loads(record.read_text()).values() if isinstance(p, str)]
        except (OSError, ValueError, AttributeError) as error:
            logger.warning("%s is unreadable (%s); plug-in modules are looked for on the Python path only", record,
                           error)
    return tuple(dict.fromkeys(dirs))


@contextlib.contextmanager
def searching(dirs: Iterable[Path]):
    """Inside the block, :func:`import_plugins` also finds modules in ``dirs`` (not on the Python path)."""
    token = _SEARCH_DIRS.set(tuple(dirs))
    try:
        yield
    finally:
        _SEARCH_DIRS.reset(token)


def _beside(module: str, dirs: Iterable[Path]) -> Path | None:
    top = module.split(".")[0]
    for folder in dirs:
        if (folder / f"{top}.py").is_file() or (folder / top / "__init__.py").is_file():
            return folder
    return None


def import_plugins(modules: Iterable[str], where: str = "plugins") -> None:
    """Import each module (each registers its measures); ValueError naming a module that fails.

    A module not on the Python path is looked for in the folders of :func:`searching` (the spec's folder);
    that folder is then added to ``sys.path`` (spawned workers inherit it) and noted in :data:`FOUND_BESIDE`.
    """
    for module in modules:
        try:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as missing:
                folder = _beside(module, _SEARCH_DIRS.get())
                if folder is None or missing.name != module.split(".")[0]:
                    raise
                sys.path.append(str(folder))
                importlib.invalidate_caches()
                importlib.import_module(module)
                FOUND_BESIDE[module] = str(folder)
                logger.info("plug-in module %s imported from %s", module, folder)
        except Exception as error:
            top = module.split(".")[0]
            beside = " or ".join(str(d) for d in _SEARCH_DIRS.get())
            raise ValueError(f"{where + ': ' if where else ''}cannot import plug-in module {module!r} "
                             f"({type(error).__name__}: {error}); expected a module on the Python path"
                             + (f" or a file {top}.py in {beside} (beside the spec)" if beside else "")) from None


def load_entry_point_measures(names: Iterable[str]) -> list[str]:
    """Load the ``vaesim.measures`` entry points named in ``names``; return the names loaded.

    Loading imports the entry point's module (which registers the measure); an entry point that names a
    function (``module:function``) has it called with no arguments. ValueError names an entry point that fails.
    """
    from importlib.metadata import entry_points

    wanted = set(names)
    loaded = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name not in wanted or point.name in loaded:
            continue
        try:
            target = point.load()
            if point.attr and callable(target):
                target()
        except Exception as error:
            raise ValueError(f"entry point {point.name} = {point.value!r} (group {ENTRY_POINT_GROUP}) cannot be "
                             f"loaded ({type(error).__name__}: {error}); reinstall the package that declares it") \
                from None
        loaded.append(point.name)
    return loaded


def record_plugin_dirs(study_dir: str | os.PathLike, modules: Iterable[str]) -> None:
    """Write ``study_dir/plugin-dirs.json``: where the study's plug-in modules were found beside its spec."""
    from vaesim.utils import atomic_write_json

    found = {m: FOUND_BESIDE[m] for m in modules if m in FOUND_BESIDE}
    path = Path(study_dir) / PLUGIN_DIRS_FILE
    if found:
        atomic_write_json(path, found)


def architecture_modules(spec) -> list[str]:
    """The module of the spec's plug-in architecture (``training.architecture: module:factory``), if any."""
    architecture = str(getattr(getattr(spec, "training", None), "architecture", "") or "")
    return [architecture.partition(":")[0]] if ":" in architecture else []


def import_study_plugins(root: str | os.PathLike) -> None:
    """Import the ``plugins:`` modules recorded in ``root/spec.yaml``, its plug-in architecture's module and the
    entry points of its other measures (nothing when absent)."""
    spec_file = Path(root) / "spec.yaml"
    if not spec_file.is_file():
        return
    data = yaml.safe_load(spec_file.read_text()) or {}
    architecture = str((data.get("training") or {}).get("architecture") or "")
    modules = [*(data.get("plugins") or []), *([architecture.partition(":")[0]] if ":" in architecture else [])]
    if modules:
        with searching(spec_search_dirs(spec_file)):
            import_plugins(modules, where=f"{spec_file}: plugins")
    from vaesim.similarity.registry import measure_names

    unknown = [m for m in data.get("metrics") or [] if isinstance(m, str) and m not in measure_names()]
    if unknown:
        load_entry_point_measures(unknown)


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
