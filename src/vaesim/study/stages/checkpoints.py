"""A run's files, shared by the stages, the runner's repairs and ``vaesim study verify``.

``runs/<run_id>/`` holds ``config.json`` (fixed by the run's address),
``checkpoints/step_{step:08d}.{safetensors,json}`` (training's layout) and
``metrics.jsonl``; ``checkpoint-sums.json`` records each checkpoint's
SHA-256 (and the training log's, under :data:`METRICS_KEY`) once training
has finished. A checkpoint is trusted only when it matches that record
(:func:`checkpoint_intact`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from vaesim.study import plan as layout
from vaesim.study.plan import TrainTask
from vaesim.utils import atomic_write_bytes, sha256_file

logger = logging.getLogger(__name__)


METRICS_KEY = "metrics.jsonl"  # the training log's entry in checkpoint-sums.json


def train_config(task: TrainTask):
    """The :class:`vaesim.training.TrainConfig` of a train task's run config."""
    from vaesim.training import TrainConfig

    config = task.run.config
    return TrainConfig(
        dataset=config["dataset"],
        dataset_root=task.dataset_root,
        objective=config["objective"],
        params=dict(config["params"]),
        seed=config["seed"],
        steps=config["steps"],
        batch_size=config["batch_size"],
        lr=config["lr"],
        adam_betas=tuple(config["adam_betas"]),
        adam_eps=config["adam_eps"],
        checkpoints=list(config["checkpoint_steps"]),
        latent_dim=config["latent_dim"],
        architecture=config["architecture"],
        reconstruction=config["reconstruction"],
        log_every=config["log_every"],
        monitor_every=config["monitor_every"],
        init=config.get("init", "glorot"),
        sample_noise=config.get("sample_noise", "independent"),
        validation_split=config.get("validation_split", 0.0),
        precision=config.get("precision", "32"),
    )


def config_bytes(task: TrainTask) -> bytes:
    """The bytes of ``runs/<run_id>/config.json`` as training writes them (an adopted run: its config)."""
    if task.run.config.get("source") == "imported":
        from vaesim.study.stages.adopt import imported_config_bytes

        return imported_config_bytes(task)
    return (json.dumps(train_config(task).to_dict(), indent=2, sort_keys=True, allow_nan=True) + "\n").encode()


def config_file_damaged(root: Path, task: TrainTask) -> bool:
    """True when the run's ``config.json`` is not what training wrote (the run id fixes its content).

    A missing ``config.json`` counts only once training has written a checkpoint.
    """
    run_dir = root / layout.run_dir(task.run_id)
    try:
        return (run_dir / "config.json").read_bytes() != config_bytes(task)
    except FileNotFoundError:
        return any((run_dir / "checkpoints").glob("step_*.json"))
    except IsADirectoryError:
        return False  # the wrong kind of entry: see vaesim.study.store.verify.shape_problems


def restore_config_file(root: Path, task: TrainTask) -> None:
    """Write a damaged ``config.json`` again (its content is fixed by the run's address, nothing is lost)."""
    if config_file_damaged(root, task):
        path = root / layout.run_dir(task.run_id) / "config.json"
        logger.warning("%s is not the config of run %s; written again", path, task.run_id)
        atomic_write_bytes(path, config_bytes(task))


def checkpoint_file(run_dir: Path, step: int) -> Path:
    """The weights file of a checkpoint (training's layout: checkpoints/step_{step:08d}.safetensors)."""
    return run_dir / "checkpoints" / f"step_{step:08d}.safetensors"


def read_sums(path: Path) -> dict:
    """A run's ``checkpoint-sums.json``; OSError when it cannot be read, ValueError when it is not a sums record."""
    sums = json.loads(path.read_text())
    if not isinstance(sums, dict):
        raise ValueError(f"{path} is not a JSON object")
    return sums


def checkpoint_intact(root: Path, run_id: str, step: int) -> bool:
    """True when the checkpoint's weights match the SHA-256 recorded after training; False for a verified mismatch.

    Only a mismatch (or a weights file that is gone) returns False, and only
    False leads to a repair that deletes files. A file that cannot be read
    now (permissions, I/O error) raises OSError; a damaged sums record raises
    ValueError (the next run rebuilds it from the checkpoints): neither
    deletes anything.
    """
    sums_file = root / layout.checkpoint_sums_path(run_id)
    path = checkpoint_file(root / layout.run_dir(run_id), step)
    sums = read_sums(sums_file)
    if str(step) not in sums:
        raise ValueError(f"{sums_file} has no checksum for step {step}; the next `vaesim study run` rebuilds it")
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    return sha256_file(path) == sums[str(step)]


def checked_sums(run_dir: Path) -> tuple[dict[str, str], int | None]:
    """``({step: sha256}, first damaged step or None)`` of a run's checkpoints.

    A checkpoint is damaged when its JSON is not as saved or its weights do
    not match the SHA-256 recorded in the JSON (:func:`vaesim.training.checkpoint.checkpoint_damage`).
    A checkpoint saved before checksums were recorded with it is hashed as it is.
    """
    from vaesim.training.checkpoint_files import list_checkpoints
    from vaesim.training.checkpoint_files import checkpoint_damage, recorded_sha256

    sums, damaged = {}, None
    for step in list_checkpoints(run_dir):
        if checkpoint_damage(run_dir, step) is not None:
            damaged = step if damaged is None else min(damaged, step)
            continue
        sums[str(step)] = recorded_sha256(run_dir, step) or sha256_file(checkpoint_file(run_dir, step))
    return sums, damaged


_CHECKPOINT_NAME = re.compile(r"^step_(\d{8})\.(json|safetensors)$")


def drop_checkpoints_from(run_dir: Path, step: int) -> None:
    """Remove the checkpoints of a run from ``step`` on, its interrupt checkpoint and its DONE marker
    (training then resumes)."""
    from vaesim.training.checkpoint_files import remove_interrupt_checkpoint

    (run_dir / layout.DONE_MARKER).unlink(missing_ok=True)
    remove_interrupt_checkpoint(run_dir)
    for path in sorted((run_dir / "checkpoints").glob("step_*")):
        match = _CHECKPOINT_NAME.match(path.name)
        if match and int(match.group(1)) >= step and not path.is_dir():
            path.unlink()
