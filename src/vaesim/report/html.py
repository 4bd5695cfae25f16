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
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

VERDICT_CLASS = {"holds": "holds", "does not hold": "fails", "not enough data": "nodata"}
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
.verdict { font-weight: 600; border-radius: 0.8rem; padding: 0.1rem 0.6rem; white-space: nowrap; }
.holds { background: #d8f3dc; color: #1b4332; } .fails { background: #ffd6d6; color: #7f1d1d; }
.nodata { background: #eee; color: #555; }
.definition { color: #555; font-size: 0.8rem; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9rem; }
.skipped { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5rem 0.8rem; }
pre { background: #f5f5f7; padding: 0.8rem; overflow-x: auto; font-size: 0.82rem; }
.scroll { max-height: 28rem; overflow-y: auto; }
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
        return f"{value:.4g}"
    return _text(value)


def png_data_uri(path: str | Path) -> str:
    """``data:image/png;base64,...`` of a PNG file."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def findings_html(findings: pd.DataFrame) -> str:
    """The findings table: verdict, finding, value, numbers behind it, definition."""
    rows = []
    for row in findings.itertuples(index=False):
        css = VERDICT_CLASS.get(row.verdict, "nodata")
        rows.append(
            f"<tr><td><span class='verdict {css}'>{_text(row.verdict)}</span></td>"
            f"<td><strong>{_text(row.finding)}</strong><div class='definition'>{_text(row.definition)}</div></td>"
            f"<td class='num'>{_number(row.value)}</td><td>{_text(getattr(row, 'detail', ''))}</td></tr>"
        )
    head = "<tr><th>verdict</th><th>finding (definition)</th><th>value</th><th>numbers</th></tr>"
    return f"<table id='findings'>{head}{''.join(rows)}</table>"


def table_html(frame: pd.DataFrame, *, table_id: str, columns: Sequence[str] | None = None) -> str:
    """A plain HTML table of ``frame`` (only ``columns`` that exist, when given)."""
    if columns is not None:
        frame = frame[[c for c in columns if c in frame.columns]]
    head = "".join(f"<th>{_text(c)}</th>" for c in frame.columns)
    body = []
    for values in frame.itertuples(index=False):
        cells = "".join(
            f"<td class='num'>{_number(v)}</td>" if isinstance(v, (int, float)) and not isinstance(v, bool)
            else f"<td>{_text(v)}</td>"
            for v in values
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<div class='scroll'><table id='{table_id}'><tr>{head}</tr>{''.join(body)}</table></div>"


def figures_html(figures) -> str:
    """Each figure as an embedded PNG with its caption, or a note saying why it was skipped."""
    parts = []
    for figure in figures:
        if figure.skipped:
            parts.append(f"<div class='skipped' id='fig-{figure.name}'><strong>{_text(figure.title)}</strong>: "
                         f"not drawn: {_text(figure.skipped)}.</div>")
            continue
        parts.append(
            f"<figure id='fig-{figure.name}'><img alt='{_text(figure.title)}' src='{png_data_uri(figure.png)}'>"
            f"<figcaption><strong>{_text(figure.title)}.</strong> {_text(figure.caption)} "
            f"(Files: figures/{figure.png.name}, figures/{figure.svg.name}.)</figcaption></figure>"
        )
    return "\n".join(parts)


def render_report(*, title: str, summary: str, findings: pd.DataFrame, figures, runs: pd.DataFrame | None,
                  counts: pd.DataFrame, spec_text: str, notes: Sequence[str] = (),
                  sections: Sequence[tuple[str, str, str]] = ()) -> str:
    """The whole page as a string.

    ``sections``: (title, explanation text, table HTML) shown after the
    findings (baselines, metric diagnostic).
    """
    notes_html = "".join(f"<p class='skipped'>{_text(n)}</p>" for n in notes)
    sections_html = "".join(f"<h2>{_text(name)}</h2><p>{_text(text)}</p>{body}" for name, text, body in sections)
    runs_html = (table_html(runs, table_id="runs", columns=RUN_COLUMNS) if runs is not None and len(runs)
                 else "<p class='skipped'>No runs table (runs.parquet) yet.</p>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_text(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{_text(title)}</h1>
<p class="meta">{_text(summary)}</p>
{notes_html}
<h2>Findings</h2>
<p>The claims of Bonheme &amp; Grzes, <em>How do Variational Autoencoders Learn? Insights from Representational
Similarity</em> (arXiv 2205.08399), checked with the numbers of this study. Each verdict follows from the
definition written under its name.</p>
{findings_html(findings)}
{sections_html}
<h2>Figures</h2>
{figures_html(figures)}
<h2>What was run</h2>
{runs_html}
<h3>Similarity rows in the store</h3>
{table_html(counts, table_id="counts")}
<h2>Study specification (spec.yaml)</h2>
<pre>{_text(spec_text)}</pre>
<script>{SCRIPT}</script>
</body></html>
"""
