"""``vaesim demo [--out DIR]``: the main job.

Runs the ``quick`` preset (procedural dSprites, CPU, no data files or
network) with the local executor and progress bars, then writes the report
of every metric and prints the findings table and the report's path.
Rerunning the same command resumes unfinished work and reuses finished work.

The demo is a smoke test of the pipeline: 2 seeds and 800 steps are too few
to decide the paper's claims, and its output says so; the ``evidence``
preset is the study sized to decide them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_OUT = Path("vaesim-demo")
DEFAULT_SPEC = "quick"


def register(subparsers) -> None:
    """Add ``vaesim demo`` to the ``vaesim`` parser."""
    parser = subparsers.add_parser(
        "demo",
        help="a quick smoke test: run the 'quick' study and write its report (a few minutes on a CPU)",
        description=(
            "Train the 'quick' study (beta-VAE and DIP-VAE II on procedurally rendered dSprites) on the CPU, "
            "compare every layer through training, and write DIR/report.html with the paper's findings. "
            "Rerunning resumes: finished work is reused. The demo is too small to decide the claims; the "
            "'evidence' preset is sized to decide them (vaesim study run evidence --out DIR)."
        ),
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                        help=f"study directory (default: {DEFAULT_OUT})")
    parser.add_argument("--workers", type=int, default=None,
                        help="parallel worker processes of the local executor (default: sequential)")
    # Another preset name or spec file; used by tests to wire the command on a tiny study.
    parser.add_argument("--spec", default=DEFAULT_SPEC, help=argparse.SUPPRESS)
    parser.set_defaults(func=run_demo)


def run_demo(args) -> int:
    from vaesim.report.commands import report_and_print
    from vaesim.study import StudyFailed, load_spec, run_study

    spec = load_spec(args.spec)
    started = time.perf_counter()
    print(f"vaesim demo: study '{spec.name}' into {args.out} (rerun the same command to resume)", file=sys.stderr)
    status = 0
    try:
        run_study(spec, args.out, executor="local", workers=args.workers, progress=True)
    except StudyFailed as failed:
        # The finished part is kept and reported; a rerun retries only the failed tasks.
        print(f"vaesim demo: {failed}", file=sys.stderr)
        status = 1
    study_seconds = time.perf_counter() - started
    print(f"study {'finished' if status == 0 else 'stopped'} in {study_seconds:.1f} s; writing the report",
          file=sys.stderr)
    report_and_print(args.out)
    print(f"total wall time {time.perf_counter() - started:.1f} s")
    print(SMOKE_TEST_NOTE)
    return status


#: printed after the findings: what the demo can and cannot tell
SMOKE_TEST_NOTE = ("vaesim demo is a quick smoke test: it is too small to decide the paper's claims (2 seeds, 800 "
                   "steps), so its verdicts show how the tests work, not what VAEs do. For a study sized to decide "
                   "them, run the 'evidence' preset: vaesim study run evidence --out vaesim-evidence")
