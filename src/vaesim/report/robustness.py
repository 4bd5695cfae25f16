"""How far each verdict can be trusted: recomputed without one seed, with moved thresholds, by the other metric.

A verdict is **fragile** when its word (``holds``, ``opposite holds``,
``inconclusive``, ``not enough data``) changes under any of these checks,
each recomputed from the stored data alone:

- **leave one seed out**: every row and latent statistic of one seed's runs
  dropped, for each seed in the store (a verdict that rests on one seed is
  not a finding about VAEs);
- **thresholds moved**: each metric's settle threshold (claims 1 and 2, and
  claim 3's converged checkpoints) by +/- :data:`SETTLE_SHIFT`; the passive
  threshold on Cov_x(E[z_u|x]) (claim 3) multiplied and divided by
  :data:`PASSIVE_FACTOR`;
- **curves still moving at the end left out** (claim 1, given the metric):
  the (run, layer) curves claim 1 counts that had not settled by the last
  checkpoint before T (score(t_last, T) below the settle threshold: the
  layer still moved by more than the threshold allows in the last stretch of
  training) have the settle point T only because training stopped (a
  right-censored point that longer training would move); the verdict is
  recomputed without them. A curve that settled late (say at 0.6 T) and
  then stayed flat is settled, and stays: leaving out late settlers would
  erase the late side of a true effect (issue 32);
- **variants**: the same study measured another way, passed as extra
  (results, latents) tables: a second probe set (extract and compare only)
  or a rerun in another environment, each stored under ``DIR/variants/``
  by ``vaesim study variant`` (:mod:`vaesim.study.run.variants`); the
  report says which it used and how each was made.

The label names every check that changed the word and what it changed it
to. Only ``holds`` / ``opposite holds`` verdicts that are not fragile count
in the support sentence (:func:`vaesim.report.verdicts.support_summary`).

Separately, :func:`metric_comparison` puts each claim's verdict by CKA and by
Procrustes side by side and says where they disagree.

Pure functions: tables in, tables out; the recomputation is passed in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import pandas as pd

from vaesim.report.findings import PASSIVE_VARIANCE, Thresholds, compute_findings
from vaesim.report.settling import convergence_table, counted_curves, settle_threshold
from vaesim.report.tables import run_info
from vaesim.report.verdicts import FRAGILE, NOT_ENOUGH_DATA, short_name, verdict_word

logger = logging.getLogger(__name__)

SETTLE_SHIFT = 0.02  # the settle threshold is moved by this much either way
PASSIVE_FACTOR = 10.0  # the passive threshold is multiplied and divided by this
ROBUSTNESS_COLUMNS = ("finding", "check", "verdict", "changed")

#: ``recompute(results, latents, thresholds, only) -> findings``; ``only``: the name prefixes of the findings
#: the check can change (None: all), so the others need not be recomputed
Recompute = Callable[[pd.DataFrame, "pd.DataFrame | None", Thresholds, "tuple[str, ...] | None"], pd.DataFrame]
SETTLED_CLAIMS = ("claim 1", "claim 2", "claim 3")  # the settle threshold decides claims 1-2 and claim 3's checkpoints
PASSIVE_CLAIMS = ("claim 3",)
CONVERGED_CLAIMS = ("claim 1",)  # the claim whose settle points a still-moving curve decides


def threshold_checks(*, settle_shift: float = SETTLE_SHIFT,
                     passive_factor: float = PASSIVE_FACTOR) -> list[tuple[str, Thresholds, tuple[str, ...]]]:
    """(name, thresholds, findings it can change) of each moved decision threshold."""
    return [
        (f"settle threshold +{settle_shift:g}", Thresholds(settle_shift=settle_shift), SETTLED_CLAIMS),
        (f"settle threshold -{settle_shift:g}", Thresholds(settle_shift=-settle_shift), SETTLED_CLAIMS),
        (f"passive threshold x{passive_factor:g} ({PASSIVE_VARIANCE * passive_factor:g})",
         Thresholds(passive_variance=PASSIVE_VARIANCE * passive_factor), PASSIVE_CLAIMS),
        (f"passive threshold /{passive_factor:g} ({PASSIVE_VARIANCE / passive_factor:g})",
         Thresholds(passive_variance=PASSIVE_VARIANCE / passive_factor), PASSIVE_CLAIMS),
    ]


def without_seed(results: pd.DataFrame, latents: pd.DataFrame | None,
                 seed) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The store with every row that involves a run of ``seed`` removed (either side), and its latents."""
    runs = set(run_info(results).query("seed == @seed")["run"])
    kept = results[~results["a_run"].isin(runs) & ~results["b_run"].isin(runs)]
    if latents is None:
        return kept, None
    return kept, latents[~latents["run_id"].isin(runs)]


