"""The runs table of ``vaesim import checkpoints``: which run each folder of checkpoints is.

A CSV file (a header row, then one row per folder) or a YAML file (a list of
mappings, or a mapping ``folder: {...}``) with, per run:

===========  ==============================================================================
folder       the run's folder inside SRC (one folder per run)
objective    a vaesim objective (``beta_vae``, ``annealed_vae``, ``beta_tc_vae``,
             ``dip_vae_i``, ``dip_vae_ii``, ``factor_vae``)
strength     the value of the objective's swept parameter
             (:data:`vaesim.models.names.MAIN_PARAMS`: beta, c_max, lambda_od, gamma)
seed         the run's seed (a whole number)
dataset      a vaesim dataset name (:data:`vaesim.data.registry.DATASETS`)
any other    another parameter of the objective (``lambda_d``, ``gamma`` of
             annealed_vae, ...); an empty CSV cell means "not given"
===========  ==============================================================================

:func:`read_runs_table` checks every row and the folders of SRC against it
and raises one :class:`RunsTableError` listing every problem, one line each,
so nothing is written until the whole table is right. Needs PyYAML only.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["REQUIRED_COLUMNS", "RunRow", "RunsTableError", "read_runs_table"]

REQUIRED_COLUMNS = ("folder", "objective", "strength", "seed", "dataset")


class RunsTableError(ValueError):
    """Every problem of a runs table (``problems``: one line each); ``str()`` lists them all."""

    def __init__(self, table: Path, problems: list[str]):
        self.table, self.problems = table, list(problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(f"runs table {table}: {len(self.problems)} problem(s); nothing was imported:\n{lines}")


@dataclass(frozen=True)
class RunRow:
    """One run of the table: its folder and what it is in vaesim's terms (``params`` holds the strength too)."""

    folder: str
    dataset: str
    objective: str
    param_name: str
    params: dict = field(default_factory=dict)
    seed: int = 0
    where: str = ""

    @property
    def param(self) -> float:
        return float(self.params[self.param_name])


