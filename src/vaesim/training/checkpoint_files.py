"""Checkpoint file names, the list of complete checkpoints and their recorded checksums, without torch.

What `vaesim study status` and `vaesim study verify` need, kept apart from
:mod:`vaesim.training.checkpoint` (which loads torch and safetensors) so that
those commands start in well under two seconds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from vaesim.utils import sha256_file

CHECKPOINT_DIR = "checkpoints"
INTERRUPT_NAME = "interrupted"
_NAME = re.compile(r"^step_(\d{8})\.json$")


def checkpoint_paths(run_dir: str | Path, step: int) -> tuple[Path, Path]:
    """(safetensors path, json path) of the checkpoint at ``step``."""
    base = Path(run_dir) / CHECKPOINT_DIR / f"step_{step:08d}"
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def interrupt_paths(run_dir: str | Path) -> tuple[Path, Path]:
    """(safetensors path, json path) of the run's interrupt checkpoint (not a scheduled one)."""
    base = Path(run_dir) / INTERRUPT_NAME
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def interrupt_step(run_dir: str | Path) -> int | None:
    """Step of the run's complete interrupt checkpoint whose weights match their recorded SHA-256, else None."""
    tensor_path, json_path = interrupt_paths(run_dir)
    if not (tensor_path.is_file() and json_path.is_file()):
        return None
    try:
        meta = json.loads(json_path.read_text())
        step = int(meta["step"])
    except (ValueError, KeyError, TypeError):
        return None
    if meta.get("sha256") != sha256_file(tensor_path):
        return None
    return step


def remove_interrupt_checkpoint(run_dir: str | Path) -> None:
    """Delete the interrupt checkpoint (JSON first: a half-removed one is incomplete, never trusted)."""
    tensor_path, json_path = interrupt_paths(run_dir)
    json_path.unlink(missing_ok=True)
    tensor_path.unlink(missing_ok=True)


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


def recorded_sha256(run_dir: str | Path, step: int) -> str | None:
    """SHA-256 of the weights file recorded when the checkpoint was saved (None for older checkpoints)."""
    _tensor_path, json_path = checkpoint_paths(run_dir, step)
    return json.loads(json_path.read_text()).get("sha256")
