"""A shared CPU: one study alone, two at once, and one beside an unrelated busy numpy process.

Runs ``vaesim study run`` (the ``quick`` preset, or with ``--small`` a
smaller variant of it: fewer runs and steps, same stages) as separate
processes, in one run of this script:

1. solo: one study;
2. pair: two copies at the same time, into two directories;
3. busy: one study beside one unrelated busy process (a numpy matmul loop
   with its own default threads, started before and stopped after).

and prints the ratios pair / solo (wall time of the slower copy; fair
share 2.0, target <= 2.5) and busy / solo (fair share about 2.0 when the
busy process keeps every core busy). ``--modes spin passive`` repeats the
three for each thread wait policy (``spin``: ``VAESIM_SPIN_WAIT=1``, the
OpenMP/OpenBLAS defaults, i.e. vaesim before this change; ``passive``:
vaesim's default now), so before and after are measured side by side under
the same load. The load average is printed before and after.

    python benchmarks/concurrency.py --small                 # 2 x 6 short studies (2 runs x 60 steps)
    python benchmarks/concurrency.py                          # the quick preset (the demo's study)
    python benchmarks/concurrency.py --small --modes passive  # after only
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BUSY = """
import numpy as np, time
a = np.random.default_rng(0).random((700, 700))
while True:
    a = a @ a
    a /= np.abs(a).max()
"""


def small_spec(steps: int, n: int = 200) -> dict:
    """The quick preset cut down: beta-VAE beta 1 and 32, 1 seed, ``steps`` steps, 3 checkpoints, ``n`` probes."""
    from vaesim.study import load_spec

    spec = yaml.safe_load(load_spec("quick").to_yaml())
    spec = copy.deepcopy(spec)
    spec["name"] = "quick-small"
    spec["objectives"] = [{"name": "beta_vae", "values": [1, 32]}]
    spec["seeds"] = [0]
    spec["training"]["steps"] = steps
    spec["training"]["checkpoints"] = {"schedule": "log", "count": 3, "include_init": True, "log_first": 10}
    spec["probe"]["n"] = n
    return spec


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def study_command(spec: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "vaesim.cli", "study", "run", spec, "--out", str(out), "--no-progress"]


def env_for(mode: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OPENBLAS_THREAD_TIMEOUT",
                        "VAESIM_SPIN_WAIT", "VAESIM_WAIT")}
    env["VAESIM_WAIT"] = mode
    return env


STAGES = ("train", "extract", "compare", "disentangle")
STAGE_TIMES: dict[str, list[dict[str, float]]] = {}  # (mode, copies, busy) label -> each copy's seconds per stage


def stage_seconds(study_dir: Path) -> dict[str, float]:
    """Seconds per stage of the study's last session (provenance.json)."""
    import json

    sessions = json.loads((study_dir / "provenance.json").read_text())["sessions"]
    return {stage: float(value["seconds"]) for stage, value in sessions[-1].get("stages", {}).items()}


