"""Procrustes at study scale: all layer pairs of a checkpoint pair, vaesim vs a plain float64 reference.

Workload: two checkpoints with the paper's layer widths (the 15 layers of
benchmarks/similarity.py: input 4096 ... conv1 32768 ... output 4096), ``n``
probe examples, every (a_layer, b_layer) pair of the checkpoint pair. Layer
summaries (centring, QR factor) are made once and are not timed here (the
extract stage makes them); what is timed is the pair phase, the cost of every
comparison.

* reference: the thin factor of each layer once (``LayerSummary.factor()``),
  then ``numpy.linalg.svd(F_a^T F_b, compute_uv=False)`` per layer pair, with
  numpy's default threads (every core);
* vaesim: ``compare(..., metrics=("procrustes",))`` run as a study task runs
  it (``thread_limit(cores)``: BLAS on one thread per call, layer pairs spread
  over the cores), and again on one core (the algorithm's own gain).

Printed: seconds, the ratio reference / vaesim, the share of blocks that took
the eigenvalue route, and the largest |score difference|. With ``--real
RUN_DIR`` the activations are those of a trained checkpoint on procedural
dSprites instead of synthetic ones, and ``--spectra-n`` prints k(eps), the rank
that keeps all but eps of each layer's Frobenius norm, for eps 1e-3/1e-4/1e-5.

    python benchmarks/procrustes.py --n 1000
    python benchmarks/procrustes.py --n 2000 --real out/bench-run-0 --real-b out/bench-run-1
    python benchmarks/procrustes.py --spectra-n 5000 --real out/bench-run-0 --skip-pairs
    python benchmarks/procrustes.py --n 1000 --real out/bench-run-0 --real-b out/bench-run-1 --square

``out/bench-run-K``: ``vaesim train --steps 1500 --param 4 --seed K --out out/bench-run-K``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from similarity import LAYERS, SyntheticStudy, loadavg  # noqa: E402

import vaesim.similarity.engine as engine  # noqa: E402
import vaesim.similarity.nuclear as nuclear  # noqa: E402
from vaesim.similarity import compare, summarise  # noqa: E402
from vaesim.utils.threads import available_cpus, thread_limit  # noqa: E402


def real_activations(run_dir: str, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Every layer of the last checkpoint of ``run_dir`` on ``n`` procedural dSprites images."""
    from vaesim.activations import extract_activations
    from vaesim.data import get_dataset
    from vaesim.training import load_checkpoint

    model, _meta = load_checkpoint(run_dir)
    dataset = get_dataset("dsprites-procedural")
    index = np.random.default_rng(seed).choice(len(dataset), n, replace=False)
    images = np.stack([dataset[int(i)][0] for i in index])
    names = [name for name, _p in LAYERS if name in model.layer_names]
    return extract_activations(model, images, layers=names, seed=seed)


def reference_pairs(models: dict, blas_threads: int | None = None) -> tuple[dict, float]:
    """The plain float64 reference: factor once per layer, SVD of each cross block; scores and seconds.

    ``blas_threads``: numpy's BLAS/LAPACK threads (None: its default, every core).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=blas_threads):
        return _reference_pairs(models)


def _reference_pairs(models: dict) -> tuple[dict, float]:
    start = time.perf_counter()
    factors = {(k, name): models[k][name].factor() for k in models for name in models[k]}
    scores = {}
    for la, a in models[0].items():
        for lb, b in models[1].items():
            block = factors[(0, la)].T @ factors[(1, lb)]
            nuclear_value = float(np.linalg.svd(block, compute_uv=False).sum())
            scores[(la, lb)] = nuclear_value / math.sqrt(a.total_variance * b.total_variance)
    return scores, time.perf_counter() - start


def vaesim_pairs(models: dict, cores: int) -> tuple[dict, float, dict]:
    """vaesim's pair phase as a study task runs it on ``cores``; scores, seconds, routes taken."""
    routes = {"gram": 0, "svd": 0}
    original = nuclear.nuclear_norm

    def counting(block, tolerance=0.0):
        value, method = original(block, tolerance)
        routes[method] += 1
        return value, method

    engine.nuclear_norm = counting
    try:
        start = time.perf_counter()
        with thread_limit(cores):
            frame = compare(models, metrics=("procrustes",), model_pairs=[(0, 1)])
        seconds = time.perf_counter() - start
    finally:
        engine.nuclear_norm = original
    return {(r.a_layer, r.b_layer): r.score for r in frame.itertuples()}, seconds, routes


