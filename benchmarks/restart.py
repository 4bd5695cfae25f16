"""Restart cost of a big store, and planning cost of a big grid.

    python benchmarks/restart.py [--runs 200 --checkpoints 10] [--plan 300,3000,30000]

1. Restart: a synthetic study store of RUNS x (CHECKPOINTS + 1) checkpoints (one run trained for real, the
   others its checkpoint files hard-linked under each run's own address, with their own config.json and
   checkpoint-sums.json, so the plan and the repair check see a finished train stage). Timed side by side:
   the runner's restart check (``repair_damage``, what every ``study run`` does before any stage) with no hash
   cache (every byte read: the behaviour before the cache) and with the cache the previous start left. Hard
   links make every checkpoint the same inode: the bytes come from the page cache, so the no-cache time is
   a floor (on a network file system it is far more).
2. Planning: ``plan_study`` of the quick preset with N seeds (N x 4 runs) for each N of --plan, and the tasks
   it makes, with the time per task.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def synthetic_store(root: Path, runs: int, checkpoints: int) -> int:
    """A finished train stage of ``runs`` runs; returns the number of checkpoint files."""
    from vaesim.study import load_spec, plan_study, run_study
    from vaesim.study.plan import run_dir
    from vaesim.study.spec import parse_spec
    from vaesim.study.stages.checkpoints import config_bytes

    spec = {"name": "restart", "datasets": ["dsprites-procedural"], "objectives": [{"name": "beta_vae",
            "values": [1]}], "seeds": [0], "training": {"steps": checkpoints, "batch_size": 4,
            "checkpoints": {"schedule": "even", "count": checkpoints}}, "probe": {"n": 16},
            "layers": ["encoder.mean"], "comparisons": {"within_run": "none", "seeds": False, "params": False,
                                                          "objectives": False, "factors": False,
                                                          "noise_floor": False}, "device": "cpu"}
    import yaml

    (root / "template.yaml").write_text(yaml.safe_dump(spec))
    run_study(root / "template.yaml", root / "template", workers=1, progress=False)
    template = next((root / "template" / "runs").iterdir())
    spec["seeds"] = list(range(runs))
    (root / "study").mkdir()
    (root / "study" / "spec.yaml").write_text(yaml.safe_dump(spec))
    plan = plan_study(parse_spec(spec))
    for task in plan.tasks["train"]:
        target = root / "study" / run_dir(task.run_id)
        for path in template.rglob("*"):
            if path.is_file() and path.name not in ("config.json",):
                destination = target / path.relative_to(template)
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, destination)
        (target / "config.json").write_bytes(config_bytes(task))
    del load_spec
    return sum(1 for _ in (root / "study").glob("runs/*/checkpoints/*.safetensors"))


def time_restart(study: Path, repeat: int) -> tuple[float, float, int]:
    from vaesim.study import load_spec, plan_study
    from vaesim.study.store.repair import repair_damage
    from vaesim.study.store.hashcache import CACHE_FILE, HashCache

    plan = plan_study(load_spec(study / "spec.yaml"))
    cold, warm = [], []
    for _ in range(repeat):
        (study / CACHE_FILE).unlink(missing_ok=True)
        cache = HashCache.load(study)
        start = time.perf_counter()
        repair_damage(study, plan, cache)
        cache.save()
        cold.append(time.perf_counter() - start)
        cache = HashCache.load(study)
        start = time.perf_counter()
        repair_damage(study, plan, cache)
        warm.append(time.perf_counter() - start)
        read = cache.misses
    return min(cold), min(warm), read


def time_plans(seeds: list[int]) -> None:
    """The quick preset with N seeds, with its seeds comparisons (model pairs grow as N^2) and without."""
    from vaesim.study import load_spec, plan_study
    from vaesim.study.budget import check_plan_size
    from vaesim.study.plan import model_pair_count
    from vaesim.study.spec import parse_spec

    for across_seeds in (False, True):
        data = load_spec("quick").model_dump(mode="json")
        data["comparisons"]["seeds"] = across_seeds
        for n in seeds:
            data["seeds"] = list(range(n))
            spec = parse_spec(data)
            start = time.perf_counter()
            try:
                check_plan_size(spec)
            except ValueError as refused:
                print(f"plan (seeds comparisons {across_seeds}): {4 * n:>7,} runs refused in "
                      f"{time.perf_counter() - start:.2f} s: {str(refused)[:110]}...")
                continue
            plan = plan_study(spec)
            seconds = time.perf_counter() - start
            tasks = sum(len(tasks) for tasks in plan.tasks.values())
            pairs = model_pair_count(spec)
            print(f"plan (seeds comparisons {across_seeds}): {len(plan.runs):>7,} runs {tasks:>9,} tasks "
                  f"{pairs:>11,} model pairs {seconds:7.2f} s  {1e6 * seconds / tasks:6.1f} us per task, "
                  f"{1e6 * seconds / pairs:5.2f} us per pair")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--checkpoints", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--plan", default="75,750,7500", help="seed counts of the quick preset (x4 runs each)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    root = Path(tempfile.mkdtemp())
    try:
        files = synthetic_store(root, args.runs, args.checkpoints)
        cold, warm, read = time_restart(root / "study", args.repeat)
        print(f"restart check of {args.runs} runs, {files} checkpoints: no cache {cold:.2f} s, with the cache "
              f"{warm:.2f} s ({cold / warm:.1f}x faster; files read with the cache: {read})")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.plan:
        time_plans([int(n) for n in args.plan.split(",")])


if __name__ == "__main__":
    main()
