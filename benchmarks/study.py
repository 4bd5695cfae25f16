"""Measured cost of each study task type on this machine, and the paper preset projected from it.

Runs the real task code (:func:`vaesim.study.stages.run_task`) on a small
grid (2 objectives x 2 values x 2 seeds on procedural dSprites) and times:

- train: seconds per training step at the paper's batch size (64);
- extract: seconds per checkpoint (forward pass on the probe set + summaries
  of every layer) and the summary file size, at several probe sizes n;
- compare: seconds per layer pair, per comparison type, at the same n.

Then projects the ``paper`` preset (300 runs, 300,000 steps, 1,500
checkpoints, n = 10,000) from those numbers: training scales linearly in
steps; extraction and comparison are fitted as ``a * n^k`` over the measured
n and extrapolated (stated as such). GPU numbers are not measured here unless
``--device cuda`` runs on a GPU machine.

    python benchmarks/study.py [--threads 1] [--steps 40] [--n 250 500 1000]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from vaesim.study import load_spec, parse_spec, plan_study
from vaesim.study.stages import run_task

GRID = {
    "name": "bench",
    "datasets": ["dsprites-procedural"],
    "objectives": [{"name": "beta_vae", "values": [1, 8]}, {"name": "dip_vae_ii", "values": [1, 10]}],
    "seeds": [0, 1],
    "training": {"steps": 40, "batch_size": 64, "checkpoints": {"schedule": "even", "count": 2}, "log_every": 20},
    "probe": {"n": 500, "seed": 0},
    "metrics": ["cka", "procrustes"],
    "device": "cpu",
}


def timed(study_dir: Path, tasks, threads: int) -> list[float]:
    seconds = []
    for task in tasks:
        start = time.perf_counter()
        run_task(str(study_dir), task, threads)
        seconds.append(time.perf_counter() - start)
    return seconds


def layer_pairs(task, layers: int) -> int:
    """Layer pairs (x metrics not included) a compare task computes."""
    pairs = task.payload["pairs"]
    if task.payload["comparison"] == "factors":
        return len(pairs) * layers
    self_pairs = sum(1 for a, s, b, t in pairs if a == b and s == t)
    return self_pairs * layers * (layers + 1) // 2 + (len(pairs) - self_pairs) * layers**2


def measure(n: int, steps: int, threads: int, device: str, trained: Path | None) -> dict:
    grid = copy.deepcopy(GRID)
    grid["probe"]["n"] = n
    grid["training"]["steps"] = steps
    grid["device"] = device
    spec = parse_spec(grid, source="benchmark grid")
    plan = plan_study(spec)
    study_dir = Path(tempfile.mkdtemp(prefix=f"vaesim-bench-n{n}-"))
    (study_dir / "spec.yaml").write_text(spec.to_yaml())
    timed(study_dir, plan.tasks["probe"], threads)
    result = {"n": n}
    if trained is None:
        train_seconds = timed(study_dir, plan.tasks["train"], threads)
        result["train_s_per_step"] = float(np.median(train_seconds)) / steps
    else:  # reuse the runs trained at the first n (training does not depend on n)
        shutil.rmtree(study_dir / "runs", ignore_errors=True)
        shutil.copytree(trained, study_dir / "runs")
    extract_seconds = timed(study_dir, plan.tasks["extract"], threads)
    result["extract_s"] = float(np.median(extract_seconds))
    summaries = list((study_dir / "summaries").rglob("step_*.npz"))
    result["summary_mb"] = float(np.median([p.stat().st_size for p in summaries])) / 1e6
    layers = len(spec.layer_names())
    per_type: dict[str, list[float]] = {}
    for task in plan.tasks["compare"]:
        seconds = timed(study_dir, [task], threads)[0]
        per_type.setdefault(task.payload["comparison"], []).append(seconds / layer_pairs(task, layers))
    result["compare_s_per_layer_pair"] = {k: float(np.median(v)) for k, v in per_type.items()}
    result["compare_tasks"] = {k: len(v) for k, v in per_type.items()}
    result["study_dir"] = study_dir
    return result


def fit_power(ns: list[int], values: list[float]) -> tuple[float, float]:
    """Least-squares ``value = a * n^k`` on log-log axes -> (a, k)."""
    k, log_a = np.polyfit(np.log(ns), np.log(values), 1)
    return float(math.exp(log_a)), float(k)


def paper_projection(results: list[dict], gpus_per_cluster: list[int]) -> None:
    paper = load_spec("paper")
    plan = plan_study(paper)
    layers = len(paper.layer_names())
    n = paper.probe.n
    runs, steps = len(plan.runs), paper.training.steps
    checkpoints = len(plan.tasks["extract"])
    ns = [r["n"] for r in results]
    train_step = results[0]["train_s_per_step"]
    a_ext, k_ext = fit_power(ns, [r["extract_s"] for r in results])
    a_mb, k_mb = fit_power(ns, [r["summary_mb"] for r in results])
    pairs_by_type: dict[str, int] = {}
    for task in plan.tasks["compare"]:
        kind = task.payload["comparison"]
        pairs_by_type[kind] = pairs_by_type.get(kind, 0) + layer_pairs(task, layers)
    compare_total = 0.0
    print(f"\npaper preset: {runs} runs x {steps:,} steps, {checkpoints} checkpoints, n = {n:,}, {layers} layers")
    train_total = runs * steps * train_step
    print(f"  train    {runs * steps:>14,} steps  x {train_step * 1e3:8.1f} ms/step (measured)     = {train_total / 3600:10.1f} core-h")
    extract_total = checkpoints * a_ext * n**k_ext
    print(f"  extract  {checkpoints:>14,} ckpts  x {a_ext * n**k_ext:8.1f} s (fit n^{k_ext:.2f}, extrapolated) = "
          f"{extract_total / 3600:10.1f} core-h")
    print(f"           summaries {a_mb * n**k_mb / 1e3:.2f} GB per checkpoint (fit n^{k_mb:.2f}) -> "
          f"{checkpoints * a_mb * n**k_mb / 1e6:.1f} TB in all")
    for kind, count in sorted(pairs_by_type.items()):
        a, k = fit_power(ns, [r["compare_s_per_layer_pair"][kind] for r in results])
        seconds = count * a * n**k
        compare_total += seconds
        print(f"  compare  {count:>14,} layer pairs ({kind}, fit n^{k:.2f}, extrapolated) = {seconds / 3600:10.1f} core-h")
    total = train_total + extract_total + compare_total
    print(f"  total on one core of this CPU: {total / 3600:,.0f} core-h = {total / 86400:,.1f} days")
    print("  (GPU and cluster projections: see docs/study.md; they scale these by a stated speed-up)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads per task (default 1)")
    parser.add_argument("--steps", type=int, default=40, help="training steps per run (batch 64)")
    parser.add_argument("--n", type=int, nargs="+", default=[250, 500, 1000], help="probe sizes to measure")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--keep", action="store_true", help="keep the temporary study directories")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores, {args.threads} thread(s) per task, device {args.device}")
    print(f"{'n':>6s} {'train ms/step':>14s} {'extract s/ckpt':>15s} {'summary MB':>11s}  compare us/layer-pair by type")
    results: list[dict] = []
    trained = None
    for n in sorted(args.n):
        result = measure(n, args.steps, args.threads, args.device, trained)
        if trained is None:
            trained = result["study_dir"] / "runs"
            result_train = result["train_s_per_step"]
        result["train_s_per_step"] = result_train
        results.append(result)
        per_pair = "  ".join(f"{k} {v * 1e6:.0f}" for k, v in sorted(result["compare_s_per_layer_pair"].items()))
        print(f"{n:>6d} {result_train * 1e3:>14.1f} {result['extract_s']:>15.3f} {result['summary_mb']:>11.2f}  {per_pair}")
    paper_projection(results, [1, 8, 32])
    if not args.keep:
        for result in results:
            shutil.rmtree(result["study_dir"], ignore_errors=True)


if __name__ == "__main__":
    main()
