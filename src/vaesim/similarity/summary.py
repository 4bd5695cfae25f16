"""Per-layer summaries: the work done once per (model, layer) and reused for every pair.

A :class:`LayerSummary` keeps, in float64, only what the pair measures need and
about ``min(n^2, n p)`` numbers:

* ``features``: centred activations ``(n, p)`` when ``p <= n / 2`` (or
  ``p <= n`` when Procrustes is wanted: they are then the Procrustes factor);
  the Gram of such a layer is formed when a comparison needs it;
* ``gram``: the centred Gram ``Kc = Xc Xc^T`` when ``p > n / 2``, stored packed
  (upper triangle, row-major, off-diagonal entries scaled by ``sqrt(2)`` so
  that the plain dot product of two packed vectors is ``<Kc, Lc>_F``);
  formed in mixed precision for large layers (see "Mixed-precision Gram");
* ``r``: for Procrustes with ``p > n``, the packed upper-triangular ``R`` of
  ``Xc^T = Q R`` (``R^T R = Kc``), the reduced factor of width ``n``;
* ``row_norms`` = ``diag(Kc)`` ``(n,)`` and ``total_variance`` = ``tr Kc``
  (needed by the unbiased HSIC estimator and the Procrustes normalisation).

Summaries are saved as ``.npz`` (no pickle; one JSON metadata entry) through
:func:`vaesim.utils.atomic_path`.

Mixed-precision Gram (``precision="mixed"``; ``"auto"`` uses it when
``n^2 p >= MIXED_MIN_WORK``): the column means are accumulated and subtracted
in float64 (so offsets of any size cancel exactly as in the float64 route),
the centred values ``Xc`` are rounded once to float32 and the Gram is one
float32 ``ssyrk`` (about twice the float64 ``dsyrk`` rate); its diagonal is
then replaced by the float64 row norms ``||xc_i||^2``. Error: with ``u =
2^-24``, every off-diagonal entry is within ``(2u + gamma) |xc_i| |xc_j|`` of
the float64 value, where the accumulation term ``gamma`` is ``~u`` for
round-to-nearest sums of centred data (random signs; ``p u`` in the worst
case), and the errors are uncorrelated with any other layer's Gram, so
``<Kc, Lc>`` and ``||Kc||`` and hence every CKA move by ``O(u)`` relative to
``||Kc|| ||Lc||``, far below 1e-6. The diagonal, the traces and
``row_norms`` (which the debiased estimator subtracts and the Procrustes
normalisation divides by) are exact float64. The tests in
``tests/similarity/test_similarity_mixed.py`` check every measure against
the float64 textbook formulas within 1e-6 on the adversarial cases (offsets
1e3-1e4 on float32 input, p >> n, rank-deficient and nearly rank-one
layers). Procrustes factors (QR) stay in float64; on a GPU the mixed route
is used only when torch's float32 matmul precision is "highest" (no TF32).
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from vaesim.similarity.measures import centre_columns, unit_scale
from vaesim.similarity.validation import as_matrix
from vaesim.utils import atomic_path

__all__ = [
    "LayerSummary",
    "summarise",
    "save_summaries",
    "load_summaries",
    "packed_offset",
    "pack_upper",
    "pack_row_block",
    "unpack_upper",
    "METRICS",
]

METRICS = ("cka", "cka_debiased", "procrustes")
FORMAT_NAME = "vaesim-layer-summaries"
FORMAT_VERSION = 1
SQRT2 = math.sqrt(2.0)
PRECISIONS = ("auto", "mixed", "float64")
#: ``n^2 p`` from which ``precision="auto"`` forms a Gram in mixed precision (smaller ones: float64, cheap anyway)
MIXED_MIN_WORK = 2**27
#: float64 bytes per row block while centring for the mixed route (stays in cache)
_CENTRE_BLOCK_BYTES = 4 << 20


def packed_offset(i: int, n: int) -> int:
    """Index in a packed upper triangle (row-major) where row ``i`` starts."""
    return i * n - (i * (i - 1)) // 2


@lru_cache(maxsize=8)
def _block_layout(i0: int, i1: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mask selecting ``j >= i`` in rows ``[i0, i1)`` x columns ``[i0, n)``, and diagonal positions."""
    rows = np.arange(i0, i1)[:, None]
    cols = np.arange(i0, n)[None, :]
    mask = cols >= rows
    diag_pos = np.array([packed_offset(i, n) - packed_offset(i0, n) for i in range(i0, i1)], dtype=np.int64)
    return mask, diag_pos


