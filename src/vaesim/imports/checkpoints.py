"""Checkpoints of runs trained elsewhere (plain PyTorch, Lightning, safetensors) as vaesim runs.

``vaesim import checkpoints SRC --runs TABLE --architecture NAME --out DIR``.
SRC holds one folder per run; each folder (searched recursively, hidden
files and folders left out) holds that run's checkpoints at several steps:

* ``*.pt``, ``*.pth``, ``*.bin``: a ``torch.save``'d state dict, or a dict
  holding one under ``state_dict`` (or ``model_state_dict``);
* ``*.ckpt``: a Lightning checkpoint (``state_dict``, ``global_step``,
  ``epoch``, optimiser states, ...);
* ``*.safetensors``: a state dict.

**Safety.** Pickled files are read only with ``torch.load(path,
map_location="cpu", weights_only=True)``, torch's allow-list unpickler:
tensors, numbers, strings, lists, dicts. A file it refuses (a pickle that
would call a function, or a class outside the allow-list, such as
a foreign class) is refused with one line naming it and torch's reason;
Lightning is never imported. One thing is added to torch's allow-list:
Lightning's ``AttributeDict`` (what ``save_hyperparameters()`` writes into
every checkpoint's ``hyper_parameters``), under its three module paths,
read as a plain ``dict`` subclass of vaesim's that holds data and runs no
code (:data:`LIGHTNING_DATA_CLASSES`). The fix for a refused file is to
re-save, where the file is trusted, only its ``state_dict`` (named by its
step) or a safetensors file.

**Steps.** A checkpoint's step is its integer ``global_step`` when the file
has one (Lightning); otherwise it comes from the file name: ``step`` followed
by an optional ``=``, ``_`` or ``-`` and digits (``step_1000.pt``,
``step=1000.ckpt``, ``epoch=3-step=1000.ckpt``, ``global_step-1000.bin``), or
a name that is only digits (``1000.pt``). A name that gives no step, or two
different ones, is refused. Two files of a run with one step are refused
unless their weights are identical (Lightning's ``last.ckpt`` beside the
checkpoint it copies): then the first by name is imported. A step-0
checkpoint is the run's own initialisation, which a study then uses as its
untrained baseline instead of vaesim's.

**Weights.** ``--strip-prefix P`` keeps only the keys starting with ``P``
(the model inside a LightningModule: ``model.``, ``vae.``; keys outside it,
such as a discriminator's, are left out and counted) and removes ``P``.
The keys must then be exactly those of ``build_vae(architecture, channels,
latent_dim).state_dict()``, with the same shapes: a missing, unexpected or
wrongly shaped key refuses the run with one line naming the key and both
shapes. Every entry must be a tensor (a number or string among the weights
refuses the file). Floating tensors are stored in the model's dtype
(float32); integer and bool buffers (BatchNorm's ``num_batches_tracked``)
keep theirs.

One imported run per folder, with all its checkpoints, is written by
:func:`vaesim.imports.runs.write_imported_run`; ``DIR/import.json`` lists every
folder as imported or skipped with the reason. A rerun keeps each run whose
files (SHA-256) and settings are unchanged and imports the others again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vaesim.imports.checkpoint_table import RunRow, read_runs_table
from vaesim.imports.runs import (ImportedRun, ImportSummary, imported_run_done, read_run_record, remove_partial_runs,
                                 write_imported_run)
from vaesim.utils import atomic_write_json, sha256_file

__all__ = ["CheckpointImportError", "CheckpointImportSummary", "SUFFIXES", "checkpoint_files", "import_checkpoints",
           "model_weights", "read_checkpoint_file", "step_from_name"]

log = logging.getLogger(__name__)

SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
KIND = "checkpoints"
RUNS_DIR = "runs"
MANIFEST = "import.json"
MAX_STEP = 10 ** 8 - 1  # checkpoints/step_{step:08d}: eight digits
_STEP = re.compile(r"(?:^|[^a-z])step[=_-]?(\d+)(?!\d)", re.IGNORECASE)
_FIX = ("re-save only its weights where you trust the file: torch.save(checkpoint['state_dict'], "
        "'step_<N>.pt'), or write them with safetensors")


class CheckpointImportError(ValueError):
    """Input that cannot be imported (the message names the file or option, what was expected and what arrived)."""


# ---- one file ----------------------------------------------------------------------------------------------


def step_from_name(name: str) -> int | None:
    """The step a checkpoint's file name gives (rules in the module docstring); None when it gives none or two."""
    stem = name
    for suffix in SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    if stem.isdigit():
        return int(stem)
    found = {int(match.group(1)) for match in _STEP.finditer(stem)}
    return found.pop() if len(found) == 1 else None


