"""Corruptions of every kind of file a study holds (issue 23): flip, truncate, delete, semantic edit.

A semantic edit changes what a file says while keeping it well formed and
keeping its recorded checksum (the sidecar, or the digest saved inside a
checkpoint's JSON): a changed learning rate, a changed score, a changed
summary value.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import numpy as np

from vaesim.utils import sha256_file

sys.path.insert(0, str(Path(__file__).parent))
from study_tiny import TINY  # noqa: E402

# Files whose content is a time or a session log, different in every run (not study data).
UNSTABLE = {"DONE", "provenance.json", "failures.json", ".lock", "running.json",
            ".hash-cache.json"}  # the hash cache holds each file's inode and times: machine state, not the store

# One glob per kind of file the study below writes (relative to the study directory).
KINDS = {
    "checkpoint weights": "runs/*/checkpoints/step_*.safetensors",
    "checkpoint json": "runs/*/checkpoints/step_*.json",
    "checkpoint sums": "runs/*/checkpoint-sums.json",
    "training log": "runs/*/metrics.jsonl",
    "run config": "runs/*/config.json",
    "probe set": "probes/*.npz",
    "probe record": "probes/*.json",
    "factors summary": "summaries/factors/*.npz",
    "summary": "summaries/*/step_*[0-9].npz",
    "resampled summary": "summaries/*/step_*.resampled.npz",
    "latents": "summaries/*/step_*.latents.parquet",
    "activations": "activations/*/step_*.npz",
    "results": "results/*.parquet",
    "disentanglement": "disentanglement/dsprites*/step_*.parquet",
    "udr": "disentanglement/udr/*.parquet",
    "runs table": "runs.parquet",
    "training table": "training_metrics.parquet",
    "latents table": "latents.parquet",
    "sidecar": "results/*.parquet.sha256",
}
MODES = ("flip", "truncate", "delete", "semantic")


def campaign_spec() -> dict:
    """The smallest study of the tests (two seeds, 10 steps), with every kind of file above."""
    spec = copy.deepcopy(TINY)
    spec.update(
        name="campaign",
        objectives=[{"name": "beta_vae", "values": [1]}],
        training=dict(spec["training"], steps=10, checkpoints={"schedule": "even", "count": 2}),
        layers=["encoder.mean", "encoder.sample"], keep_activations=["encoder.mean"], metrics=["cka"],
        comparisons={"within_run": "final", "params": False, "objectives": False},
        disentanglement={"checkpoints": "final", "protocol_fraction": 0.002, "udr_points": 200,
                         "metrics": ["mig", "sap"]},
    )
    return spec


def snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every study file (files that hold a time or a session log left out)."""
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in UNSTABLE and ".progress" not in p.parts}


def victims(root: Path, kind: str) -> list[Path]:
    return sorted(root.glob(KINDS[kind]))


def corrupt(path: Path, mode: str) -> None:
    """Damage ``path`` in one of :data:`MODES`."""
    if mode == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif mode == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif mode == "delete":
        path.unlink()
    elif mode == "semantic":
        _semantic_edit(path)
    else:
        raise ValueError(mode)


def _semantic_edit(path: Path) -> None:
    name = path.name
    if name.endswith(".sha256"):
        text = path.read_text()
        path.write_text(("0" if text[0] != "0" else "1") + text[1:])
    elif name.endswith(".safetensors"):
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(path))
        key = sorted(k for k in tensors if tensors[k].is_floating_point())[0]
        tensors[key] = tensors[key] + 0.5
        save_file(tensors, str(path))
    elif name.endswith(".json"):
        record = json.loads(path.read_text())
        if isinstance(record, dict) and "optimizer" in record:  # the attack: lr 0.001 -> 0.05
            record["optimizer"]["vae"]["param_groups"][0]["lr"] = 0.05
        elif isinstance(record, dict) and "metrics.jsonl" in record:  # a sums record: another hash for a step
            step = sorted(k for k in record if k.isdigit())[0]
            record[step] = "0" * 64
        elif isinstance(record, dict) and "dataset_size" in record:
            record["dataset_size"] += 1
        elif isinstance(record, dict) and "steps" in record:  # a run's config.json
            record["lr"] = 0.05
        else:
            raise ValueError(f"no semantic edit for {path}")
        path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    elif name.endswith(".jsonl"):
        text = path.read_text()
        path.write_text(re.sub(r'"loss": (-?\d)', lambda m: f'"loss": {int(m.group(1)) + 1 if m.group(1) != "9" else 1}',
                               text, count=1))
    elif name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        for index, field in enumerate(table.schema):
            if pa.types.is_floating(field.type):
                values = table.column(index).to_numpy().copy()
                values[0] = values[0] + 1.0 if np.isfinite(values[0]) else 0.0
                table = table.set_column(index, field, pa.array(values, type=field.type))
                break
        else:
            raise ValueError(f"no float column in {path}")
        pq.write_table(table, path)
    elif name.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        key = next(k for k in sorted(arrays) if np.issubdtype(arrays[k].dtype, np.number) and arrays[k].size)
        arrays[key] = arrays[key].copy()
        arrays[key].flat[0] += 1
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
    else:
        raise ValueError(f"no semantic edit for {path}")
