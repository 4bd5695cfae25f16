"""``write_report(study_dir)``: findings, figures and ``report.html`` from a study directory.

Reads only the study's store (``spec.yaml``, ``results/*.parquet``,
``runs.parquet``) through ``vaesim.study``'s readers; writes
``figures/*.png|svg``, ``findings.csv`` and ``report.html`` into the study
directory (each atomically).
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from pathlib import Path

import pandas as pd
import yaml

from vaesim.report.figures import make_figures
from vaesim.report.findings import compute_findings
from vaesim.report.html import render_report
from vaesim.report.selection import selection_report
from vaesim.utils import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"
FINDINGS_FILE = "findings.csv"
FIGURES_DIR = "figures"


def read_store(study_dir: str | Path) -> tuple[str, pd.DataFrame, pd.DataFrame | None]:
    """(spec.yaml text, results table, runs table or None) of a study directory."""
    from vaesim.study import load_results, load_runs

    study_dir = Path(study_dir)
    spec_path = study_dir / "spec.yaml"
    if not spec_path.is_file():
        raise FileNotFoundError(
            f"{study_dir} is not a study directory: expected {spec_path} (written by `vaesim study run SPEC "
            f"--out {study_dir}` or `vaesim demo --out {study_dir}`); run the study first"
        )
    results = load_results(study_dir)
    try:
        runs = load_runs(study_dir)
    except FileNotFoundError:
        runs = None
    return spec_path.read_text(encoding="utf-8"), results, runs


def _counts(results: pd.DataFrame) -> pd.DataFrame:
    if results.empty:
        return pd.DataFrame({"comparison": [], "metric": [], "rows": []})
    counts = results.groupby(["comparison", "metric"]).size().rename("rows").reset_index()
    return counts


def _summary(spec_text: str, results: pd.DataFrame, runs: pd.DataFrame | None) -> tuple[str, str]:
    try:
        spec = yaml.safe_load(spec_text) or {}
    except yaml.YAMLError:
        spec = {}
    name = spec.get("name", "study") if isinstance(spec, dict) else "study"
    n_runs = len(runs) if runs is not None else results["a_run"].nunique()
    datasets = sorted(set(results["dataset"])) if len(results) else []
    summary = (
        f"{n_runs} runs; {len(results):,} similarity scores"
        + (f" on {', '.join(datasets)}" if datasets else "")
        + f"; report generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC."
    )
    return f"vaesim report: {name}", summary


def write_report(study_dir: str | Path, *, metric: str = "cka") -> Path:
    """Compute findings and figures of ``study_dir`` and write ``study_dir/report.html``; return its path.

    Also writes ``study_dir/figures/<name>.png`` and ``.svg`` for every
    figure the data allows, and ``study_dir/findings.csv``.
    """
    started = time.perf_counter()
    study_dir = Path(study_dir)
    spec_text, results, runs = read_store(study_dir)
    notes = []
    if results.empty:
        notes.append("The results store is empty: run the study to its compare stage; every finding lacks data.")
    if runs is None:
        notes.append("runs.parquet is missing: the study's store stage has not run; active dimensions are not shown.")
    if len(results) and metric not in set(results["metric"]):
        raise ValueError(f"metric {metric!r} is not in the results of {study_dir} "
                         f"(found {sorted(set(results['metric']))}); pass one of those with --metric")
    findings = compute_findings(results, runs, metric=metric)
    # similarity vs disentanglement / UDR, when the study ran its disentangle stage (vaesim.report.selection)
    extra_findings, extra_figures = selection_report(study_dir, results, metric=metric,
                                                     figures_dir=study_dir / FIGURES_DIR)
    if len(extra_findings):
        findings = pd.concat([findings, extra_findings], ignore_index=True)
    with atomic_path(study_dir / FINDINGS_FILE) as tmp:
        findings.to_csv(tmp, index=False)
    figures = make_figures(results, runs, study_dir / FIGURES_DIR, metric=metric) + extra_figures
    title, summary = _summary(spec_text, results, runs)
    page = render_report(title=title, summary=summary, findings=findings, figures=figures, runs=runs,
                         counts=_counts(results), spec_text=spec_text, notes=notes)
    path = atomic_write_text(study_dir / REPORT_FILE, page)
    logger.info("report %s written in %.1f s", path, time.perf_counter() - started)
    return path


def load_findings(study_dir: str | Path) -> pd.DataFrame:
    """The findings table that :func:`write_report` saved (``findings.csv``)."""
    path = Path(study_dir) / FINDINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run `vaesim report {study_dir}` first")
    return pd.read_csv(path, keep_default_na=False, na_values=[""]).fillna({"detail": ""})