def square_blocks(models: dict) -> None:
    """The Gram route on the square blocks (the cost of every wide pair), measured against their SVD.

    For each block of two layers wider than n: seconds of the values-only SVD and of the Gram route
    (``nuclear_norm_gram``), whether its stated bound is within the engine's tolerance (1e-6 of the score),
    and its observed error against the SVD, relative to the score's denominator.
    """
    from threadpoolctl import threadpool_limits

    factors = {(k, name): models[k][name].factor() for k in models for name in models[k]}
    t_svd = t_gram = 0.0
    held = total = 0
    worst = 0.0
    with threadpool_limits(limits=1):
        for la, a in models[0].items():
            for lb, b in models[1].items():
                block = factors[(0, la)].T @ factors[(1, lb)]
                if 2 * min(block.shape) <= max(block.shape):
                    continue
                denominator = math.sqrt(a.total_variance * b.total_variance)
                start = time.perf_counter()
                exact = float(np.linalg.svd(block, compute_uv=False).sum())
                t_svd += time.perf_counter() - start
                start = time.perf_counter()
                value, bound = nuclear.nuclear_norm_gram(block)
                t_gram += time.perf_counter() - start
                total += 1
                held += bound <= engine.PROCRUSTES_TOLERANCE * denominator
                worst = max(worst, abs(value - exact) / denominator)
    print(f"square blocks: {total}; one thread: SVD {t_svd:.1f} s, Gram route {t_gram:.1f} s "
          f"({t_svd / max(t_gram, 1e-9):.2f}x); stated bound within tolerance on {held} of {total}; "
          f"largest observed |error| / denominator {worst:.1e}")


def spectra(acts: dict[str, np.ndarray]) -> None:
    """k(eps) per layer: the smallest rank whose truncation keeps all but eps of ||Xc||_F (relative)."""
    print(f"\nspectra at n = {next(iter(acts.values())).shape[0]}: k(eps) = rank keeping all but eps of ||Xc||_F")
    print(f"{'layer':<18}{'width':>7}{'min(n,p)':>9}{'k(1e-3)':>9}{'k(1e-4)':>9}{'k(1e-5)':>9}")
    for name, x in acts.items():
        xc = x.astype(np.float64) - x.astype(np.float64).mean(0)
        gram = xc @ xc.T if xc.shape[1] > xc.shape[0] else xc.T @ xc
        values = np.clip(np.linalg.eigvalsh(gram)[::-1], 0, None)  # sigma^2, descending
        total = values.sum()
        tail = np.concatenate([np.cumsum(values[::-1])[::-1][1:], [0.0]])  # ||X - X_k||_F^2 for k = 1..r
        ks = []
        for eps in (1e-3, 1e-4, 1e-5):
            ok = np.flatnonzero(np.sqrt(tail / total) <= eps) if total > 0 else np.array([0])
            ks.append(int(ok[0]) + 1 if ok.size else len(values))
        print(f"{name:<18}{x.shape[1]:>7}{min(x.shape):>9}{ks[0]:>9}{ks[1]:>9}{ks[2]:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000])
    parser.add_argument("--real", default=None, help="run directory of a trained model (checkpoint a)")
    parser.add_argument("--real-b", default=None, help="run directory of checkpoint b (default: --real again, "
                                                       "other probe images are not used: same model)")
    parser.add_argument("--spectra-n", type=int, default=0)
    parser.add_argument("--skip-pairs", action="store_true")
    parser.add_argument("--square", action="store_true",
                        help="also time the Gram route against the SVD on the square (wide x wide) blocks")
    args = parser.parse_args()
    cores = available_cpus()
    print(f"machine: {os.cpu_count()} CPUs, {cores} usable; load before: {loadavg()}")
    if args.spectra_n:
        if not args.real:
            parser.error("--spectra-n needs --real RUN_DIR (spectra of a trained network)")
        spectra(real_activations(args.real, args.spectra_n))
    if args.skip_pairs:
        return
    print("\nreference: numpy's default threads; ref 1t: the same on one BLAS thread; vaesim: as a task on "
          f"{cores} core(s); vaesim 1c: on one core. ratio = reference / vaesim, 1c ratio = ref 1t / vaesim 1c")
    print(f"{'n':>6}{'source':>10}{'pairs':>7}{'reference s':>13}{'vaesim s':>10}{'ratio':>7}"
          f"{'ref 1t s':>10}{'vaesim 1c s':>12}{'1c ratio':>9}{'gram share':>12}{'max |diff|':>12}")
    for n in args.n:
        if args.real:
            acts = [real_activations(args.real, n), real_activations(args.real_b or args.real, n, seed=1)]
            source = "trained"
        else:
            study = SyntheticStudy(n)
            acts = [study.checkpoint(0), study.checkpoint(3)]
            source = "synthetic"
        models = {k: {name: summarise(x, name=name, metrics=("procrustes",)) for name, x in acts[k].items()}
                  for k in (0, 1)}
        del acts
        if args.square:
            square_blocks(models)
        reference, t_reference = reference_pairs(models)
        ours, t_ours, routes = vaesim_pairs(models, cores)
        _single, t_reference_one = reference_pairs(models, 1)
        _again, t_one, _ = vaesim_pairs(models, 1)
        diff = max(abs(ours[key] - value) for key, value in reference.items())
        share = routes["gram"] / max(1, sum(routes.values()))
        print(f"{n:>6}{source:>10}{len(reference):>7}{t_reference:>13.1f}{t_ours:>10.1f}"
              f"{t_reference / t_ours:>7.2f}{t_reference_one:>10.1f}{t_one:>12.1f}{t_reference_one / t_one:>9.2f}"
              f"{share:>12.0%}{diff:>12.1e}")
    print(f"load after: {loadavg()}")


if __name__ == "__main__":
    main()
