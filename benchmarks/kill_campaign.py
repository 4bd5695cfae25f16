"""Kill campaign: SIGKILL / SIGTERM a study run in every stage (and `vaesim report`), rerun, compare bit for bit.

1. An uninterrupted reference run of a small study with a disentangle stage
   (2 x 2 runs, 3 checkpoints, DCI/MIG/... on every checkpoint and UDR).
2. The same study into another directory, started again and again: each
   start is killed (alternately SIGKILL and SIGTERM, the whole process
   group) at a random moment inside the stage named by the schedule, found
   from the runner's ``-v`` log line ``stage <name>: k of n tasks already
   done``. Then one run to the end.
3. ``vaesim report`` on the finished copy, killed the same way, then run to
   the end.

It prints the kills per stage and the files that differ from the reference
(every file under the study directory, the report's findings.csv and
baselines.csv included, except bookkeeping of the last session:
provenance.json, failures.json, .lock, .progress/, report.html (it holds its
time), the figures, and the ``finished_at`` time in each run's DONE marker).
Exit status 0 when no file differs and `study verify` is clean.

    python benchmarks/kill_campaign.py --work /tmp/kills           # about 8 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "study"))
from study_tiny import TINY  # noqa: E402

# in the stages' run order (vaesim.study.plan.STAGES): the store stage runs after disentangle
SCHEDULE = (["probe"] + ["train"] * 4 + ["extract"] * 3 + ["compare"] * 3 + ["disentangle"] * 6 + ["store"] * 3)
STAGE_SECONDS = {"probe": 0.1, "train": 16, "extract": 2.7, "compare": 2.9, "store": 0.16, "disentangle": 98}
BOOKKEEPING = {"provenance.json", "failures.json", ".lock", "running.json", "report.html"}  # times, this session


def spec() -> dict:
    spec = copy.deepcopy(TINY)
    spec.update(name="kill-campaign", objectives=[{"name": "beta_vae", "values": [1, 4]}],
                training=dict(spec["training"], steps=30, checkpoints={"schedule": "even", "count": 3}),
                disentanglement={"checkpoints": "all", "protocol_fraction": 0.002, "udr_points": 200})
    return spec


def vaesim(*args: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"))
    return subprocess.Popen([sys.executable, "-m", "vaesim.cli", "-v", *args], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, start_new_session=True, **kwargs)


def files(root: Path) -> dict[str, bytes]:
    """Every file by relative path; a run's DONE marker without its ``finished_at`` time (figures: not compared)."""
    skip_dirs = {".progress", "figures", "set-aside"}
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in BOOKKEEPING and not skip_dirs & set(p.relative_to(root).parts):
            data = p.read_bytes()
            if p.name == "DONE":
                data = json.dumps({k: v for k, v in json.loads(data).items() if k != "finished_at"}).encode()
            out[str(p.relative_to(root))] = data
    return out


def kill_in_stage(spec_file: Path, out: Path, stage: str, kill_signal: int, rng: random.Random) -> bool:
    """Start a run and kill it inside ``stage``; False when the stage was already done (nothing killed)."""
    runner = vaesim("study", "run", str(spec_file), "--out", str(out), "--no-progress")
    for line in runner.stderr:
        if f"stage {stage}: " in line and "already done" in line:
            done, _, rest = line.split(f"stage {stage}: ", 1)[1].partition(" of ")
            if int(done) == int(rest.split()[0]):
                os.killpg(runner.pid, signal.SIGKILL)
                runner.wait()
                return False
            threading.Thread(target=runner.stderr.read, daemon=True).start()  # the log never blocks the runner
            left = 1.0 - int(done) / int(rest.split()[0])  # the share of the stage still to run
            time.sleep(rng.uniform(0.0, 0.8 * left * STAGE_SECONDS[stage]))
            if runner.poll() is not None:
                return False  # it finished before the kill point
            os.killpg(runner.pid, kill_signal)
            return runner.wait() != 0
    runner.wait()
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="scratch directory (replaced)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report-kills", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    spec_file = args.work / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec()))
    reference, killed = args.work / "reference", args.work / "killed"
    started = time.perf_counter()
    first = vaesim("study", "run", str(spec_file), "--out", str(reference), "--no-progress")
    first.communicate()
    assert first.returncode == 0
    reference_report = vaesim("report", str(reference))
    reference_report.communicate()
    assert reference_report.returncode == 0
    print(f"reference run and report: {time.perf_counter() - started:.0f} s")
    kills, missed = Counter(), Counter()
    for k, stage in enumerate(SCHEDULE):
        how = (signal.SIGKILL, signal.SIGTERM)[k % 2]
        if kill_in_stage(spec_file, killed, stage, how, rng):
            kills[(stage, how.name)] += 1
        else:
            missed[stage] += 1
    finish = vaesim("study", "run", str(spec_file), "--out", str(killed), "--no-progress")
    _, err = finish.communicate()
    assert finish.returncode == 0, err[-2000:]
    for k in range(args.report_kills):
        report = vaesim("report", str(killed))
        threading.Thread(target=report.stderr.read, daemon=True).start()
        time.sleep(rng.uniform(1.0, 12.0))
        if report.poll() is not None:
            missed["report"] += 1
            continue
        os.killpg(report.pid, (signal.SIGKILL, signal.SIGTERM)[k % 2])
        report.wait()
        kills[("report", ("SIGKILL", "SIGTERM")[k % 2])] += 1
    final_report = vaesim("report", str(killed))
    final_report.communicate()
    assert final_report.returncode == 0
    ref_files, got = files(reference), files(killed)
    differ = sorted(name for name in ref_files.keys() | got.keys() if ref_files.get(name) != got.get(name))
    verify = vaesim("study", "verify", str(killed))
    verify.communicate()
    print("kills per stage and signal:", dict(sorted(kills.items())), "total", sum(kills.values()))
    print("scheduled kills that found their stage done (or the process ended first):", dict(missed))
    print(f"files compared: {len(ref_files)}; differing from the reference: {len(differ)} {differ[:10]}")
    print(f"study verify exit status: {verify.returncode}; report.html present: {(killed / 'report.html').is_file()}")
    return 0 if not differ and verify.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
