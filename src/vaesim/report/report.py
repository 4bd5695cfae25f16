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
from vaesim.report.findings import baseline_table, compute_findings
from vaesim.report.html import render_report, table_html
from vaesim.report.selection import selection_report
from vaesim.utils import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"
FINDINGS_FILE = "findings.csv"
BASELINES_FILE = "baselines.csv"
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


def read_latents(study_dir: Path) -> pd.DataFrame | None:
    """``latents.parquet`` of the study, or None when it has none."""
    from vaesim.study import load_latents

    try:
        return load_latents(study_dir)
    except FileNotFoundError:
        return None


DIAGNOSTIC_MAX_N = 1000  # rows of the metric diagnostic (a larger probe set is subsampled)


def metric_diagnostic(study_dir: Path, results: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Claim 4 as a diagnostic: scores of unrelated data at this study's probe size.

    Rows ``source`` = "random n x p" (independent Gaussian matrices, mean of 3
    draws) for widths from n/10 to 16 n (at most 8192), and "<dataset> probe
    images vs row-shuffled copy"; columns n, width, cka, cka_debiased,
    procrustes.
    """
    import numpy as np

    from vaesim.similarity.diagnostics import row_permuted_scores, width_sweep

    probe_n = int(results["n"].max()) if len(results) and "n" in results else 300
    n = max(4, min(probe_n, DIAGNOSTIC_MAX_N))
    widths = sorted({max(2, n // 10), max(2, n // 2), n, 4 * n, min(16 * n, 8192)})
    sweep = width_sweep(n, widths, repeats=3, seed=seed)
    table = sweep.pivot_table(index="width", columns="metric", values="mean").reset_index()
    table.insert(0, "source", [f"random {n} x {w}" for w in table["width"]])
    table.insert(1, "n", n)
    rows = [table]
    for probe_file in sorted((study_dir / "probes").glob("*.npz")):
        from vaesim.data import ProbeSet

        try:
            images = ProbeSet.load(probe_file).images
        except Exception as error:  # a report never fails on a diagnostic
            logger.warning("metric diagnostic: cannot read %s (%s)", probe_file, error)
            continue
        images = np.asarray(images, dtype=np.float64).reshape(len(images), -1)[:DIAGNOSTIC_MAX_N]
        scores = row_permuted_scores(images, seed=seed)
        rows.append(pd.DataFrame([dict(source=f"{probe_file.stem} probe images vs row-shuffled copy",
                                       n=len(images), width=images.shape[1], **scores)]))
    return pd.concat(rows, ignore_index=True)[["source", "n", "width", "cka", "cka_debiased", "procrustes"]]


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
    figure the data allows, ``study_dir/findings.csv`` and
    ``study_dir/baselines.csv`` (per layer: untrained and trained agreement,
    initial-to-final similarity, noise floor).
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
    latents = read_latents(study_dir)
    if latents is None:
        notes.append("latents.parquet is missing (a study from before per-checkpoint latent statistics, or its store "
                     "stage has not run): claim 3 lacks data.")
    findings = compute_findings(results, runs, latents=latents, metric=metric)
    # similarity vs disentanglement / UDR, when the study ran its disentangle stage (vaesim.report.selection)
    extra_findings, extra_figures = selection_report(study_dir, results, metric=metric,
                                                     figures_dir=study_dir / FIGURES_DIR)
    if len(extra_findings):
        findings = pd.concat([findings, extra_findings], ignore_index=True)
    with atomic_path(study_dir / FINDINGS_FILE) as tmp:
        findings.to_csv(tmp, index=False)
    figures = make_figures(results, runs, study_dir / FIGURES_DIR, metric=metric) + extra_figures
    title, summary = _summary(spec_text, results, runs)
    baselines = baseline_table(results, metric=metric)
    with atomic_path(study_dir / BASELINES_FILE) as tmp:
        baselines.to_csv(tmp, index=False)
    sections = [
        ("Baselines: what the architecture gives without learning",
         f"Mean {metric.upper()} of the same layer: between untrained networks of different seeds (step 0), between "
         "trained networks of different seeds, between each run's initial and final state, and across strengths and "
         "objectives at step 0 (runs of one seed share their initial weights) and at the final step. A similarity "
         "is evidence of learning only where it exceeds what untrained networks already give.",
         table_html(baselines.round(3), table_id="baselines")),
        ("Metric diagnostic (the paper's appendix; not a finding about VAEs)",
         "Both measures on data unrelated by construction: independent Gaussian matrices of growing width at the "
         "probe size (unrelated data would score 0; linear CKA and Procrustes are inflated as the width outgrows "
         "the number of examples, debiased CKA is not), and each probe set against a row-shuffled copy of itself.",
         table_html(metric_diagnostic(study_dir, results).round(3), table_id="diagnostic")),
    ]
    page = render_report(title=title, summary=summary, findings=findings, figures=figures, runs=runs,
                         counts=_counts(results), spec_text=spec_text, notes=notes, sections=sections)
    path = atomic_write_text(study_dir / REPORT_FILE, page)
    logger.info("report %s written in %.1f s", path, time.perf_counter() - started)
    return path


def load_findings(study_dir: str | Path) -> pd.DataFrame:
    """The findings table that :func:`write_report` saved (``findings.csv``)."""
    path = Path(study_dir) / FINDINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run `vaesim report {study_dir}` first")
    return pd.read_csv(path, keep_default_na=False, na_values=[""]).fillna({"detail": ""})
