"""All layer pairs of many model pairs: summarise each (model, layer) once, batch the pairs.

Cost model (``n`` examples, ``M`` (model, layer) summaries, width ``p``):

* per summary, once: centring (``n p``) and the centred Gram via a symmetric
  rank-k update (``n^2 p`` flops), plus a QR (``~2 n^2 p``) when Procrustes is
  asked for and ``p > n``;
* CKA pair phase: every ``<Kc_i, Kc_j>`` comes from one blocked product of the
  packed Grams, ``G G^T`` with ``G`` ``(M, n(n+1)/2)`` (about ``M^2 n^2 / 2``
  flops in total, i.e. ``n^2/2`` per layer pair; measured 19% of the total
  at ``M = 600``, ``n = 2000``, see benchmarks/README.md). ``G`` is streamed in row blocks of the
  triangle, so memory stays at ``block_bytes`` whatever ``M`` is, and packed
  Grams may be memory-mapped from disk;
* Procrustes pair phase: ``F_a^T F_b`` for all layers of a model pair in one
  product, then a values-only SVD per layer pair (``O(min(n, p)^3)``).

Debiased CKA reuses the same ``<Kc_i, Kc_j>`` plus ``diag(Kc_i).diag(Kc_j)``
and traces (unbiased HSIC of centred Grams, Song et al. 2012).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from vaesim.similarity.measures import CLAMP_TOLERANCE, unbiased_hsic_centred
from vaesim.similarity.nuclear import nuclear_norm
from vaesim.similarity import plugins, registry
from vaesim.similarity.pairs import COLUMNS, check_models, model_label, resolve_layer_pairs, resolve_pairs
from vaesim.similarity.summary import METRICS, LayerSummary, check_metrics, packed_offset, summarise

__all__ = ["compare", "COLUMNS"]

log = logging.getLogger(__name__)

#: largest proven error allowed to the eigenvalue route of a Procrustes score (absolute, on the [0, 1] score: the
#: accuracy every measure is held to; measured errors are ~1e-12); a
#: block whose stated bound is larger takes the SVD (see vaesim.similarity.nuclear)
PROCRUSTES_TOLERANCE = 1e-6

#: bytes of unpacked Procrustes factors (``(n, n)`` from a packed QR factor) kept between model pairs; a
#: factor evicted is unpacked again when a later pair needs it (the same numbers), so a task's memory does not
#: grow with the number of checkpoints it compares
FACTOR_CACHE_BYTES = 2 * 2**30

#: bytes of one row block of every packed Gram that :func:`compare` holds at a time (its ``block_bytes``)
DEFAULT_BLOCK_BYTES = 256 << 20


def _summaries(models: Mapping, involved: Sequence, metrics: tuple[str, ...], device: Any) -> dict:
    """{(model, layer): LayerSummary} for every involved model, each made once."""
    out: dict[tuple[Any, Any], LayerSummary] = {}
    reference: tuple[str, int] | None = None
    for key in involved:
        for layer, value in models[key].items():
            label = model_label(key, layer)
            if isinstance(value, LayerSummary):
                summary = value
                if "procrustes" in metrics and not summary.has_factor:
                    raise ValueError(
                        f"compare: {label} is a LayerSummary without the Procrustes factor; "
                        "summarise it with metrics including 'procrustes' or drop that metric"
                    )
            else:
                summary = summarise(value, name=label, metrics=metrics, device=device)
            if reference is None:
                reference = (label, summary.n)
            elif summary.n != reference[1]:
                raise ValueError(
                    f"compare: {label} has n={summary.n} examples but {reference[0]} has n={reference[1]}; "
                    "every layer must be recorded on the same probe examples"
                )
            out[(key, layer)] = summary
    if "cka_debiased" in metrics and reference is not None and reference[1] < 4:
        raise ValueError(
            f"compare: metric 'cka_debiased' needs n > 3 examples, got n={reference[1]} (in {reference[0]}); "
            "use a larger probe set or drop 'cka_debiased'"
        )
    return out


def _row_blocks(n: int, rows: int, block_bytes: int) -> Iterable[tuple[int, int]]:
    """Row ranges ``[i0, i1)`` of the packed triangle with about ``block_bytes`` per block of ``rows`` summaries."""
    i0 = 0
    while i0 < n:
        width = n - i0
        b = max(1, min(width, block_bytes // max(1, 8 * rows * width)))
        yield i0, i0 + b
        i0 += b


def _gram_products(
    summaries: list[LayerSummary], groups: dict[Any, list[int]], pairs: list[tuple[Any, Any]],
    device: Any, block_bytes: int, tick: Callable[[], None] = lambda: None,
) -> np.ndarray:
    """``<Kc_i, Kc_j>`` ``(M, M)`` for every summary pair that the requested model pairs need.

    Dense requests (at least half of all model pairs) use one symmetric
    product of all packed Grams per row block; sparse ones one product per
    model against all of its partners. Entries no request needs are left at
    zero. On the CPU each row block's product is cut into fixed chunks of
    :data:`CKA_ROW_CHUNK` output rows, one BLAS call on one thread each,
    spread over the allowed cores: the sums never depend on the thread count.
    """
    m = len(summaries)
    n = summaries[0].n
    models = list(groups)
    order = {model: k for k, model in enumerate(models)}
    unordered = {frozenset(p) for p in pairs}
    dense = len(unordered) >= 0.25 * len(models) * (len(models) + 1)
    partners: dict[Any, list[int]] = {}
    if not dense:
        for a, b in pairs:
            first, second = (a, b) if order[a] <= order[b] else (b, a)
            partners[first] = sorted(set(partners.get(first, [])) | set(groups[second]))
    backend = _Backend(device)
    products = backend.zeros(m, m)
    diag = backend.zeros(m)
    computed = np.zeros((m, m), dtype=bool)
    for first, cols in partners.items():
        computed[np.ix_(groups[first], cols)] = True
    for i0, i1 in _row_blocks(n, m, block_bytes):
        block = np.empty((m, packed_offset(i1, n) - packed_offset(i0, n)))
        for k, summary in enumerate(summaries):
            block[k] = summary.gram_block(i0, i1)
        if device is None:
            _add_block_products(products, diag, block, dense, partners, groups)
            tick()
            continue
        block = backend.asarray(block)
        if dense:
            products += block @ block.T  # (M, M) += (M, L) (L, M)
        else:
            for first, cols in partners.items():
                rows = groups[first]
                backend.add_block(products, rows, cols, block[rows] @ block[cols].T)
            diag += (block * block).sum(1)
        tick()
    products = backend.numpy(products)
    if not dense:
        products = np.where(computed, products, products.T)
        np.fill_diagonal(products, backend.numpy(diag))
    return products


#: output rows per unit of work in the CPU Gram products (fixed, so the rounding never depends on the machine)
CKA_ROW_CHUNK = 16


def _add_block_products(products: np.ndarray, diag: np.ndarray, block: np.ndarray, dense: bool,
                        partners: dict, groups: dict) -> None:
    """Add one row block's ``block_rows @ block_cols^T`` to ``products`` (and ``diag``), in fixed chunks."""
    from vaesim.utils.threads import parallel_map, single_threaded_blas

    m = block.shape[0]
    if dense:
        units = [(list(range(r0, min(m, r0 + CKA_ROW_CHUNK))), None) for r0 in range(0, m, CKA_ROW_CHUNK)]
    else:
        units = [(groups[first][r0:r0 + CKA_ROW_CHUNK], cols) for first, cols in partners.items()
                 for r0 in range(0, len(groups[first]), CKA_ROW_CHUNK)]

    def unit(rows_cols):
        rows, cols = rows_cols
        return block[rows] @ (block if cols is None else block[cols]).T  # (chunk, M or |cols|)

    with single_threaded_blas():
        results = parallel_map(unit, units)
        if not dense:
            diag += np.einsum("ij,ij->i", block, block)
    for (rows, cols), value in zip(units, results):
        if cols is None:
            products[rows] += value
        else:
            products[np.ix_(rows, cols)] += value


