"""Independent float64 references for the disentanglement metrics (textbook formulas, plain loops)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np


def ref_mutual_information(a, b) -> float:
    """I(a; b) in nats from a dictionary of joint counts."""
    n = len(a)
    joint = Counter(zip(a.tolist(), b.tolist()))
    pa = Counter(a.tolist())
    pb = Counter(b.tolist())
    total = 0.0
    for (x, y), count in joint.items():
        pxy = count / n
        total += pxy * math.log(pxy / ((pa[x] / n) * (pb[y] / n)))
    return total


def ref_entropy(a) -> float:
    n = len(a)
    return -sum((c / n) * math.log(c / n) for c in Counter(a.tolist()).values())


def ref_bins(column, num_bins=20):
    """Equal-width bins 0..num_bins-1 over [min, max] (the top value in the last bin)."""
    lo, hi = float(column.min()), float(column.max())
    out = []
    for x in column.tolist():
        k = int(math.floor((x - lo) / (hi - lo) * num_bins)) if hi > lo else 0
        out.append(min(k, num_bins - 1))
    return np.array(out)


def ref_mi_matrix(codes, factors, num_bins=20):
    return np.array([[ref_mutual_information(ref_bins(codes[:, i], num_bins), factors[:, j])
                      for j in range(factors.shape[1])] for i in range(codes.shape[1])])


def ref_mig(codes, factors, num_bins=20) -> float:
    m = ref_mi_matrix(codes, factors, num_bins)
    gaps = []
    for j in range(factors.shape[1]):
        column = sorted(m[:, j].tolist(), reverse=True)
        gaps.append((column[0] - column[1]) / ref_entropy(factors[:, j]))
    return sum(gaps) / len(gaps)


def ref_modularity(mi) -> float:
    scores = []
    for row in mi.tolist():
        top = max(row)
        if top == 0:
            scores.append(0.0)
            continue
        rest = sum(v * v for v in row) - top * top
        scores.append(1.0 - rest / (top * top * (len(row) - 1)))
    return sum(scores) / len(scores)


def ref_dci(importance, eps=1e-11):
    """Eastwood & Williams D and C with entropies in base F (codes) and d (factors)."""
    r = np.asarray(importance, dtype=np.float64)
    d, f = r.shape
    total = r.sum()

    def h(values, base):
        s = sum(values)
        return -sum((v / s) * math.log(v / s, base) for v in values if v > 0)

    dis = sum((1 - h([x + eps for x in r[i]], f)) * r[i].sum() / total for i in range(d))
    com = sum((1 - h([x + eps for x in r[:, j]], d)) * r[:, j].sum() / total for j in range(f))
    return dis, com


def ref_sap_continuous(codes, factors) -> float:
    d, f = codes.shape[1], factors.shape[1]
    s = np.array([[np.corrcoef(codes[:, i], factors[:, j])[0, 1] ** 2 for j in range(f)] for i in range(d)])
    top = np.sort(s, axis=0)
    return float(np.mean(top[-1] - top[-2]))
