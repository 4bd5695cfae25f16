"""Findings, figures and the HTML report of a study (reads only the study's store).

    from vaesim.report import compute_findings, write_report
    findings = compute_findings(load_results(d), load_runs(d))
    write_report(d)      # d/report.html, d/figures/*.png|svg, d/findings.csv
"""

from vaesim.report.figures import FIGURES, make_figures
from vaesim.report.findings import (
    DOES_NOT_HOLD,
    HOLDS,
    NOT_ENOUGH_DATA,
    compute_findings,
    format_findings,
)
from vaesim.report.report import load_findings, read_store, write_report

__all__ = [
    "DOES_NOT_HOLD",
    "FIGURES",
    "HOLDS",
    "NOT_ENOUGH_DATA",
    "compute_findings",
    "format_findings",
    "load_findings",
    "make_figures",
    "read_store",
    "write_report",
]
