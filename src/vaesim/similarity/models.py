"""Two torch models compared layer by layer in one call: :func:`compare_models`.

Both models run in eval mode under ``torch.no_grad`` on the same data; forward
hooks take each named layer's output, flattened to ``(B, features)`` float32 on
the CPU (as :class:`vaesim.activations.LayerRecorder` records it), and the
result is the table of :func:`vaesim.similarity.compare` for the model pair
``(a, b)``. Two estimators answer two questions:

``estimator="exact"`` (default): the CKA of all ``n`` examples at once
(Kornblith et al. 2019), the quantity a vaesim study stores. It equals
``LayerRecorder`` + :func:`compare` on the same data (the same summaries for
every layer held whole, see below; float32-product Grams within the bound of
:mod:`vaesim.similarity.summary`, "Mixed-precision Gram", for the others) and
does not depend on how the data are cut into batches.

``estimator="minibatch"``: the minibatch CKA of Nguyen et al. 2021 that
``torch-cka`` / ``pytorch-cka`` compute: the unbiased HSIC (Song et al. 2012,
eq. 5) of each batch's linear Grams, summed over batches,
``CKA = sum_t HSIC_t(K, L) / sqrt(sum_t HSIC_t(K, K) * sum_t HSIC_t(L, L))``.
It is an estimate of the population CKA (debiased within each batch), depends on
the batch size (and on which examples share a batch), needs no more memory than
one batch, and is not the full-data CKA: use it to compare with results of
those packages or when ``n`` is too large for ``n x n`` Grams. Rows carry the
metric name ``"cka_minibatch"``; scores are not clamped to [0, 1] (an unbiased
estimate may be slightly negative; pytorch-cka clamps).

Exact estimator, streamed (metrics ``"cka"`` / ``"cka_debiased"``). Linear CKA
needs each layer's centred Gram ``Kc = Xc Xc^T`` ``(n, n)``, and no sum over
batches gives it without the rows themselves when ``p > n``: a Gram entry pairs
two rows that may sit in any two batches. So a layer too wide to hold is read
again, row block by row block, in further passes over the data:

* pass 0 runs every batch through both models. A layer whose float32 rows fit
  in ``layer_bytes`` (``4 n p <= layer_bytes``), or that is no wider than its
  block (``p <= R``, ``R = layer_bytes // (4 p)`` rows, so ``n p <= n^2``), is
  held whole and summarised by :func:`vaesim.similarity.summarise`, exactly as
  :func:`compare` summarises it. A wider layer keeps its first block of ``R``
  rows and the float64 column sums, maxima and minima of the rest;
* pass ``k`` (``k = 1 .. ceil(n / R) - 1``) reads the batches from row ``k R``
  on, stops each forward pass once the layers still being streamed have run,
  centres the rows with the exact column means of pass 0 (float64, then
  rounded once to float32 when ``n^2 p >= MIXED_MIN_WORK``, as ``summarise``
  does), adds the tiles ``Kc[block k-1, rows >= k R]`` (one product of the held
  block with each batch) and holds block ``k``. Row norms (the Gram's diagonal)
  are float64. The data must give the same examples in the same order on every
  pass (a tensor, an array, a list of batches or a DataLoader without
  shuffling or random augmentation; checked by each batch's float64 sum).

Memory per layer (bytes): a held layer ``4 n p <= max(layer_bytes, 4 n^2)`` plus
its summary (``<= 8 n min(p, n)``; ``summarise`` works on one layer at a time,
right after pass 0, with its own working copy); a streamed layer two row blocks
(``<= 2 layer_bytes``) plus its float64 Gram (``8 n^2``, and a packed copy of
half that while it is handed to :func:`compare`) plus one batch. In all,
``O(n^2 + n min(p, n) + layer_bytes)`` per layer whatever ``p`` is, against
``4 n p`` for LayerRecorder. Metrics other than CKA (Procrustes needs a QR
factor of the whole activations; plug-in measures take the activations) hold
every layer whole (``4 n p``, as LayerRecorder).

Cost: pass 0 is one forward pass of each model; a held layer then costs what
:func:`compare` spends on it, a streamed one about ``n^2 p`` flops in torch
matrix products (its upper triangle, float32 for large layers) plus one float64
centring of the rows from ``k R`` in each pass ``k``; each further pass
forwards the remaining batches only as deep as the streamed layers. With the
default ``layer_bytes`` (64 MiB) a 32,768-feature layer at ``n = 2000`` is read
in 4 blocks of 512 rows. Products go through torch (the thread pool of the
forward passes), not numpy's BLAS, whose idle threads would spin beside them.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from vaesim.similarity import registry
from vaesim.similarity.engine import compare
from vaesim.similarity.measures import SAFE_EXPONENT
from vaesim.similarity.pairs import COLUMNS, model_label
from vaesim.similarity.summary import (
    MIXED_MIN_WORK,
    LayerSummary,
    pack_upper,
    summarise,
)

__all__ = ["ESTIMATORS", "MINIBATCH_METRIC", "compare_models"]

log = logging.getLogger(__name__)

ESTIMATORS = ("exact", "minibatch")
#: metric name of the rows of ``estimator="minibatch"``
MINIBATCH_METRIC = "cka_minibatch"
#: CKA metrics the exact estimator streams in row blocks (the others need every layer held whole)
STREAMED_METRICS = ("cka", "cka_debiased")
#: rows per batch when ``data`` is a tensor or array and no ``batch_size`` is given
DEFAULT_BATCH_SIZE = 256
#: float32 bytes of one layer's activations held at once by default (64 MiB)
DEFAULT_LAYER_BYTES = 64 << 20
#: memory for compare()'s row blocks of stacked packed Grams (its default, 256 MiB, is sized for whole studies)
COMPARE_BLOCK_BYTES = 32 << 20
#: float32 safe range of centred values before a float32 product (as the mixed Gram of ``summarise``)
_FLOAT32_SAFE_EXPONENT = 30


class _StopForward(Exception):
    """Raised by a hook once every layer still needed in this pass has run: the rest of the forward is skipped."""


# ---------------------------------------------------------------- which layers


def _side_specs(layers: Any, names: tuple[str, str]) -> tuple[Any, Any]:
    """``layers`` as one spec per model: None, a list of module names, or ``{table name: module name}``."""
    if layers is None or isinstance(layers, str):
        return (None, None) if layers is None else ([layers], [layers])
    if isinstance(layers, Mapping):
        if set(layers) == set(names) and all(not isinstance(v, str) for v in layers.values()):
            return layers[names[0]], layers[names[1]]
        if all(isinstance(v, str) for v in layers.values()):
            return layers, layers
        raise TypeError(
            "compare_models: layers as a dict must map table names to module names ({'conv1': '0', ...}) or "
            f"the two model names {list(names)} to their layer lists; got keys {list(layers)[:6]}"
        )
    if isinstance(layers, (list, tuple)):
        if len(layers) == 2 and all(isinstance(v, (list, tuple, Mapping)) for v in layers):
            return layers[0], layers[1]
        if all(isinstance(v, str) for v in layers):
            return list(layers), list(layers)
    raise TypeError(
        "compare_models: layers must be None (every leaf module with parameters), a list of module names used "
        "for both models, a pair (a_layers, b_layers), or a dict {table name: module name}; "
        f"got {type(layers).__name__} {layers!r:.120}"
    )


def _layer_map(model: Any, spec: Any, which: str) -> dict[str, str]:
    """``{table name: module name}`` of one model; ValueError naming unknown modules."""
    modules = dict(model.named_modules())
    if spec is None:
        chosen = {name: name for name, module in modules.items() if name and not any(True for _ in module.children())
                  and any(True for _ in module.parameters(recurse=False))}
        if not chosen:
            raise ValueError(f"compare_models: {which} has no leaf module with parameters; name its layers with "
                             "layers=[...] (module names from model.named_modules())")
        return chosen
    if isinstance(spec, Mapping) and all(isinstance(v, str) for v in spec.values()):
        chosen = {str(table): module for table, module in spec.items()}
    elif isinstance(spec, (list, tuple)) and all(isinstance(v, str) for v in spec):
        if len(set(spec)) != len(spec):
            raise ValueError(f"compare_models: the layers of {which} name a module twice: {list(spec)!r}")
        chosen = {name: name for name in spec}
    else:
        raise TypeError(f"compare_models: the layers of {which} must be a list of module names or a dict "
                        f"{{table name: module name}}, got {type(spec).__name__}")
    if not chosen:
        raise ValueError(f"compare_models: no layers given for {which}; name at least one module")
    unknown = [module for module in chosen.values() if module not in modules or module == ""]
    if unknown:
        available = [name for name in modules if name]
        raise ValueError(
            f"compare_models: {which} ({type(model).__name__}) has no module named {unknown}; available names: "
            f"{available[:40]}{' ...' if len(available) > 40 else ''}"
        )
    return chosen


# ---------------------------------------------------------------- the data


class _Source:
    """Model inputs in batches: ``(first row, input tensor (b, ...))``, the same on every pass."""

    def __init__(self, data: Any, batch_size: int | None):
        import torch

        self.torch = torch
        self.tensor = None
        if isinstance(data, np.ndarray) or torch.is_tensor(data):
            if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
                raise ValueError(f"compare_models: batch_size must be a positive int, got {batch_size!r}")
            self.tensor = torch.from_numpy(np.ascontiguousarray(data)) if isinstance(data, np.ndarray) else data
            if self.tensor.ndim == 0 or self.tensor.shape[0] == 0:
                raise ValueError(f"compare_models: data must be shaped (n, ...) with n >= 1 examples, got shape "
                                 f"{tuple(self.tensor.shape)}")
            self.batch_size = batch_size or DEFAULT_BATCH_SIZE
            self.reiterable = True
            return
        if batch_size is not None:
            raise ValueError("compare_models: batch_size applies to a tensor or array; a DataLoader or an iterable "
                             "of batches brings its own batches (leave batch_size=None)")
        if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
            raise TypeError(f"compare_models: data is a Dataset ({type(data).__name__}), which yields single "
                            "examples; wrap it: torch.utils.data.DataLoader(dataset, batch_size=256)")
        try:
            iterator = iter(data)
        except TypeError:
            raise TypeError(f"compare_models: data must be a torch tensor or numpy array (n, ...), a DataLoader or "
                            f"an iterable of batches; got {type(data).__name__}") from None
        self.iterable = data
        self.reiterable = iterator is not data
        self._first_iterator = iterator
        self.fingerprints: list[tuple[int, float]] = []

    def batches(self, pass_index: int, from_row: int = 0) -> Iterator[tuple[int, Any]]:
        """Every batch from the one holding row ``from_row`` on; later passes check the data did not change."""
        if self.tensor is not None:
            size = self.batch_size
            for start in range((from_row // size) * size, self.tensor.shape[0], size):
                yield start, self.tensor[start:start + size]
            return
        if pass_index > 0 and not self.reiterable:
            raise TypeError("compare_models: data is a one-pass iterator, but a layer too wide to hold needs more "
                            "passes; pass a tensor, a list of batches or a DataLoader, or raise layer_bytes")
        iterator = self._first_iterator if pass_index == 0 else iter(self.iterable)
        self._first_iterator = None
        start, index = 0, -1
        for index, batch in enumerate(iterator):
            x = self._input(batch, index)
            rows = int(x.shape[0])
            self._check(pass_index, index, x)
            if start + rows > from_row:
                yield start, x
            start += rows
        if pass_index > 0 and len(self.fingerprints) != index + 1:
            raise ValueError(f"compare_models: data gave {index + 1} batches on pass {pass_index} but "
                             f"{len(self.fingerprints)} on the first; it must give the same examples on every pass")

    def _input(self, batch: Any, index: int):
        torch = self.torch
        x = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        if not torch.is_tensor(x) or x.ndim == 0:
            raise TypeError(
                f"compare_models: batch {index} of data must be a tensor (b, ...) or a tuple/list whose first "
                f"element is one (as torchvision datasets give); got {type(batch).__name__}"
                + (f" holding {type(x).__name__}" if x is not batch else "")
            )
        return x

    def _check(self, pass_index: int, index: int, x) -> None:
        fingerprint = (int(x.shape[0]), float(x.detach().to("cpu", self.torch.float64).sum()))
        if pass_index == 0:
            self.fingerprints.append(fingerprint)
            return
        if index >= len(self.fingerprints) or self.fingerprints[index] != fingerprint:
            raise ValueError(
                f"compare_models: batch {index} of data differs between pass 0 and pass {pass_index} (rows, sum) "
                f"{self.fingerprints[index] if index < len(self.fingerprints) else None} vs {fingerprint}; a layer "
                "too wide to hold is read in several passes, so data must give the same examples in the same "
                "order each time: DataLoader(..., shuffle=False) without random transforms, or raise layer_bytes"
            )


# ---------------------------------------------------------------- forward hooks


def _first_tensor(output: Any, where: str):
    import torch

    if torch.is_tensor(output):
        return output
    items = output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list)) else ()
    for item in items:
        if torch.is_tensor(item):
            return item
    raise TypeError(f"compare_models: {where} returned {type(output).__name__}, which holds no tensor")


class _Taps:
    """Forward hooks on the chosen modules of one model, handing each output to a consumer while the forward runs.

    A consumer gets the output flattened to ``(b, p)`` float32 on the CPU; it may be a view of the module's own
    output tensor (a later in-place op, e.g. ``ReLU(inplace=True)``, would change it), so a consumer copies what it
    keeps. Working inside the hook also means no layer's output is held longer than its own work needs.
    """

    def __init__(self, model: Any, modules: Sequence[str], which: str):
        self.model, self.which = model, which
        named = dict(model.named_modules())
        self.consumers: dict[str, Callable[[np.ndarray], None]] = {}
        self.seen: set[str] = set()
        self.rows = 0
        self.stop_early = False
        self.handles = [named[name].register_forward_hook(self._hook(name)) for name in dict.fromkeys(modules)]

    def _hook(self, name: str):
        import torch

        def record(_module, _inputs, output) -> None:
            consumer = self.consumers.get(name)
            if consumer is None:
                return
            if name in self.seen:
                raise ValueError(f"compare_models: module {name!r} of {self.which} ran twice in one forward pass; "
                                 "compare_models takes one output per example: name a module that runs once")
            self.seen.add(name)
            tensor = _first_tensor(output, f"module {name!r} of {self.which}").detach()
            if tensor.ndim == 0 or tensor.shape[0] != self.rows:
                raise ValueError(f"compare_models: module {name!r} of {self.which} gave an output of shape "
                                 f"{tuple(tensor.shape)} for a batch of {self.rows} examples; its output must be "
                                 "batch-first, one row per example")
            consumer(tensor.reshape(self.rows, -1).to("cpu", torch.float32).numpy())  # (b, p)
            if self.stop_early and self.seen >= self.consumers.keys():
                raise _StopForward

        return record

    def run(self, x, consumers: Mapping[str, Callable[[np.ndarray], None]], *, stop_early: bool = True) -> None:
        """One forward pass of the input batch ``x`` ``(b, ...)``: ``consumers[module](rows (b, p))`` for each
        named module; with ``stop_early`` the pass ends once all of them have run."""
        import torch

        self.consumers, self.seen, self.rows, self.stop_early = dict(consumers), set(), int(x.shape[0]), stop_early
        try:
            with torch.no_grad():
                self.model(_to_model(x, self.model))
        except _StopForward:
            pass
        finally:
            missing = sorted(self.consumers.keys() - self.seen)
            self.consumers = {}
        if missing:
            raise ValueError(f"compare_models: modules {missing} of {self.which} did not run in its forward pass; "
                             "name modules that the forward pass calls")

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def _to_model(x, model):
    """``x`` on the device of ``model``'s first parameter (or buffer), floating inputs in its floating dtype."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    if tensor is None:
        return x
    if x.is_floating_point() and tensor.is_floating_point() and x.dtype != tensor.dtype:
        x = x.to(tensor.dtype)
    return x.to(tensor.device)


