"""How the measures behave on data that is unrelated by construction (the paper's appendix; "claim 4").

Not a finding about VAEs: these are properties of linear CKA and Procrustes
similarity that any reading of a score must keep in mind (Bonheme & Grzes
2022, appendix; Kornblith et al. 2019, Sec. 6.1; Ding et al. 2021):

- both measures are inflated when the number of examples n is small
  relative to the width p, even for independent random matrices (for
  independent Gaussian X (n, p) and Y (n, p), linear CKA tends to
  p / (p + n)-like levels as p grows; debiased CKA stays near 0);
- Procrustes similarity stays above linear CKA on unrelated matrices.

:func:`width_sweep` measures the first on independent Gaussian matrices;
:func:`row_permuted_scores` measures a real layer against a copy of another
with its rows shuffled (unrelated examples, same marginal statistics).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from vaesim.similarity.measures import linear_cka, procrustes_similarity

DIAGNOSTIC_METRICS = ("cka", "cka_debiased", "procrustes")


def score(metric: str, x: np.ndarray, y: np.ndarray) -> float:
    """One of :data:`DIAGNOSTIC_METRICS` of (n, p) arrays ``x`` and (n, q) ``y``."""
    if metric == "cka":
        return linear_cka(x, y)
    if metric == "cka_debiased":
        return linear_cka(x, y, debiased=True)
    if metric == "procrustes":
        return procrustes_similarity(x, y)
    raise ValueError(f"metric {metric!r}: expected one of {DIAGNOSTIC_METRICS}")


def width_sweep(
    n: int,
    widths: Sequence[int],
    *,
    repeats: int = 3,
    seed: int = 0,
    metrics: Sequence[str] = DIAGNOSTIC_METRICS,
) -> pd.DataFrame:
    """Scores of independent standard Gaussian X, Y (n, p) for each width p.

    Returns one row per (width, metric): n, width, width_over_n, metric,
    mean, std (over ``repeats`` independent draws, seeded by ``seed``).
    Unrelated matrices would ideally score 0; the mean shows the inflation.
    """
    if n < 4:
        raise ValueError(f"width_sweep: n must be >= 4 (debiased CKA needs 4 rows), got {n}")
    if not widths or any(int(p) < 1 for p in widths):
        raise ValueError(f"width_sweep: widths must be positive integers, got {list(widths)}")
    rng = np.random.default_rng(seed)
    rows = []
    for width in widths:
        draws = {metric: [] for metric in metrics}
        for _ in range(repeats):
            x = rng.standard_normal((n, int(width)))
            y = rng.standard_normal((n, int(width)))
            for metric in metrics:
                draws[metric].append(score(metric, x, y))
        for metric in metrics:
            values = np.asarray(draws[metric])
            rows.append(dict(n=n, width=int(width), width_over_n=int(width) / n, metric=metric,
                             mean=float(values.mean()), std=float(values.std(ddof=1)) if repeats > 1 else 0.0))
    return pd.DataFrame(rows, columns=["n", "width", "width_over_n", "metric", "mean", "std"])


def row_permuted_scores(
    x: np.ndarray, y: np.ndarray | None = None, *, seed: int = 0, metrics: Sequence[str] = DIAGNOSTIC_METRICS
) -> dict[str, float]:
    """Scores of ``x`` against ``y`` (default ``x`` itself) with the rows of ``y`` shuffled.

    x: (n, ...), y: (n, ...). Shuffling the rows breaks every relation
    between the two representations while keeping each one's statistics, so
    the scores show what each measure reports for unrelated examples.
    """
    x = np.asarray(x).reshape(len(x), -1)
    y = x if y is None else np.asarray(y).reshape(len(y), -1)
    if len(x) != len(y):
        raise ValueError(f"row_permuted_scores: x and y need the same number of rows, got {len(x)} and {len(y)}")
    order = np.random.default_rng(seed).permutation(len(y))
    return {metric: score(metric, x, y[order]) for metric in metrics}
