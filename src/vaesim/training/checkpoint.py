"""Checkpoints: safetensors tensors + a JSON file, both written atomically.

``checkpoints/step_NNNNNNNN.safetensors`` holds the model's weights (keys as in
``model.state_dict()``), the objective's own weights (``objective.*``) and
every optimiser tensor (``optimizer.vae.*``, ``optimizer.objective.*``).
``step_NNNNNNNN.json`` holds the model and objective config, the step, the
losses at that step, the RNG states, the optimisers' non-tensor state and
the SHA-256 of the weights file as written (``sha256``), and the SHA-256 of
its own content (``meta_sha256``, over the canonical JSON of every other
field). The JSON is written last: a checkpoint counts as complete only when
both exist. :func:`read_meta` checks the JSON before anything trusts it: it
must parse, carry the digest of what it holds, and be byte for byte the
canonical form that :func:`save_checkpoint` writes; a changed learning rate,
a flipped byte or a truncation raises :class:`CorruptCheckpoint`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from vaesim.models.architectures import VAE, build_vae
from vaesim.utils import atomic_path, atomic_write_json, sha256_file

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d{8})\.json$")
META_DIGEST = "meta_sha256"


class CorruptCheckpoint(ValueError):
    """A checkpoint's JSON or weights are not as saved (edited, truncated, flipped, missing).

    ``reason``: what is wrong, without the file's name (``str()`` names it).
    """

    def __init__(self, path: Path, reason: str):
        super().__init__(f"checkpoint {path} {reason}")
        self.path, self.reason = path, reason

    def __reduce__(self):  # travels intact from a worker process
        return (CorruptCheckpoint, (self.path, self.reason))


def meta_digest(meta: dict) -> str:
    """SHA-256 of the canonical JSON of ``meta`` without its own digest field."""
    body = {k: v for k, v in meta.items() if k != META_DIGEST}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(meta: dict) -> bytes:
    """The bytes :func:`vaesim.utils.atomic_write_json` writes for ``meta``."""
    return (json.dumps(meta, indent=2, sort_keys=True, allow_nan=True) + "\n").encode()


def read_meta(run_dir: str | Path, step: int) -> dict:
    """The verified JSON of the checkpoint at ``step``; :class:`CorruptCheckpoint` naming the file otherwise.

    OSError (other than a missing file) propagates: a file that cannot be read
    now is not known to be damaged.
    """
    _tensor_path, json_path = checkpoint_paths(run_dir, step)
    try:
        raw = json_path.read_bytes()
    except FileNotFoundError:
        raise CorruptCheckpoint(json_path, "is missing") from None
    try:
        meta = json.loads(raw)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise CorruptCheckpoint(json_path, f"is not JSON ({error})") from None
    if not isinstance(meta, dict):
        raise CorruptCheckpoint(json_path, f"holds a {type(meta).__name__}, not a JSON object")
    recorded = meta.get(META_DIGEST)
    if recorded is not None and recorded != meta_digest(meta):
        raise CorruptCheckpoint(json_path, "does not match the SHA-256 of its content recorded when it was saved "
                                           "(it was edited or damaged)")
    if raw != _canonical(meta):
        raise CorruptCheckpoint(json_path, "is not byte for byte as saved (it was edited or damaged)")
    if meta.get("step") != step:
        raise CorruptCheckpoint(json_path, f"holds step {meta.get('step')!r}, not {step}")
    return meta


def checkpoint_paths(run_dir: str | Path, step: int) -> tuple[Path, Path]:
    """(safetensors path, json path) of the checkpoint at ``step``."""
    base = Path(run_dir) / CHECKPOINT_DIR / f"step_{step:08d}"
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def list_checkpoints(run_dir: str | Path) -> list[int]:
    """Steps of the complete checkpoints in ``run_dir`` (both files present), sorted."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    steps = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match and path.with_suffix(".safetensors").is_file():
            steps.append(int(match.group(1)))
    return sorted(steps)


# ---- RNG states -------------------------------------------------------------------------------


def rng_state() -> dict:
    """torch (CPU and CUDA), NumPy global and Python ``random`` states, JSON-serialisable."""
    state = {
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii"),
        "numpy": _jsonable(np.random.get_state(legacy=False)),
        "python": _jsonable(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode("ascii") for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["torch"])), dtype=torch.uint8))
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {"key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32), "pos": int(numpy_state["state"]["pos"])}
    np.random.set_state(numpy_state)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8) for s in state["cuda"]]
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer):
        return int(value)
    return value


