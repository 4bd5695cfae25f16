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

A run stopped by Ctrl-C or SIGTERM between scheduled checkpoints leaves one
*interrupt checkpoint* beside them, ``interrupted.{safetensors,json}`` in the
run directory (same contents), so that resuming loses no steps. It is never
listed by :func:`list_checkpoints` (the study's recorded checkpoints stay
exactly the scheduled ones) and is removed once training has gone past it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from vaesim.models.architectures import VAE, build_vae
from vaesim.utils import atomic_path, atomic_write_json, sha256_file

from vaesim.training.checkpoint_files import (  # noqa: F401 - the torch-free half, re-exported
    CHECKPOINT_DIR,
    INTERRUPT_NAME,
    META_DIGEST,
    CorruptCheckpoint,
    checkpoint_damage,
    checkpoint_paths,
    interrupt_paths,
    interrupt_step,
    list_checkpoints,
    meta_digest,
    read_meta,
    recorded_sha256,
    remove_interrupt_checkpoint,
)


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
    interrupt: bool = False,
) -> Path:
    """Write the checkpoint at ``step`` (tensors first, then the JSON); return the JSON path.

    interrupt: write the run's interrupt checkpoint (:func:`interrupt_paths`) instead of a scheduled one.
    """
    tensor_path, json_path = interrupt_paths(run_dir) if interrupt else checkpoint_paths(run_dir, step)
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


def read_checkpoint(run_dir: str | Path, step: int, *, interrupt: bool = False) -> tuple[dict[str, torch.Tensor], dict]:
    """(all tensors, meta) of the checkpoint at ``step``; FileNotFoundError lists the steps present.

    interrupt: read the run's interrupt checkpoint (``step`` is then only checked against its own).
    """
    tensor_path, json_path = interrupt_paths(run_dir) if interrupt else checkpoint_paths(run_dir, step)
    if not (tensor_path.is_file() and json_path.is_file()):
        raise FileNotFoundError(
            f"no complete checkpoint at step {step} in {Path(run_dir)}; "
            f"steps present: {list_checkpoints(run_dir) or 'none'}"
        )
    meta = read_meta(run_dir, step, json_path=json_path)
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
