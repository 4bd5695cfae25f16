"""Forward-hook recorder for any ``torch.nn.Module``, by module name."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import nn


def first_tensor(output) -> torch.Tensor:
    """The tensor a hook records of a module's output: itself, or the first tensor of a tuple, list or dict."""
    if torch.is_tensor(output):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if torch.is_tensor(item):
                return item
    if isinstance(output, dict):
        for item in output.values():
            if torch.is_tensor(item):
                return item
    raise TypeError(f"LayerRecorder: a hooked module returned {type(output).__name__}, which holds no tensor")


class LayerRecorder:
    """Record the outputs of named submodules of ``module`` during forward passes.

    ``names`` are the dotted names of ``module.named_modules()`` (e.g.
    ``"encoder.conv1"``, ``"layer3.0.conv2"``). Each recorded output is
    detached, flattened to (B, features), cast to float32 and moved to the
    CPU; successive forward passes append rows. A module returning a tuple is
    recorded by its first tensor. Use as a context manager (hooks are removed
    on exit) or call :meth:`close`. ``copy=True`` records a copy of each
    output even when it is already a CPU float32 tensor (needed when a later
    module works in place on it, e.g. ``nn.ReLU(inplace=True)``).

    >>> with LayerRecorder(model, ["encoder.fc"]) as recorder:
    ...     model(x)
    >>> recorder.arrays()["encoder.fc"].shape   # (n, 256)
    """

    def __init__(self, module: nn.Module, names: Iterable[str], *, copy: bool = False) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"LayerRecorder: expected a torch.nn.Module, got {type(module).__name__}")
        self.names = list(names)
        self.copy = bool(copy)
        modules = dict(module.named_modules())
        unknown = [name for name in self.names if name not in modules]
        if unknown:
            available = [name for name in modules if name]
            raise ValueError(
                f"LayerRecorder: {type(module).__name__} has no module named {unknown}; "
                f"available names: {available[:40]}{' ...' if len(available) > 40 else ''}"
            )
        self._batches: dict[str, list[torch.Tensor]] = {name: [] for name in self.names}
        self._handles = [modules[name].register_forward_hook(self._hook(name)) for name in self.names]

    def _hook(self, name: str):
        def record(_module, _inputs, output) -> None:
            tensor = first_tensor(output).detach()
            flat = tensor.reshape(tensor.shape[0], -1).to("cpu", torch.float32)
            self._batches[name].append(flat.clone() if self.copy and flat.data_ptr() == tensor.data_ptr() else flat)

        return record

    def clear(self) -> None:
        """Forget what was recorded; hooks stay in place."""
        for batches in self._batches.values():
            batches.clear()

    def arrays(self) -> dict[str, np.ndarray]:
        """{name: float32 (n, features)}, rows in forward-pass order.

        Batches are moved into one preallocated array per layer and released
        as they are copied, so the peak memory is one layer's result plus one
        batch, not twice the result (``encoder.conv1`` at n = 10,000 is 1.3 GB).
        The recorder keeps the joined array (shared, not copied), so calling
        this again or recording more rows still works.
        """
        out = {}
        for name, batches in self._batches.items():
            if not batches:
                raise ValueError(f"LayerRecorder: module {name!r} recorded nothing; run a forward pass first")
            widths = {batch.shape[1] for batch in batches}
            if len(widths) != 1:
                raise ValueError(f"LayerRecorder: module {name!r} produced outputs of different sizes {sorted(widths)}")
            array = np.empty((sum(batch.shape[0] for batch in batches), widths.pop()), dtype=np.float32)
            start = 0
            while batches:
                batch = batches.pop(0)
                array[start:start + batch.shape[0]] = batch.numpy()
                start += batch.shape[0]
            batches.append(torch.from_numpy(array))
            out[name] = array
        return out

    def close(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> "LayerRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