def _refused_global(error: BaseException) -> str | None:
    """Why torch's weights-only unpickler refused a class or function the pickle names; None for other errors."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    match = re.search(r"GLOBAL ([\w.]+)", text)
    if not match:
        return None
    if "blocked" in text[match.end():match.end() + 80]:
        return f"it would call {match.group(1)}, which torch's weights-only unpickler blocks"
    return (f"it names {match.group(1)}, which is not on torch's weights-only allow-list (unpickling would call "
            "it)")


def _torch_reason(error: BaseException) -> str:
    """torch's reason for not reading a file, in one short clause."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    match = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", text, re.DOTALL)
    if match:
        text = match.group(1)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("Check the doc")]
    return " ".join((lines[0] if lines else type(error).__name__).split())[:200]


@dataclass
class CheckpointFile:
    """What one file holds: its state dict (tensors and whatever else was in it) and the metadata kept."""

    state: dict
    global_step: int | None = None
    info: dict = field(default_factory=dict)


class LightningAttributeDict:
    """Stands in for Lightning's ``AttributeDict`` (a ``dict`` subclass) when a checkpoint is read: unpickling
    it makes a plain ``dict`` that receives its items; none of Lightning's code is imported or run."""

    def __new__(cls, *args) -> dict:  # noqa: D102 - the pickle's NEWOBJ: a plain dict, filled by its SETITEMS
        return {}


#: classes a checkpoint may name beyond torch's own allow-list: (stand-in, the dotted name in the pickle)
LIGHTNING_DATA_CLASSES = tuple((LightningAttributeDict, name) for name in (
    "lightning.fabric.utilities.data.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "pytorch_lightning.utilities.parsing.AttributeDict",
))


