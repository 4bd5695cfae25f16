"""Where a task computes: the torch device of a spec's ``device`` and the device of the similarity maths."""

from __future__ import annotations


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def array_device(device: str) -> str | None:
    """Device for the similarity maths: None (numpy, fastest on CPU) or a CUDA device."""
    resolved = resolve_device(device)
    return None if resolved == "cpu" else resolved