def pack_row_block(block: np.ndarray, i0: int, n: int, *, scale: bool) -> np.ndarray:
    """Pack rows ``[i0, i0 + b)`` of a symmetric/upper matrix.

    Args:
        block: ``(b, n - i0)``: rows ``i0..i0+b-1``, columns ``i0..n-1``.
        scale: multiply off-diagonal entries by ``sqrt(2)`` (Gram packing).

    Returns:
        the packed segment ``[packed_offset(i0), packed_offset(i0 + b))``.
    """
    b = block.shape[0]
    mask, diag_pos = _block_layout(i0, i0 + b, n)
    segment = block[mask]
    if scale:
        diagonal = segment[diag_pos]
        segment *= SQRT2
        segment[diag_pos] = diagonal
    return segment


def pack_upper(matrix: np.ndarray, *, scale: bool) -> np.ndarray:
    """Pack the upper triangle of ``matrix`` ``(n, n)`` row-major into ``n(n+1)/2`` numbers."""
    n = matrix.shape[0]
    return pack_row_block(np.asarray(matrix), 0, n, scale=scale)


def unpack_upper(packed: np.ndarray, n: int, *, scale: bool, symmetric: bool) -> np.ndarray:
    """Inverse of :func:`pack_upper`: ``(n, n)`` (mirrored if ``symmetric``, else upper triangular)."""
    mask, diag_pos = _block_layout(0, n, n)
    values = np.array(packed, dtype=np.float64)
    if scale:
        diagonal = values[diag_pos]
        values /= SQRT2
        values[diag_pos] = diagonal
    out = np.zeros((n, n))
    out[mask] = values
    if symmetric:
        out = out + np.triu(out, 1).T
    return out


@dataclass(frozen=True, eq=False)
class LayerSummary:
    """Centred float64 summary of one layer on ``n`` examples (see module docstring).

    Attributes:
        name: the layer's name (used in messages).
        n: number of examples.
        num_features: ``p`` of the original activations.
        row_norms: ``diag(Kc)`` ``(n,)``.
        total_variance: ``tr(Kc) = ||Xc||_F^2``.
        features: centred activations ``(n, p)`` or None.
        gram: packed centred Gram ``(n(n+1)/2,)`` (off-diagonals x sqrt 2) or None.
        r: packed ``R`` ``(n(n+1)/2,)`` with ``R^T R = Kc`` or None.
    """

    name: str
    n: int
    num_features: int
    row_norms: np.ndarray
    total_variance: float
    features: np.ndarray | None = None
    gram: np.ndarray | None = None
    r: np.ndarray | None = None

    @property
    def zero_variance(self) -> bool:
        """True when every feature is constant (CKA and Procrustes undefined)."""
        return self.total_variance == 0.0

    @property
    def has_gram(self) -> bool:
        return self.gram is not None or self.features is not None

    @property
    def has_factor(self) -> bool:
        """True when the Procrustes factor is available."""
        return self.r is not None or (self.features is not None and self.num_features <= self.n)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.features, self.gram, self.r, self.row_norms) if a is not None)

    def gram_block(self, i0: int, i1: int) -> np.ndarray:
        """Packed centred-Gram segment for rows ``[i0, i1)`` (float64)."""
        if self.gram is not None:
            return np.asarray(self.gram[packed_offset(i0, self.n) : packed_offset(i1, self.n)], dtype=np.float64)
        if self.features is None:
            raise ValueError(f"summary of {self.name!r} holds neither a Gram nor features")
        block = self.features[i0:i1] @ self.features[i0:].T  # (b, n - i0)
        return pack_row_block(block, i0, self.n, scale=True)

    def packed_gram(self) -> np.ndarray:
        """Whole packed centred Gram ``(n(n+1)/2,)``."""
        return self.gram_block(0, self.n)

    def full_gram(self) -> np.ndarray:
        """Centred Gram ``(n, n)``."""
        if self.features is not None:
            return self.features @ self.features.T
        return unpack_upper(self.packed_gram(), self.n, scale=True, symmetric=True)

    def factor(self) -> np.ndarray:
        """Procrustes factor ``F`` ``(n, r)`` with ``F F^T = Kc``, ``r = min(n, p)``."""
        if self.features is not None and self.num_features <= self.n:
            return self.features
        if self.r is None:
            raise ValueError(
                f"summary of {self.name!r} was made without the Procrustes factor; "
                "summarise it again with metrics including 'procrustes'"
            )
        return unpack_upper(self.r, self.n, scale=False, symmetric=False).T