def read_checkpoint_file(path: str | Path, where: str | None = None) -> CheckpointFile:
    """Read a checkpoint file safely (module docstring); CheckpointImportError naming it otherwise."""
    path = Path(path)
    where = where or str(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return CheckpointFile(load_file(str(path)), info={"format": "safetensors"})
        except Exception as error:  # SafetensorError, OSError: a damaged or foreign file
            raise CheckpointImportError(f"{where}: not a readable safetensors file ({' '.join(str(error).split())})"
                                        ) from None
    import torch

    try:
        with torch.serialization.safe_globals(list(LIGHTNING_DATA_CLASSES)):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError; RuntimeError, KeyError, EOFError: not a torch.save file
        refused = _refused_global(error) if isinstance(error, pickle.UnpicklingError) else None
        if refused:
            raise CheckpointImportError(f"{where}: refused, not unpickled: {refused}; vaesim reads checkpoints "
                                        f"only with torch.load(weights_only=True) ({_FIX})") from None
        raise CheckpointImportError(f"{where}: torch.load(weights_only=True) cannot read it ({type(error).__name__}: "
                                    f"{_torch_reason(error)}); expected a file written by torch.save") from None
    return _unpack(loaded, where)


def _unpack(loaded, where: str) -> CheckpointFile:
    """The state dict (and Lightning's step and metadata) inside what torch.load returned."""
    if not isinstance(loaded, dict):
        raise CheckpointImportError(f"{where}: holds a {type(loaded).__name__}; expected a state dict (name -> "
                                    "tensor) or a dict holding one under 'state_dict'")
    for key in ("state_dict", "model_state_dict"):
        if isinstance(loaded.get(key), dict):
            info = {"format": "lightning" if "pytorch-lightning_version" in loaded else f"dict['{key}']"}
            for name in ("epoch", "pytorch-lightning_version"):
                if isinstance(loaded.get(name), (int, str)) and not isinstance(loaded.get(name), bool):
                    info[name] = loaded[name]
            hyper = loaded.get("hyper_parameters")
            if isinstance(hyper, dict):
                info["hyper_parameters"] = {str(k): v for k, v in hyper.items()
                                            if isinstance(v, (str, int, float, bool)) or v is None}
            return CheckpointFile(loaded[key], _global_step(loaded, where), info)
    import torch

    if all(isinstance(value, torch.Tensor) for value in loaded.values()):
        return CheckpointFile(loaded, info={"format": "state_dict"})
    other = [f"{k!r} ({type(v).__name__})" for k, v in loaded.items() if not isinstance(v, torch.Tensor)]
    raise CheckpointImportError(f"{where}: holds a dict with non-tensor entries {', '.join(other[:4])}"
                                f"{' ...' if len(other) > 4 else ''} and no 'state_dict'; expected a state dict "
                                "(name -> tensor) or a dict holding one under 'state_dict'")


def _global_step(loaded: dict, where: str) -> int | None:
    if "global_step" not in loaded:
        return None
    value = loaded["global_step"]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # a 0-d tensor
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CheckpointImportError(f"{where}: global_step = {value!r}; expected a whole number >= 0")
    return value


# ---- weights -----------------------------------------------------------------------------------------------


def _shape(tensor) -> str:
    return str(list(tensor.shape))


def model_weights(state: dict, expected: dict, *, strip_prefix: str = "", where: str = "checkpoint",
                  model: str = "the model") -> tuple[dict[str, np.ndarray], int]:
    """``state`` as the arrays of a model whose state dict is ``expected`` -> (weights, keys left out).

    ``strip_prefix``: keep only keys starting with it, removed. Strict:
    CheckpointImportError naming the first key that is missing,
    unexpected, of another shape, not a tensor, or float where the model
    holds integers (or the reverse), with the number of further problems.
    """
    import torch

    left_out = 0
    if strip_prefix:
        inside = {k[len(strip_prefix):]: v for k, v in state.items() if str(k).startswith(strip_prefix)}
        if not inside:
            starts = sorted({str(k).split(".", 1)[0] + "." for k in state})
            raise CheckpointImportError(f"{where}: no key starts with --strip-prefix {strip_prefix!r}; its keys "
                                        f"start with {', '.join(map(repr, starts[:5])) or 'nothing (empty)'}")
        left_out = len(state) - len(inside)
        state = inside
    problems = []
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            problems.append(f"entry {name!r} is a {type(value).__name__}, not a tensor (a state dict holds tensors "
                            "only)")
        elif name not in expected:
            problems.append(f"key {name!r} (shape {_shape(value)}) is not in {model}")
        elif tuple(value.shape) != tuple(expected[name].shape):
            problems.append(f"key {name!r} has shape {_shape(value)}; {model} expects {_shape(expected[name])}")
        elif value.is_floating_point() != expected[name].is_floating_point():
            problems.append(f"key {name!r} is {value.dtype}; {model} holds {expected[name].dtype}")
    problems += [f"key {name!r} is missing; {model} has it with shape {_shape(tensor)}"
                 for name, tensor in expected.items() if name not in state]
    if problems:
        hint = ""
        starts = {str(k).split(".", 1)[0] for k in state} - {str(k).split(".", 1)[0] for k in expected}
        if len(starts) == 1 and not strip_prefix:
            hint = f" (its keys start with {next(iter(starts)) + '.'!r}: --strip-prefix {next(iter(starts))}.?)"
        more = f" (+{len(problems) - 1} more key(s) that do not match)" if len(problems) > 1 else ""
        raise CheckpointImportError(f"{where}: {problems[0]}{more}{hint}")
    weights = {}
    for name, reference in expected.items():
        try:
            weights[name] = state[name].detach().to(device="cpu", dtype=reference.dtype).contiguous().numpy()
        except (RuntimeError, TypeError) as error:  # a sparse, quantised or meta tensor
            raise CheckpointImportError(f"{where}: key {name!r} ({state[name].layout}, {state[name].dtype}) cannot "
                                        f"be read as a dense {reference.dtype} array ({error})") from None
    return weights, left_out


# ---- one run -----------------------------------------------------------------------------------------------


def checkpoint_files(folder: Path) -> list[Path]:
    """The checkpoint files of a run folder (searched recursively, hidden names left out), sorted by path."""
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.suffix.lower() in SUFFIXES:
            found.append(path)
    return found


@dataclass(frozen=True)
class Settings:
    """How every run of one import is read: the model its weights must fit, and the prefix removed."""

    architecture: str
    latent_dim: int
    num_channels: int | None
    strip_prefix: str

    def channels(self, row: RunRow) -> int:
        from vaesim.data.registry import DATASETS

        return self.num_channels if self.num_channels is not None else DATASETS[row.dataset].num_channels


def _reference(settings: Settings, channels: int, cache: dict) -> tuple[dict, str]:
    """(the built model's state dict, a phrase naming the model), built once per channel count."""
    if channels not in cache:
        from vaesim.models import build_vae

        try:
            model = build_vae(settings.architecture, channels, settings.latent_dim)
        except (ValueError, TypeError, ImportError, AttributeError) as error:
            raise CheckpointImportError(f"--architecture {settings.architecture!r} with {channels} channel(s) and "
                                        f"--latent-dim {settings.latent_dim}: {error}") from None
        label = (f"the {settings.architecture} VAE ({channels} channel(s), {settings.latent_dim} latents)")
        cache[channels] = ({k: v.detach() for k, v in model.state_dict().items()}, label)
    return cache[channels]


def run_id_of(row: RunRow) -> str:
    """``ckpt-<folder>_<dataset>_<objective>_<param>=<value>_seed=<seed>``: stable, one per folder."""
    folder = re.sub(r"[^A-Za-z0-9._-]+", "-", row.folder).strip(".-") or "run"
    return f"ckpt-{folder}_{row.dataset}_{row.objective}_{row.param_name}={row.param:g}_seed={row.seed}"


def _digest(files: list[tuple[str, str]], row: RunRow, settings: Settings) -> str:
    """SHA-256 of a run's files (relative name and SHA-256 of each) and of how they are read."""
    body = {"files": files, "row": {k: v for k, v in row.__dict__.items() if k != "where"},
            "settings": settings.__dict__}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _read_run(folder: Path, row: RunRow, settings: Settings, files: list[tuple[Path, str]], cache: dict,
              ) -> tuple[dict[int, dict[str, np.ndarray]], list[dict]]:
    """({step: weights}, the record of each file) of one run; CheckpointImportError naming the file otherwise."""
    expected, label = _reference(settings, settings.channels(row), cache)
    checkpoints: dict[int, dict[str, np.ndarray]] = {}
    origin: dict[int, str] = {}
    records = []
    for path, digest in files:
        name = str(path.relative_to(folder.parent))
        loaded = read_checkpoint_file(path, name)
        from_name = step_from_name(path.name)
        step = loaded.global_step if loaded.global_step is not None else from_name
        if step is None:
            raise CheckpointImportError(f"{name}: no step: it has no global_step and its name gives none (or two); "
                                        "name it step_<N> (e.g. step_1000.pt)")
        if step > MAX_STEP:
            raise CheckpointImportError(f"{name}: step {step:,}; vaesim's checkpoint names hold steps up to "
                                        f"{MAX_STEP:,}")
        if loaded.global_step is not None and from_name is not None and from_name != loaded.global_step:
            log.warning("%s: global_step %d, its name says %d: global_step is used", name, loaded.global_step,
                        from_name)
        weights, left_out = model_weights(loaded.state, expected, strip_prefix=settings.strip_prefix, where=name,
                                          model=label)
        record = {"file": str(path.relative_to(folder)), "step": int(step), "sha256": digest, **loaded.info}
        if left_out:
            record["keys_left_out"] = left_out
        if step in checkpoints:
            if not all(np.array_equal(checkpoints[step][k], weights[k]) for k in weights):
                raise CheckpointImportError(f"{name} and {origin[step]} both hold step {step} with different "
                                            "weights; keep one of them in the run's folder")
            record["same_as"] = str(Path(origin[step]).relative_to(folder.name))
        else:
            checkpoints[step], origin[step] = weights, name
        records.append(record)
    if not any(step > 0 for step in checkpoints):
        raise CheckpointImportError(f"{folder.name}: only a step-0 checkpoint; expected the run's trained weights too")
    return checkpoints, records


def _imported_run(row: RunRow, settings: Settings, folder: Path, digest: str, steps: list[int],
                  records: list[dict]) -> ImportedRun:
    return ImportedRun(
        run_id=run_id_of(row), dataset=row.dataset, objective=row.objective, param_name=row.param_name,
        params=dict(row.params), seed=row.seed, steps=max(steps), architecture=settings.architecture,
        num_channels=settings.channels(row), latent_dim=settings.latent_dim,
        source={"kind": KIND, "model": row.folder, "folder": row.folder, "path": str(folder.resolve()),
                "sha256": digest, "strip_prefix": settings.strip_prefix, "files": records})


# ---- the import ----------------------------------------------------------------------------------------------


CheckpointImportSummary = ImportSummary  # runs imported now, already there, and skipped sources with why


def _run_folders(src: Path) -> list[str]:
    if not src.is_dir():
        raise CheckpointImportError(f"{src}: no such folder; expected a folder with one subfolder of checkpoints "
                                    "per run")
    return sorted(p.name for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))


