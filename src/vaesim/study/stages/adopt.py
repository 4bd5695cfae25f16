"""The ``train`` stage of a study over imported runs (spec ``imported: DIR``): adopt, not train.

For each run of the grid, the imported run in ``DIR/runs/`` with the same
dataset, objective, swept value and seed (and the same architecture and
latent size) is checked (each checkpoint's JSON and SHA-256, as written by
:mod:`vaesim.imports.runs`) and its checkpoints at the study's recorded steps
are linked into ``runs/<run_id>/checkpoints/`` (hard links where the file
system allows, else copies: an atomic write elsewhere never changes the
import). Step 0, the untrained baseline every verdict is read against, is
the imported run's own step-0 checkpoint when it has one (its researcher's
initial weights, e.g. from ``vaesim import checkpoints``), linked like the
others; otherwise vaesim's own initialisation at the run's seed
(``torch.manual_seed(seed)``, then :func:`vaesim.models.build_vae` with the
spec's ``init``: exactly what training would start from), saved as a
checkpoint that says so. The run's ``config.json`` is its config,
``metrics.jsonl`` is empty (no training log was imported) and
``imported.json`` records where each file came from and which step 0 was
used (``initial``: ``imported`` or ``vaesim``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from functools import lru_cache
from pathlib import Path

from vaesim.study import plan as layout
from vaesim.study.plan import TrainTask
from vaesim.utils import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["adopt_run", "find_imported_run", "imported_config_bytes"]

logger = logging.getLogger(__name__)

IMPORTED_RECORD = "imported.json"


def imported_config_bytes(task: TrainTask) -> bytes:
    """``runs/<run_id>/config.json`` of an adopted run: its config (the run id's hash input), canonical JSON."""
    return (json.dumps(task.run.config, indent=2, sort_keys=True, allow_nan=True) + "\n").encode()


@lru_cache(maxsize=4)
def _catalogue(runs_dir: str, stamp: float) -> tuple[tuple[str, dict], ...]:
    """(folder name, run.json) of every finished imported run in ``runs_dir`` (cached while it is unchanged)."""
    from vaesim.imports.runs import imported_run_done, read_run_record

    found = []
    for folder in sorted(Path(runs_dir).iterdir()):
        if folder.is_dir() and not folder.name.startswith(".") and imported_run_done(folder):
            found.append((folder.name, read_run_record(folder)))
    return tuple(found)


def _key(dataset, objective, param_name, value, seed) -> tuple:
    return (dataset, objective, param_name, float(value), int(seed))


@lru_cache(maxsize=4)
def _index(runs_dir: str, stamp: float) -> dict[tuple, list[tuple[str, dict]]]:
    """The catalogue by (dataset, objective, swept parameter, value, seed)."""
    index: dict[tuple, list[tuple[str, dict]]] = {}
    for name, record in _catalogue(runs_dir, stamp):
        try:
            key = _key(record["dataset"], record["objective"], record["param_name"],
                       record["params"][record["param_name"]], record["seed"])
        except (KeyError, TypeError, ValueError):
            continue
        index.setdefault(key, []).append((name, record))
    return index


def _runs_dir(imported: str | Path) -> Path:
    runs_dir = Path(imported) / "runs"
    if not runs_dir.is_dir():
        raise ValueError(f"imported: {imported} has no runs/ folder; expected the output of `vaesim import dlib SRC "
                         f"--out {imported}` (or another model import)")
    return runs_dir


def imported_problems(spec) -> list[str]:
    """What keeps a study over imported runs from starting (checked before any work): the folder, and the
    grid's runs that were not imported (counted, the first few named)."""
    from vaesim.study.plan import plan_runs

    try:
        runs_dir = _runs_dir(spec.imported)
    except ValueError as error:
        return [str(error)]
    index = _index(str(runs_dir), runs_dir.stat().st_mtime)
    missing = [run for run in plan_runs(spec)
               if _key(run.dataset, run.objective, run.param_name, run.param, run.seed) not in index]
    if not missing:
        return []
    named = "; ".join(f"{r.dataset} {r.objective} {r.param_name}={r.param:g} seed {r.seed}" for r in missing[:3])
    return [f"imported: {len(missing)} of the spec's runs are not in {runs_dir} ({named}{' ...' if len(missing) > 3 else ''}"
            f"; it holds {sum(len(v) for v in index.values())} run(s)): import them, or narrow the spec's objectives, "
            "values and seeds to what was imported"]


def find_imported_run(imported: str | Path, run) -> Path:
    """The folder of the imported run that ``run`` (a :class:`vaesim.study.plan.RunPlan`) selects.

    ValueError naming the import folder and what was looked for when none or
    several match, or when the match has another architecture or latent size.
    """
    runs_dir = _runs_dir(imported)
    index = _index(str(runs_dir), runs_dir.stat().st_mtime)
    matches = index.get(_key(run.dataset, run.objective, run.param_name, run.param, run.seed), [])
    label = f"dataset {run.dataset}, {run.objective} {run.param_name}={run.param:g}, seed {run.seed}"
    if not matches:
        have = sorted({f"{k[0]} {k[1]} {k[2]}={k[3]:g}" for k in index})
        raise ValueError(f"imported: no run in {runs_dir} has {label}; it holds {sum(len(v) for v in index.values())} "
                         f"run(s): {', '.join(have[:8]) or 'none'}{' ...' if len(have) > 8 else ''} (import the "
                         "model, or narrow the spec's objectives, values and seeds to what was imported)")
    if len(matches) > 1:
        raise ValueError(f"imported: {len(matches)} runs in {runs_dir} have {label}: "
                         f"{', '.join(n for n, _r in matches)}; keep one (import each set into its own folder)")
    name, record = matches[0]
    config = run.config
    for key in ("architecture", "latent_dim"):
        if record.get(key) != config.get(key):
            raise ValueError(f"imported run {runs_dir / name} has {key} {record.get(key)!r}; the spec's training."
                             f"{key} is {config.get(key)!r} (set it to what the models were trained with)")
    for key, value in run.fixed.items():
        if key in record.get("params", {}) and record["params"][key] != value:
            raise ValueError(f"imported run {runs_dir / name} has {key}={record['params'][key]!r}; the spec fixes "
                             f"{key}={value!r}")
    return runs_dir / name


def _link(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def adopt_run(root: Path, task: TrainTask) -> None:
    """Link the selected imported run's checkpoints into ``runs/<run_id>/`` and write its step-0 baseline."""
    import torch

    from vaesim.imports.runs import read_run_record
    from vaesim.models import build_vae
    from vaesim.training.checkpoint_files import checkpoint_damage, checkpoint_paths, list_checkpoints

    source = find_imported_run(task.imported, task.run)
    record = read_run_record(source)
    run_dir = root / layout.run_dir(task.run_id)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    present = set(list_checkpoints(source))
    learned = [step for step in task.run.steps if step != 0]
    missing = [step for step in learned if step not in present]
    if missing:
        raise ValueError(f"imported run {source} has checkpoints at steps {sorted(present)}; the spec records "
                         f"{learned} (set training.steps and training.checkpoints.steps to imported steps)")
    initial = None
    if 0 in task.run.steps:  # the run's own initial weights when they were imported, else vaesim's at its seed
        initial = "imported" if 0 in present else "vaesim"
    for step in learned + ([0] if initial == "imported" else []):
        damage = checkpoint_damage(source, step)
        if damage is not None:
            raise ValueError(f"imported run {source}: {damage}; import the model again (`vaesim import ... --out "
                             f"{Path(task.imported)}` replaces it)")
        for source_file, target_file in zip(checkpoint_paths(source, step), checkpoint_paths(run_dir, step)):
            _link(source_file, target_file)
    if initial == "vaesim":
        _save_initial(run_dir, task, record, build_vae, torch)
    _published_scores(root, task, source)
    atomic_write_json(run_dir / IMPORTED_RECORD, {"from": str(source), "run": record, "initial": initial})
    atomic_write_text(run_dir / "metrics.jsonl", "")
    atomic_write_bytes(run_dir / "config.json", imported_config_bytes(task))
    atomic_write_text(run_dir / layout.DONE_MARKER, "adopted\n")


def published_path(run_id: str) -> str:
    """The published disentanglement scores of an adopted run, beside the ones vaesim computes."""
    return f"disentanglement/{run_id}/published.parquet"


def published_metric(row: dict) -> str:
    """``<source>:<representation>:<metric folder>:<score>``, e.g. ``dlib:mean:mig:discrete_mig``."""
    return f"{row['source']}:{row['representation']}:{row['metric_dir']}:{row['metric']}"


def _published_scores(root: Path, task: TrainTask, source: Path) -> None:
    """The import's published scores (e.g. dlib's) as rows of the disentanglement table, metric
    :func:`published_metric` (``dlib:mean:mig:discrete_mig``), so they sit beside vaesim's own."""
    import pandas as pd

    from vaesim.study.stages.files import write_table

    path = source / "published_scores.json"
    if not path.is_file():
        return
    rows = json.loads(path.read_text())
    run = task.run
    table = pd.DataFrame([dict(dataset=run.dataset, run=run.run_id, objective=run.objective,
                               param_name=run.param_name, param=float(run.param), seed=int(run.seed),
                               step=int(row["step"]), metric=published_metric(row),
                               value=float(row["value"])) for row in rows])
    if not table.empty:
        write_table(root / published_path(run.run_id), table, checksum=True)


def _save_initial(run_dir: Path, task: TrainTask, record: dict, build_vae, torch) -> None:
    from safetensors.torch import save_file

    from vaesim.training.checkpoint_files import META_DIGEST, checkpoint_paths, meta_digest
    from vaesim.utils import sha256_file

    tensor_path, json_path = checkpoint_paths(run_dir, 0)
    config = task.run.config
    torch.manual_seed(int(task.run.seed))
    model = build_vae(config["architecture"], int(record["num_channels"]), int(config["latent_dim"]),
                      init=config.get("init", "glorot"))
    with atomic_path(tensor_path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
        digest = sha256_file(tmp)
    meta = {"step": 0, "model": model.config(), "sha256": digest,
            "initial": f"vaesim's initialisation ({config.get('init', 'glorot')}) at seed {task.run.seed}, not "
                       "the imported run's own (the import has no step-0 checkpoint): the untrained baseline"}
    meta[META_DIGEST] = meta_digest(meta)
    atomic_write_json(json_path, meta)
