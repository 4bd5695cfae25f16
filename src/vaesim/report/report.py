"""``write_report(study_dir)``: findings, figures and ``report.html`` from a study directory.

Reads the study's store (``spec.yaml``, ``results/*.parquet``,
``runs.parquet``, ``training_metrics.parquet``, ``provenance.json``) through
``vaesim.study``'s readers, and its probe sets and checkpoints for the
pictures of what the models do (reconstructions, latent traversals); writes
``figures/*.png|svg``, ``findings.csv`` and ``report.html`` into the study
directory (each atomically). A report of another metric than CKA goes to
``report-<metric>.html``, ``findings-<metric>.csv`` and ``figures-<metric>/``,
so the reports of both metrics live side by side.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from pathlib import Path

import pandas as pd
import yaml

from vaesim.report import pictures
from vaesim.report.figures import FigureOutput, NotEnoughData, make_figures, save_figure
from vaesim.report.collapse import collapse_table, final_active_dimensions
from vaesim.report.disentanglement import (
    chance_levels,
    chance_warning,
    disentanglement_table,
    factor_sizes,
    split_wide_table,
    wide_table,
)
from vaesim.report.findings import Thresholds, baseline_table, compute_findings
from vaesim.report.html import render_report, table_html
from vaesim.report.pictures import NoCheckpoints
from vaesim.report.training_figures import figure_kl_per_dimension, figure_training_curves
from vaesim.study.store.provenance import environment, read_provenance
from vaesim.report.robustness import (
    PASSIVE_FACTOR,
    SETTLE_SHIFT,
    disagreement_text,
    metric_comparison,
    robustness_table,
    with_robustness,
)
from vaesim.report.selection import selection_figure, selection_findings, selection_table
from vaesim.report.verdicts import short_name
from vaesim.utils import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"
FINDINGS_FILE = "findings.csv"
BASELINES_FILE = "baselines.csv"
FIGURES_DIR = "figures"
DEFAULT_METRIC = "cka"


def report_paths(study_dir: str | Path, metric: str = DEFAULT_METRIC) -> tuple[Path, Path, Path]:
    """(report.html, findings.csv, figures folder) of ``metric``: the plain names for CKA, suffixed otherwise."""
    study_dir = Path(study_dir)
    if metric == DEFAULT_METRIC:
        return study_dir / REPORT_FILE, study_dir / FINDINGS_FILE, study_dir / FIGURES_DIR
    return (study_dir / f"report-{metric}.html", study_dir / f"findings-{metric}.csv",
            study_dir / f"{FIGURES_DIR}-{metric}")


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
    from vaesim.models.plugin_table import register_recorded

    register_recorded(study_dir)  # a plug-in architecture's layer order, from the study's own record
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


#: the metric diagnostic's size when the store does not record its probe size (an import stores n = 0)
DIAGNOSTIC_UNKNOWN_N = 500
IMPORTED_TOOLS = {"vae_ld": "VAE_learning_dynamics (Bonheme & Grzes), imported with `vaesim import vae-ld`"}
IMPORTED_STORE_NOTE = ("These scores were computed by {tool}; import.json names the source files. There is no study "
                       "to rerun: findings that need what only a vaesim study records (latent statistics, noise "
                       "floors, probe images, checkpoints) say so, and the x axes count the store's own unit.")
IMPORTED_PROVENANCE = ("Imported store: its scores were computed by {tool}, outside vaesim, which recorded no "
                       "provenance of that computation (import.json names the source files).")


def store_origin(spec_text: str) -> str | None:
    """The tool a store's scores were imported from (``imported_from`` of its spec.yaml), or None for a study."""
    try:
        spec = yaml.safe_load(spec_text) or {}
    except yaml.YAMLError:
        return None
    return spec.get("imported_from") if isinstance(spec, dict) else None


def probe_size_known(results: pd.DataFrame) -> bool:
    """True when the store records how many examples its scores used (an import may store n = 0: unknown)."""
    return bool(len(results)) and "n" in results and int(results["n"].max()) >= 4


def _imported_wording(findings: pd.DataFrame) -> pd.DataFrame:
    """A finding's advice to rerun study stages, reworded for a store of imported scores (there is no study)."""
    advice = "rerun the study's extract and store stages"
    return findings.assign(detail=findings["detail"].astype(str).str.replace(
        advice, "an imported store has none (a vaesim study records them)", regex=False))


