"""QR factor of wide layers (the Procrustes R of ``Xc^T = Q R``): numpy's QR vs LAPACK routes vs TSQR, side by side.

Workload: centred synthetic post-ReLU activations ``Xc`` ``(n, p)`` float64
(low-rank signal + noise, as benchmarks/similarity.py), ``p > n``; what is
timed is the ``R`` of ``Xc^T`` ``(p, n)`` only, every route on one BLAS
thread unless said otherwise:

* ``numpy``: ``numpy.linalg.qr(xc.T, mode="r")``, vaesim before issue 33;
* ``dgeqrf``: scipy's LAPACK ``dgeqrf`` with the optimal ``lwork``;
* ``dgeqrt NB``: LAPACK ``dgeqrt`` on the whole matrix, block size NB;
* ``tsqr 1t``: :func:`vaesim.similarity.tsqr.qr_r` (vaesim now) on one thread;
* ``tsqr Nc``: the same with its leaves and merges spread over N cores
  (:func:`vaesim.utils.threads.parallel_map`; the same bits as on one thread).

The routes run in turn within each repeat (so that a change of machine load
hits all of them); the table shows the median seconds, GFLOP/s of
``2 p n^2 - 2 n^3 / 3`` and the ratio numpy / route. The load average is
printed at the start and with every shape, the single-thread dgemm peak once.
``max |R'R - R0'R0|`` is the largest entry-wise difference between the Gram
of each route's R and numpy's, in units of ``||xc_i|| ||xc_j||`` (both are
backward stable: each within ~1e-13 of ``Xc Xc^T`` at these sizes).

    python benchmarks/summary_qr.py                                 # n = 500, 1000; p = 4096, 8192, 32768
    python benchmarks/summary_qr.py --n 2000 --p 32768 --repeats 5
    python benchmarks/summary_qr.py --routes numpy "tsqr 1t" "tsqr 2c"
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from scipy.linalg import lapack

from vaesim.similarity.measures import centre_columns
from vaesim.similarity.tsqr import leaf_bounds, qr_r
from vaesim.utils.threads import available_cpus, single_threaded_blas


def loadavg() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def activations(n: int, p: int, seed: int = 0) -> np.ndarray:
    """Centred synthetic post-ReLU activations ``(n, p)`` float64 (rank-8 signal + noise, 30% dead units)."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(n, 8)) @ rng.normal(size=(8, p))
    x = np.maximum(signal + rng.normal(scale=0.5, size=(n, p)) - 1.0, 0.0)
    x[:, rng.random(p) < 0.3] = 0.0
    return centre_columns(x)


def _numpy(xc: np.ndarray) -> np.ndarray:
    return np.linalg.qr(xc.T, mode="r")


def _dgeqrf(xc: np.ndarray) -> np.ndarray:
    p, n = xc.T.shape
    lwork = int(lapack.dgeqrf_lwork(p, n)[0])
    factored, _tau, _work, _info = lapack.dgeqrf(xc.T, lwork=lwork)
    return np.triu(factored[:n])


def _dgeqrt(block: int):
    def route(xc: np.ndarray) -> np.ndarray:
        factored, _t, _info = lapack.dgeqrt(min(block, xc.shape[0]), xc.T)
        return np.triu(factored[: xc.shape[0]])
    return route


def routes(cores: int) -> dict:
    """name -> (function of xc, threads for the call)."""
    table = {
        "numpy": (_numpy, 1),
        "dgeqrf": (_dgeqrf, 1),
        "dgeqrt 32": (_dgeqrt(32), 1),
        "dgeqrt 64": (_dgeqrt(64), 1),
        "dgeqrt 128": (_dgeqrt(128), 1),
        "tsqr 1t": (lambda xc: qr_r(xc, threads=1), 1),
    }
    if cores > 1:
        table[f"tsqr {cores}c"] = (lambda xc: qr_r(xc, threads=cores), cores)
    return table


def dgemm_peak() -> float:
    """Best-of-3 single-thread float64 GEMM rate (GFLOP/s), 1000 x 8192 x 1000."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(1000, 8192)), rng.normal(size=(8192, 1000))
    best = float("inf")
    with single_threaded_blas():
        for _ in range(3):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
    return 2 * 1000 * 8192 * 1000 / best / 1e9


def gram_difference(r: np.ndarray, r0: np.ndarray, xc: np.ndarray) -> float:
    norms = np.sqrt(np.einsum("ij,ij->i", xc, xc))
    return float(np.max(np.abs(r.T @ r - r0.T @ r0) / np.outer(norms, norms)))


def measure(n: int, p: int, chosen: dict, repeats: int) -> dict:
    """Median seconds and Gram difference to numpy of every route on one shape."""
    xc = activations(n, p)
    times: dict[str, list[float]] = {name: [] for name in chosen}
    results: dict[str, np.ndarray] = {}
    with single_threaded_blas():
        for _ in range(repeats):
            for name, (route, _threads) in chosen.items():
                start = time.perf_counter()
                results[name] = route(xc)
                times[name].append(time.perf_counter() - start)
    reference = results.get("numpy", next(iter(results.values())))
    return {name: (statistics.median(times[name]), gram_difference(results[name], reference, xc)) for name in chosen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[500, 1000])
    parser.add_argument("--p", type=int, nargs="+", default=[4096, 8192, 32768])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=min(2, available_cpus()),
                        help="threads of the parallel TSQR line (default: 2, or 1 where only 1 CPU is usable)")
    parser.add_argument("--routes", nargs="+", default=None, help="subset of the route names (default: all)")
    args = parser.parse_args()
    table = routes(args.cores)
    if args.routes:
        unknown = [name for name in args.routes if name not in table]
        if unknown:
            parser.error(f"unknown routes {unknown}; choose from {list(table)}")
        table = {name: table[name] for name in args.routes}
    print(f"machine: {os.cpu_count()} CPUs, {available_cpus()} usable; load at start: {loadavg()}")
    print(f"float64 dgemm peak, one thread: {dgemm_peak():.1f} GFLOP/s")
    print(f"medians of {args.repeats} repeats; ratio = numpy / route; GF/s of 2pn^2 - 2n^3/3")
    diff_title = "max |R'R-R0'R0|"
    print(f"{'n':>6}{'p':>7}{'leaves':>7}{'route':>12}{'s':>9}{'GF/s':>7}{'ratio':>7}{diff_title:>18}{'load':>18}")
    for n in args.n:
        for p in args.p:
            if p <= n:
                continue
            found = measure(n, p, table, args.repeats)
            flops = 2 * p * n * n - 2 * n**3 / 3
            base = found["numpy"][0] if "numpy" in found else None
            load = loadavg()
            for name, (seconds, diff) in found.items():
                ratio = f"{base / seconds:7.2f}" if base else f"{'-':>7}"
                print(f"{n:>6}{p:>7}{len(leaf_bounds(n, p)):>7}{name:>12}{seconds:>9.3f}{flops / seconds / 1e9:>7.1f}"
                      f"{ratio}{diff:>18.1e}{load:>18}", flush=True)
    print(f"load at end: {loadavg()}")


if __name__ == "__main__":
    main()
