"""Checkpoint file names, the list of complete checkpoints and their recorded checksums, without torch.

What `vaesim study status` and `vaesim study verify` need, kept apart from
:mod:`vaesim.training.checkpoint` (which loads torch and safetensors) so that
those commands start in well under two seconds.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from vaesim.utils import sha256_file

CHECKPOINT_DIR = "checkpoints"
INTERRUPT_NAME = "interrupted"
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


def read_meta(run_dir: str | Path, step: int, *, json_path: Path | None = None) -> dict:
    """The verified JSON of the checkpoint at ``step``; :class:`CorruptCheckpoint` naming the file otherwise.

    ``json_path``: another checkpoint JSON of the run (the interrupt checkpoint's).
    OSError (other than a missing file) propagates: a file that cannot be read
    now is not known to be damaged.
    """
    json_path = checkpoint_paths(run_dir, step)[1] if json_path is None else Path(json_path)
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