def run_studies(spec: str, root: Path, copies: int, mode: str, busy: bool = False,
                limit: float | None = None) -> list[float]:
    """Start ``copies`` studies at once (plus a busy process); return each one's wall seconds.

    Each copy's seconds per stage go to :data:`STAGE_TIMES`.

    A study still running after ``limit`` seconds is stopped and reported as
    ``inf`` (so a collapse does not hold the benchmark for an hour).
    """
    dirs = [root / f"{mode}-{copies}-{'busy' if busy else 'plain'}-{i}" for i in range(copies)]
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    neighbour = None
    if busy:
        clean = {k: v for k, v in os.environ.items()
                 if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "OPENBLAS_THREAD_TIMEOUT")}
        neighbour = subprocess.Popen([sys.executable, "-c", BUSY], env=clean)
        time.sleep(1.0)
    start = time.perf_counter()
    procs = [subprocess.Popen(study_command(spec, d), env=env_for(mode), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for d in dirs]
    seconds = []
    try:
        for proc in procs:
            try:
                left = None if limit is None else max(1.0, limit - (time.perf_counter() - start))
                _, err = proc.communicate(timeout=left)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                seconds.append(float("inf"))
                continue
            seconds.append(time.perf_counter() - start)
            if proc.returncode != 0:
                raise RuntimeError(f"study failed ({mode}, {copies} copies): {err[-2000:]}")
        label = f"{mode}-{copies}-{'busy' if busy else 'plain'}"
        STAGE_TIMES[label] = [stage_seconds(d) if (d / "provenance.json").is_file() else {} for d in dirs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a smaller variant of the quick study (see small_spec)")
    parser.add_argument("--steps", type=int, default=60, help="training steps of --small (default 60)")
    parser.add_argument("--spec", default=None, help="another spec file or preset (default: quick)")
    parser.add_argument("--modes", nargs="+", choices=("spin", "passive", "short"), default=["passive"],
                        help="thread wait policies to measure (default passive, vaesim's default; "
                             "spin: the runtimes' defaults)")
    parser.add_argument("--skip-busy", action="store_true", help="skip the busy-neighbour measurement")
    parser.add_argument("--busy-modes", nargs="+", choices=("spin", "passive", "short"), default=None,
                        help="modes that get the busy-neighbour measurement (default: every mode)")
    parser.add_argument("--limit", type=float, default=None, metavar="SECONDS",
                        help="stop a measurement after SECONDS and report it as > SECONDS (default: no limit)")
    parser.add_argument("--n", type=int, default=200, help="probe examples of --small (default 200)")
    args = parser.parse_args()
    from vaesim.utils.threads import affinity_cpus, available_cpus, cgroup_cpu_limit

    root = Path(tempfile.mkdtemp(prefix="vaesim-concurrency-"))
    spec = args.spec or "quick"
    if args.small:
        spec = str(root / "quick-small.yaml")
        Path(spec).write_text(yaml.safe_dump(small_spec(args.steps, args.n), sort_keys=False))
    print(f"spec {'quick-small (' + str(args.steps) + ' steps)' if args.small else spec}; os.cpu_count() "
          f"{os.cpu_count()}, affinity {affinity_cpus()}, cgroup quota {cgroup_cpu_limit()}, "
          f"vaesim uses {available_cpus()} CPU(s)")
    print(f"load average before: {loadavg()}", flush=True)
    results = {}
    try:
        for mode in args.modes:
            solo = run_studies(spec, root, 1, mode, limit=args.limit)[0]
            print(f"  {mode:7s} solo  {solo:7.1f} s   (load {loadavg()})", flush=True)
            pair = run_studies(spec, root, 2, mode, limit=args.limit)
            print(f"  {mode:7s} pair  {max(pair):7.1f} s   ({', '.join(f'{s:.1f}' for s in pair)}; load {loadavg()})",
                  flush=True)
            busy = None
            if not args.skip_busy and mode in (args.busy_modes or args.modes):
                busy = run_studies(spec, root, 1, mode, busy=True, limit=args.limit)[0]
                print(f"  {mode:7s} busy  {busy:7.1f} s   (load {loadavg()})", flush=True)
            results[mode] = (solo, max(pair), busy)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average after: {loadavg()}")
    print(f"\n{'mode':8s} {'solo s':>8s} {'pair s':>8s} {'pair/solo':>10s} {'busy s':>8s} {'busy/solo':>10s}")
    for mode, (solo, pair, busy) in results.items():
        def seconds(value):
            return f"{'>' + format(args.limit, '.0f'):>8s}" if value == float("inf") else f"{value:8.1f}"

        def ratio(value):
            return f"{'n/a':>10s}" if float("inf") in (value, solo) else f"{value / solo:10.2f}"

        busy_text = f"{seconds(busy)} {ratio(busy)}" if busy is not None else f"{'-':>8s} {'-':>10s}"
        print(f"{mode:8s} {seconds(solo)} {seconds(pair)} {ratio(pair)} {busy_text}")
    print("fair share: pair/solo 2.0 (target <= 2.5); busy/solo about 2.0; inf: stopped at --limit")
    print(f"\nper stage (seconds from provenance.json; busy/solo target <= 3.0, fair ~2.0):")
    print(f"{'mode':8s} {'stage':12s} {'solo s':>8s} {'pair s':>8s} {'pair/solo':>10s} {'busy s':>8s} {'busy/solo':>10s}")
    for mode in results:
        solo_stages = STAGE_TIMES.get(f"{mode}-1-plain", [{}])[0]
        pair_stages = STAGE_TIMES.get(f"{mode}-2-plain", [])
        busy_stages = STAGE_TIMES.get(f"{mode}-1-busy", [{}])[0]
        for stage in STAGES:
            if stage not in solo_stages:
                continue
            solo = solo_stages[stage]
            pair = max((times.get(stage, 0.0) for times in pair_stages), default=float("nan"))
            busy = busy_stages.get(stage, float("nan"))
            print(f"{mode:8s} {stage:12s} {solo:8.1f} {pair:8.1f} {pair / solo if solo else float('nan'):10.2f} "
                  f"{busy:8.1f} {busy / solo if solo else float('nan'):10.2f}")


if __name__ == "__main__":
    main()