class _Backend:
    """Float64 torch tensors on ``device`` (None: numpy arrays)."""

    def __init__(self, device: Any):
        self.device = device
        if device is not None:
            import torch

            self.torch = torch

    def zeros(self, *shape: int):
        if self.device is None:
            return np.zeros(shape)
        return self.torch.zeros(shape, dtype=self.torch.float64, device=self.device)

    def asarray(self, array: np.ndarray):
        if self.device is None:
            return array
        return self.torch.from_numpy(array).to(self.device)

    def numpy(self, value) -> np.ndarray:
        if self.device is None:
            return value
        return value.cpu().numpy()

    def add_block(self, target, rows: list[int], cols: list[int], value) -> None:
        if self.device is None:
            target[np.ix_(rows, cols)] += value
        else:
            r = self.torch.tensor(rows, device=self.device)[:, None]
            c = self.torch.tensor(cols, device=self.device)[None, :]
            target[r, c] += value


def _zero_note(labels: Sequence[str], metric: str) -> str:
    return f"zero variance in {' and '.join(labels)}: {metric} is undefined for a constant layer"


def _cka_scores(index, summaries, products, metrics, requested):
    """Yield (i, j, metric, score, note) for CKA metrics from Gram inner products."""
    n = summaries[0].n
    traces = np.array([s.total_variance for s in summaries])
    need_debiased = "cka_debiased" in metrics
    if need_debiased:
        diag_dots = np.stack([np.asarray(s.row_norms, dtype=np.float64) for s in summaries])
        diag_dots = diag_dots @ diag_dots.T  # (M, M) diag(K_i).diag(K_j)
    for i, j in requested:
        zero = [summaries[k].name for k in dict.fromkeys((i, j)) if summaries[k].zero_variance]
        if "cka" in metrics:
            if zero:
                yield i, j, "cka", math.nan, _zero_note(zero, "CKA")
            else:
                value = products[i, j] / math.sqrt(products[i, i] * products[j, j])
                if not -CLAMP_TOLERANCE <= value <= 1 + CLAMP_TOLERANCE:  # one pair's failure: NaN + note
                    yield i, j, "cka", math.nan, (f"CKA of {summaries[i].name} and {summaries[j].name} = {value} "
                                                  "outside [0, 1]: numerically degenerate inputs")
                else:
                    yield i, j, "cka", min(max(value, 0.0), 1.0), ""
        if need_debiased:
            if zero:
                yield i, j, "cka_debiased", math.nan, _zero_note(zero, "debiased CKA")
                continue
            h = {}
            for u, v in ((i, j), (i, i), (j, j)):
                h[(u, v)] = unbiased_hsic_centred(products[u, v], diag_dots[u, v], traces[u], traces[v], n)
            bad = [summaries[k].name for k in dict.fromkeys((i, j)) if h[(k, k)] <= 0.0]
            if bad:
                yield i, j, "cka_debiased", math.nan, (
                    f"unbiased HSIC of {' and '.join(bad)} with itself is not positive at n={n}: debiased CKA undefined"
                )
            else:
                yield i, j, "cka_debiased", h[(i, j)] / math.sqrt(h[(i, i)] * h[(j, j)]), ""