def without_moving_curves(results: pd.DataFrame, metric: str, *,
                          threshold: float | None = None) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The store without the curves claim 1 counts that were still moving at the end of training, and those curves.

    A curve is a (run, layer) of ``metric``'s within-run rows of the layer at t against itself at T; it is
    still moving at the end when its score at the last learned checkpoint before T is below ``threshold``
    (None: the metric's settle threshold from the store, :func:`vaesim.report.settling.settle_threshold`), so
    its settle point is T only because training stopped. Its within-run same-layer rows (every metric) are
    dropped; nothing else is.
    """
    if threshold is None:
        threshold, _ = settle_threshold(results, metric=metric)
    curves = counted_curves(convergence_table(results, metric=metric, threshold=threshold))
    moving = curves[curves["moving_at_end"].astype(bool)]
    keys = sorted(set(zip(moving["run"], moving["layer"])))
    if not keys:
        return results, []
    same = ((results["comparison"] == "within_run") & (results["a_run"] == results["b_run"])
            & (results["a_layer"] == results["b_layer"]))
    hit = pd.MultiIndex.from_arrays([results["a_run"], results["a_layer"]]).isin(keys)
    return results[~(same.to_numpy() & hit)], keys


def default_recompute(metric: str) -> Recompute:
    """:func:`compute_findings` of ``metric`` as a recomputation."""
    def recompute(results: pd.DataFrame, latents: pd.DataFrame | None, thresholds: Thresholds,
                  only: tuple[str, ...] | None = None) -> pd.DataFrame:
        return compute_findings(results, latents=latents, metric=metric, thresholds=thresholds, only=only)
    return recompute


def robustness_table(results: pd.DataFrame, latents: pd.DataFrame | None, findings: pd.DataFrame, *,
                     recompute: Recompute, variants: Mapping[str, tuple] | None = None,
                     seeds: bool = True, thresholds: bool = True, metric: str | None = None) -> pd.DataFrame:
    """Each finding's verdict under each check; columns :data:`ROBUSTNESS_COLUMNS`.

    ``findings``: the verdicts as computed (the reference); ``recompute``:
    how to compute them again from (results, latents, thresholds), e.g.
    :func:`default_recompute`; ``variants``: {name: (results, latents)} of
    the same study measured another way (second probe set, thread-count
    rerun), recomputed with the thresholds as defined. ``metric``: the
    metric of ``findings``; given, claim 1 is also recomputed without its
    curves still moving at the end of training (:func:`without_moving_curves`),
    when it has any. A finding missing from a recomputation counts as ``not enough data``
    there.
    """
    checks: list[tuple[str, pd.DataFrame, pd.DataFrame | None, Thresholds, tuple[str, ...] | None]] = []
    if seeds and len(results):
        for seed in sorted(set(run_info(results)["seed"])):
            kept, kept_latents = without_seed(results, latents, seed)
            checks.append((f"seed {seed} left out", kept, kept_latents, Thresholds(), None))
    if thresholds:
        checks += [(name, results, latents, moved, only) for name, moved, only in threshold_checks()]
    if metric is not None and len(results):
        settled, moving = without_moving_curves(results, metric)
        if moving:
            checks.append((f"{len(moving)} curve(s) still moving at the end left out", settled, latents, Thresholds(),
                           CONVERGED_CLAIMS))
    for name, (variant_results, variant_latents) in (variants or {}).items():
        checks.append((name, variant_results, variant_latents, Thresholds(), None))
    reference = dict(zip(findings["finding"], findings["verdict"]))
    rows = []
    for name, check_results, check_latents, moved, only in checks:
        logger.info("robustness: recomputing the findings with %s", name)
        again = recompute(check_results, check_latents, moved, only)
        again = dict(zip(again["finding"], again["verdict"]))
        for finding, verdict in reference.items():
            affected = only is None or any(str(finding).startswith(prefix) for prefix in only)
            if not affected:  # this check cannot change it: it is the same computation
                continue
            new = again.get(finding, NOT_ENOUGH_DATA)
            rows.append(dict(finding=finding, check=name, verdict=new,
                             changed=verdict_word(new) != verdict_word(verdict)))
    return pd.DataFrame(rows, columns=list(ROBUSTNESS_COLUMNS))


def robustness_labels(findings: pd.DataFrame, table: pd.DataFrame) -> pd.Series:
    """Per finding (aligned with ``findings``): ``fragile: <check> -> <verdict>; ...`` or what it survived."""
    labels = []
    for finding in findings["finding"]:
        mine = table[table["finding"] == finding]
        if mine.empty:
            labels.append("not checked")
            continue
        changed = mine[mine["changed"]]
        if len(changed):
            labels.append(f"{FRAGILE}: " + "; ".join(f"{row.check} -> {row.verdict}" for row in changed.itertuples()))
        else:
            labels.append(f"unchanged by {len(mine)} checks: " + ", ".join(mine["check"]))
    return pd.Series(labels, index=findings.index, name="robustness")


def with_robustness(findings: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``findings`` with a ``robustness`` column (:func:`robustness_labels`)."""
    return findings.assign(robustness=robustness_labels(findings, table))


# --------------------------------------------------------------------------- metrics side by side
def metric_comparison(findings_by_metric: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Each finding's verdict and value by every metric, side by side, and whether the words agree.

    ``findings_by_metric``: {metric: findings table}. Returns finding (short
    name), ``<metric> verdict`` and ``<metric> value`` per metric (and
    ``<metric> robustness`` where the tables have it), and ``agree``
    ("yes", or "no: ..." naming the verdicts that differ).
    """
    metrics = list(findings_by_metric)
    names: list[str] = []
    for table in findings_by_metric.values():
        names += [name for name in table["finding"] if name not in names]
    rows = []
    for name in names:
        row = {"finding": short_name(name)}
        words = {}
        for metric in metrics:
            table = findings_by_metric[metric].set_index("finding")
            verdict = table["verdict"].get(name, NOT_ENOUGH_DATA)
            row[f"{metric} verdict"] = verdict
            row[f"{metric} value"] = float(table["value"].get(name, float("nan")))
            if "robustness" in table:
                row[f"{metric} fragile"] = "yes" if str(table["robustness"].get(name, "")).startswith(FRAGILE) else "no"
            words[metric] = verdict_word(verdict)
        same = len(set(words.values())) == 1
        row["agree"] = "yes" if same else "no: " + ", ".join(f"{m.upper()} {w}" for m, w in words.items())
        rows.append(row)
    return pd.DataFrame(rows)


#: known reasons a verdict can differ between CKA and Procrustes, by claim (short name prefix): the report names
#: them beside a disagreement, so a reader does not take one metric's blindness for a contradiction
BLIND_SPOTS = {
    "claim 3": (
        "Procrustes similarity of the mean code and the sample sees the sampling noise only through its total "
        "variance (||S||_F) and its cross-covariance with the mean, not through how it is spread over "
        "directions; CKA divides by ||S^T S||_F, which grows when the same noise variance is concentrated in "
        "fewer directions. So noise correlated across latent dimensions lowers CKA(mean, sample) and leaves "
        "Procrustes nearly where it was (10-dimensional code, noise correlation 0.6: CKA 0.790 -> 0.708, "
        "Procrustes 0.820 -> 0.820; tests/report/test_robustness.py): a departure of that kind is a CKA verdict "
        "that Procrustes cannot confirm or contradict (issue 32 item 7)."
    ),
}


def blind_spot_text(comparison: pd.DataFrame) -> str:
    """The :data:`BLIND_SPOTS` of the findings whose verdict word differs between CKA and Procrustes (empty if none)."""
    if comparison.empty or "agree" not in comparison:
        return ""
    metrics = {column[: -len(" verdict")] for column in comparison.columns if column.endswith(" verdict")}
    if not {"cka", "procrustes"} <= metrics:
        return ""
    differ = comparison.loc[comparison["agree"] != "yes", "finding"].astype(str)
    named = [claim for claim in BLIND_SPOTS if differ.str.startswith(claim).any()]
    return " ".join(f"Known blind spot ({claim}): {BLIND_SPOTS[claim]}" for claim in named)


def disagreement_text(comparison: pd.DataFrame) -> str:
    """One sentence naming the findings whose verdict word differs between metrics (empty when none)."""
    if comparison.empty or "agree" not in comparison:
        return ""
    differ = comparison[comparison["agree"] != "yes"]
    metrics = [column[: -len(" verdict")].upper() for column in comparison.columns if column.endswith(" verdict")]
    if differ.empty:
        return f"{' and '.join(metrics)} give the same verdict word for every finding."
    text = ("The metrics disagree on: " + "; ".join(f"{row.finding} ({row.agree[4:]})" for row in differ.itertuples())
            + ". A finding that only one metric supports is a property of that metric as much as of the models.")
    blind = blind_spot_text(comparison)
    return f"{text} {blind}" if blind else text
