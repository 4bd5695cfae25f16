"""Verdict words, finding rows and their plain-text summary (shared by every claim).

A verdict is one of four words and nothing else:

- ``holds``: the test passes and its interval lies on the claim's side of the null;
- ``opposite holds``: the interval lies entirely on the other side;
- ``inconclusive (<reason>)``: the data exist but do not decide; the reason is
  one of ``interval contains the null``, ``test not significant``,
  ``ties/grid`` (the paired test's best achievable p for the number of runs
  and ties, printed beside it, cannot pass), ``ceiling`` (the layers that
  would decide sit at the metric's ceiling or under the noise floor) or
  ``expectation bounds`` (a residual whose sign depends on what the store
  does not record) or ``contrasts disagree`` (a claim made of several
  contrasts, each decided, not all the same way);
- ``not enough data``: the store lacks what the test needs (runs, seeds,
  checkpoints, a baseline).

Beside the verdict, a finding carries a ``robustness`` label
(:mod:`vaesim.report.robustness`): ``fragile: <what changed it>`` when
leaving one seed out or moving a decision threshold changes its word.

An interval that contains the null is never read as "the claim fails".
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd

HOLDS = "holds"
OPPOSITE_HOLDS = "opposite holds"
INCONCLUSIVE = "inconclusive"
NOT_ENOUGH_DATA = "not enough data"
VERDICT_WORDS = (HOLDS, OPPOSITE_HOLDS, INCONCLUSIVE, NOT_ENOUGH_DATA)
FRAGILE = "fragile"
# why an ``inconclusive`` verdict did not decide
NULL_INSIDE = "interval contains the null"
NOT_SIGNIFICANT = "test not significant"
TIES_OR_GRID = "ties/grid"
CEILING = "ceiling"
BOUNDS = "expectation bounds"
SPLIT = "contrasts disagree"  # each contrast decided, not all the same way (claim 2)
FINDING_COLUMNS = ("finding", "value", "verdict", "definition", "detail", "ci_low", "ci_high", "n")


def finding_row(finding: str, value: float, verdict: str, definition: str, detail: str,
                ci: tuple[float, float] = (math.nan, math.nan), n: int = 0) -> dict:
    """One finding as a dict with the columns :data:`FINDING_COLUMNS`; ``ci`` = (ci_low, ci_high)."""
    return dict(finding=finding, value=float(value), verdict=verdict, definition=definition, detail=detail,
                ci_low=float(ci[0]), ci_high=float(ci[1]), n=int(n))


def inconclusive(reason: str) -> str:
    """``inconclusive (reason)``: the verdict of data that exist but do not decide."""
    return f"{INCONCLUSIVE} ({reason})"


def verdict_word(verdict: str) -> str:
    """The verdict's word without its reason: ``inconclusive (ties/grid)`` -> ``inconclusive``."""
    word = str(verdict).split(" (", 1)[0]
    if word not in VERDICT_WORDS:
        raise ValueError(f"verdict {verdict!r}: expected one of {list(VERDICT_WORDS)}, optionally followed by "
                         f"' (reason)'")
    return word


def interval_verdict(low: float, high: float) -> str:
    """Verdict of a claim that a quantity is > 0, from its interval [low, high]."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return NOT_ENOUGH_DATA
    if above_zero(low):
        return HOLDS
    if above_zero(-high):
        return OPPOSITE_HOLDS
    return inconclusive(NULL_INSIDE)


def above_zero(value: float) -> bool:
    """``value > 0`` beyond float rounding (sums of equal scores can leave 1e-17)."""
    return bool(value > 1e-12)


def ci_text(low: float, high: float) -> str:
    """``95% CI [low, high]`` with signs, or ``no CI`` when either end is not finite."""
    return f"95% CI [{low:+.3f}, {high:+.3f}]" if np.isfinite(low) and np.isfinite(high) else "no CI"


def is_fragile(label) -> bool:
    """True for a ``robustness`` label that starts with ``fragile``."""
    return isinstance(label, str) and label.startswith(FRAGILE)


def short_name(finding: str) -> str:
    """``claim 2 (objectives)``, ``claim 3 [beta_vae]``: a finding's name without its statement."""
    finding = str(finding)
    name = finding.split(":")[0]
    if "[" in finding:
        return f"{name} {finding[finding.index('['):]}"
    if " across " in finding:
        return f"{name} ({finding.split(' across ')[1].split(' beyond')[0]})"
    if finding.startswith("beyond the paper: cross-seed ") and " similarity predicts " in finding:
        layer, target = finding[len("beyond the paper: cross-seed "):].split(" similarity predicts ", 1)
        return f"{name} ({layer} -> {target})"
    return name


