"""Measured peak memory of a study's tasks against the plan's figure (issue 33 item 3).

    python benchmarks/task_memory.py [--n 2000] [--steps 20] [--dir /tmp/task-memory]

Builds (or resumes) a small study: beta-VAE beta 1, 4, 8, one seed, --steps steps, 4 checkpoints (step 0
included), --n probe images, CKA and Procrustes, summaries kept. Then, for the largest compare task and one
extract task, runs the stage function alone in a fresh process and reads its peak resident set size
(``VmHWM`` of /proc/self/status, which counts the pages of memory-mapped summary files the task read) and its
own memory's peak (``RssAnon``, sampled every 5 ms: what the kernel cannot drop), and prints them beside
:func:`vaesim.study.estimate.task_memory`'s figure for that stage.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys
from pathlib import Path

def status(field):  # bytes of one /proc/self/status field (per address space: ru_maxrss would carry the parent's)
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

def hwm():  # peak resident set, file-backed pages of memory-mapped summaries included
    return status("VmHWM")

import threading, time
anon_peak = [0]
def watch():  # the process's own (anonymous) memory, sampled: what cannot be dropped under pressure
    while True:
        anon_peak[0] = max(anon_peak[0], status("RssAnon"))
        time.sleep(0.005)
threading.Thread(target=watch, daemon=True).start()

from vaesim.study import load_spec, plan_study
from vaesim.study.stages.compare import compare_stage
from vaesim.study.stages.extract import extract_stage
import torch  # the process as a study task has it
root, stage, task_id = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
plan = plan_study(load_spec(root / "spec.yaml"))
task = next(t for t in plan.tasks[stage] if t.task_id == task_id)
before = hwm()
if stage == "compare":
    compare_stage(root, task)
else:
    for output in task.outputs:  # recompute: the task's outputs removed first
        (root / output).unlink(missing_ok=True)
    extract_stage(root, task)
peak = hwm()
print(json.dumps({"before": before, "peak": peak, "anon": anon_peak[0]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dir", default="/tmp/task-memory")
    args = parser.parse_args()
    import yaml

    from vaesim.data.registry import get_spec
    from vaesim.study import load_spec, plan_study, run_study
    from vaesim.study.budget import layer_widths
    from vaesim.study.estimate import human_bytes, task_memory

    root = Path(args.dir) / f"n{args.n}"
    spec = {"name": "task-memory", "datasets": ["dsprites-procedural"],
            "objectives": [{"name": "beta_vae", "values": [1, 4, 8]}], "seeds": [0],
            "training": {"steps": args.steps, "batch_size": 16, "checkpoints": {"schedule": "even", "count": 4}},
            "probe": {"n": args.n}, "metrics": ["cka", "procrustes"], "summaries": "keep", "device": "cpu",
            "comparisons": {"seeds": False, "factors": False, "noise_floor": False, "layer_pairs": "matching"}}
    root.parent.mkdir(parents=True, exist_ok=True)
    spec_file = root.parent / f"n{args.n}.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    print(f"study {root} (n = {args.n}): training and extracting, load {os.getloadavg()[0]:.1f}", flush=True)
    run_study(load_spec(spec_file), root, progress=False)
    plan = plan_study(load_spec(root / "spec.yaml"))
    widths = layer_widths(plan.spec, get_spec("dsprites-procedural").num_channels)
    planned = {stage: (need, what) for stage, need, what in task_memory(plan, widths)}

    def involved(task) -> int:
        return len({(p[0], p[1]) for p in task.pairs} | {(p[2], p[3]) for p in task.pairs})

    compare = max(plan.tasks["compare"], key=involved)
    extract = plan.tasks["extract"][-1]
    print(f"{'stage':8s} {'task':40s} {'before':>9s} {'peak':>9s} {'anon':>9s} {'planned':>9s} {'ratio':>6s}  "
          "(peak: VmHWM, mapped summary pages included; anon: the process's own memory, sampled; "
          "ratio: planned / anon)")
    for stage, task in (("extract", extract), ("compare", compare)):
        out = subprocess.run([sys.executable, "-c", CHILD, str(root), stage, task.task_id], check=True,
                             capture_output=True, text=True).stdout
        measured = json.loads(out.strip().splitlines()[-1])
        peak, before, anon = measured["peak"], measured["before"], measured["anon"]
        need = planned[stage][0]
        print(f"{stage:8s} {task.task_id[:40]:40s} {human_bytes(before):>9s} {human_bytes(peak):>9s} "
              f"{human_bytes(anon):>9s} {human_bytes(need):>9s} {need / anon:>6.2f}  {planned[stage][1]}", flush=True)
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