def check_metrics(metrics: Iterable[str], where: str) -> tuple[str, ...]:
    """``metrics`` as a tuple, checked against :data:`METRICS`; ``where`` names the caller in the error."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"{where}: metrics must be a non-empty subset of {METRICS}, got {metrics!r}")
    return metrics


def summarise(x: Any, *, name: str = "x", metrics: Iterable[str] = ("cka", "procrustes"), device: Any = None,
              precision: str = "auto") -> LayerSummary:
    """Centre one layer's activations once and keep what the pair measures need.

    Args:
        x: numpy array or torch tensor ``(n, ...)`` (float32/float64).
        name: how the layer is named in messages.
        metrics: which of ``"cka"``, ``"cka_debiased"``, ``"procrustes"`` the
            summary must serve (Procrustes adds the QR factor for ``p > n``).
        device: torch device for the Gram / QR (e.g. ``"cuda"``); None = numpy.
        precision: how a stored Gram (``p > n / 2``, no QR factor needed) is
            formed: ``"mixed"`` (float64 centring, float32 product, float64
            diagonal; see the module docstring for the error bound),
            ``"float64"``, or ``"auto"`` (mixed when ``n^2 p >= MIXED_MIN_WORK``).

    Returns:
        :class:`LayerSummary` (float64, about ``min(n^2, n p)`` numbers).
    """
    metrics = check_metrics(metrics, "summarise")
    if precision not in PRECISIONS:
        raise ValueError(f"summarise: precision must be one of {PRECISIONS}, got {precision!r}")
    matrix = as_matrix(x, name, check_finite=False)  # finiteness is checked while centring
    n, p = matrix.shape
    want_factor = "procrustes" in metrics
    mixed = p > n / 2 and _use_mixed(precision, n, p, device)
    if mixed and not want_factor:  # no float64 copy of the features is needed at all
        packed, row_norms = _mixed_gram(matrix, name, device)  # (n(n+1)/2,) float64, (n,)
        return LayerSummary(
            name=name, n=n, num_features=p, row_norms=row_norms, total_variance=float(row_norms.sum()),
            gram=packed,
        )
    xc = unit_scale(centre_columns(matrix, name))  # (n, p) float64; extreme magnitudes scaled (exact, power of 2)
    keep_features = p <= n / 2 or (want_factor and p <= n)
    features = xc if keep_features else None
    gram = r_packed = None
    if p > n / 2:  # the packed Gram is no larger than the features: store it
        if want_factor and p > n:
            r = _qr_r(xc, device)  # (n, n) upper, R^T R = Kc
            r_packed = pack_upper(r, scale=False)
            gram_full = r.T @ r
        elif mixed:  # n/2 < p <= n with Procrustes: the float64 features are kept anyway
            gram_full = _gram32(xc.astype(np.float32), np.einsum("ij,ij->i", xc, xc), device)
        else:
            gram_full = _gram(xc, device)  # (n, n) syrk
        del xc
        row_norms = np.diagonal(gram_full).copy()
        gram = pack_upper(gram_full, scale=True)
    else:
        row_norms = np.einsum("ij,ij->i", xc, xc)
    return LayerSummary(
        name=name, n=n, num_features=p, row_norms=row_norms, total_variance=float(row_norms.sum()),
        features=features, gram=gram, r=r_packed,
    )


def _use_mixed(precision: str, n: int, p: int, device: Any) -> bool:
    if precision == "float64":
        return False
    if device is not None and str(device).startswith("cuda"):
        import torch

        if torch.get_float32_matmul_precision() != "highest":  # TF32 would lose the float32 bound
            return False
    return precision == "mixed" or n * n * p >= MIXED_MIN_WORK


_FLOAT32_SAFE_EXPONENT = 30  # |values| in 2^[-30, 30]: squares and sums stay normal float32 numbers


def _row_blocks(n: int, p: int) -> list[tuple[int, int]]:
    """Row ranges of about :data:`_CENTRE_BLOCK_BYTES` float64 bytes each (independent of the thread count)."""
    rows = max(1, _CENTRE_BLOCK_BYTES // (8 * p))
    return [(i0, min(n, i0 + rows)) for i0 in range(0, n, rows)]


def _map_blocks(fn, blocks: list[tuple[int, int]]) -> list:
    """``[fn(i0, i1) for (i0, i1) in blocks]`` on the allowed cores (:func:`vaesim.utils.threads.parallel_map`).

    numpy releases the GIL in the per-block work (casts, subtraction,
    reductions), so the memory-bound passes use every core the process may
    use. Each block's result depends only on the block, so the output does
    not depend on the thread count.
    """
    from vaesim.utils.threads import parallel_map

    return parallel_map(lambda block: fn(*block), blocks)


_SCRATCH = threading.local()
#: largest float32 scratch buffer kept between calls (bytes); larger layers get a fresh array each time
_SCRATCH_MAX_BYTES = 1 << 30


def _scratch_float32(n: int, p: int) -> np.ndarray:
    """A float32 ``(n, p)`` work array, reused between calls of this thread.

    A fresh 262 MB array (n = 2000, p = 32768) costs the kernel ~65,000 page
    faults and zeroing on first touch: 100-200 ms per layer, a tenth of the
    layer's float32 Gram. The summary never keeps a reference to it.
    """
    size = n * p
    if 4 * size > _SCRATCH_MAX_BYTES:
        return np.empty((n, p), dtype=np.float32)
    buffer = getattr(_SCRATCH, "buffer", None)
    if buffer is None or buffer.size < size:
        buffer = np.empty(size, dtype=np.float32)
        _SCRATCH.buffer = buffer
    return buffer[:size].reshape(n, p)


def _mixed_gram(matrix: np.ndarray, name: str, device: Any) -> tuple[np.ndarray, np.ndarray]:
    """Packed centred Gram ``(n(n+1)/2,)`` float64 via float64 centring + float32 syrk, and exact row norms ``(n,)``.

    Two memory-bound passes run in cache-sized row blocks on every core the
    process may use: column sums in float64 (summed over blocks in a fixed
    order), then each block centred in float64, its row norms summed in
    float64 and rounded into one float32 copy ``(n, p)`` (half the float64
    copy's memory). Values far from 1 are scaled by a power of two (third
    pass, only then).
    """
    n, p = matrix.shape
    blocks = _row_blocks(n, p)
    sums = _map_blocks(lambda i0, i1: np.add.reduce(matrix[i0:i1], axis=0, dtype=np.float64), blocks)
    mean = np.add.reduce(np.stack(sums), axis=0) / n  # (p,)
    if not np.isfinite(mean).all():
        as_matrix(matrix, name, min_rows=1)  # raises the standard "expected finite values" error
    constant = None
    if matrix.dtype != np.float32:  # float32 columns: exact zeros by construction (see centre_columns)
        constant = matrix.max(axis=0) == matrix.min(axis=0)
        constant = constant if constant.any() else None
    x32 = _scratch_float32(n, p)
    row_norms = np.empty(n)

    def centre(scale: float):
        def block(i0: int, i1: int) -> None:
            values = np.subtract(matrix[i0:i1], mean, dtype=np.float64)  # (b, p) float64, in cache
            if scale != 1.0:
                values *= scale
            if constant is not None:
                values[:, constant] = 0.0
            row_norms[i0:i1] = np.einsum("ij,ij->i", values, values)
            with np.errstate(over="ignore"):  # values beyond float32 are redone scaled below
                x32[i0:i1] = values
        _map_blocks(block, blocks)

    centre(1.0)
    # Extreme magnitudes are scaled by a power of two into [0.5, 1) (exact) so that neither 1e200 (inf in
    # float32) nor 1e-200 (0 in float32) reaches the float32 products; CKA and Procrustes are scale-invariant,
    # as in the float64 path (``unit_scale``). Values within 2^+-30 are left as they are. The row norms bound
    # the largest centred value ``peak``: peak^2 <= max row norm <= p peak^2, so the exact peak is only
    # computed when the row norms say it may lie outside 2^+-30 (or underflowed to 0: 1e-200 squared).
    largest = float(row_norms.max()) if n else 0.0
    if not largest < 2.0 ** (2 * _FLOAT32_SAFE_EXPONENT) or largest < p * 2.0 ** (-2 * _FLOAT32_SAFE_EXPONENT):
        highest, lowest = matrix.max(axis=0).astype(np.float64), matrix.min(axis=0).astype(np.float64)
        peak = float(np.max(np.maximum(highest - mean, mean - lowest)))
        exponent = math.frexp(peak)[1] if peak > 0 and math.isfinite(peak) else 0
        if abs(exponent) > _FLOAT32_SAFE_EXPONENT:
            centre(math.ldexp(1.0, -exponent))
    return _packed_gram32(x32, row_norms, device), row_norms


def _packed_gram32(x32: np.ndarray, row_norms: np.ndarray, device: Any) -> np.ndarray:
    """Packed float32 Gram of ``x32`` ``(n, p)`` as float64 ``(n(n+1)/2,)``, its diagonal the float64 ``row_norms``.

    Packed as :func:`pack_upper` with ``scale=True`` packs the float64 Gram
    (off-diagonal entries x sqrt 2), straight from the float32 product.
    """
    n = x32.shape[0]
    gram = _product32(x32, device)
    mask, diag_pos = _block_layout(0, n, n)
    packed = gram[mask].astype(np.float64)
    del gram
    packed *= SQRT2
    packed[diag_pos] = row_norms
    return packed


def _gram32(x32: np.ndarray, row_norms: np.ndarray, device: Any) -> np.ndarray:
    """float32 Gram of ``x32`` ``(n, p)`` as float64 ``(n, n)``, its diagonal set to the float64 ``row_norms``."""
    gram = _product32(x32, device).astype(np.float64)
    np.fill_diagonal(gram, row_norms)
    return gram


def _product32(x32: np.ndarray, device: Any) -> np.ndarray:
    """``x32 @ x32.T`` ``(n, n)`` float32: tiles on the allowed cores (:func:`tiled_gram`), or torch on ``device``."""
    if device is None:
        return tiled_gram(x32)
    import torch

    t = torch.from_numpy(x32).to(device)
    return (t @ t.T).cpu().numpy()


def _gram(xc: np.ndarray, device: Any) -> np.ndarray:
    if device is None:
        return tiled_gram(xc)
    import torch

    t = torch.from_numpy(xc).to(device)
    return (t @ t.T).cpu().numpy()


#: rows per tile of :func:`tiled_gram` (fixed: the tiles, hence the rounding, never depend on the machine)
GRAM_TILE_ROWS = 512


def tiled_gram(x: np.ndarray) -> np.ndarray:
    """``x @ x.T`` ``(n, n)`` in ``x``'s dtype, as upper tiles of :data:`GRAM_TILE_ROWS` rows, mirrored.

    Each tile is one BLAS call on one thread (syrk on the diagonal, gemm
    above it), the tiles spread over the allowed cores
    (:func:`vaesim.utils.threads.parallel_map`): the same bits for any
    thread count or load, and no parallel region that waits for a core
    another process holds.
    """
    from vaesim.utils.threads import parallel_map, single_threaded_blas

    n = x.shape[0]
    starts = list(range(0, n, GRAM_TILE_ROWS))
    tiles = [(i0, j0) for k, i0 in enumerate(starts) for j0 in starts[k:]]
    out = np.empty((n, n), dtype=x.dtype)

    def tile(ij: tuple[int, int]) -> None:
        i0, j0 = ij
        i1, j1 = min(n, i0 + GRAM_TILE_ROWS), min(n, j0 + GRAM_TILE_ROWS)
        rows = x[i0:i1]
        block = rows @ rows.T if i0 == j0 else rows @ x[j0:j1].T  # syrk on the diagonal
        out[i0:i1, j0:j1] = block
        if i0 != j0:
            out[j0:j1, i0:i1] = block.T

    with single_threaded_blas():
        parallel_map(tile, tiles)
    return out


def _qr_r(xc: np.ndarray, device: Any) -> np.ndarray:
    """Upper-triangular ``R`` ``(n, n)`` of ``Xc^T = Q R`` for ``xc`` ``(n, p)``, ``p > n`` (``R^T R = Kc``).

    On the CPU: tall-skinny QR (:func:`vaesim.similarity.tsqr.qr_r`): leaves
    of ``6n``-``12n`` rows of ``Xc^T`` (at least 1,024), each by LAPACK
    ``dgeqrt``, merged pairwise by ``dtpqrt``; leaves and merges run on the
    allowed cores with one BLAS thread per call, in blocks fixed by ``(n, p)``
    (the same bits for any thread count or load). Backward stable: entry by
    entry ``|R^T R - Kc|_ij <= (2 gamma + gamma^2) ||xc_i|| ||xc_j||`` with
    ``gamma`` as stated in :mod:`vaesim.similarity.tsqr` (about ``10 sqrt(K)
    u``, ``K = n (m_b + d (n + 1))``). On one core, n = 500-1,000: 1.16-1.35x
    numpy's ``qr(xc.T, mode="r")`` at p = 4,096-8,192, 1.6-2.1x at p = 32,768
    (benchmarks/summary_qr.py). On ``device``: torch's QR.
    """
    if device is None:
        from vaesim.similarity.tsqr import qr_r

        return qr_r(xc)
    import torch

    t = torch.from_numpy(xc).to(device)
    return torch.linalg.qr(t.T, mode="r")[1].cpu().numpy()


def save_summaries(path: str | os.PathLike, summaries: Mapping[str, LayerSummary]) -> Path:
    """Write ``{layer: LayerSummary}`` to ``path`` (``.npz``, no pickle, atomic)."""
    if not isinstance(summaries, Mapping):
        raise TypeError(f"save_summaries: summaries must be a dict {{layer: LayerSummary}}, got {type(summaries).__name__}")
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for index, (layer, summary) in enumerate(summaries.items()):
        if not isinstance(summary, LayerSummary):
            raise TypeError(f"save_summaries: summaries[{layer!r}] must be a LayerSummary, got {type(summary).__name__}")
        layers.append({"key": str(layer), "name": summary.name, "n": summary.n,
                       "num_features": summary.num_features, "total_variance": summary.total_variance})
        arrays[f"l{index}.row_norms"] = np.asarray(summary.row_norms)
        for field in ("features", "gram", "r"):
            value = getattr(summary, field)
            if value is not None:
                arrays[f"l{index}.{field}"] = np.asarray(value)
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "layers": layers}
    arrays["__meta__"] = np.array(json.dumps(meta))
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return path


def load_summaries(path: str | os.PathLike, *, mmap: bool = False) -> dict[str, LayerSummary]:
    """Read summaries written by :func:`save_summaries` (``{layer: LayerSummary}``, in order).

    ``mmap``: the arrays are read-only memory maps of the file (its members are stored uncompressed), so a
    comparison that streams through them holds only the pages it is reading: file-backed memory the kernel
    can drop, not the process's own. Members that cannot be mapped are read as usual. The values are the
    same either way, bit for bit.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_summaries: no summary file at {path}; write one with save_summaries(path, summaries)")
    with np.load(path, allow_pickle=False) as archive:
        mapped = _mapped_members(path) if mmap else {}

        class _Archive:  # the archive's members, memory-mapped where they can be
            files = archive.files

            def __getitem__(self, key):
                return mapped[key] if key in mapped else archive[key]

        out = _read_summaries(_Archive(), path)
    return out


