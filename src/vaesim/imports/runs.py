"""Runs that vaesim did not train, written into the runs/ layout every later stage reads.

One writer for every model importer (``vaesim import dlib``, ``vaesim import
checkpoints``). An imported run is a folder
``runs/<run_id>/`` holding

* ``checkpoints/step_{step:08d}.safetensors`` + ``.json``: the model's weights
  under vaesim's names (the keys of ``build_vae(...).state_dict()``) and the
  checkpoint record that :func:`vaesim.training.load_checkpoint` reads
  (``model``: architecture, channels and latent size; ``step``; the SHA-256
  of the weights file and of the record itself, as training writes them);
* ``run.json``: where the run came from (``source``, the original file and
  its SHA-256, the original config) and what it is in vaesim's terms
  (dataset, objective, parameters, seed, training steps);
* ``DONE``, written last.

The folder is built under ``runs/.partial-<run_id>`` and renamed into place
in one step, so a killed import leaves either the whole run or nothing that
a later import or study trusts; partial folders are removed by the next
import. This module needs numpy and safetensors only (no torch).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vaesim.training.checkpoint_files import CHECKPOINT_DIR, META_DIGEST, checkpoint_paths, meta_digest
from vaesim.utils import atomic_write_json, atomic_write_text, sha256_file

__all__ = ["ImportSummary", "ImportedRun", "PARTIAL_PREFIX", "RUN_RECORD", "imported_run_done", "read_run_record",
           "remove_partial_runs", "write_imported_run"]

RUN_RECORD = "run.json"
PARTIAL_PREFIX = ".partial-"
DONE_MARKER = "DONE"


@dataclass(frozen=True)
class ImportedRun:
    """What vaesim knows of a run it did not train.

    ``params``: every parameter of the objective in vaesim's names
    (``{"beta": 4.0}``); ``param_name``: the one a study sweeps.
    ``source``: where it came from (``{"kind": "dlib", "file": ..., "sha256": ..., ...}``).
    """

    run_id: str
    dataset: str
    objective: str
    param_name: str
    params: dict
    seed: int
    steps: int
    architecture: str
    num_channels: int
    latent_dim: int
    source: dict = field(default_factory=dict)

    @property
    def param(self) -> float:
        return float(self.params[self.param_name])


@dataclass
class ImportSummary:
    """What an importer did: run ids imported now, already there (same source), and skipped sources with why."""

    out_dir: Path
    imported: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def write_imported_run(runs_dir: str | Path, run: ImportedRun, checkpoints: dict[int, dict[str, np.ndarray]]) -> Path:
    """Write ``run`` with its checkpoints ``{step: {vaesim weight name: array}}`` into ``runs_dir/<run_id>``.

    Floating arrays are stored as float32; integer and bool arrays keep their dtype.

    Replaces an earlier folder of the same run only once the new one is
    complete. Returns the run folder.
    """
    from safetensors.numpy import save_file

    runs_dir = Path(runs_dir)
    final = runs_dir / run.run_id
    partial = runs_dir / f"{PARTIAL_PREFIX}{run.run_id}"
    shutil.rmtree(partial, ignore_errors=True)
    (partial / CHECKPOINT_DIR).mkdir(parents=True)
    model = {"architecture": run.architecture, "num_channels": run.num_channels, "latent_dim": run.latent_dim}
    for step, weights in sorted(checkpoints.items()):
        tensor_path, json_path = checkpoint_paths(partial, step)
        save_file({name: _stored(value) for name, value in weights.items()}, str(tensor_path))
        record = {"step": int(step), "model": model, "objective": {"name": run.objective, "params": run.params},
                  "imported": {"source": run.source.get("kind", "unknown")}, "sha256": sha256_file(tensor_path)}
        record[META_DIGEST] = meta_digest(record)
        atomic_write_json(json_path, record)
    atomic_write_json(partial / RUN_RECORD, {**asdict(run), "checkpoint_steps": sorted(int(s) for s in checkpoints)})
    atomic_write_text(partial / DONE_MARKER, "imported\n")
    _fsync_dir(partial)
    if final.exists():
        old = runs_dir / f"{PARTIAL_PREFIX}old-{run.run_id}"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
        os.rename(partial, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(partial, final)
    _fsync_dir(runs_dir)
    return final


def _stored(value) -> np.ndarray:
    """A weight as saved: floating values as float32 (vaesim's models), integer and bool buffers (BatchNorm's
    ``num_batches_tracked``) in their own dtype."""
    array = np.asarray(value)  # np.asarray, not np.ascontiguousarray: that would make a 0-d buffer 1-d
    return np.asarray(array, dtype=array.dtype if array.dtype.kind in "biu" else np.float32, order="C")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_run_record(run_dir: str | Path) -> dict:
    """The ``run.json`` of an imported run; ValueError naming the file when it is not one."""
    path = Path(run_dir) / RUN_RECORD
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file; {Path(run_dir)} is not an imported run") from None
    except ValueError as error:
        raise ValueError(f"{path}: not JSON ({error}); import the run again") from None
    if not isinstance(record, dict) or "run_id" not in record:
        raise ValueError(f"{path}: expected an imported run's record (a JSON object with run_id); import it again")
    return record


def imported_run_done(run_dir: str | Path, source_sha256: str | None = None, *, check: bool = False) -> bool:
    """True when ``run_dir`` holds a finished import (of the source with ``source_sha256`` when given).

    ``check``: also hash every checkpoint against the SHA-256 recorded when it was written (a file damaged
    since, e.g. through a study's hard link to it, makes the run count as not imported).
    """
    from vaesim.training.checkpoint_files import checkpoint_damage

    run_dir = Path(run_dir)
    if not (run_dir / DONE_MARKER).is_file():
        return False
    try:
        record = read_run_record(run_dir)
    except ValueError:
        return False
    if source_sha256 is not None and record.get("source", {}).get("sha256") != source_sha256:
        return False
    if check:
        try:
            return all(checkpoint_damage(run_dir, int(step)) is None for step in record.get("checkpoint_steps", []))
        except (OSError, ValueError, TypeError):
            return False
    return True


def remove_partial_runs(runs_dir: str | Path) -> int:
    """Delete the half-written run folders a killed import left; return how many."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return 0
    partial = [path for path in runs_dir.iterdir() if path.name.startswith(PARTIAL_PREFIX)]
    for path in partial:
        shutil.rmtree(path, ignore_errors=True)
    return len(partial)
