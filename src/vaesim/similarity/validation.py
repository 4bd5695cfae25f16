"""Input checking for every similarity function (one place, scikit-learn style).

Every public entry point converts its inputs with :func:`as_matrix`, which
accepts numpy arrays and torch tensors shaped ``(n, ...)``, flattens trailing
axes to ``(n, p)`` and keeps float32 / float64 as they are (integers and
booleans become float64). Errors name the argument (and the caller), say what
was expected, what arrived and how to fix it: ``TypeError`` for the wrong kind
of object, ``ValueError`` for bad values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_matrix", "check_same_rows", "require_rows"]


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """Return a numpy view/copy of ``x`` (torch tensors are detached and moved to CPU)."""
    if isinstance(x, np.ndarray):
        return x
    module = type(x).__module__
    if module.startswith("torch"):
        import torch

        if isinstance(x, torch.Tensor):
            tensor = x.detach()
            if tensor.dtype in (torch.bfloat16, torch.float16):
                tensor = tensor.float()
            if tensor.is_complex():
                raise TypeError(
                    f"{name}: expected a real-valued tensor, got dtype {tensor.dtype}; "
                    "pass real activations (e.g. x.real or x.abs())"
                )
            return tensor.cpu().numpy()
    if isinstance(x, (list, tuple)):
        return np.asarray(x)
    raise TypeError(
        f"{name}: expected a numpy array or torch tensor shaped (n, ...), got "
        f"{type(x).__name__}; convert it with numpy.asarray(...) first"
    )


def as_matrix(x: Any, name: str, *, min_rows: int = 2, check_finite: bool = True) -> np.ndarray:
    """Validate ``x`` and return it as a 2-D float array ``(n, p)``.

    Args:
        x: numpy array or torch tensor ``(n, ...)``; rows are examples, trailing
            axes are flattened into features. A 1-D input ``(n,)`` is one feature.
        name: how the caller refers to ``x`` in messages, e.g. ``"x"`` or
            ``"models['ckpt_0']['encoder.fc']"``.
        min_rows: the estimator's minimum number of examples.
        check_finite: reject NaN and infinity.

    Returns:
        float32 or float64 array ``(n, p)`` (a view when no conversion is needed).
    """
    array = _to_numpy(x, name)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.bool_)
    ):
        raise TypeError(
            f"{name}: expected numeric activations (float32 or float64), got an array of "
            f"dtype {array.dtype}; convert with .astype(numpy.float32)"
        )
    if np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(
            f"{name}: expected real-valued activations, got dtype {array.dtype}; "
            "pass the real part or magnitude explicitly"
        )
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    if array.ndim == 0:
        raise ValueError(f"{name}: expected an array shaped (n, ...) with one row per example, got a scalar")
    if array.ndim == 1:
        array = array[:, None]
    elif array.ndim > 2:
        array = array.reshape(array.shape[0], -1)
    n, p = array.shape
    if p == 0:
        raise ValueError(f"{name}: expected at least one feature per example, got shape {tuple(array.shape)}")
    require_rows(n, name, min_rows)
    if check_finite and not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ValueError(
            f"{name}: expected finite values, found {bad} NaN/inf entries in shape "
            f"{tuple(array.shape)}; remove or repair those examples before comparing"
        )
    return array


def require_rows(n: int, name: str, min_rows: int, *, why: str = "") -> None:
    """Raise ValueError when ``n < min_rows`` (the estimator is undefined)."""
    if n < min_rows:
        reason = f" ({why})" if why else ""
        raise ValueError(
            f"{name}: expected at least {min_rows} examples (rows){reason}, got {n}; "
            "use a larger probe set"
        )


def check_same_rows(x: np.ndarray, y: np.ndarray, x_name: str = "x", y_name: str = "y") -> None:
    """Raise ValueError unless ``x`` and ``y`` have the same number of examples."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{x_name} has {x.shape[0]} examples but {y_name} has {y.shape[0]}: both must hold "
            "activations of the same examples in the same order (same n)"
        )