def import_checkpoints(src: str | Path, out_dir: str | Path, runs_table: str | Path, *, architecture: str,
                       latent_dim: int = 10, num_channels: int | None = None, strip_prefix: str = "",
                       progress: bool = True) -> CheckpointImportSummary:
    """Import every run folder of ``src`` named in ``runs_table`` into ``out_dir/runs/`` (module docstring).

    Checks the whole table, SRC and the architecture before writing
    anything (:class:`vaesim.imports.checkpoint_table.RunsTableError`,
    :class:`CheckpointImportError`); then a run that cannot be imported is
    skipped with one line and listed in ``import.json``, and the rest import.
    ``num_channels``: None takes each run's from its dataset.
    """
    src, out_dir = Path(src), Path(out_dir)
    rows = read_runs_table(runs_table, _run_folders(src))
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
        raise CheckpointImportError(f"--latent-dim {latent_dim!r}; expected a whole number >= 1")
    if num_channels is not None and (isinstance(num_channels, bool) or not isinstance(num_channels, int)
                                     or num_channels < 1):
        raise CheckpointImportError(f"--channels {num_channels!r}; expected a whole number >= 1")
    settings = Settings(architecture, latent_dim, num_channels, strip_prefix)
    cache: dict = {}
    for row in rows:  # an unknown architecture or plug-in fails here, before anything is written
        _reference(settings, settings.channels(row), cache)
    manifest_path = out_dir / MANIFEST
    manifest = _read_manifest(manifest_path, src)
    runs_dir = out_dir / RUNS_DIR
    runs_dir.mkdir(parents=True, exist_ok=True)
    if remove_partial_runs(runs_dir):
        log.warning("removed the half-written run folder(s) of an interrupted import in %s", runs_dir)
    summary = CheckpointImportSummary(out_dir)
    iterator = rows
    if progress:
        from tqdm import tqdm

        iterator = tqdm(rows, desc="import checkpoints", unit="run", leave=False)
    for row in iterator:
        _import_one(src / row.folder, row, settings, cache, runs_dir, manifest, summary)
        _write_manifest(manifest_path, manifest)
    _write_manifest(manifest_path, manifest)
    return summary