def _procrustes_scores(chosen, summaries, index, pairs, device, tick: Callable[[], None] = lambda: None):
    """Yield (i, j, score, note) for Procrustes: every layer pair's cross block and its nuclear norm.

    CPU: the layer pairs of each model pair are units of
    :func:`vaesim.utils.threads.parallel_map` (each block's product ``F_a^T F_b``
    and nuclear norm on one BLAS thread, largest blocks first), so the scores
    do not depend on the thread count; ``tick`` after each model pair.
    The nuclear norm takes the eigenvalues of the block's smaller Gram when
    their stated error bound is within :data:`PROCRUSTES_TOLERANCE` of the
    score, else the SVD (:mod:`vaesim.similarity.nuclear`). ``device``: one
    stacked cross product per model pair and ``torch.linalg.svdvals``.
    """
    if device is not None:
        yield from _procrustes_scores_device(chosen, summaries, index, pairs, device, tick)
        return
    from vaesim.utils.threads import parallel_map, single_threaded_blas

    from collections import OrderedDict

    factors: OrderedDict[int, np.ndarray] = OrderedDict()  # made for the model pair at hand, the rest a bounded cache
    unpacked: dict[int, int] = {}  # bytes of the factors made here (a features factor is the summary's own array)

    def factor(k: int) -> np.ndarray:
        if k not in factors:
            made = np.ascontiguousarray(summaries[k].factor())
            factors[k] = made
            if not np.shares_memory(made, summaries[k].features if summaries[k].features is not None else made[:0]):
                unpacked[k] = made.nbytes
        factors.move_to_end(k)
        return factors[k]

    def made_bytes() -> int:
        return sum(unpacked.get(k, 0) for k in factors)

    def score(pair: tuple[int, int]) -> tuple[float, str]:
        i, j = pair
        denominator = math.sqrt(summaries[i].total_variance * summaries[j].total_variance)
        block = factors[i].T @ factors[j]  # (r_i, r_j)
        value, method = nuclear_norm(block, PROCRUSTES_TOLERANCE * denominator)
        return value / denominator, method

    methods: list[str] = []
    for a, b in pairs:
        requested = [(index[(a, la)], index[(b, lb)]) for la, lb in chosen[(a, b)]]
        live = [(i, j) for i, j in requested if not (summaries[i].zero_variance or summaries[j].zero_variance)]
        for k in dict.fromkeys(k for pair in live for k in pair):
            factor(k)
        live.sort(key=lambda ij: -factors[ij[0]].shape[1] * factors[ij[1]].shape[1])
        with single_threaded_blas():
            done = dict(zip(live, parallel_map(score, live)))
        methods += [method for _value, method in done.values()]
        while factors and made_bytes() > FACTOR_CACHE_BYTES:  # the least recently used first
            factors.popitem(last=False)
        for i, j in requested:
            zero = [summaries[k].name for k in dict.fromkeys((i, j)) if summaries[k].zero_variance]
            if zero:
                yield i, j, math.nan, _zero_note(zero, "Procrustes similarity")
                continue
            yield (i, j, *_checked_procrustes(done[(i, j)][0], summaries[i], summaries[j]))
        tick()
    if methods:
        log.debug("procrustes: %d blocks, %d by the Gram route, %d by SVD", len(methods),
                  methods.count("gram"), methods.count("svd"))


