"""The report as one self-contained HTML page (pure rendering, no file access).

Figures are embedded as base64 PNG data URIs; the page makes no external
request (no fonts, scripts or styles from elsewhere). A short inline script
marks ``<html data-images="loaded/total">`` once the page has loaded, which
the browser test reads.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from vaesim.report.verdicts import support_summary

# by the verdict's word (an ``inconclusive`` verdict carries its reason in parentheses)
VERDICT_CLASS = {"holds": "holds", "opposite holds": "fails", "inconclusive": "nodata", "not enough data": "nodata"}
RUN_COLUMNS = ("run_id", "dataset", "objective", "param_name", "param", "seed", "steps", "active_dims",
               "cka_mean_sample", "loss", "reconstruction", "kl")

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 2rem auto;
       max-width: 1100px; padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.2rem; }
.meta { color: #555; }
table { border-collapse: collapse; width: 100%; font-size: 0.88rem; }
th, td { border-bottom: 1px solid #e5e5e5; padding: 0.35rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f5f5f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.verdict, .badge { font-weight: 600; border-radius: 0.8rem; padding: 0.1rem 0.6rem; white-space: nowrap; }
.holds { background: #d8f3dc; color: #1b4332; } .fails { background: #ffd6d6; color: #7f1d1d; }
.nodata { background: #eee; color: #555; }
.fragile { background: #fff3cd; color: #7a5200; font-size: 0.8rem; }
.definition { color: #555; font-size: 0.8rem; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9rem; }
.skipped { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5rem 0.8rem; }
pre { background: #f5f5f7; padding: 0.8rem; font-size: 0.82rem; white-space: pre-wrap; overflow-wrap: anywhere; }
nav#contents ol { columns: 2; margin: 0.4rem 0 0; padding-left: 1.4rem; }
nav#contents { background: #f5f5f7; padding: 0.6rem 1rem; border-radius: 0.4rem; font-size: 0.9rem; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(480px, 100%), 1fr)); gap: 0.8rem; }
figure a { display: block; }
table.stages { width: auto; min-width: 24rem; }
.gallery figure { margin: 0; } .gallery figcaption { font-size: 0.8rem; }
td.id { font-family: ui-monospace, monospace; font-size: 0.8rem; white-space: nowrap; }
dl.provenance { display: grid; grid-template-columns: max-content 1fr; gap: 0.15rem 1rem; font-size: 0.88rem; }
dl.provenance dt { color: #555; } dl.provenance dd { margin: 0; font-variant-numeric: tabular-nums; }
/* narrow screens: no table is cut off or hidden in a scroll box; the findings become one block per finding */
@media (max-width: 700px) {
  body { margin: 1rem auto; padding: 0 0.5rem; }
  table { font-size: 0.7rem; } th, td { padding: 0.2rem 0.25rem; overflow-wrap: anywhere; }
  td.num, td.id, .verdict { white-space: normal; }
  nav#contents ol { columns: 1; }
  #findings, #findings tbody, #findings tr, #findings td { display: block; width: auto; }
  #findings tr:first-child { display: none; }
  #findings tr { border-bottom: 1px solid #ccc; padding: 0.4rem 0; }
  #findings td { border: none; text-align: left; padding: 0.15rem 0; }
  #findings td.num::before { content: "value: "; color: #555; }
  table.stages { min-width: 0; }
  dl.provenance { grid-template-columns: 1fr; }
}
@media print {
  body { max-width: none; margin: 0; }
  nav#contents ol { columns: 2; }
  figure, tr { break-inside: avoid; }
  .gallery { grid-template-columns: 1fr 1fr; }
}
"""

SCRIPT = """
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; }).length;
  document.documentElement.setAttribute('data-images', loaded + '/' + images.length);
});
"""


def _text(value) -> str:
    return html.escape(str(value))


