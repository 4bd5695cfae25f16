"""Extract and compare stages with ``summaries: planned`` against ``cache`` (and ``keep``), side by side in one run.

An evidence-like study scaled down (issue 33, item 1): beta-VAE beta 1/4/8 and DIP-VAE II, ``--seeds`` seeds,
``--steps`` steps, the evidence preset's recording (13 log-spaced checkpoints plus step 0, every layer,
``--n`` probe images, decoder on the final mean code, a noise floor at every checkpoint) and its comparisons.
The runs are trained once; each mode then runs the extract and compare stages (and the rest) from a copy of
the trained study, in turn, and the script prints each stage's wall seconds (from provenance.json), the
ratios cache / planned, the summary cache's peak disk (sampled) against the plan's, and whether every
results file is the same bytes in every mode.

    python benchmarks/summary_cache.py [--n 250] [--steps 300] [--seeds 3] [--modes cache planned keep]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from vaesim.study import parse_spec, run_study
from vaesim.study.estimate import plan_cache
from vaesim.study.plan import plan_study

GRID = {
    "name": "bench-summary-cache",
    "datasets": ["dsprites-procedural"],
    "objectives": [{"name": "beta_vae", "values": [1, 4, 8]}, {"name": "dip_vae_ii", "values": [10]}],
    "seeds": [0, 1, 2],
    "training": {"steps": 300, "batch_size": 32, "lr": 0.001, "latent_dim": 10,
                 "checkpoints": {"schedule": "log", "count": 13, "include_init": True, "log_first": 10},
                 "log_every": 50},
    "probe": {"n": 250, "seed": 0, "decoder_input": "final_mean"},
    "metrics": ["cka", "procrustes"],
    "comparisons": {"within_run": "self_and_final", "across_steps": "final", "seeds": True, "params": True,
                    "objectives": True, "factors": True, "noise_floor": "every"},
    "device": "cpu",
}


def _bytes(root: Path) -> int:
    total = 0
    for path in root.rglob("step_*.npz"):
        try:
            total += path.stat().st_size
        except OSError:
            continue
    return total


class Peak:
    """Largest size of the summary files under ``root`` while the block runs (sampled every 0.2 s)."""

    def __init__(self, root: Path):
        self.root, self.peak, self._stop = root, 0, threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.is_set():
            if self.root.exists():
                self.peak = max(self.peak, _bytes(self.root))
            time.sleep(0.2)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _results(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / "results").glob("*.parquet"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=250)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["cache", "planned", "keep"])
    parser.add_argument("--dir", default=None, help="working folder (default: a temporary one, removed)")
    args = parser.parse_args()
    grid = copy.deepcopy(GRID)
    grid["probe"]["n"], grid["training"]["steps"], grid["seeds"] = args.n, args.steps, list(range(args.seeds))
    work = Path(args.dir or tempfile.mkdtemp(prefix="vaesim-summary-cache-"))
    base = work / "trained"
    spec = dict(grid, summaries="cache", comparisons=dict(grid["comparisons"], within_run="none", seeds=False,
                params=False, objectives=False, factors=False, noise_floor=False))
    started = time.perf_counter()
    run_study(parse_spec(spec), base, progress=False)  # trains (and extracts, unused): the shared runs
    print(f"trained {len(list((base / 'runs').iterdir()))} runs in {time.perf_counter() - started:.0f} s "
          f"(load {os.getloadavg()[0]:.1f})")
    seconds, results, peaks = {}, {}, {}
    for mode in args.modes:
        out = work / mode
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        shutil.copytree(base / "runs", out / "runs", symlinks=True)
        mode_spec = parse_spec(dict(grid, summaries=mode))
        load = os.getloadavg()[0]
        with Peak(out / "summaries") as peak:
            run_study(mode_spec, out, progress=False)
        session = json.loads((out / "provenance.json").read_text())["sessions"][-1]["stages"]
        seconds[mode] = {stage: session[stage]["seconds"] for stage in ("extract", "compare")}
        results[mode] = _results(out)
        peaks[mode] = peak.peak
        _plan, planned_peak = plan_cache(plan_study(mode_spec))
        print(f"{mode:8s} extract {seconds[mode]['extract']:7.1f} s  compare {seconds[mode]['compare']:7.1f} s  "
              f"sum {sum(seconds[mode].values()):7.1f} s  summary files peak {peak.peak / 1e6:8.1f} MB"
              + (f" (plan {planned_peak / 1e6:.1f} MB)" if mode == "planned" else "")
              + f"  left at the end {_bytes(out / 'summaries') / 1e6:.1f} MB  (load at start {load:.1f})")
    if "cache" in seconds:
        for mode in seconds:
            if mode == "cache":
                continue
            compare = seconds["cache"]["compare"] / seconds[mode]["compare"]
            both = sum(seconds["cache"].values()) / sum(seconds[mode].values())
            print(f"cache / {mode}: compare stage {compare:.2f}x, extract + compare {both:.2f}x")
    first = next(iter(results.values()))
    same = all(r == first for r in results.values()) and len(first) > 0
    print(f"results files ({len(first)}) the same bytes in every mode: {same}")
    if args.dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