def _checked_procrustes(value: float, a: LayerSummary, b: LayerSummary) -> tuple[float, str]:
    if not -CLAMP_TOLERANCE <= value <= 1 + CLAMP_TOLERANCE:  # one pair's failure: NaN + note
        return math.nan, (f"Procrustes similarity of {a.name} and {b.name} = {value} outside [0, 1]: "
                          "numerically degenerate inputs")
    return min(max(value, 0.0), 1.0), ""


def _procrustes_scores_device(chosen, summaries, index, pairs, device, tick: Callable[[], None] = lambda: None):
    """Yield (i, j, score, note) for Procrustes on a torch ``device``, one cross-product per model pair."""
    from collections import OrderedDict

    factors: OrderedDict[int, np.ndarray] = OrderedDict()  # made for the model pair at hand, the rest a bounded cache
    unpacked: dict[int, int] = {}  # bytes of the factors made here (a features factor is the summary's own array)

    def factor(k: int) -> np.ndarray:
        if k not in factors:
            made = np.ascontiguousarray(summaries[k].factor())
            factors[k] = made
            if not np.shares_memory(made, summaries[k].features if summaries[k].features is not None else made[:0]):
                unpacked[k] = made.nbytes
        factors.move_to_end(k)
        return factors[k]

    def made_bytes() -> int:
        return sum(unpacked.get(k, 0) for k in factors)

    for a, b in pairs:
        layer_pairs = chosen[(a, b)]
        rows = list(dict.fromkeys(index[(a, la)] for la, _lb in layer_pairs))
        cols = list(dict.fromkeys(index[(b, lb)] for _la, lb in layer_pairs))
        live_rows = [k for k in rows if not summaries[k].zero_variance]
        live_cols = [k for k in cols if not summaries[k].zero_variance]
        stacked_a = np.hstack([factor(k) for k in live_rows]) if live_rows else None
        stacked_b = np.hstack([factor(k) for k in live_cols]) if live_cols else None
        cross = None
        if stacked_a is not None and stacked_b is not None:
            cross = _cross(stacked_a, stacked_b, device)  # (sum r_a, sum r_b)
        offsets_a = _offsets([factor(k).shape[1] for k in live_rows], live_rows)
        offsets_b = _offsets([factor(k).shape[1] for k in live_cols], live_cols)
        for la, lb in layer_pairs:
            i, j = index[(a, la)], index[(b, lb)]
            zero = [summaries[k].name for k in dict.fromkeys((i, j)) if summaries[k].zero_variance]
            if zero:
                yield i, j, math.nan, _zero_note(zero, "Procrustes similarity")
                continue
            (r0, r1), (c0, c1) = offsets_a[i], offsets_b[j]
            nuclear = _nuclear(cross[r0:r1, c0:c1], device)
            value = nuclear / math.sqrt(summaries[i].total_variance * summaries[j].total_variance)
            yield (i, j, *_checked_procrustes(value, summaries[i], summaries[j]))
        while factors and made_bytes() > FACTOR_CACHE_BYTES:  # the least recently used first
            factors.popitem(last=False)
        tick()