def _mapped_members(path: Path) -> dict[str, np.ndarray]:
    """``{member: read-only memmap}`` of the ``.npy`` members of the ``.npz`` at ``path`` stored uncompressed.

    A stored zip member's bytes are the ``.npy`` file itself, at the offset its local header gives: the
    array starts after the ``.npy`` header. Object arrays, compressed members and headers that do not parse
    are left out (read normally)."""
    import zipfile

    from numpy.lib import format as npy_format

    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zipped, open(path, "rb") as handle:
        for info in zipped.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                continue
            handle.seek(info.header_offset)
            local = handle.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                continue
            name_length, extra_length = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
            start = info.header_offset + 30 + name_length + extra_length
            handle.seek(start)
            try:
                version = npy_format.read_magic(handle)
                read_header = {(1, 0): npy_format.read_array_header_1_0,
                               (2, 0): npy_format.read_array_header_2_0}.get(version)
                if read_header is None:
                    continue
                shape, fortran, dtype = read_header(handle)
            except (ValueError, OSError):
                continue
            if dtype.hasobject or int(np.prod(shape)) == 0:
                continue
            offset = handle.tell()
            if offset + int(np.prod(shape)) * dtype.itemsize > start + info.file_size:
                continue  # the header promises more than the member holds: read it normally (and fail there)
            out[info.filename[:-4]] = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                                                order="F" if fortran else "C")
    return out


