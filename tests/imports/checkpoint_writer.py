"""Checkpoints in the formats other code writes them: Lightning ``.ckpt``, plain ``torch.save`` state dicts,
safetensors; and a runs table. For the tests of ``vaesim import checkpoints``."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

LIGHTNING_VERSION = "2.4.0"


def prefixed(state: dict, prefix: str) -> dict:
    """``state`` with ``prefix`` before every key (a LightningModule holding the VAE as ``self.model``)."""
    return {f"{prefix}{name}": value for name, value in state.items()}


def lightning_checkpoint(state: dict, step: int, *, epoch: int = 0, prefix: str = "model.",
                         hyper_parameters: dict | None = None, extra: dict | None = None) -> dict:
    """What Lightning's ``Trainer.save_checkpoint`` writes (``lightning.pytorch.trainer.connectors.
    checkpoint_connector.dump_checkpoint``), with plain Python containers: the weights under ``prefix``, Adam's
    state per parameter, loops, callbacks and the hyperparameters."""
    weights = prefixed(state, prefix)
    weights.update(extra or {})
    adam = {i: {"step": torch.tensor(float(step)), "exp_avg": torch.zeros_like(v), "exp_avg_sq": torch.zeros_like(v)}
            for i, v in enumerate(weights.values()) if v.is_floating_point()}
    return {
        "epoch": epoch,
        "global_step": step,
        "pytorch-lightning_version": LIGHTNING_VERSION,
        "state_dict": weights,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": epoch + 1, "completed": epoch}},
                               "epoch_loop.batch_progress": {"total": {"ready": step, "completed": step}}}},
        "callbacks": {"ModelCheckpoint{'monitor': None, 'mode': 'min'}": {"best_model_score": None,
                                                                           "best_model_path": "", "dirpath": "ckpts"}},
        "optimizer_states": [{"state": adam, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8,
                                                               "weight_decay": 0, "params": sorted(adam)}]}],
        "lr_schedulers": [],
        "hyper_parameters": {} if hyper_parameters is None else hyper_parameters,  # Lightning: an AttributeDict
    }


def save_lightning(folder: Path, state: dict, step: int, *, epoch: int = 0, name: str | None = None, **options) -> Path:
    """``epoch=<e>-step=<step>.ckpt`` (ModelCheckpoint's default name) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"epoch={epoch}-step={step}.ckpt")
    torch.save(lightning_checkpoint(state, step, epoch=epoch, **options), path)
    return path


def save_state_dict(folder: Path, state: dict, name: str, *, prefix: str = "") -> Path:
    """A plain ``torch.save(model.state_dict(), name)``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(prefixed(state, prefix), folder / name)
    return folder / name


def save_safetensors(folder: Path, state: dict, name: str, *, prefix: str = "") -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in prefixed(state, prefix).items()}, str(folder / name))
    return folder / name


def write_runs_csv(path: Path, rows: list[dict]) -> Path:
    """A runs table: one row per folder, the union of the rows' keys as columns (empty cells where absent)."""
    columns = ["folder", "objective", "strength", "seed", "dataset"]
    columns += sorted({key for row in rows for key in row} - set(columns))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path
