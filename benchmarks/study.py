"""Measured cost of each study task type on this machine, and the paper preset projected from it.

Runs the real task code (:func:`vaesim.study.stages.task.run_task`) on a small
grid (2 objectives x 2 values x 2 seeds on procedural dSprites) and times:

- train: seconds per training step at the paper's batch size (64);
- extract: seconds per checkpoint (forward pass on the probe set + summaries
  of every layer) and the summary file size, at several probe sizes n;
- compare: seconds per layer pair, per comparison type, at the same n.

Then projects the ``paper`` preset (300 runs, 300,000 steps, 1,500
checkpoints, n = 10,000) from those numbers: training scales linearly in
steps; extraction and comparison are scaled from the largest measured n by
their complexity in n (n^2 and n^3, stated, not fitted); summary storage is
computed exactly from the layer widths. GPU numbers are not measured here
unless ``--device cuda`` runs on a GPU machine.

    python benchmarks/study.py [--threads 1] [--steps 40] [--n 200 400]
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from vaesim.study import load_spec, parse_spec, plan_study
from vaesim.study.stages.task import run_task

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
    pairs = task.pairs
    if task.comparison == "factors":
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
        per_type.setdefault(task.comparison, []).append(seconds / layer_pairs(task, layers))
    result["compare_s_per_layer_pair"] = {k: float(np.median(v)) for k, v in per_type.items()}
    result["compare_tasks"] = {k: len(v) for k, v in per_type.items()}
    result["study_dir"] = study_dir
    return result


def layer_widths(num_channels: int) -> dict[str, int]:
    """Features per layer of the conv VAE (from one forward pass)."""
    from vaesim.activations import extract_activations
    from vaesim.models import build_vae

    images = np.zeros((2, num_channels, 64, 64), dtype=np.float32)
    return {k: v.shape[1] for k, v in extract_activations(build_vae("conv", num_channels, 10), images).items()}


def summary_bytes(n: int, p: int, procrustes: bool = True) -> int:
    """Bytes of one LayerSummary as ``vaesim.similarity.summarise`` stores it (float64).

    Centred features (n, p) when ``p <= n/2`` (or ``p <= n`` with Procrustes),
    else the packed centred Gram n(n+1)/2, plus the packed QR factor R of the
    same size when Procrustes needs it (``p > n``); plus row norms (n,).
    """
    tri = n * (n + 1) // 2
    if p <= n / 2 or (procrustes and p <= n):
        numbers = n * p
    else:
        numbers = tri * (2 if procrustes and p > n else 1)
    return 8 * (numbers + n)


# Growth with the probe size n used for the projection (theory, not a fit):
# extraction is dominated by the QR / Gram of the wide layers, O(p n^2);
# a Procrustes layer pair needs an SVD of an r x r product (r = min(n, p)), O(n^3)
# once both layers are at least n wide, and dominates a compare task's time.
EXTRACT_EXPONENT = 2
COMPARE_EXPONENT = 3


def paper_projection(results: list[dict]) -> None:
    """Project the paper preset from the measurement at the largest n (stated exponents)."""
    paper = load_spec("paper")
    plan = plan_study(paper)
    layers = len(paper.layer_names())
    n = paper.probe.n
    runs, steps = len(plan.runs), paper.training.steps
    checkpoints = len(plan.tasks["extract"])
    base = max(results, key=lambda r: r["n"])
    scale = n / base["n"]
    train_step = results[0]["train_s_per_step"]
    pairs_by_type: dict[str, int] = {}
    for task in plan.tasks["compare"]:
        kind = task.comparison
        pairs_by_type[kind] = pairs_by_type.get(kind, 0) + layer_pairs(task, layers)
    print(f"\npaper preset: {runs} runs x {steps:,} steps, {checkpoints} checkpoints, n = {n:,}, {layers} layers")
    print(f"(projected from n = {base['n']} with extraction ~ n^{EXTRACT_EXPONENT}, compare ~ n^{COMPARE_EXPONENT})")
    train_total = runs * steps * train_step
    print(f"  train    {runs * steps:>12,} steps        x {train_step * 1e3:9.1f} ms (measured)  = {train_total / 3600:12,.0f} core-h")
    extract_one = base["extract_s"] * scale**EXTRACT_EXPONENT
    extract_total = checkpoints * extract_one
    print(f"  extract  {checkpoints:>12,} checkpoints  x {extract_one:9.1f} s (projected) = {extract_total / 3600:12,.0f} core-h")
    channels = {"dsprites": 1, "smallnorb": 1, "cars3d": 3}
    stored = 0
    for run in plan.runs:
        widths = layer_widths(channels.get(run.dataset, 1))
        stored += len(run.steps) * sum(summary_bytes(n, p, "procrustes" in paper.metrics) for p in widths.values())
    print(f"           summaries {stored / checkpoints / 1e9:.2f} GB per checkpoint (storage rule of summarise, "
          f"exact) -> {stored / 1e12:.1f} TB in all")
    compare_total = 0.0
    for kind, count in sorted(pairs_by_type.items()):
        one = base["compare_s_per_layer_pair"][kind] * scale**COMPARE_EXPONENT
        compare_total += count * one
        print(f"  compare  {count:>12,} layer pairs  x {one:9.1f} s ({kind}, projected) = {count * one / 3600:12,.0f} core-h")
    total = train_total + extract_total + compare_total
    print(f"  total: {total / 3600:,.0f} core-h of this CPU (train {train_total / total:.0%}, "
          f"extract {extract_total / total:.0%}, compare {compare_total / total:.0%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads per task (default 1)")
    parser.add_argument("--steps", type=int, default=40, help="training steps per run (batch 64)")
    parser.add_argument("--n", type=int, nargs="+", default=[200, 400], help="probe sizes to measure")
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
    paper_projection(results)
    if not args.keep:
        for result in results:
            shutil.rmtree(result["study_dir"], ignore_errors=True)


if __name__ == "__main__":
    main()