def metric_diagnostic(study_dir: Path, results: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Claim 4 as a diagnostic: scores of unrelated data at this study's probe size.

    Rows ``source`` = "random n x p" (independent Gaussian matrices, mean of 3
    draws) for widths from n/10 to 16 n (at most 8192), and "<dataset> probe
    images vs row-shuffled copy"; columns n, width, cka, cka_debiased,
    procrustes.
    """
    import numpy as np

    from vaesim.similarity.diagnostics import row_permuted_scores, width_sweep

    n = min(int(results["n"].max()), DIAGNOSTIC_MAX_N) if probe_size_known(results) else DIAGNOSTIC_UNKNOWN_N
    widths = sorted({max(2, n // 10), max(2, n // 2), n, 4 * n, min(16 * n, 8192)})
    sweep = width_sweep(n, widths, repeats=3, seed=seed)
    table = sweep.pivot_table(index="width", columns="metric", values="mean").reset_index()
    table.insert(0, "source", [f"random {n} x {w}" for w in table["width"]])
    table.insert(1, "n", n)
    rows = [table]
    for probe_file in sorted((study_dir / "probes").glob("*.npz")):
        from vaesim.data import ProbeSet
        from vaesim.report.pictures import file_verified

        if not file_verified(probe_file):
            logger.warning("metric diagnostic: %s does not match its recorded SHA-256 (or has no record); it is not "
                           "read (`vaesim study verify` lists it)", probe_file)
            continue
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
    origin = imported_runs_note(runs)
    return f"vaesim report: {name}", summary + (f" {origin}" if origin else "")


def imported_runs_note(runs: pd.DataFrame | None) -> str:
    """Where the runs came from, when some were trained elsewhere (``runs.parquet``'s ``source``), else ''."""
    if runs is None or "source" not in runs or runs.empty:
        return ""
    sources = runs["source"].fillna("vaesim").astype(str)
    imported = sources[sources.str.contains(":", regex=False)]  # models imported as runs (dlib:<n>), not scores
    if imported.empty:
        return ""
    kinds = sorted({value.split(":", 1)[0] for value in imported})
    names = {"dlib": "disentanglement_lib's published models (Locatello et al. 2019)",
             "checkpoints": "checkpoints of runs trained in their authors' own code (vaesim import checkpoints)"}
    models = sorted(int(v.split(":", 1)[1]) for v in imported if v.startswith("dlib:") and v.split(":", 1)[1].isdigit())
    numbers = f" (model numbers {models[0]}-{models[-1]})" if models else ""
    if kinds == ["dlib"]:
        initial = ("their step 0 is vaesim's own initialisation at each run's seed (the untrained baseline, not "
                   "the run's own initial weights, which were not published)")
    else:
        initial = ("their step 0 is the run's own initial checkpoint where one was imported, else vaesim's own "
                   "initialisation at the run's seed (the untrained baseline; each run's imported.json says which)")
    return (f"{len(imported)} of {len(runs)} runs were trained elsewhere and imported: "
            f"{', '.join(names.get(k, k) for k in kinds)}{numbers}; their learned checkpoints are the imported "
            f"weights, {initial}, and no training curves came with "
            "them (the runs table's source column names each run's origin).")


def _training_metrics(study_dir: Path) -> pd.DataFrame | None:
    from vaesim.study import load_training_metrics

    try:
        return load_training_metrics(study_dir)
    except FileNotFoundError:
        return None


def _draw(name: str, title: str, caption: str, directory: Path, draw) -> FigureOutput:
    """Save the figure ``draw()`` returns, or record why it could not be drawn."""
    try:
        fig = draw()
    except (NotEnoughData, NoCheckpoints) as reason:
        logger.info("figure %s skipped: %s", name, reason)
        return FigureOutput(name, title, caption, None, None, skipped=str(reason))
    png, svg = save_figure(fig, directory, name)
    return FigureOutput(name, title, caption, png, svg)


def model_pictures(study_dir: Path, runs: pd.DataFrame | None, directory: Path) -> tuple[list, list]:
    """(reconstructions and traversals over training, one traversal per model) drawn from the checkpoints."""
    if runs is None or runs.empty:
        note = "runs.parquet is missing: the study's store stage has not run"
        return [FigureOutput("reconstructions", "Reconstructions", "", None, None, skipped=note)], []
    main = []
    for dataset in sorted(runs["dataset"].unique()):
        suffix = "" if runs["dataset"].nunique() == 1 else f"_{dataset}"
        main.append(_draw(
            f"reconstructions{suffix}", f"Reconstructions ({dataset})",
            "Probe images (top row) and what each model makes of them at the end of training: the decoded "
            "posterior mean, one row per model (its lowest seed).",
            directory, lambda dataset=dataset: pictures.figure_reconstructions(study_dir, runs, dataset)))
    chosen = pictures.representative_runs(runs)
    if len(chosen):
        one = chosen.iloc[len(chosen) // 2]
        main.append(_draw(
            "traversals_over_training", f"One model through training ({pictures.run_label(one)})",
            "Each row is a checkpoint: reconstructions of probe images, then the traversal of the latent "
            "dimension with the largest KL at that checkpoint (its value set from -2 to +2, the other "
            "dimensions kept at the image's posterior mean).",
            directory, lambda: pictures.figure_traversals_over_training(study_dir, one)))
    gallery = [
        _draw(f"traversal_{index:02d}", pictures.run_label(run), "", directory,
              lambda run=run: pictures.figure_traversals(study_dir, run))
        for index, (_, run) in enumerate(chosen.iterrows())
    ]
    return main, gallery


#: the seed paper's (and disentanglement_lib's) training length, against which a study's runs are judged
PAPER_STEPS = 300_000
#: under this fraction of it, the report says the models are barely trained
BARELY_TRAINED = 0.1


def training_notes(runs: pd.DataFrame | None) -> list[str]:
    """Notes for the top of the report when the models are barely trained (few steps, few active latents)."""
    if runs is None or runs.empty or "steps" not in runs:
        return []
    notes = []
    steps = int(runs["steps"].max())
    if steps < BARELY_TRAINED * PAPER_STEPS:
        notes.append(f"The models are barely trained: {steps:,} steps, {100 * steps / PAPER_STEPS:.2g}% of the "
                     f"seed paper's {PAPER_STEPS:,}. At this length a VAE reconstructs blurred blobs rather than "
                     "the shapes (see What the models do), so the findings describe early training, not trained "
                     "models; use the paper preset or more steps for the paper's setting.")
    if "active_dims" in runs and runs["active_dims"].notna().any() and float(runs["active_dims"].median()) < 2:
        notes.append(f"Half the models or more use at most one latent dimension (median active dimensions "
                     f"{float(runs['active_dims'].median()):g}): they encode little about the images yet.")
    return notes


#: the parts of :func:`write_report`, in order, as its ``progress`` callback names them
REPORT_PARTS = ("findings", "robustness", "figures", "pictures of the models", "training curves", "baselines",
                "metric diagnostic", "page")

#: a spec of this name is the demo's smoke test (``vaesim demo``), too small to decide the claims
DEMO_PRESET = "quick"
EVIDENCE_PRESET = "evidence"
DEMO_NOTE = (f"This is the '{DEMO_PRESET}' preset, a smoke test of the pipeline (a few minutes on a CPU): it is too "
             f"small to decide the paper's claims (2 seeds, 800 steps, a coarse checkpoint grid), so read its verdicts "
             f"as a demonstration of the tests, not as evidence. The '{EVIDENCE_PRESET}' preset is sized to decide "
             f"them: `vaesim study run {EVIDENCE_PRESET} --out DIR`, then `vaesim report DIR`.")


def demo_notes(spec_text: str) -> list[str]:
    """The smoke-test note when the study is the demo's preset."""
    try:
        spec = yaml.safe_load(spec_text) or {}
    except yaml.YAMLError:
        return []
    return [DEMO_NOTE] if isinstance(spec, dict) and spec.get("name") == DEMO_PRESET else []


def study_variants(study_dir: Path, *, load: bool = True) -> tuple[dict, str]:
    """({check name: (results, latents)} of each finished variant of the study, a sentence on what was checked).

    Variants (:mod:`vaesim.study.run.variants`): a second probe set (extract
    and compare only, ``vaesim study variant DIR --probe-seed K``) or a rerun
    in another environment (``--rerun``). The robustness checks recompute
    every verdict on each. ``load=False``: the sentence only (no table is read).
    """
    from vaesim.study import load_results
    from vaesim.study.run.variants import study_variants as list_variants

    found, skipped = list_variants(study_dir)
    tables, used = {}, []
    for variant in found:
        check = ("second probe set" if variant.kind == "probe" else "rerun") + f" ({variant.name})"
        if load:
            try:
                tables[check] = (load_results(variant.path), read_latents(variant.path))
            except (OSError, ValueError) as error:
                skipped.append(f"{variant.name}: not used ({error})")
                continue
        used.append(f"{check}: {variant.describe()}")
    parts = []
    if used:
        parts.append("Also recomputed on " + "; ".join(used) + ".")
    if not any(v.kind == "probe" for v in found):
        parts.append("No second probe set is stored: make one with `vaesim study variant DIR --probe-seed 1` "
                     "(extract and compare only).")
    if not any(v.kind == "rerun" for v in found):
        parts.append("No rerun is stored. vaesim trains each run on one torch thread and its files do not depend on "
                     "the number of CPUs it is given (tested), so a thread-count rerun reproduces the store; a rerun "
                     "with other CPU kernels (ATEN_CPU_CAPABILITY) or on another machine changes summation order, "
                     "which through training acts as a partial re-seed: `vaesim study variant DIR --rerun`.")
    if skipped:
        parts.append("Not used: " + "; ".join(skipped) + ".")
    return tables, " ".join(parts)


def metric_order(results: pd.DataFrame, metric: str) -> list[str]:
    """The metrics of the store, ``metric`` first (the report being written)."""
    stored = sorted(set(results["metric"])) if len(results) else []
    return [metric] + [m for m in stored if m != metric]


def _with_burda_active_dims(runs: pd.DataFrame | None, latents: pd.DataFrame | None) -> pd.DataFrame | None:
    """The runs table with ``active_dims`` by the report's one definition (Burda, at the last checkpoint).

    The training monitor's ``active_dims`` counts KL > 0.01 nats on its own batch; the report counts
    Cov_x(E[z_u|x]) > 0.01 on the probe set everywhere, so the monitor's column is replaced (or dropped when
    the study has no latent statistics).
    """
    if runs is None:
        return None
    runs = runs.drop(columns=[c for c in ("active_dims",) if c in runs])
    if latents is None or latents.empty or "run_id" not in runs:
        return runs
    active = final_active_dimensions(latents)
    return runs.assign(active_dims=runs["run_id"].map(active))


def disentanglement_scores(study_dir: Path) -> pd.DataFrame | None:
    """The disentangle stage's scores (one row per run, step, metric), or None when the study has none."""
    from vaesim.study.store.tables import disentanglement_files, load_disentanglement

    return load_disentanglement(study_dir) if disentanglement_files(study_dir) else None


class FindingsCache(dict):
    """{metric: (findings with robustness labels, robustness table)}, shared by the reports of one study;
    ``diagnostic``: the metric diagnostic table (the same for every metric's report)."""

    diagnostic: pd.DataFrame | None = None
    pictures: tuple | None = None  # (main, gallery, training): drawn once, into the first report's folder


def decoder_input_text(study_dir: Path) -> str:
    """What the store's decoder curves measure, from its spec's ``probe.decoder_input`` (claim 1's detail)."""
    import yaml

    try:
        spec = yaml.safe_load((Path(study_dir) / "spec.yaml").read_text(encoding="utf-8")) or {}
        mode = (spec.get("probe") or {}).get("decoder_input", "sample")
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return "Decoder input: unknown (spec.yaml unreadable)."
    if mode == "final_mean":
        return ("Decoder layers were recorded on the run's final mean code at every checkpoint "
                "(probe.decoder_input final_mean): their curves follow the decoder's own weights.")
    return ("Decoder layers were recorded on each checkpoint's own sample (probe.decoder_input sample, the "
            "paper's recording): their curves also move with the encoder's code and a fresh eps, so a decoder "
            "that did not learn can look changed; probe.decoder_input final_mean times the decoder's own learning.")


def findings_of(study_dir: Path, results: pd.DataFrame, runs: pd.DataFrame | None, latents: pd.DataFrame | None,
                metric: str, *, robustness: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(findings, robustness table) of ``metric``: the paper's claims and the selection findings (with a
    disentangle stage), each labelled by :mod:`vaesim.report.robustness` (``robustness=False``: not checked)."""
    scores = disentanglement_scores(study_dir)

    def recompute(part: pd.DataFrame, part_latents, thresholds: Thresholds,
                  only: tuple[str, ...] | None = None) -> pd.DataFrame:
        findings = compute_findings(part, runs, latents=part_latents, metric=metric, thresholds=thresholds, only=only)
        if scores is not None and only is None:
            kept = set(part["a_run"]) | set(part["b_run"])
            extra = selection_findings(selection_table(part, scores[scores["run"].isin(kept)], metric=metric))
            findings = pd.concat([findings, extra], ignore_index=True)
        return findings

    findings = recompute(results, latents, Thresholds())
    claim1 = findings["finding"].str.startswith("claim 1")
    findings.loc[claim1, "detail"] = findings.loc[claim1, "detail"] + " " + decoder_input_text(study_dir)
    variants, _ = study_variants(study_dir)
    table = (robustness_table(results, latents, findings, recompute=recompute, variants=variants, metric=metric)
             if robustness else pd.DataFrame(columns=["finding", "check", "verdict", "changed"]))
    return with_robustness(findings, table), table


def _robustness_html(table: pd.DataFrame) -> str:
    if table.empty:
        return "<p class='skipped'>No robustness check was run.</p>"
    cells = table.assign(finding=table["finding"].map(short_name),
                         cell=[("CHANGED: " if changed else "") + str(verdict)
                               for verdict, changed in zip(table["verdict"], table["changed"])])
    wide = cells.pivot_table(index="finding", columns="check", values="cell", aggfunc="first", sort=False)
    wide = wide.reindex(columns=list(dict.fromkeys(table["check"]))).reset_index()
    wide.columns.name = None
    return table_html(wide, table_id="robustness")


def _collapse_html(results: pd.DataFrame, latents: pd.DataFrame | None, metric: str) -> str:
    if latents is None or latents.empty:
        return "<p class='skipped'>No latents.parquet: the noise-only expectation needs it.</p>"
    table = collapse_table(results, latents, metric=metric)
    table = table[table["converged"]]
    if table.empty:
        return "<p class='skipped'>No converged checkpoint with both the statistic and latent statistics.</p>"
    summary = table.groupby(["objective", "param"]).agg(
        checkpoints=("step", "size"), passive_dims=("passive_dims", "mean"), active_dims=("active_dims", "mean"),
        observed=("score", "mean"), expected=("expected", "mean"), expected_low=("expected_low", "mean"),
        expected_high=("expected_high", "mean"), residual=("residual", "mean")).reset_index()
    return table_html(summary.round(3), table_id="collapse")


def _disentanglement_section(study_dir: Path, scores: pd.DataFrame | None) -> tuple[str, str, str] | None:
    if scores is None:
        return None
    published = scores["metric"].str.contains(":", regex=False)
    shown = scores[~published | scores["metric"].isin(PUBLISHED_HEADLINES)]
    note = (f" Scores published with imported runs ({int(published.sum()):,} in the disentanglement table, e.g. "
            "dlib's) are shown for the mean representation and each metric's headline score only."
            if published.any() else "")
    scores = shown
    sizes = {dataset: factor_sizes(study_dir, dataset) for dataset in sorted(set(scores["dataset"]))}
    chance = chance_levels(scores, sizes)
    table = disentanglement_table(scores, chance)
    warning = chance_warning(table, chance)
    parts = split_wide_table(wide_table(table))
    body = ("".join(table_html(part, table_id="disentanglement" + (f"-{i + 1}" if i else ""))
                    for i, part in enumerate(parts))
            + "<h3>Chance level of each metric</h3>" + table_html(chance.round(3), table_id="chance"))
    text = ("Every disentanglement score the disentangle stage stored, per model (mean over seeds at the last "
            "scored checkpoint), beside what a representation that knows nothing about the factors scores: "
            "untrained networks where the store scored step 0, otherwise the metric's definition. "
            + (warning or "No model scores near chance.") + note)
    return "Disentanglement scores per model", text, body


#: published scores (``<source>:<representation>:<metric folder>:<score>``) shown in the report's table: dlib's
#: headline score of each metric on the mean representation
PUBLISHED_HEADLINES = (
    "dlib:mean:beta_vae_sklearn:eval_accuracy", "dlib:mean:factor_vae_metric:eval_accuracy",
    "dlib:mean:mig:discrete_mig", "dlib:mean:sap_score:SAP_score", "dlib:mean:dci:disentanglement",
    "dlib:mean:dci:completeness", "dlib:mean:modularity_explicitness:modularity_score",
)


def write_report(study_dir: str | Path, *, metric: str = DEFAULT_METRIC, progress=None, notes=(),
                 cache: FindingsCache | None = None, robustness: bool = True,
                 link_reports: bool | None = None) -> Path:
    """Compute findings and figures of ``study_dir`` and write its report; return the report's path.

    For CKA: ``study_dir/report.html``, ``figures/<name>.png|svg`` for every
    figure the data allows, and ``findings.csv``; another metric writes
    ``report-<metric>.html``, ``figures-<metric>/`` and ``findings-<metric>.csv``. Also writes
    ``baselines.csv`` (``baselines-<metric>.csv``): per layer, untrained and trained agreement,
    initial-to-final similarity, noise floor; and ``robustness.csv`` (``robustness-<metric>.csv``): each
    finding's verdict under each robustness check. ``progress(part)`` is called as each of
    :data:`REPORT_PARTS` starts. ``notes``: lines shown at the top of the page (e.g. that the study is still
    running). ``cache``: findings of the metrics already computed (shared by :func:`write_reports`);
    ``robustness``: run the robustness checks (the verdicts recomputed once per seed and moved threshold).
    The page links to the reports of the store's other metrics that exist when it is written
    (``link_reports=True``: link them all, because the caller writes them too).
    """
    started = time.perf_counter()
    step = progress or (lambda part: None)
    study_dir = Path(study_dir)
    spec_text, results, runs = read_store(study_dir)
    report_file, findings_file, figures_dir = report_paths(study_dir, metric)
    notes = demo_notes(spec_text) + list(notes)
    origin = store_origin(spec_text)  # "vae_ld" for a store of imported scores: no study, no models, no probes
    if origin:
        notes.append(IMPORTED_STORE_NOTE.format(tool=IMPORTED_TOOLS.get(origin, origin)))
    if results.empty:
        notes.append("The results store is empty: run the study to its compare stage; every finding lacks data.")
    if runs is None and not origin:
        notes.append("runs.parquet is missing: the study's store stage has not run; active dimensions are not shown.")
    if len(results) and metric not in set(results["metric"]):
        raise ValueError(f"metric {metric!r} is not in the results of {study_dir} "
                         f"(found {sorted(set(results['metric']))}); pass one of those with --metric")
    latents = read_latents(study_dir)
    runs = _with_burda_active_dims(runs, latents)
    notes += training_notes(runs)
    if latents is None:
        notes.append("An imported store has no per-checkpoint latent statistics (latents.parquet): claim 3 lacks data."
                     if origin else
                     "latents.parquet is missing (a study from before per-checkpoint latent statistics, or its store "
                     "stage has not run): claim 3 lacks data.")
    cache = FindingsCache() if cache is None else cache
    metrics = metric_order(results, metric)
    step("findings")
    for other in metrics:
        if other not in cache:
            cache[other] = findings_of(study_dir, results, runs, latents, other, robustness=False)
    step("robustness")
    for other in metrics:  # every metric's labels: the side-by-side table shows which verdicts are fragile
        if robustness and cache[other][1].empty and len(results):
            cache[other] = findings_of(study_dir, results, runs, latents, other, robustness=True)
    findings, robustness_rows = cache[metric]
    if origin:
        findings = _imported_wording(findings)
    with atomic_path(findings_file) as tmp:
        findings.to_csv(tmp, index=False)
    suffix = "" if metric == DEFAULT_METRIC else f"-{metric}"
    with atomic_path(study_dir / f"robustness{suffix}.csv") as tmp:
        robustness_rows.to_csv(tmp, index=False)
    comparison = metric_comparison({m: cache[m][0] for m in metrics}) if len(metrics) > 1 else pd.DataFrame()
    step("figures")
    figures = make_figures(results, runs, figures_dir, metric=metric, latents=latents)
    scores = disentanglement_scores(study_dir)
    if scores is not None:  # beyond the paper: cross-seed similarity against the scores
        figures.append(selection_figure(results, scores, figures_dir, metric=metric))
    step("pictures of the models")
    if cache.pictures is None and origin:  # scores only: nothing of the models to draw
        why = "an imported store holds similarity scores, not models, probe images or training logs"
        cache.pictures = ([FigureOutput("reconstructions", "Reconstructions", "", None, None, skipped=why)], [],
                          [FigureOutput("training_curves", "Training curves", "", None, None, skipped=why)])
    if cache.pictures is None:  # what the models do does not depend on the metric: drawn once per study
        pictures_main, gallery = model_pictures(study_dir, runs, figures_dir)
        step("training curves")
        metrics_log = _training_metrics(study_dir)
        training = [
            _draw("training_curves", "Training curves", "Loss, reconstruction and KL against training step "
                  "(training_metrics.parquet), one line per model, mean over seeds.", figures_dir,
                  lambda: figure_training_curves(metrics_log)),
            _draw("kl_per_dimension", "KL per latent dimension", "The KL of each latent dimension against "
                  "training step, one panel per model (its lowest seed): when each dimension starts to carry "
                  "information, or that it never does.", figures_dir,
                  lambda: figure_kl_per_dimension(metrics_log)),
        ]
        cache.pictures = (pictures_main, gallery, training)
    else:
        step("training curves")
    pictures_main, gallery, training = cache.pictures
    others = [m for m in metrics if m != metric]
    links = [(m, report_paths(study_dir, m)[0].name) for m in others
             if link_reports or report_paths(study_dir, m)[0].is_file()]
    title, summary = _summary(spec_text, results, runs)
    step("baselines")
    baselines = baseline_table(results, metric=metric)
    with atomic_path(study_dir / f"{Path(BASELINES_FILE).stem}{suffix}.csv") as tmp:
        baselines.to_csv(tmp, index=False)
    step("metric diagnostic")
    if cache.diagnostic is None:
        cache.diagnostic = metric_diagnostic(study_dir, results).round(3)
    diagnostic = cache.diagnostic
    _, variants_note = study_variants(study_dir, load=False)
    sections = []
    if len(comparison):
        sections.append((
            "Verdicts by metric: CKA and Procrustes side by side",
            "Each finding computed with every similarity metric the store holds, each on its own scale (its settle "
            "threshold set from its own untrained baseline). " + disagreement_text(comparison),
            table_html(comparison.round(3), table_id="by-metric")))
    sections += [
        ("Robustness of each verdict",
         f"Each verdict recomputed leaving one seed out, with each metric's settle threshold moved by "
         f"+/-{SETTLE_SHIFT:g} and the passive threshold multiplied and divided by {PASSIVE_FACTOR:g}. A verdict "
         f"whose word any check changes is labelled fragile (its robustness column names the check) and does not "
         f"count as support. {variants_note}",
         _robustness_html(robustness_rows)),
        ("Posterior collapse: observed against the noise-only expectation",
         f"{metric.upper()}(encoder.mean, encoder.sample) at converged checkpoints, per objective and strength "
         f"(means over seeds and checkpoints), beside what independent sampling noise alone gives with the same "
         f"checkpoints' per-dimension variances (expected_low / expected_high: its bounds when the mean code's "
         f"covariances are not stored). Passive / active dimensions: Cov_x(E[z_u|x]) <= / > 0.01 on the probe set, "
         f"the definition used everywhere in this report. Claim 3 is judged on the residual.",
         _collapse_html(results, latents, metric)),
        _training_length_section(results, metric),
        ("Baselines: what the architecture gives without learning",
         f"Mean {metric.upper()} of the same layer: between untrained networks of different seeds (step 0), between "
         "trained networks of different seeds, between each run's initial and final state, and across strengths and "
         "objectives at step 0 (runs of one seed share their initial weights) and at the final step. A similarity "
         "is evidence of learning only where it exceeds what untrained networks already give.",
         table_html(baselines.round(3), table_id="baselines")),
    ]
    disentanglement = _disentanglement_section(study_dir, scores)
    if disentanglement is not None:
        sections.append(disentanglement)
    sections.append(
        ("Metric diagnostic (the paper's appendix; not a finding about VAEs)",
         "Both measures on data unrelated by construction: independent Gaussian matrices of growing width at the "
         + (f"probe size, n = {int(diagnostic['n'].iloc[0])}" if probe_size_known(results) else
            f"n = {DIAGNOSTIC_UNKNOWN_N} (the store does not record how many examples its scores used)")
         + " (unrelated data would score 0; linear CKA and Procrustes are inflated as the width outgrows "
         "the number of examples, debiased CKA is not), and each probe set against a row-shuffled copy of itself.",
         table_html(diagnostic, table_id="diagnostic")))
    step("page")
    page = render_report(title=f"{title} ({metric.upper()})", summary=summary, findings=findings,
                         figures=figures, runs=runs, counts=_counts(results), spec_text=spec_text, notes=notes,
                         sections=sections, pictures=pictures_main, gallery=gallery, training=training,
                         provenance=({"imported": IMPORTED_PROVENANCE.format(tool=IMPORTED_TOOLS.get(origin, origin))}
                                     if origin else read_provenance(study_dir)), environment=environment(),
                         other_reports=links, figures_dir=figures_dir.name)
    path = atomic_write_text(report_file, page)
    logger.info("report %s written in %.1f s", path, time.perf_counter() - started)
    return path


def _training_length_section(results: pd.DataFrame, metric: str) -> tuple[str, str, str]:
    """Whether the runs were trained long enough: score(T/2, T) of every curve claim 1 counts."""
    from vaesim.report.settling import (TRAINED_ENOUGH, convergence_table, training_length_needed,
                                        training_length_needed_text, training_length_table, training_length_text)

    try:
        trajectories = convergence_table(results, metric=metric)
        table = training_length_table(trajectories)
        needed = training_length_needed(results, metric=metric, trajectories=trajectories)
    except (KeyError, ValueError) as error:  # a store without within-run rows
        return ("Training length", f"Not checked ({error}).", "")
    html = table_html(table.round(3), table_id="training-length") if len(table) else ""
    text = training_length_text(table, metric=metric)
    if needed["T"].nunique() > 1:  # every checkpoint pair was compared: each checkpoint is a candidate length
        wide = needed.pivot(index="layer", columns="T", values="min_score")
        wide = wide.loc[needed["layer"].drop_duplicates()]  # network order
        wide.columns = [f"T = {int(t)}" for t in wide.columns]
        wide.insert(0, "enough from T =", needed.groupby("layer")["enough_from"].first().reindex(wide.index))
        text += (" " + training_length_needed_text(needed, metric=metric) + f" The second table: the lowest "
                 f"{metric.upper()}(T/2, T) over runs for each candidate T.")
        html += table_html(wide.reset_index().round(3), table_id="training-length-needed")
    return ("Training length: were the counted layers converged?",
            f"{metric.upper()} between each counted layer (changed by training, above its noise floor) at the learned "
            f"checkpoint nearest T/2 and at the final step T, per objective and strength; a study that decides claim "
            f"1 needs it >= {TRAINED_ENOUGH:g}. " + text, html)


def write_reports(study_dir: str | Path, *, metric: str = DEFAULT_METRIC, progress=None, notes=(),
                  robustness: bool = True) -> list[Path]:
    """The report of every metric in the store (``metric``'s first), so every link between them resolves."""
    _, results, _ = read_store(study_dir)
    cache = FindingsCache()
    return [write_report(study_dir, metric=m, progress=progress, notes=notes, cache=cache, robustness=robustness,
                         link_reports=True) for m in metric_order(results, metric)]


def load_findings(study_dir: str | Path, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """The findings table that :func:`write_report` saved for ``metric`` (``findings.csv`` for CKA)."""
    path = report_paths(study_dir, metric)[1]
    if not path.is_file():
        option = "" if metric == DEFAULT_METRIC else f" --metric {metric}"
        raise FileNotFoundError(f"{path} does not exist: run `vaesim report {study_dir}{option}` first")
    return pd.read_csv(path, keep_default_na=False, na_values=[""]).fillna({"detail": ""})