def _number(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&ndash;"
    if isinstance(value, float):
        return "0" if value == 0 else f"{value:.4g}"  # never "-0" (a tiny negative rounded to zero)
    return _text(value)


def _value(value) -> str:
    """A finding's value, every row at one precision: three decimals (thousands: whole numbers); never ``-0``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&ndash;"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
        text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3f}"
        return text[1:] if text.startswith("-") and float(text.replace(",", "")) == 0 else text
    return _text(value)


def png_data_uri(path: str | Path) -> str:
    """``data:image/png;base64,...`` of a PNG file."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def findings_html(findings: pd.DataFrame) -> str:
    """The findings table: verdict (with its robustness label), finding, value, numbers behind it, definition."""
    rows = []
    for row in findings.itertuples(index=False):
        css = VERDICT_CLASS.get(str(row.verdict).split(" (", 1)[0], "nodata")
        label = str(getattr(row, "robustness", "") or "")
        fragile = label.startswith("fragile")
        robustness = (f"<div><span class='badge fragile'>fragile</span></div><div class='definition'>"
                      f"{_text(label[len('fragile: '):])}</div>" if fragile
                      else f"<div class='definition'>{_text(label)}</div>" if label else "")
        rows.append(
            f"<tr><td><span class='verdict {css}'>{_text(row.verdict)}</span>{robustness}</td>"
            f"<td><strong>{_text(row.finding)}</strong><div class='definition'>{_text(row.definition)}</div></td>"
            f"<td class='num'>{_value(row.value)}</td><td>{_text(getattr(row, 'detail', ''))}</td></tr>"
        )
    head = "<tr><th>verdict (robustness)</th><th>finding (definition)</th><th>value</th><th>numbers</th></tr>"
    return f"<table id='findings'>{head}{''.join(rows)}</table>"


def _slug(title: str) -> str:
    """An element id from a section title: ``Baselines: what ...`` -> ``baselines``."""
    head = re.split(r"[:(]", title, maxsplit=1)[0]
    return re.sub(r"[^a-z0-9]+", "-", head.lower()).strip("-") or "section"


def short_run_id(run_id: str) -> str:
    """The address hash at the end of a run id (``..._seed=0_3beb7559`` -> ``3beb7559``): the other parts of
    the id are columns of the runs table already."""
    tail = str(run_id).rsplit("_", 1)[-1]
    return tail if len(tail) == 8 and all(c in "0123456789abcdef" for c in tail) else str(run_id)


def table_html(frame: pd.DataFrame, *, table_id: str, columns: Sequence[str] | None = None) -> str:
    """A plain HTML table of ``frame`` (only ``columns`` that exist, when given).

    A ``run_id`` column shows the run's short address; the full id is its tooltip.
    """
    if columns is not None:
        frame = frame[[c for c in columns if c in frame.columns]]
    # long column names may break after an underscore or a colon (dlib:mean:mig:discrete_mig), never inside a word
    head = "".join(f"<th>{'run' if c == 'run_id' else _text(c).replace('_', '_<wbr>').replace(':', ':<wbr>')}</th>"
                   for c in frame.columns)
    body = []
    for values in frame.itertuples(index=False):
        cells = "".join(
            f"<td class='id' title='{_text(v)}'>{_text(short_run_id(v))}</td>" if name == "run_id"
            else f"<td class='num'>{_number(v)}</td>" if isinstance(v, (int, float)) and not isinstance(v, bool)
            else f"<td>{_text(v)}</td>"
            for name, v in zip(frame.columns, values)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table id='{table_id}'><tr>{head}</tr>{''.join(body)}</table>"


def figures_html(figures, folder: str | None = None) -> str:
    """Each figure as an embedded PNG with its caption, or a note saying why it was skipped.

    ``folder``: where the files lie beside the report; None = the folder each figure was saved in (the
    reports of several metrics share the pictures of the models, saved once).
    """
    parts = []
    for figure in figures:
        if figure.skipped:
            parts.append(f"<div class='skipped' id='fig-{figure.name}'><strong>{_text(figure.title)}</strong>: "
                         f"not drawn: {_text(figure.skipped)}.</div>")
            continue
        caption = f" {_text(figure.caption)}" if figure.caption else ""
        folder = figure.png.parent.name if folder is None else folder
        parts.append(  # the picture links to the full-size file beside the report
            f"<figure id='fig-{figure.name}'><a href='{_text(folder)}/{_text(figure.png.name)}' "
            f"title='full size: {_text(folder)}/{_text(figure.png.name)}'>"
            f"<img alt='{_text(figure.title)}' src='{png_data_uri(figure.png)}'></a>"
            f"<figcaption><strong>{_text(figure.title)}.</strong>{caption} "
            f"(Files: {folder}/{figure.png.name}, {folder}/{figure.svg.name}.)</figcaption></figure>"
        )
    return "\n".join(parts)


def _seconds(value: float) -> str:
    minutes, seconds = divmod(float(value), 60)
    return f"{int(minutes)} min {seconds:.0f} s" if minutes else f"{seconds:.1f} s"


def provenance_html(provenance: dict, environment: dict) -> str:
    """Each run session of the study (command, versions, machine, wall time per stage), then the report's own."""
    parts = []
    keys = ("vaesim", "python", "torch", "numpy", "git_commit", "hostname", "platform", "processor", "cpu_count",
            "torch_threads", "cuda")

    missing = {"cuda": "none (CPU only)", "git_commit": "not a git checkout"}

    def facts(info: dict) -> str:
        return "".join(f"<dt>{_text(k)}</dt><dd>{_text(info[k] if info.get(k) is not None else missing.get(k, 'unknown'))}"
                       f"</dd>" for k in keys if k in info)

    sessions = provenance.get("sessions", [])
    if provenance.get("imported"):
        parts.append(f"<p class='skipped'>{_text(provenance['imported'])}</p>")
    elif not sessions:
        parts.append("<p class='skipped'>No provenance.json: this study was run before vaesim recorded "
                     "provenance; only the report's own environment is known.</p>")
    for number, session in enumerate(sessions, 1):
        from vaesim.study.plan import STAGES as order  # the stages' run order (the file sorts keys)

        stages = dict(sorted(session.get("stages", {}).items(),
                             key=lambda item: order.index(item[0]) if item[0] in order else len(order)))
        rows = "".join(f"<tr><td>{_text(name)}{' (interrupted)' if stage.get('interrupted') else ''}</td>"
                       f"<td class='num'>{int(stage.get('tasks', 0))}</td>"
                       f"<td class='num'>{_seconds(stage.get('seconds', 0.0))}</td></tr>"
                       for name, stage in stages.items())
        total = sum(float(stage.get("seconds", 0.0)) for stage in stages.values())
        table = (f"<table class='stages'><tr><th>stage</th><th>tasks run</th><th>wall time</th></tr>{rows}"
                 f"<tr><th>total</th><th></th><th class='num'>{_seconds(total)}</th></tr></table>"
                 if stages else "<p>No stage finished in this session.</p>")
        parts.append(f"<h3>Run session {number}: {_text(session.get('started', '?'))}</h3>"
                     f"<p><code>{_text(session.get('command', ''))}</code></p>"
                     f"<dl class='provenance'>{facts(session.get('environment', {}))}</dl>{table}")
    parts.append(f"<h3>This report was written with</h3><dl class='provenance'>{facts(environment)}</dl>")
    return "\n".join(parts)


def render_report(*, title: str, summary: str, findings: pd.DataFrame, figures, runs: pd.DataFrame | None,
                  counts: pd.DataFrame, spec_text: str, notes: Sequence[str] = (),
                  sections: Sequence[tuple[str, str, str]] = (), pictures: Sequence = (),
                  gallery: Sequence = (), training: Sequence = (), provenance: dict | None = None,
                  environment: dict | None = None, other_reports: Sequence[tuple[str, str]] = (),
                  figures_dir: str = "figures") -> str:
    """The whole page as a string.

    ``sections``: (title, explanation text, table HTML) shown after the
    findings (baselines, metric diagnostic). ``pictures`` / ``gallery`` /
    ``training``: figures of what the models do and of training;
    ``provenance``: the study's provenance.json, ``environment``: the report's own.
    """
    notes_html = "".join(f"<p class='skipped'>{_text(n)}</p>" for n in notes)
    section_ids = [_slug(name) for name, _text_, _body in sections]
    sections_html = "".join(f"<h2 id='{sid}'>{_text(name)}</h2><p>{_text(text)}</p>{body}"
                            for sid, (name, text, body) in zip(section_ids, sections))
    contents = [("findings-section", "Findings"), *zip(section_ids, (name for name, _t, _b in sections)),
                ("models", "What the models do"), ("training", "Training"), ("figures", "Figures"),
                ("runs-table", "What was run"), ("provenance", "Provenance"), ("spec", "Study specification")]
    contents_html = ("<nav id='contents'><strong>Contents</strong><ol>"
                     + "".join(f"<li><a href='#{sid}'>{_text(title)}</a></li>" for sid, title in contents)
                     + "</ol></nav>")
    runs_html = (table_html(runs, table_id="runs", columns=RUN_COLUMNS) if runs is not None and len(runs)
                 else "<p class='skipped'>No runs table (runs.parquet) yet.</p>")
    links = "".join(f" The same report for {_text(metric.upper())}: <a href='{_text(name)}'>{_text(name)}</a>."
                    for metric, name in other_reports)
    gallery_html = (f"<h3>Latent traversals per model (final step)</h3><p>One image of the probe set decoded with "
                    f"one latent coordinate set from -2 to +2 (columns) while the others keep the image's "
                    f"posterior mean; rows are the latent dimensions, largest KL first; grey: passive "
                    f"(Cov_x(E[z|x]) <= 0.01 on the probe set, the report's one definition).</p><div class='gallery'>{figures_html(gallery)}</div>"
                    if gallery else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_text(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{_text(title)}</h1>
<p class="meta">{_text(summary)}{links}</p>
{notes_html}
{contents_html}
<h2 id='findings-section'>Findings</h2>
<p>The claims of Bonheme &amp; Grzes, <em>How do Variational Autoencoders Learn? Insights from Representational
Similarity</em> (arXiv 2205.08399), checked with the numbers of this study. Each verdict follows from the
definition written under its name; a verdict that leaving one seed out or moving a threshold changes is marked
fragile and is not counted as support, nor is one whose robustness was not checked.</p>
<p id='support'><strong>{_text(support_summary(findings))}</strong></p>
{findings_html(findings)}
{sections_html}
<h2 id='models'>What the models do</h2>
{figures_html(pictures)}
{gallery_html}
<h2 id='training'>Training</h2>
{figures_html(training)}
<h2 id='figures'>Figures</h2>
{figures_html(figures, figures_dir)}
<h2 id='runs-table'>What was run</h2>
{runs_html}
<h3>Similarity rows in the store</h3>
{table_html(counts, table_id="counts")}
<h2 id='provenance'>Provenance</h2>
{provenance_html(provenance or {"sessions": []}, environment or {})}
<h2 id='spec'>Study specification (spec.yaml)</h2>
<pre>{_text(spec_text)}</pre>
<script>{SCRIPT}</script>
</body></html>
"""
