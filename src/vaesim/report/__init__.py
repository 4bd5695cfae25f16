"""Findings, figures and the HTML report of a study (reads only the study's store).

    from vaesim.report import compute_findings, write_report
    findings = compute_findings(load_results(d), load_runs(d))
    write_report(d)      # d/report.html, d/figures/*.png|svg, d/findings.csv
    write_reports(d)     # the same for every metric in the store (report-procrustes.html, ...)
"""

from typing import TYPE_CHECKING

from vaesim._lazy import lazy_exports

# Imported on first use, so the CLI's --help never pays for torch / pandas / matplotlib.
_EXPORTS = {
    "FIGURES": "vaesim.report.figures",
    "make_figures": "vaesim.report.figures",
    "HOLDS": "vaesim.report.findings",
    "INCONCLUSIVE": "vaesim.report.findings",
    "NOT_ENOUGH_DATA": "vaesim.report.findings",
    "OPPOSITE_HOLDS": "vaesim.report.findings",
    "compute_findings": "vaesim.report.findings",
    "format_findings": "vaesim.report.findings",
    "plot_layer_heatmap": "vaesim.report.plots",
    "plot_score_by_step": "vaesim.report.plots",
    "load_findings": "vaesim.report.report",
    "read_store": "vaesim.report.report",
    "write_report": "vaesim.report.report",
    "write_reports": "vaesim.report.report",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from vaesim.report.figures import FIGURES, make_figures
    from vaesim.report.findings import (
        HOLDS,
        INCONCLUSIVE,
        NOT_ENOUGH_DATA,
        OPPOSITE_HOLDS,
        compute_findings,
        format_findings,
    )
    from vaesim.report.plots import plot_layer_heatmap, plot_score_by_step
    from vaesim.report.report import load_findings, read_store, write_report, write_reports
