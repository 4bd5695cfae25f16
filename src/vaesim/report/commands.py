"""``vaesim report DIR``: findings, figures and a self-contained HTML report of a study."""

from __future__ import annotations

import time
from pathlib import Path


def register(subparsers) -> None:
    """Add ``vaesim report`` to the ``vaesim`` parser."""
    parser = subparsers.add_parser(
        "report",
        help="findings, figures and a self-contained HTML report of a study directory",
        description=(
            "Read a study directory's results store and write DIR/report.html (one self-contained file, "
            "figures embedded), DIR/figures/*.png and *.svg and DIR/findings.csv; print the findings."
        ),
    )
    parser.add_argument("study_dir", metavar="DIR", type=Path, help="a study directory (vaesim study run / demo)")
    parser.add_argument("--metric", default="cka",
                        help="similarity metric of findings and figures (default: cka -> report.html; "
                             "another metric M writes report-M.html, figures-M/ and findings-M.csv beside it)")
    parser.set_defaults(func=run_report, inspects=True)


def report_and_print(study_dir: Path, *, metric: str = "cka") -> Path:
    """Write the report of ``study_dir``, print its findings table and path; return the path."""
    from vaesim.report import format_findings, load_findings, write_report

    started = time.perf_counter()
    path = write_report(study_dir, metric=metric)
    print(format_findings(load_findings(study_dir, metric)))
    print(f"\nreport: {path.resolve()}  ({time.perf_counter() - started:.1f} s)")
    return path


def run_report(args) -> int:
    report_and_print(args.study_dir, metric=args.metric)
    return 0
