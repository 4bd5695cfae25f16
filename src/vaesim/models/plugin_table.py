"""What a study knows of an architecture plug-in without importing it: its layer table (torch-free).

A plug-in architecture is named ``module:factory`` (or by an entry point of
group ``vaesim.architectures``). Its module declares ``vaesim_layers``: (module
name, role) pairs in network order, roles ``encoder``, ``mean``, ``logvar``,
``decoder``, ``output``. vaesim turns them into *study layer names*, the names
every table, finding and figure uses, so that a role is readable from the name
alone (the findings classify layers by it):

==========  ====================================================================
role        study name
==========  ====================================================================
(added)     ``input``: the images the model saw
encoder     ``encoder.<module>`` (the module name as is when it already starts
            with ``encoder.``)
mean        ``encoder.mean``
logvar      ``encoder.logvar``
(added)     ``encoder.variance`` (``exp(logvar)``) and ``encoder.sample``
            (``mean + exp(logvar / 2) * eps``)
decoder     ``decoder.<module>`` (as is when it starts with ``decoder.``)
output      ``decoder.output``: the decoder's logits
==========  ====================================================================

So vaesim's own conv VAE, declared as a plug-in with its module names, has
exactly the built-in layer names. The table (:class:`ArchitectureTable`) is
written as ``architecture.json`` in a study directory, so that commands that
only read a study (status, verify, query, report) know the layers and their
order without importing the plug-in's code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ARCHITECTURE_FILE", "ENTRY_POINT_GROUP", "ROLES", "ArchitectureTable", "architecture_table",
           "is_plugin", "read_table", "register_table", "registered_tables", "study_layer_name"]

#: entry-point group of installed architecture plug-ins (entry point name = architecture name)
ENTRY_POINT_GROUP = "vaesim.architectures"
#: roles a plug-in declares for its layers, in network order
ROLES = ("encoder", "mean", "logvar", "decoder", "output")
#: in a study directory: the plug-in architecture's layer table
ARCHITECTURE_FILE = "architecture.json"
FORMAT = "vaesim-architecture"

_TABLES: dict[str, "ArchitectureTable"] = {}


def is_plugin(architecture: str) -> bool:
    """True unless ``architecture`` is one of vaesim's own (``conv``, ``fc``)."""
    from vaesim.models.names import ARCHITECTURES

    return architecture not in ARCHITECTURES


def study_layer_name(module: str, role: str) -> str:
    """The study's name of a plug-in layer ``module`` with ``role`` (table in the module docstring)."""
    if role == "mean":
        return "encoder.mean"
    if role == "logvar":
        return "encoder.logvar"
    if role == "output":
        return "decoder.output"
    if role == "encoder":
        return module if module.startswith("encoder.") else f"encoder.{module}"
    if role == "decoder":
        return module if module.startswith("decoder.") else f"decoder.{module}"
    raise ValueError(f"layer {module!r}: role {role!r} is unknown; expected one of {', '.join(ROLES)}")


@dataclass(frozen=True)
class ArchitectureTable:
    """A plug-in architecture's layers: ``layers`` = (study name, module name or ``""`` when vaesim adds it,
    role) in network order, ``input`` first. ``source_sha256``: SHA-256 of the plug-in module's source file
    (part of every run's id: changed code makes new runs)."""

    name: str
    source_sha256: str
    source_file: str
    layers: tuple[tuple[str, str, str], ...]

    def layer_names(self) -> list[str]:
        """Study layer names, input to output."""
        return [study for study, _module, _role in self.layers]

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": 1, "name": self.name, "source_sha256": self.source_sha256,
                "source_file": self.source_file, "layers": [list(layer) for layer in self.layers]}

    @classmethod
    def from_json(cls, data: dict, where: str) -> "ArchitectureTable":
        try:
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r}")
            layers = tuple((str(s), str(m), str(r)) for s, m, r in data["layers"])
            return cls(str(data["name"]), str(data["source_sha256"]), str(data.get("source_file", "")), layers)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"{where}: not a vaesim architecture table ({error}); run `vaesim study run` on the "
                             "spec again to rewrite it") from None


def with_added_layers(name: str, source_sha256: str, source_file: str,
                      declared: list[tuple[str, str]]) -> ArchitectureTable:
    """The table of a plug-in whose ``vaesim_layers`` are ``declared`` (already checked): vaesim's ``input``,
    ``encoder.variance`` and ``encoder.sample`` added after the last encoder-side layer."""
    layers: list[tuple[str, str, str]] = [("input", "", "input")]
    encoder_side = [(study_layer_name(m, r), m, r) for m, r in declared if r in ("encoder", "mean", "logvar")]
    decoder_side = [(study_layer_name(m, r), m, r) for m, r in declared if r in ("decoder", "output")]
    layers += encoder_side
    layers += [("encoder.variance", "", "variance"), ("encoder.sample", "", "sample")]
    layers += decoder_side
    return ArchitectureTable(name, source_sha256, source_file, tuple(layers))


def register_table(table: ArchitectureTable) -> None:
    """Make ``table`` the known layer table of its architecture in this process."""
    _TABLES[table.name] = table


def registered_tables() -> tuple[ArchitectureTable, ...]:
    return tuple(_TABLES.values())


def known_table(name: str) -> ArchitectureTable | None:
    """The registered table of plug-in ``name``, or None."""
    return _TABLES.get(name)


def architecture_table(name: str) -> ArchitectureTable:
    """The registered table of plug-in ``name``; ValueError saying how to get one."""
    try:
        return _TABLES[name]
    except KeyError:
        raise ValueError(f"architecture plug-in {name!r}: its layers are not known in this process; a command that "
                         f"computes (vaesim study plan / run) imports and checks it, and a study directory records "
                         f"them in {ARCHITECTURE_FILE}") from None


def read_table(folder: str | Path, name: str) -> ArchitectureTable | None:
    """The table recorded in ``folder/architecture.json`` for architecture ``name`` (registered), or None when
    the folder records none (or another architecture's)."""
    path = Path(folder) / ARCHITECTURE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: unreadable ({error}); run `vaesim study run` on the spec again to rewrite it") \
            from None
    table = ArchitectureTable.from_json(data if isinstance(data, dict) else {}, str(path))
    if table.name != name:
        return None
    register_table(table)
    return table


def register_recorded(study_dir: str | Path) -> ArchitectureTable | None:
    """Register the table a study directory records for the plug-in architecture of its ``spec.yaml`` (read as
    YAML only); None for a built-in architecture or an unreadable record (the readers then order by name)."""
    import yaml

    try:
        data = yaml.safe_load((Path(study_dir) / "spec.yaml").read_text(encoding="utf-8")) or {}
        architecture = str((data.get("training") or {}).get("architecture") or "conv")
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return None
    if not is_plugin(architecture):
        return None
    try:
        return read_table(study_dir, architecture)
    except ValueError:
        return None


def merged_order(base: tuple[str, ...] | list[str]) -> list[str]:
    """``base`` (vaesim's layer order) with every registered plug-in layer inserted after its predecessor in
    its own table: one input-to-output order for every known layer name."""
    order = list(base)
    for table in registered_tables():
        previous = None
        for name in table.layer_names():
            if name not in order:
                order.insert(order.index(previous) + 1 if previous in order else len(order), name)
            previous = name
    return order


def write_table(folder: str | Path, table: ArchitectureTable) -> Path:
    """Write ``folder/architecture.json`` atomically."""
    from vaesim.utils import atomic_write_json

    path = Path(folder) / ARCHITECTURE_FILE
    atomic_write_json(path, table.to_json())
    return path