def _import_one(folder: Path, row: RunRow, settings: Settings, cache: dict, runs_dir: Path, manifest: dict,
                summary: CheckpointImportSummary) -> None:
    """Import (or keep, or skip) one run folder, recording the outcome in ``manifest`` and ``summary``."""
    paths = checkpoint_files(folder)
    files = [(path, sha256_file(path)) for path in paths]
    digest = _digest([(str(p.relative_to(folder)), h) for p, h in files], row, settings)
    previous = manifest["runs"].get(row.folder) or {}
    if previous.get("status") == "imported" and previous.get("sha256") == digest \
            and imported_run_done(runs_dir / previous["run_id"], digest, check=True):
        summary.already.append(previous["run_id"])
        return
    try:
        if not files:
            raise CheckpointImportError(f"{row.folder}: no checkpoint files ({', '.join('*' + s for s in SUFFIXES)})")
        checkpoints, records = _read_run(folder, row, settings, files, cache)
        run = _imported_run(row, settings, folder, digest, sorted(checkpoints), records)
        _remove_earlier(runs_dir, previous, row.folder, keep=run.run_id)
        write_imported_run(runs_dir, run, checkpoints)
    except CheckpointImportError as error:
        log.warning("%s", error)
        _remove_earlier(runs_dir, previous, row.folder, keep=None)
        summary.skipped[row.folder] = str(error)
        manifest["runs"][row.folder] = {"status": "skipped", "sha256": digest, "reason": str(error)}
        return
    summary.imported.append(run.run_id)
    manifest["runs"][row.folder] = {"status": "imported", "sha256": digest, "run_id": run.run_id,
                                    "steps": sorted(int(s) for s in checkpoints), "files": len(files)}