def _read_summaries(archive, path: Path) -> dict[str, LayerSummary]:
    """``{layer: LayerSummary}`` from an opened summary archive (``archive[member]``, ``archive.files``)."""
    if "__meta__" not in archive.files:
        raise ValueError(f"load_summaries: {path} is not a vaesim summary file (no __meta__ entry)")
    meta = json.loads(str(archive["__meta__"]))
    if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"load_summaries: {path} has format {meta.get('format')!r} version {meta.get('version')!r}, "
            f"expected {FORMAT_NAME!r} version {FORMAT_VERSION}; recompute the summaries"
        )
    out: dict[str, LayerSummary] = {}
    for index, layer in enumerate(meta["layers"]):
        fields = {f: archive[f"l{index}.{f}"] if f"l{index}.{f}" in archive.files else None
                  for f in ("features", "gram", "r")}
        summary = LayerSummary(
            name=layer["name"], n=int(layer["n"]), num_features=int(layer["num_features"]),
            row_norms=archive[f"l{index}.row_norms"], total_variance=float(layer["total_variance"]), **fields,
        )
        _check_loaded(summary, path)
        out[layer["key"]] = summary
    return out


def _check_loaded(summary: LayerSummary, path: Path) -> None:
    n, tri = summary.n, summary.n * (summary.n + 1) // 2
    problems = []
    if summary.row_norms.shape != (n,):
        problems.append(f"row_norms shape {summary.row_norms.shape} != ({n},)")
    if summary.features is not None and summary.features.shape != (n, summary.num_features):
        problems.append(f"features shape {summary.features.shape} != ({n}, {summary.num_features})")
    for field in ("gram", "r"):
        value = getattr(summary, field)
        if value is not None and value.shape != (tri,):
            problems.append(f"{field} shape {value.shape} != ({tri},)")
    if not summary.has_gram:
        problems.append("neither features nor gram present")
    if problems:
        raise ValueError(f"load_summaries: {path}, layer {summary.name!r} is corrupt: " + "; ".join(problems))