# ---- optimiser state -----------------------------------------------------------------------------


def split_optimizer_state(state: dict, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and the rest (for JSON)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict = {}
    for index, per_param in state["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict, prefix: str) -> dict:
    """Inverse of :func:`split_optimizer_state`."""
    per_param: dict[int, dict] = {}
    head = prefix + ".state."
    for name, value in tensors.items():
        if name.startswith(head):
            index, key = name[len(head) :].split(".", 1)
            per_param.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        per_param.setdefault(int(index), {})[key] = value
    return {"state": per_param, "param_groups": meta["param_groups"]}


# ---- save / load ---------------------------------------------------------------------------------


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    model: VAE,
    objective: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    meta: dict,
) -> Path:
    """Write the checkpoint at ``step`` (tensors first, then the JSON); return the JSON path."""
    tensor_path, json_path = checkpoint_paths(run_dir, step)
    tensors = {name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()}
    tensors.update({f"objective.{k}": v.detach().cpu().contiguous() for k, v in objective.state_dict().items()})
    vae_tensors, vae_optim = split_optimizer_state(optimizer.state_dict(), "optimizer.vae")
    tensors.update(vae_tensors)
    optim_meta = {"vae": vae_optim}
    objective_optimizer = objective.optimizer()
    if objective_optimizer is not None:
        obj_tensors, obj_optim = split_optimizer_state(objective_optimizer.state_dict(), "optimizer.objective")
        tensors.update(obj_tensors)
        optim_meta["objective"] = obj_optim
    with atomic_path(tensor_path) as tmp:
        save_file(tensors, str(tmp))
        digest = sha256_file(tmp)  # recorded with the checkpoint: later checks compare against what was written
    record = {**meta, "step": step, "model": model.config(), "optimizer": optim_meta, "rng": rng_state(),
              "sha256": digest}
    record[META_DIGEST] = meta_digest(record)
    atomic_write_json(json_path, record)
    return json_path


def recorded_sha256(run_dir: str | Path, step: int) -> str | None:
    """SHA-256 of the weights file recorded when the checkpoint was saved (None for older checkpoints).

    :class:`CorruptCheckpoint` when the JSON itself is not as saved.
    """
    return read_meta(run_dir, step).get("sha256")


def checkpoint_damage(run_dir: str | Path, step: int) -> str | None:
    """Why the checkpoint at ``step`` is not as saved (its JSON, or weights that do not match the JSON), or None.

    OSError when a file cannot be read now (nothing is known then).
    """
    tensor_path, _json_path = checkpoint_paths(run_dir, step)
    try:
        recorded = recorded_sha256(run_dir, step)
    except CorruptCheckpoint as error:
        return str(error)
    try:
        actual = sha256_file(tensor_path)
    except FileNotFoundError:
        return f"checkpoint {tensor_path} is missing"
    if recorded is not None and actual != recorded:
        return f"checkpoint {tensor_path} does not match the SHA-256 recorded when it was saved"
    return None


def read_checkpoint(run_dir: str | Path, step: int) -> tuple[dict[str, torch.Tensor], dict]:
    """(all tensors, meta) of the checkpoint at ``step``; FileNotFoundError lists the steps present."""
    tensor_path, json_path = checkpoint_paths(run_dir, step)
    if not (tensor_path.is_file() and json_path.is_file()):
        raise FileNotFoundError(
            f"no complete checkpoint at step {step} in {Path(run_dir)}; "
            f"steps present: {list_checkpoints(run_dir) or 'none'}"
        )
    meta = read_meta(run_dir, step)
    return load_file(str(tensor_path)), meta


def model_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's weights among a checkpoint's tensors."""
    return {k: v for k, v in tensors.items() if not k.startswith(("objective.", "optimizer."))}


def load_checkpoint(run_dir: str | Path, step: int | None = None, *, device: str | torch.device = "cpu") -> tuple[VAE, dict]:
    """Rebuild the model saved at ``step`` (default: the last) -> (model in eval mode, meta)."""
    if step is None:
        steps = list_checkpoints(run_dir)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {Path(run_dir)}; train the run first (vaesim train --out {run_dir})")
        step = steps[-1]
    tensors, meta = read_checkpoint(run_dir, step)
    model = build_vae(**meta["model"])
    model.load_state_dict(model_state(tensors))
    return model.to(device).eval(), meta