class _EvalMode:
    """Eval mode for the models inside the block; every module's own training flag restored afterwards."""

    def __init__(self, models: Sequence[Any]):
        self.flags = [(module, module.training) for model in models for module in model.modules()]
        self.models = models

    def __enter__(self) -> None:
        for model in self.models:
            model.eval()

    def __exit__(self, *exc) -> None:
        for module, flag in self.flags:
            module.training = flag


# ---------------------------------------------------------------- exact estimator


#: rows per slice of a block's product with itself (only the upper triangle of the Gram is used)
_DIAGONAL_ROWS = 256
#: float64 bytes of the row slices that centring works on (they stay in cache)
_SLICE_BYTES = 4 << 20


def _row_slices(rows: int, p: int) -> list[tuple[int, int]]:
    """Row ranges of about :data:`_SLICE_BYTES` float64 bytes."""
    step = max(1, _SLICE_BYTES // (8 * p))
    return [(i0, min(rows, i0 + step)) for i0 in range(0, rows, step)]


def _product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b.T`` ``(rows_a, rows_b)`` in their dtype, by torch's matmul: the thread pool of the forward passes
    it alternates with (numpy's BLAS would keep a second pool of threads spinning beside torch's after each
    call, and the next forward pass would share its cores with them)."""
    import torch

    return (torch.from_numpy(a) @ torch.from_numpy(b).T).numpy()


class _LayerStream:
    """One layer of one model for the exact estimator: held whole, or its centred Gram built in row blocks.

    Fitted state after :meth:`end_first_pass`: ``n_``; a held layer's ``summary_`` (its LayerSummary, or its
    activations ``(n, p)`` float32 for metrics beyond CKA); a streamed layer's ``mean_`` ``(p,)``, ``scale_``,
    ``mixed_``, ``gram_`` ``(n, n)`` float64 (upper tiles) and ``row_norms_`` ``(n,)``.
    """

    def __init__(self, label: str, layer_bytes: int, hold_whole: bool):
        self.label, self.layer_bytes, self.hold_whole = label, layer_bytes, hold_whole
        self.p = self.block = None
        self.rows_seen = 0
        self.held: list[np.ndarray] = []
        self.n_ = 0
        self.summary_: LayerSummary | np.ndarray | None = None
        self._sums = self._max = self._min = None
        self._block_rows: list[np.ndarray] = []
        self._current: np.ndarray | None = None

    # pass 0 -------------------------------------------------------
    def first_pass(self, rows: np.ndarray) -> None:
        """Add one batch ``(b, p)`` float32 of pass 0 (copied where kept: it may be a view of the module output)."""
        if self.p is None:
            self.p = rows.shape[1]
            self.block = max(1, self.layer_bytes // (4 * self.p))
            if self.hold_whole or self.p <= self.block:
                self.block = None  # held whole, whatever n turns out to be
        elif rows.shape[1] != self.p:
            raise ValueError(f"compare_models: {self.label} gave {rows.shape[1]} features in one batch and "
                             f"{self.p} in an earlier one; each layer's output must have one size")
        start = self.rows_seen
        self.rows_seen += rows.shape[0]
        if self.block is None or start < self.block:
            keep = rows if self.block is None else rows[: self.block - start]
            self.held.append(np.array(keep))
            rows = rows[keep.shape[0]:]
        if rows.shape[0]:
            self._add_statistics(rows)

    def _join_held(self) -> np.ndarray:
        """The held batches as one array, each batch released as it is copied (peak: the result plus one batch)."""
        if len(self.held) == 1:
            return self.held.pop()
        joined = np.empty((sum(len(batch) for batch in self.held), self.p), dtype=np.float32)
        start = 0
        while self.held:
            batch = self.held.pop(0)
            joined[start:start + len(batch)] = batch
            start += len(batch)
        return joined

    def _add_statistics(self, rows: np.ndarray) -> None:
        """Column sums (float64), maxima and minima of ``rows`` ``(b, p)``."""
        sums = np.add.reduce(rows, axis=0, dtype=np.float64)
        if self._sums is None:
            self._sums, self._max, self._min = sums, rows.max(axis=0), rows.min(axis=0)
        else:
            self._sums += sums
            np.maximum(self._max, rows.max(axis=0), out=self._max)
            np.minimum(self._min, rows.min(axis=0), out=self._min)

    @property
    def passes(self) -> int:
        """Passes over the data this layer needs (1 when held whole)."""
        return 1 if self.block is None else -(-self.n_ // self.block)

    def end_first_pass(self, metrics: tuple[str, ...]) -> None:
        """Summarise a held layer (as :func:`compare` would), or centre a streamed layer's first block."""
        self.n_ = self.rows_seen
        if self.block is None or self.n_ <= self.block:
            self.block = None
            whole = self._join_held()  # (n, p) float32
            # metrics beyond CKA: compare() summarises the activations itself
            self.summary_ = whole if not set(metrics) <= set(STREAMED_METRICS) else \
                summarise(whole, name=self.label, metrics=metrics)
            return
        first = self._join_held()  # (block, p) float32, raw
        self._add_statistics(first)
        self.mean_ = self._sums / self.n_  # (p,) float64
        if not np.isfinite(self.mean_).all():
            raise ValueError(f"{self.label}: expected finite values, found NaN/inf activations; remove or repair "
                             "those examples before comparing")
        self.mixed_ = self.n_ * self.n_ * self.p >= MIXED_MIN_WORK
        peak = float(np.max(np.maximum(self._max - self.mean_, self.mean_ - self._min)))
        exponent = math.frexp(peak)[1] if peak > 0 else 0
        limit = _FLOAT32_SAFE_EXPONENT if self.mixed_ else SAFE_EXPONENT
        self.scale_ = math.ldexp(1.0, -exponent) if abs(exponent) > limit else 1.0
        self._max = self._min = self._sums = None
        self.gram_ = np.zeros((self.n_, self.n_))
        self.row_norms_ = np.zeros(self.n_)
        self._current, self.row_norms_[: first.shape[0]] = self._centre(first)
        del first
        self._diagonal_tile(0)

    # passes 1 .. ----------------------------------------------------
    def block_start(self, k: int) -> int:
        return k * self.block

    def add_rows(self, k: int, rows: np.ndarray, *, start: int) -> None:
        """Pass ``k``: rows ``[start, start + b)`` of the data; tiles of block ``k - 1`` against those from ``k R``.

        The rows of block ``k`` are held (centred) for the next pass and give their float64 row norms.
        """
        first = self.block_start(k)
        if start + rows.shape[0] <= first:
            return
        if start < first:
            rows, start = rows[first - start:], first
        centred, norms = self._centre(rows)  # (b', p), (b',)
        r0 = self.block_start(k - 1)
        self.gram_[r0:r0 + self._current.shape[0], start:start + centred.shape[0]] = _product(self._current, centred)
        stop = min(rows.shape[0], self.block_start(k + 1) - start)
        if stop > 0:
            self._block_rows.append(centred[:stop])
            self.row_norms_[start:start + stop] = norms[:stop]

    def end_pass(self, k: int) -> None:
        self._current = self._block_rows[0] if len(self._block_rows) == 1 else np.concatenate(self._block_rows)
        self._block_rows = []
        self._diagonal_tile(k)

    def _centre(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``(b, p)`` centred in float64 with the exact means (scaled if extreme), rounded to float32 when
        mixed, and their float64 squared norms ``(b,)``; in cache-sized row slices, on this thread (a thread
        pool here would contend with torch's between the forward passes and products it alternates with)."""
        out = np.empty(rows.shape, dtype=np.float32 if self.mixed_ else np.float64)
        norms = np.empty(rows.shape[0])
        for i0, i1 in _row_slices(*rows.shape):
            values = np.subtract(rows[i0:i1], self.mean_, dtype=np.float64)  # (slice, p) float64, in cache
            if self.scale_ != 1.0:
                values *= self.scale_
            norms[i0:i1] = np.einsum("ij,ij->i", values, values)
            out[i0:i1] = values
        return out, norms

    def _diagonal_tile(self, k: int) -> None:
        """The upper triangle of block ``k`` with itself, in row slices of :data:`_DIAGONAL_ROWS` (each slice
        against itself and the rows after it: about half the block's square, as a symmetric rank-k update)."""
        r0, rows = self.block_start(k), self._current.shape[0]
        for i0 in range(0, rows, _DIAGONAL_ROWS):
            i1 = min(rows, i0 + _DIAGONAL_ROWS)
            self.gram_[r0 + i0:r0 + i1, r0 + i0:r0 + rows] = _product(self._current[i0:i1], self._current[i0:])

    def summary(self) -> LayerSummary | np.ndarray:
        """The layer as :func:`compare` takes it: a LayerSummary, or (metrics beyond CKA) its activations."""
        if self.summary_ is not None:
            return self.summary_
        self._current = None
        np.fill_diagonal(self.gram_, self.row_norms_)
        gram, self.gram_ = self.gram_, None
        packed = pack_upper(gram, scale=True)  # (n(n+1)/2,) float64
        del gram
        return LayerSummary(name=self.label, n=self.n_, num_features=self.p, row_norms=self.row_norms_,
                            total_variance=float(self.row_norms_.sum()), gram=packed)


def _exact(models, taps, states, source: _Source, metrics: tuple[str, ...]) -> None:
    """Run pass 0 and every further pass the streamed layers need; ``states[(model, module)]`` are filled."""
    for start, x in source.batches(0):
        for m, model in enumerate(models):
            taps[m].run(x, {module: state.first_pass for (mm, module), state in states.items() if mm == m})
    if not any(state.rows_seen for state in states.values()):
        raise ValueError("compare_models: data gave no examples; pass at least 2 (n, ...)")
    for state in states.values():
        state.end_first_pass(metrics)
    total = max(state.passes for state in states.values())
    streamed = [state.label for state in states.values() if state.passes > 1]
    if streamed:
        log.info("compare_models: %d further passes for %s (layer_bytes too small to hold them)", total - 1,
                 ", ".join(streamed))
    for k in range(1, total):
        active = {key: state for key, state in states.items() if state.passes > k}
        from_row = min(state.block_start(k) for state in active.values())
        for start, x in source.batches(k, from_row):
            for m in range(len(models)):
                consumers = {module: functools.partial(state.add_rows, k, start=start)
                             for (mm, module), state in active.items()
                             if mm == m and start + x.shape[0] > state.block_start(k)}
                if consumers:
                    taps[m].run(x, consumers)
        for state in active.values():
            state.end_pass(k)


# ---------------------------------------------------------------- minibatch estimator


#: rows of a batch whose mean shifts it before a float32 Gram (minibatch estimator)
_SHIFT_ROWS = 32


def _batch_gram(rows: np.ndarray) -> np.ndarray:
    """``K~``: the Gram of one batch ``(b, p)`` with a zero diagonal, ``(b, b)`` float64.

    The unbiased HSIC is translation invariant (Song et al. 2012) and is computed from ``K~`` by the general
    formula (no centring assumed), so shifting the rows by any vector first changes no value; a shift close to
    the mean keeps the large entries of uncentred layers (post-ReLU, dense codes with an offset) from cancelling
    (pytorch-cka's float32 Grams of the unshifted activations lose up to every digit there). Large batches
    (``b^2 p >= MIXED_MIN_WORK``) are shifted by the mean of their first :data:`_SHIFT_ROWS` rows (within a
    fraction of a standard deviation of the batch mean: no cancellation, at a third of the cost of the exact
    mean) and multiplied in float32 (entry errors ``<= (2u + gamma) |v_i| |v_j|`` of the shifted rows, as the
    mixed Gram of :mod:`vaesim.similarity.summary`); smaller ones are centred and multiplied in float64.
    """
    import torch

    b, p = rows.shape
    if b * b * p >= MIXED_MIN_WORK:
        shift = rows[:_SHIFT_ROWS].mean(axis=0, dtype=np.float64).astype(np.float32)  # (p,)
        values = torch.from_numpy(rows) - torch.from_numpy(shift)  # (b, p) float32, on torch's threads
    else:
        values = torch.from_numpy(np.subtract(rows, rows.mean(axis=0, dtype=np.float64), dtype=np.float64))
    gram = (values @ values.T).numpy().astype(np.float64)  # (b, b)
    np.fill_diagonal(gram, 0.0)
    return gram


def _store_batch_gram(grams: np.ndarray, row: int, rows: np.ndarray) -> None:
    """``grams[row] = K~`` of one layer's batch ``rows`` ``(b, p)``, flattened to ``(b^2,)``."""
    grams[row] = _batch_gram(rows).ravel()


def _minibatch(models, taps, layer_maps, owner, labels, source: _Source) -> pd.DataFrame:
    """Rows of the minibatch CKA (Nguyen et al. 2021) of every (a layer, b layer).

    Per batch of ``b`` examples and layers ``i, j`` (Song et al. 2012, eq. 5, ``K~`` zero-diagonal Grams):
    ``HSIC = [<K~_i, K~_j> + (1'K~_i 1)(1'K~_j 1) / ((b-1)(b-2)) - 2 (K~_i 1).(K~_j 1) / (b-2)] / (b(b-3))``,
    for every layer pair at once from the stacked Grams ``G`` ``(L, b^2)``: ``G G^T``, row sums ``S`` ``(L, b)``.
    """
    index = list(dict.fromkeys((owner[side], module) for side in (0, 1) for module in layer_maps[side].values()))
    position = {key: i for i, key in enumerate(index)}
    a_rows = [position[(owner[0], module)] for module in layer_maps[0].values()]
    b_rows = [position[(owner[1], module)] for module in layer_maps[1].values()]
    hsic_sum = np.zeros((len(index), len(index)))
    n = batches = 0
    for batch, (_start, x) in enumerate(source.batches(0)):
        b = int(x.shape[0])
        if b <= 3:
            raise ValueError(f"compare_models: batch {batch} of data has {b} examples; the minibatch estimator's "
                             "unbiased HSIC needs more than 3 per batch (use a larger batch_size or drop_last=True)")
        grams = np.empty((len(index), b * b))  # (L, b^2): every layer's K~, flattened

        for m in range(len(models)):
            taps[m].run(x, {module: functools.partial(_store_batch_gram, grams, position[(mm, module)])
                            for (mm, module) in index if mm == m})
        sums = grams.reshape(len(index), b, b).sum(axis=2)  # (L, b) K~ 1
        totals = sums.sum(axis=1)  # (L,) 1'K~1
        products = _product(grams, grams)  # (L, L) <K~_i, K~_j>
        hsic_sum += (products + np.outer(totals, totals) / ((b - 1.0) * (b - 2.0))
                     - 2.0 / (b - 2.0) * _product(sums, sums)) / (b * (b - 3.0))
        n += b
        batches += 1
    log.info("compare_models: minibatch CKA over %d batches, %d examples", batches, n)
    rows = []
    for (la, i) in zip(layer_maps[0], a_rows):
        for (lb, j) in zip(layer_maps[1], b_rows):
            hkk, hll = hsic_sum[i, i], hsic_sum[j, j]
            bad = [model_label(label, layer) for label, layer, h in ((labels[0], la, hkk), (labels[1], lb, hll))
                   if not h > 0.0]
            if bad:
                score = math.nan
                note = (f"summed unbiased HSIC of {' and '.join(bad)} with itself is not positive: minibatch CKA "
                        "undefined (a constant layer?)")
            else:
                score, note = float(hsic_sum[i, j] / math.sqrt(hkk * hll)), ""
            rows.append((labels[0], la, labels[1], lb, MINIBATCH_METRIC, score, n, note))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["n"] = frame["n"].astype("int64")
    return frame


# ---------------------------------------------------------------- public entry point


def compare_models(
    model_a: Any,
    model_b: Any,
    data: Any,
    *,
    layers: Any = None,
    metrics: Sequence[str] | str = ("cka",),
    estimator: str = "exact",
    names: tuple[str, str] = ("a", "b"),
    batch_size: int | None = None,
    layer_bytes: int = DEFAULT_LAYER_BYTES,
) -> pd.DataFrame:
    """Similarity of every layer of ``model_a`` with every layer of ``model_b`` on the same ``data``.

    Example:
        >>> table = compare_models(net_seed0, net_seed1, probe_images, layers=["conv1", "conv2", "fc"])
        >>> table.pivot(index="a_layer", columns="b_layer", values="score")

    Args:
        model_a, model_b: any ``torch.nn.Module`` (the same object runs once). Both run in eval mode under
            ``torch.no_grad``; every module's training flag is restored afterwards. Inputs go to the
            device (and floating dtype) of each model's first parameter.
        data: the examples: a tensor or numpy array ``(n, ...)`` cut into batches of ``batch_size`` rows; or
            a DataLoader / iterable of batches, each a tensor ``(b, ...)`` or a tuple/list whose first element
            is the input (as torchvision datasets give ``(images, labels)``). A one-pass iterator (generator)
            works when no layer needs a second pass (see the module docstring).
        layers: which modules to record, by name in ``model.named_modules()`` (layer outputs flattened to
            ``(b, features)``; a module returning a tuple or dict is recorded by its first tensor). ``None``
            (default): every leaf module with its own parameters (convolutions, linear layers, norms; not
            ReLUs), in definition order. A list of names: the same names in both models. A pair
            ``(a_layers, b_layers)`` or ``{names[0]: a_layers, names[1]: b_layers}``: each model its own.
            A dict ``{table name: module name}`` (alone or as either side) names the table's layers.
        metrics: built-in ``"cka"`` (default), ``"cka_debiased"``, ``"procrustes"`` or any registered measure
            (:func:`vaesim.similarity.register_measure`), as :func:`compare` takes them. CKA metrics are
            streamed with bounded memory; any other metric holds every layer whole. The minibatch
            estimator takes ``"cka"`` only.
        estimator: ``"exact"`` (full-data CKA, as a study computes it; equals LayerRecorder +
            :func:`compare`) or ``"minibatch"`` (Nguyen et al. 2021 / pytorch-cka: unbiased HSIC summed over
            batches; depends on the batch size). See the module docstring.
        names: model keys in the table's ``a_model`` and ``b_model`` columns.
        batch_size: rows per batch for tensor/array ``data`` (default 256); must be None for a DataLoader.
        layer_bytes: float32 bytes of one layer's activations held at once (default 64 MiB). A layer whose
            activations exceed it (``4 n p > layer_bytes``) and that is wider than its block (``p > R``,
            ``R = layer_bytes // (4 p)`` rows) is streamed in blocks of ``R`` rows, one more pass over the
            data per block; its memory stays within ``2 layer_bytes + 8 n^2`` bytes (module docstring).

    Returns:
        DataFrame with the columns of :func:`compare` (``a_model, a_layer, b_model, b_layer, metric, score,
        n, note``): every ``(a_layer, b_layer)`` in layer order, ``a_model = names[0]``, ``b_model =
        names[1]``, ``n`` = the number of examples. The minibatch estimator's rows have metric
        ``"cka_minibatch"``.

    Raises:
        TypeError: a model is not a ``torch.nn.Module``, or ``data`` / ``layers`` of the wrong kind.
        ValueError: an unknown module name, an unknown metric or estimator, batches of 3 or fewer examples
            (minibatch), data that change between passes, or non-finite activations.
    """
    import torch

    for which, model in (("model_a", model_a), ("model_b", model_b)):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"compare_models: {which} must be a torch.nn.Module, got {type(model).__name__}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"compare_models: estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if not (isinstance(names, (tuple, list)) and len(names) == 2 and names[0] != names[1]):
        raise ValueError(f"compare_models: names must be two different model keys, got {names!r}")
    if not isinstance(layer_bytes, int) or layer_bytes < 1:
        raise ValueError(f"compare_models: layer_bytes must be a positive int (bytes), got {layer_bytes!r}")
    metrics = registry.check_metric_names(metrics, "compare_models")
    if estimator == "minibatch" and metrics != ("cka",):
        raise ValueError(f"compare_models: the minibatch estimator computes linear CKA only (metrics=('cka',)); "
                         f"got {metrics!r}")
    labels = (names[0], names[1])
    spec_a, spec_b = _side_specs(layers, labels)
    layer_maps = (_layer_map(model_a, spec_a, "model_a"), _layer_map(model_b, spec_b, "model_b"))
    models = [model_a] if model_b is model_a else [model_a, model_b]
    owner = (0, 0 if len(models) == 1 else 1)
    source = _Source(data, batch_size)
    taps = []
    try:
        for m, model in enumerate(models):
            modules = [module for side in (0, 1) if owner[side] == m for module in layer_maps[side].values()]
            taps.append(_Taps(model, modules, "model_a" if m == 0 else "model_b"))
        with _EvalMode(models):
            if estimator == "minibatch":
                return _minibatch(models, taps, layer_maps, owner, labels, source)
            hold_whole = not set(metrics) <= set(STREAMED_METRICS)
            states = {}
            for side in (0, 1):
                for table_name, module in layer_maps[side].items():
                    key = (owner[side], module)
                    if key not in states:
                        states[key] = _LayerStream(model_label(labels[side], table_name), layer_bytes, hold_whole)
            _exact(models, taps, states, source, metrics)
    finally:
        for tap in taps:
            tap.close()
    summaries = {key: state.summary() for key, state in states.items()}
    inputs = {labels[side]: {table_name: summaries[(owner[side], module)]
                             for table_name, module in layer_maps[side].items()} for side in (0, 1)}
    return compare(inputs, metrics=metrics, model_pairs=[labels], block_bytes=COMPARE_BLOCK_BYTES)
