"""Similarity measure plug-ins: register a measure by name and use it like the built-ins.

A measure is a **pair function** and, optionally, a **per-layer summary
function**:

* ``summary(x) -> S``: called once per (model, layer) on the activations
  ``x`` ``(n, p)`` (a float32/float64 numpy array); ``S`` is anything the
  pair function understands. To be stored by a study it must be a numpy
  array or a dict of numpy arrays.
* ``pair(S_a, S_b) -> float``: the score of one layer pair (with no summary
  function, ``pair(x_a, x_b)`` on the activations themselves).

``compare(models, metrics=(..., "my_measure"))``, the study spec's
``metrics:`` list and the results store then accept ``"my_measure"`` like
``"cka"``. Example (RBF-kernel CKA, Kornblith et al. 2019 sec. 3, bandwidth
``sigma^2 = fraction^2 median(d^2)`` as in the authors' notebook)::

    import numpy as np
    from vaesim.similarity import register_measure, compare

    def rbf_gram(x, fraction=0.5):
        sq = (x * x).sum(1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
        np.fill_diagonal(d2, 0.0)
        sigma2 = fraction**2 * np.median(d2)
        k = np.exp(-d2 / (2 * sigma2))
        h = np.eye(len(x)) - 1 / len(x)
        return h @ k @ h                       # centred Gram, the per-layer summary

    def gram_cka(kc, lc):
        return float((kc * lc).sum() / np.sqrt((kc * kc).sum() * (lc * lc).sum()))

    register_measure("cka_rbf", gram_cka, summary=lambda x: rbf_gram(np.asarray(x, float)))
    compare(models, metrics=("cka", "cka_rbf"))

Registered names are process-wide; a study run with a plug-in measure must
register it before ``vaesim study run`` builds its plan (``--plugin
MODULE`` imports a module that registers it).

Built-in names (:data:`BUILTIN`) cannot be replaced. SVCCA and PWCCA are
registered here as plug-ins themselves (``"svcca"``, ``"pwcca"``, see
:mod:`vaesim.similarity.cca`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from vaesim.similarity.summary import METRICS

__all__ = [
    "BUILTIN",
    "Measure",
    "check_metric_names",
    "get_measure",
    "measure_names",
    "register_measure",
    "unregister_measure",
]

#: measures computed by the engine itself
BUILTIN = tuple(METRICS)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Measure:
    """A registered similarity measure.

    Attributes:
        name: lower-case identifier, e.g. ``"cka_rbf"``.
        pair: ``pair(summary_a, summary_b) -> float`` (or ``pair(x_a, x_b)``).
        summary: per-layer ``summary(x (n, p)) -> S`` or None.
        symmetric: ``pair(a, b) == pair(b, a)``; a model compared with itself
            then gets each unordered layer pair once (as the built-ins do);
            an asymmetric measure gets both orders.
        description: one line for ``--help`` and docs.
    """

    name: str
    pair: Callable[[Any, Any], float]
    summary: Callable[[Any], Any] | None = None
    symmetric: bool = True
    description: str = ""


_REGISTRY: dict[str, Measure] = {}


def register_measure(
    name: str, pair: Callable[[Any, Any], float], *, summary: Callable[[Any], Any] | None = None,
    symmetric: bool = True, description: str = "", replace: bool = False,
) -> Measure:
    """Register ``pair`` (and ``summary``) under ``name``; returns the :class:`Measure`.

    Raises:
        ValueError: a badly formed name, a built-in name, or a name already
            registered (pass ``replace=True`` to replace it).
        TypeError: ``pair`` or ``summary`` not callable.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"register_measure: name must be lower-case letters, digits and '_' "
                         f"starting with a letter (e.g. 'cka_rbf'), got {name!r}")
    if name in BUILTIN:
        raise ValueError(f"register_measure: {name!r} is a built-in measure and cannot be replaced; pick another name")
    if name in _REGISTRY and not replace:
        raise ValueError(f"register_measure: {name!r} is already registered; pass replace=True to replace it")
    if not callable(pair):
        raise TypeError(f"register_measure: pair for {name!r} must be callable, got {type(pair).__name__}")
    if summary is not None and not callable(summary):
        raise TypeError(f"register_measure: summary for {name!r} must be callable or None, got {type(summary).__name__}")
    measure = Measure(name, pair, summary, bool(symmetric), description)
    _REGISTRY[name] = measure
    return measure


def unregister_measure(name: str) -> None:
    """Remove a registered measure (KeyError-free: ValueError naming the known ones)."""
    if name not in _REGISTRY:
        raise ValueError(f"unregister_measure: {name!r} is not registered; registered: {sorted(_REGISTRY)}")
    del _REGISTRY[name]


def get_measure(name: str) -> Measure:
    """The registered (non-built-in) measure ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown similarity measure {name!r}; known: {list(measure_names())}")
    return _REGISTRY[name]


def measure_names() -> tuple[str, ...]:
    """Built-in names, then registered names in registration order."""
    return BUILTIN + tuple(_REGISTRY)


def check_metric_names(metrics: Iterable[str], where: str) -> tuple[str, ...]:
    """``metrics`` as a non-empty tuple of known names without repeats; ValueError naming ``where``."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    known = measure_names()
    unknown = [m for m in metrics if m not in known]
    if unknown or not metrics:
        raise ValueError(f"{where}: metrics must be a non-empty list of measure names from {list(known)} "
                         f"(register others with vaesim.similarity.register_measure), got {list(metrics)!r}")
    if len(set(metrics)) != len(metrics):
        raise ValueError(f"{where}: metrics lists a name twice: {list(metrics)!r}")
    return metrics