def _raw_rows(path: Path) -> list[tuple[str, dict]]:
    """(where, {column: value}) of every row; RunsTableError when the file cannot be read as a table."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise RunsTableError(path, [f"cannot be read ({error}); expected a CSV or YAML file of runs"]) from None
    if path.suffix.lower() in (".yaml", ".yml"):
        return _yaml_rows(path, text)
    if path.suffix.lower() not in (".csv", ".tsv", ".txt"):
        raise RunsTableError(path, [f"file type {path.suffix or '(none)'!r}; expected .csv or .yaml / .yml"])
    reader = csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    if reader.fieldnames is None:
        raise RunsTableError(path, ["is empty; expected a header row: " + ",".join(REQUIRED_COLUMNS)])
    header = [name.strip() for name in reader.fieldnames]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise RunsTableError(path, [(f"header {','.join(header)} lacks column(s) {', '.join(missing)}; expected "
                                     f"{','.join(REQUIRED_COLUMNS)} (and optionally other objective parameters)")])
    rows = []
    for row in reader:
        values = {(key or "").strip(): (value.strip() if isinstance(value, str) else value)
                  for key, value in row.items()}
        if None in row or "" in values:  # more cells than the header has columns
            values.pop("", None)
            values["__extra__"] = True
        rows.append((f"line {reader.line_num}", {k: v for k, v in values.items() if v not in ("", None)}))
    return rows


def _yaml_rows(path: Path, text: str) -> list[tuple[str, dict]]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RunsTableError(path, [f"not YAML ({' '.join(str(error).split())})"]) from None
    if isinstance(data, dict) and isinstance(data.get("runs"), (list, dict)):
        data = data["runs"]
    if isinstance(data, dict):  # folder: {objective: ..., ...}
        data = [dict(value, folder=key) if isinstance(value, dict) else {"folder": key, "__not_mapping__": value}
                for key, value in data.items()]
    if not isinstance(data, list):
        raise RunsTableError(path, [(f"holds a {type(data).__name__}; expected a list of runs (mappings with "
                                     f"{', '.join(REQUIRED_COLUMNS)}) or a mapping folder -> run")])
    rows = []
    for number, entry in enumerate(data, 1):
        if not isinstance(entry, dict):
            entry = {"__not_mapping__": entry}
        entry = dict(entry)
        entry.update(entry.pop("params", None) or {})  # a nested params: mapping is read like extra columns
        rows.append((f"entry {number}", {str(k): v for k, v in entry.items() if v is not None}))
    return rows


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _seed(value) -> int | None:
    number = _number(value)
    if number is None or number != int(number) or not 0 <= number < 2 ** 63:
        return None
    return int(number)


def _check_row(where: str, raw: dict, datasets, problems: list[str]) -> RunRow | None:
    """The row as a :class:`RunRow`, or None after adding each of its problems to ``problems``."""
    from vaesim.models.names import CHOICE_PARAMS, MAIN_PARAMS, OBJECTIVE_PARAMS

    before = len(problems)
    if "__not_mapping__" in raw:
        problems.append(f"{where}: {raw['__not_mapping__']!r} is not a mapping; expected folder, objective, "
                        "strength, seed, dataset")
        return None
    if raw.pop("__extra__", False):
        problems.append(f"{where}: more cells than the header has columns")
    folder = str(raw.get("folder", "")).strip()
    if not folder:
        problems.append(f"{where}: no folder; expected the name of the run's folder inside SRC")
    objective = str(raw.get("objective", "")).strip()
    if objective not in MAIN_PARAMS:
        problems.append(f"{where} ({folder or '?'}): objective {objective or '(empty)'!r} is unknown; expected one "
                        f"of {', '.join(MAIN_PARAMS)}")
    strength = _number(raw.get("strength"))
    if strength is None:
        problems.append(f"{where} ({folder or '?'}): strength {raw.get('strength', '(empty)')!r} is not a finite "
                        "number; expected the value of the objective's swept parameter (e.g. beta)")
    seed = _seed(raw.get("seed"))
    if seed is None:
        problems.append(f"{where} ({folder or '?'}): seed {raw.get('seed', '(empty)')!r}; expected a whole number "
                        "from 0 to 2^63-1")
    dataset = str(raw.get("dataset", "")).strip()
    if dataset not in datasets:
        problems.append(f"{where} ({folder or '?'}): dataset {dataset or '(empty)'!r} is unknown; expected one of "
                        f"{', '.join(datasets)}")
    params = {}
    if objective in MAIN_PARAMS:
        main = MAIN_PARAMS[objective]
        choices = CHOICE_PARAMS.get(objective, {})
        for key, value in raw.items():
            if key in REQUIRED_COLUMNS:
                continue
            if key == main:
                problems.append(f"{where} ({folder}): column {key!r} is {objective}'s swept parameter; give its "
                                "value as strength")
            elif key not in OBJECTIVE_PARAMS[objective]:
                problems.append(f"{where} ({folder}): {objective} has no parameter {key!r}; its parameters: "
                                f"{', '.join(OBJECTIVE_PARAMS[objective])}")
            elif key in choices:
                if str(value) not in choices[key]:
                    problems.append(f"{where} ({folder}): {key} = {value!r}; expected one of {', '.join(choices[key])}")
                params[key] = str(value)
            elif _number(value) is None:
                problems.append(f"{where} ({folder}): {key} = {value!r}; expected a finite number")
            else:
                params[key] = _number(value)
        params[main] = strength
    if len(problems) > before:
        return None
    return RunRow(folder, dataset, objective, MAIN_PARAMS[objective], params, seed, where)


def read_runs_table(path: str | Path, folders: list[str]) -> list[RunRow]:
    """The rows of the runs table at ``path``, checked against ``folders`` (the run folders found in SRC).

    RunsTableError listing every problem (unknown objective or dataset,
    non-numeric strength or parameter, bad seed, a folder not in SRC or in
    the table twice, a folder of SRC that the table lacks, two folders
    claiming the same dataset, objective, strength and seed).
    """
    from vaesim.data.registry import DATASETS

    path = Path(path)
    problems: list[str] = []
    rows: list[RunRow] = []
    seen: dict[str, str] = {}
    for where, raw in _raw_rows(path):
        row = _check_row(where, dict(raw), DATASETS, problems)
        folder = str(raw.get("folder", "")).strip()
        if folder and folder in seen:
            problems.append(f"{where}: folder {folder!r} is already listed ({seen[folder]}); one row per run")
            continue
        if folder:
            seen[folder] = where
            if folder not in folders:
                problems.append(f"{where}: folder {folder!r} is not in SRC (it holds {len(folders)} run folder(s)"
                                f"{': ' + ', '.join(sorted(folders)[:5]) if folders else ''}"
                                f"{' ...' if len(folders) > 5 else ''})")
        if row is not None:
            rows.append(row)
    for folder in sorted(set(folders) - set(seen)):
        problems.append(f"folder {folder!r} of SRC has no row; add it (folder, objective, strength, seed, dataset) "
                        "or move it out of SRC")
    runs: dict[tuple, str] = {}
    for row in rows:
        key = (row.dataset, row.objective, row.param, row.seed)
        if key in runs:
            problems.append(f"{row.where}: folder {row.folder!r} and {runs[key]!r} are both {row.dataset} "
                            f"{row.objective} {row.param_name}={row.param:g} seed {row.seed}; a study could not "
                            "tell them apart (import them into separate folders)")
        runs.setdefault(key, row.folder)
    if not rows and not problems:
        problems.append("has no rows; expected one row per run folder of SRC")
    if problems:
        raise RunsTableError(path, problems)
    return rows
