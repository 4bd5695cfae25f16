"""Compare-stage cost with ``comparisons.layer_pairs: all`` against ``matching``, side by side in one run.

Trains a small grid on procedural dSprites with the ``evidence`` preset's
recording (13 log-spaced checkpoints plus step 0, every layer, n probe images,
decoder on the final mean code, summaries recomputed in the compare tasks),
then runs the same compare tasks (the same model pairs) planned both ways, in
alternating order, on one thread, and prints seconds per task type and the
ratio all / matching. Every score ``matching`` keeps is checked equal, bit for
bit, to the one ``all`` stores.

    python benchmarks/layer_pairs.py [--n 500] [--steps 400] [--repeats 1]
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
import pandas as pd

from vaesim.study import parse_spec, plan_study
from vaesim.study.plan import results_path
from vaesim.study.stages.task import run_task

GRID = {
    "name": "bench-layer-pairs",
    "datasets": ["dsprites-procedural"],
    "objectives": [{"name": "beta_vae", "values": [1, 8]}],
    "seeds": [0, 1],
    "training": {"steps": 400, "batch_size": 32, "checkpoints": {"schedule": "log", "count": 13, "log_first": 10}},
    "probe": {"n": 500, "seed": 0, "decoder_input": "final_mean"},
    "metrics": ["cka", "procrustes"],
    "comparisons": {"within_run": "self_and_final", "across_steps": "final", "noise_floor": False,
                    "factors": False, "objectives": False},
    "summaries": "cache",
    "device": "cpu",
}
KEY = ["comparison", "metric", "a_run", "a_step", "a_layer", "b_run", "b_step", "b_layer"]


def one_of_each(plan) -> list:
    """One compare task of each type (the first planned), at the final step for the cross-model ones."""
    chosen = {}
    for task in plan.tasks["compare"]:
        final = max(p[3] for p in task.pairs)
        if task.comparison not in chosen and (task.comparison == "within_run" or task.pairs[0][1] == final):
            chosen[task.comparison] = task
    return list(chosen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=1, help="alternated repeats of each side")
    args = parser.parse_args()
    grid = copy.deepcopy(GRID)
    grid["probe"]["n"], grid["training"]["steps"] = args.n, args.steps
    specs = {}
    for scope in ("all", "matching"):
        grid["comparisons"]["layer_pairs"] = scope
        specs[scope] = parse_spec(copy.deepcopy(grid))
    plans = {scope: plan_study(spec) for scope, spec in specs.items()}
    root = Path(tempfile.mkdtemp(prefix="vaesim-layer-pairs-"))
    try:
        start = time.perf_counter()
        for stage in ("probe", "train", "extract"):
            for task in plans["all"].tasks[stage]:
                run_task(str(root), task, 1)
        print(f"setup (train {len(plans['all'].runs)} runs x {args.steps} steps, extract): "
              f"{time.perf_counter() - start:.0f} s; load average {os.getloadavg()[0]:.2f}")
        tasks = {scope: one_of_each(plan) for scope, plan in plans.items()}
        seconds = {scope: {t.comparison: [] for t in tasks[scope]} for scope in tasks}
        for repeat in range(args.repeats):
            order = ("all", "matching") if repeat % 2 == 0 else ("matching", "all")
            for full, part in zip(tasks["all"], tasks["matching"]):
                assert full.pairs == part.pairs and full.comparison == part.comparison
                for scope, task in zip(order, (full, part) if order[0] == "all" else (part, full)):
                    (root / results_path(task.task_id)).unlink(missing_ok=True)
                    seconds[scope][task.comparison].append(run_task(str(root), task, 1)["seconds"])
        print(f"{'comparison':<11} {'model pairs':>11} {'all s':>8} {'matching s':>11} {'all / matching':>15}")
        total = {"all": 0.0, "matching": 0.0}
        for full in tasks["all"]:
            a, m = (float(np.median(seconds[s][full.comparison])) for s in ("all", "matching"))
            total["all"] += a
            total["matching"] += m
            print(f"{full.comparison:<11} {len(full.pairs):>11} {a:>8.1f} {m:>11.1f} {a / m:>15.1f}")
        print(f"{'total':<11} {'':>11} {total['all']:>8.1f} {total['matching']:>11.1f} "
              f"{total['all'] / total['matching']:>15.1f}   (load average now {os.getloadavg()[0]:.2f})")
        for full, part in zip(tasks["all"], tasks["matching"]):
            rows = [pd.read_parquet(root / results_path(t.task_id)) for t in (full, part)]
            merged = rows[1].merge(rows[0], on=KEY, suffixes=("", "_all"), validate="one_to_one")
            assert len(merged) == len(rows[1]) > 0
            assert np.array_equal(merged["score"], merged["score_all"], equal_nan=True), full.comparison
        print("every score matching keeps equals the one all stores, bit for bit")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