def _remove_earlier(runs_dir: Path, previous: dict, folder: str, *, keep: str | None) -> None:
    """Delete the run an earlier import made from ``folder`` when its id changed, or the folder no longer imports:
    runs/ then holds only what SRC holds now (a study would otherwise adopt stale weights)."""
    run_id = previous.get("run_id")
    if not run_id or run_id == keep or not (runs_dir / run_id).is_dir():
        return
    try:
        source = read_run_record(runs_dir / run_id).get("source", {})
    except ValueError:
        return
    if source.get("kind") == KIND and source.get("folder") == folder:
        log.warning("removing %s: the earlier import of %s (its files or their row changed)", runs_dir / run_id,
                    folder)
        shutil.rmtree(runs_dir / run_id)


def _read_manifest(path: Path, src: Path) -> dict:
    """The earlier ``import.json`` of this kind of import; CheckpointImportError when DIR holds another import."""
    fresh = {"source": KIND, "src": str(src.resolve()), "runs": {}}
    if not path.is_file():
        return fresh
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        log.warning("%s is not JSON; it is written again", path)
        return fresh
    if isinstance(manifest, dict) and manifest.get("source") not in (None, KIND):
        raise CheckpointImportError(f"{path.parent}: holds a {manifest.get('source')} import ({path}); import the "
                                    "checkpoints into another --out folder")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("runs"), dict):
        log.warning("%s is not an import manifest; it is written again", path)
        return fresh
    manifest["src"] = fresh["src"]
    return manifest


def _write_manifest(path: Path, manifest: dict) -> None:
    runs = manifest["runs"]
    manifest["counts"] = {status: sum(r.get("status") == status for r in runs.values())
                          for status in ("imported", "skipped")}
    atomic_write_json(path, manifest)