def support_summary(findings: pd.DataFrame) -> str:
    """One sentence per verdict kind: which claims this study supports, contradicts, or cannot judge.

    Only ``holds`` / ``opposite holds`` verdicts whose robustness was
    checked (the ``robustness`` column holds what the checks found) and that
    are not fragile count as support or contradiction; a fragile one is
    named apart with what changed it, and one that was never checked (no
    ``robustness`` column, an empty label or ``not checked``) is named apart
    as not checked.
    """
    words = findings["verdict"].map(verdict_word)
    labels_of = (findings["robustness"].fillna("").astype(str) if "robustness" in findings
                 else pd.Series("", index=findings.index))
    fragile = labels_of.map(is_fragile)
    unchecked = labels_of.str.strip().isin(["", "not checked"]) & ~fragile
    decided = words.isin([HOLDS, OPPOSITE_HOLDS])
    labels = {HOLDS: "This study supports", OPPOSITE_HOLDS: "The opposite holds for",
              INCONCLUSIVE: "It cannot tell (inconclusive)", NOT_ENOUGH_DATA: "It cannot judge (not enough data)"}
    parts = []
    for verdict, label in labels.items():
        chosen = (words == verdict) & ~(decided & (fragile | unchecked))
        names = [short_name(name) for name in findings.loc[chosen, "finding"]]
        if names:
            parts.append(f"{label}: {', '.join(names)}.")
    shaky = findings[decided & fragile]
    if len(shaky):
        parts.append("Fragile, so neither support nor contradiction: "
                     + ", ".join(f"{short_name(row.finding)} ({row.verdict})" for row in shaky.itertuples())
                     + ".")
    blind = findings[decided & unchecked]
    if len(blind):
        parts.append("Not checked for robustness, so not counted as support or contradiction: "
                     + ", ".join(f"{short_name(row.finding)} ({row.verdict})" for row in blind.itertuples())
                     + ".")
    return " ".join(parts)


def format_findings(findings: pd.DataFrame, *, width: int = 110) -> str:
    """Findings as a plain-text table for the terminal: verdict, value, finding, then its numbers."""
    verdicts = [f"{v} [{FRAGILE}]" if is_fragile(r) else str(v)
                for v, r in zip(findings["verdict"], findings.get("robustness", [""] * len(findings)))]
    column = max([len("verdict")] + [len(v) for v in verdicts])
    indent = " " * (column + 13)
    lines = [f"{'verdict':<{column}} {'value':>8}   finding"]
    for verdict, row in zip(verdicts, findings.itertuples(index=False)):
        missing = row.value is None or (isinstance(row.value, float) and np.isnan(row.value))
        value = "-" if missing else f"{row.value:+.3f}"
        lines.append(f"{verdict:<{column}} {value:>8}   {row.finding}")
        if row.detail:
            lines.append(textwrap.fill(str(row.detail), width=width, initial_indent=indent, subsequent_indent=indent))
        label = getattr(row, "robustness", "")
        if is_fragile(label):
            lines.append(textwrap.fill(str(label), width=width, initial_indent=indent, subsequent_indent=indent))
    summary = support_summary(findings)
    if summary:
        lines += ["", textwrap.fill(summary, width=width)]
    return "\n".join(lines)