def _offsets(widths: list[int], keys: list[int]) -> dict[int, tuple[int, int]]:
    out, start = {}, 0
    for key, width in zip(keys, widths):
        out[key] = (start, start + width)
        start += width
    return out


def _cross(a: np.ndarray, b: np.ndarray, device: Any):
    if device is None:
        return a.T @ b
    import torch

    return torch.from_numpy(a).to(device).T @ torch.from_numpy(b).to(device)


def _nuclear(block, device: Any) -> float:
    if device is None:
        return float(np.linalg.svd(block, compute_uv=False).sum()) if block.size else 0.0
    import torch

    return float(torch.linalg.svdvals(block).sum().item()) if block.numel() else 0.0


def compare(
    models: Mapping[Any, Mapping[Any, Any]],
    *,
    metrics: Iterable[str] = ("cka", "procrustes"),
    model_pairs: Iterable[tuple[Any, Any]] | None = None,
    layer_pairs: Mapping[tuple[Any, Any], Iterable[tuple[Any, Any]]] | None = None,
    device: Any = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Similarity of every layer pair of the requested model pairs.

    Args:
        models: ``{model key: {layer name: activations (n, ...) or LayerSummary}}``;
            all layers share the same ``n`` examples.
        metrics: subset of ``("cka", "cka_debiased", "procrustes")`` plus any
            measure registered with :func:`vaesim.similarity.register_measure`
            (e.g. ``"svcca"``, ``"pwcca"``; see :mod:`vaesim.similarity.plugins`).
        model_pairs: ``None`` = every unordered pair of model keys including
            each model with itself; else an explicit list of ``(a_key, b_key)``.
        layer_pairs: ``None`` = every layer pair of each model pair (below);
            else ``{(a_key, b_key): [(a_layer, b_layer), ...]}``: a model pair
            named there is scored on exactly those layer pairs (e.g. the same
            layer only), the others on every layer pair. The scores of a layer
            pair do not depend on which other pairs are requested.
        device: torch device (e.g. ``"cuda"``) for the Grams, QR factors and
            pair products; None runs on CPU (Grams with numpy's syrk, the
            long pair products with torch's CPU GEMM: each the faster there).
        block_bytes: memory for one row block of stacked packed Grams.
        progress: called with ``(done, total)`` after each unit of the scoring
            work (a row block of Gram products, a model pair's Procrustes
            cross-product), for progress lines during a long call.

    Returns:
        DataFrame with columns ``a_model, a_layer, b_model, b_layer, metric,
        score, n, note``. A model with itself gives each unordered layer pair
        once (a layer with itself included); two different models give every
        ``(a_layer, b_layer)``. Zero-variance layers give NaN with a ``note``.
    """
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    if any(m in registry.measure_names() and m not in METRICS for m in metrics):  # plug-in measures
        return _compare_with_plugins(models, metrics, model_pairs, layer_pairs, device, block_bytes)
    check_models(models)
    metrics = check_metrics(metrics, "compare")
    pairs = resolve_pairs(models, model_pairs)
    involved = [key for key in models if any(key in pair for pair in pairs)]
    summary_map = _summaries(models, involved, metrics, device)
    keys = list(summary_map)
    summaries = [summary_map[k] for k in keys]
    index = {k: i for i, k in enumerate(keys)}
    groups = {model: [index[(model, layer)] for layer in models[model]] for model in involved}
    n = summaries[0].n if summaries else 0
    chosen = resolve_layer_pairs(models, pairs, layer_pairs)
    requested = [(index[(a, la)], index[(b, lb)]) for a, b in pairs for la, lb in chosen[(a, b)]]
    log.info("compare: %d summaries, %d model pairs, %d layer pairs", len(summaries), len(pairs), len(requested))

    scores: dict[tuple[int, int, str], tuple[float, str]] = {}
    if not requested:
        return pd.DataFrame({column: pd.Series(dtype="int64" if column == "n" else object) for column in COLUMNS})
    use_cka = bool({"cka", "cka_debiased"} & set(metrics))
    units = (len(list(_row_blocks(n, len(summaries), block_bytes))) if use_cka else 0) + \
        (len(pairs) if "procrustes" in metrics else 0)
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], units)

    if use_cka:
        products = _gram_products(summaries, groups, pairs, device, block_bytes, tick)
        for i, j, metric, score, note in _cka_scores(index, summaries, products, metrics, requested):
            scores[(i, j, metric)] = (score, note)
    if "procrustes" in metrics:
        for i, j, score, note in _procrustes_scores(chosen, summaries, index, pairs, device, tick):
            scores[(i, j, "procrustes")] = (score, note)

    rows = []
    for (i, j) in requested:
        (a, la), (b, lb) = keys[i], keys[j]
        for metric in metrics:
            score, note = scores[(i, j, metric)]
            rows.append((a, la, b, lb, metric, float(score), n, note))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["n"] = frame["n"].astype("int64")
    return frame


def _compare_with_plugins(models: Mapping[Any, Mapping[Any, Any]], metrics: tuple[str, ...], model_pairs,
                          layer_pairs, device: Any, block_bytes: int) -> pd.DataFrame:
    """:func:`compare` for a ``metrics`` list that names registered measures.

    The built-in metrics go through this engine in one call, on each layer's built-in input; every registered
    measure is taken from the registry and scored by :func:`vaesim.similarity.plugins.rows_with_plugins`.
    """
    metrics = registry.check_metric_names(metrics, "compare")
    check_models(models)
    pairs = resolve_pairs(models, model_pairs)
    chosen = resolve_layer_pairs(models, pairs, layer_pairs)
    involved = [key for key in models if any(key in pair for pair in pairs)]
    n = plugins.shared_rows(models, involved)
    builtin = tuple(m for m in metrics if m in METRICS)
    builtin_scores: dict[tuple, tuple[float, str]] = {}
    if builtin:
        inputs = {key: {layer: plugins.builtin_input(value, model_label(key, layer))
                        for layer, value in models[key].items()} for key in involved}
        frame = compare(inputs, metrics=builtin, model_pairs=pairs, layer_pairs=chosen, device=device,
                        block_bytes=block_bytes)
        for row in frame.itertuples(index=False):
            builtin_scores[(row.a_model, row.a_layer, row.b_model, row.b_layer, row.metric)] = (row.score, row.note)
    frame = pd.DataFrame(plugins.rows_with_plugins(models, pairs, metrics, builtin_scores, n, chosen),
                         columns=COLUMNS)
    frame["n"] = frame["n"].astype("int64")
    return frame
