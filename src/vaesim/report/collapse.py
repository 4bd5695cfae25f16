"""Claim 3 of the seed paper, read beyond arithmetic: does CKA(mean, sampled) track posterior collapse?

The sampled code is z = mu(x) + sigma(x) * eps with eps independent of x and
across dimensions. Its similarity with the mean code mu is then fixed, up to
sampling error, by two per-dimension numbers that ``latents.parquet``
already stores for every checkpoint: m_u = Cov_x(mu_u) (``mean_variance``)
and v_u = E_x[sigma_u^2] (``posterior_variance``). A collapsed dimension has
m_u ~ 0 and v_u ~ 1, so CKA(mean, sampled) falls as dimensions collapse by
arithmetic alone, for a network that learned nothing as much as for a
trained one. The claim is therefore judged on the **residual**: observed
score minus its noise-only expectation at the same checkpoint
(:func:`expected_cka_mean_sample`, :func:`expected_procrustes_mean_sample`).

One definition of a passive dimension is used everywhere in the report:
Burda et al. (2016, "Importance Weighted Autoencoders", sec. 5.2): u is
active when Cov_x(E_q[z_u | x]) > :data:`PASSIVE_VARIANCE` over the probe
set, passive otherwise (:func:`passive_dimensions`).

Collapse is counted on converged checkpoints only
(:func:`vaesim.report.settling.converged_checkpoints`: at or after the point
where every encoder layer training changed has settled, and always the final
step), per objective, across its regularisation strengths.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from vaesim.report import layers as L
from vaesim.report.settling import converged_checkpoints, settle_threshold
from vaesim.report.statistics import clustered_spearman
from vaesim.report.tables import INITIAL_STEP, at_final_step, check_results, final_steps, run_info, select
from vaesim.report.verdicts import (
    BOUNDS,
    NOT_ENOUGH_DATA,
    NULL_INSIDE,
    ci_text,
    finding_row,
    inconclusive,
    interval_verdict,
    verdict_word,
)

logger = logging.getLogger(__name__)

MIN_RUNS_FOR_CORRELATION = 5
PASSIVE_VARIANCE = 0.01  # Burda et al. (2016): dimension u is active if Cov_x(E[z_u|x]) > 0.01
# Optional column of latents.parquet: sum_w Cov_x(mu_u, mu_w)^2 per dimension u, so that its sum over u is
# ||Cov_x(mu)||_F^2. Without it the off-diagonal covariances are unknown and the expectation is bounded.
COVARIANCE_COLUMN = "mean_cov_sq"
# Objectives whose swept parameter pushes the posterior towards the prior (claim 3 applies):
# beta-VAE's beta; Annealed VAE's capacity C_max (a smaller capacity pushes harder).
COLLAPSE_OBJECTIVES = {"beta_vae": "beta", "annealed_vae": "-C_max"}
# Sign that turns an objective's main parameter into a regularisation strength
# (larger = stronger pressure towards the prior). Annealed VAE's C_max is a KL
# capacity: a larger capacity means a weaker regulariser.
STRENGTH_SIGN = {"annealed_vae": -1.0}
CLAIM = "claim 3: CKA(mean, sampled) falls as dimensions become passive"


# --------------------------------------------------------------------------- noise-only expectation
def expected_cka_mean_sample(mean_variance: np.ndarray, posterior_variance: np.ndarray, n: int, *,
                             frobenius2: float | None = None) -> float:
    """Expected linear CKA(M, M + N) when N is sampling noise independent of the mean code M.

    mean_variance: (D,) m_u = Cov_x(mu_u) over the n probe images (population
    variance, as ``latents.parquet`` stores it); posterior_variance: (D,)
    v_u = E_x[sigma_u^2]; n: probe images; frobenius2: ||Cov_x(mu)||_F^2,
    the squared Frobenius norm of the mean code's (D, D) covariance; None =
    sum_u m_u^2, the value when the dimensions of the mean code are
    uncorrelated (the smallest possible: off-diagonal covariances only raise
    it, and the expectation rises with it).

    Derivation (Kornblith et al. 2019, linear CKA = ||X'Y||_F^2 /
    (||X'X||_F ||Y'Y||_F) on centred columns). Condition on the centred mean
    code X (n, D), so X'X = n S with ||S||_F^2 = F, and let N be (n, D)
    Gaussian noise, independent entries of variance v_u in column u, Y = X +
    H N (H the centring matrix). With B = X'N and W = N'HN ~ Wishart(n-1, V):

    - E||X'Y||^2 = n^2 F + n (sum m)(sum v);
    - E||Y'Y||^2 = n^2 F + 2 n^2 sum(m v) + 2 n (sum m)(sum v)
      + n (n-1) sum(v^2) + (n-1) (sum v)^2.

    The expectation returned is the ratio of expectations,
    E||X'Y||^2 / (||X'X|| sqrt(E||Y'Y||^2)), exact to O(1/n) relative error
    (a stated approximation; tested against a float64 simulation). As n grows
    it tends to sqrt(F / (F + 2 sum(m v) + sum(v^2))). Noise whose variance
    varies across images has the same leading term (v_u is its mean). NaN
    when F = 0 (a constant mean code).
    """
    m = np.asarray(mean_variance, dtype=np.float64)
    v = np.asarray(posterior_variance, dtype=np.float64)
    if m.shape != v.shape or m.ndim != 1:
        raise ValueError(f"expected_cka_mean_sample: mean_variance and posterior_variance must both be (D,); got "
                         f"{m.shape} and {v.shape}")
    if n < 2:
        raise ValueError(f"expected_cka_mean_sample: needs n >= 2 probe images, got {n}")
    f = float(np.sum(m**2)) if frobenius2 is None else float(frobenius2)
    if not f > 0:
        return math.nan
    sum_m, sum_v = float(m.sum()), float(v.sum())
    numerator = f + sum_m * sum_v / n
    denominator2 = (f + 2.0 * float(np.sum(m * v)) + 2.0 * sum_m * sum_v / n + (1.0 - 1.0 / n) * float(np.sum(v**2))
                    + (n - 1.0) * sum_v**2 / n**2)
    return float(min(1.0, numerator / math.sqrt(f * denominator2)))


def cka_frobenius_bounds(mean_variance: np.ndarray) -> tuple[float, float]:
    """(lowest, highest) ||Cov_x(mu)||_F^2 that a covariance with diagonal ``mean_variance`` (D,) can have.

    Lowest: sum m_u^2 (uncorrelated dimensions); highest: (sum m_u)^2 (all
    dimensions perfectly correlated; |C_uw| <= sqrt(m_u m_w), Cauchy-Schwarz).
    """
    m = np.asarray(mean_variance, dtype=np.float64)
    return float(np.sum(m**2)), float(np.sum(m)) ** 2


def expected_procrustes_mean_sample(mean_variance: np.ndarray, posterior_variance: np.ndarray, n: int, *,
                                    draws: int = 32, seed: int = 0) -> float:
    """Expected Procrustes similarity (Ding et al. 2021) of the mean code M and M + N, N noise as above.

    mean_variance, posterior_variance: (D,) as in :func:`expected_cka_mean_sample`;
    n: probe images. Procrustes similarity = ||X'Y||_* / (||X||_F ||Y||_F) on
    centred columns. To leading order E X'Y = n S (S positive semi-definite,
    so ||S||_* = trace S = sum m), ||X||_F^2 = n sum m and E||Y||_F^2 =
    n sum m + (n - 1) sum v: the value tends to sqrt(sum m / (sum m + sum v))
    and no off-diagonal covariance enters. The nuclear norm's finite-n
    upward bias (several hundredths at n = 64 when dimensions collapse) has
    no simple closed form, so the expectation is a seeded Monte Carlo mean
    over ``draws`` noise draws given a Gaussian mean code whose sample
    covariance is exactly diag(m) (a stated approximation: the off-diagonal
    covariances change only the finite-n term; tested against a float64
    simulation with correlated codes and image-dependent sigma). NaN when
    sum m = 0.
    """
    m = np.asarray(mean_variance, dtype=np.float64)
    v = np.asarray(posterior_variance, dtype=np.float64)
    if m.shape != v.shape or m.ndim != 1:
        raise ValueError(f"expected_procrustes_mean_sample: mean_variance and posterior_variance must both be (D,); "
                         f"got {m.shape} and {v.shape}")
    if n < 2:
        raise ValueError(f"expected_procrustes_mean_sample: needs n >= 2 probe images, got {n}")
    if not m.sum() > 0:
        return math.nan
    rng = np.random.default_rng(seed)
    d = len(m)
    basis = rng.standard_normal((n, d))  # (n, D)
    basis -= basis.mean(axis=0)
    q, _ = np.linalg.qr(basis)  # (n, D) orthonormal, centred columns
    x = q * np.sqrt(n * np.clip(m, 0.0, None))  # (n, D): X'X = n diag(m)
    x_norm = math.sqrt(n * float(m.sum()))
    scores = np.empty(draws)
    for k in range(draws):
        y = x + rng.standard_normal((n, d)) * np.sqrt(np.clip(v, 0.0, None))  # (n, D)
        y -= y.mean(axis=0)
        scores[k] = np.linalg.svd(x.T @ y, compute_uv=False).sum() / (x_norm * np.linalg.norm(y))
    return float(scores.mean())


def noise_expectations(latents: pd.DataFrame, n: int, *, metric: str = "cka") -> pd.DataFrame:
    """Per (run, step) of ``latents.parquet``: the noise-only expectation of metric(mean, sampled).

    Returns run, step, expected, expected_low, expected_high, source. For
    CKA: ``expected`` uses ||Cov_x(mu)||_F^2 from :data:`COVARIANCE_COLUMN`
    when the table has it (source ``covariance``); otherwise the uncorrelated
    value (source ``diagonal``), and ``expected_low`` / ``expected_high``
    are the expectations at the two :func:`cka_frobenius_bounds` (equal to
    ``expected`` with the covariance). Procrustes needs no covariance.
    """
    required = {"run_id", "step", "dim", "mean_variance", "posterior_variance"}
    missing = required - set(latents.columns)
    if missing:
        raise ValueError(f"latents: missing columns {sorted(missing)}; expected the latents.parquet table of a "
                         f"study (columns run_id, step, dim, mean_variance, posterior_variance, ...)")
    has_covariance = COVARIANCE_COLUMN in latents.columns and latents[COVARIANCE_COLUMN].notna().all()
    out = []
    for (run, step), group in latents.groupby(["run_id", "step"], sort=False):
        m, v = group["mean_variance"].to_numpy(), group["posterior_variance"].to_numpy()
        if metric == "procrustes":
            value = expected_procrustes_mean_sample(m, v, n)
            out.append(dict(run=run, step=int(step), expected=value, expected_low=value, expected_high=value,
                            source="diagonal (exact for Procrustes)"))
            continue
        if metric != "cka":
            raise ValueError(f"noise_expectations: no noise-only expectation for metric {metric!r}; expected 'cka' "
                             f"or 'procrustes'")
        low, high = cka_frobenius_bounds(m)
        if has_covariance:
            value = expected_cka_mean_sample(m, v, n, frobenius2=float(group[COVARIANCE_COLUMN].sum()))
            out.append(dict(run=run, step=int(step), expected=value, expected_low=value, expected_high=value,
                            source="covariance"))
        else:
            value = expected_cka_mean_sample(m, v, n, frobenius2=low)
            out.append(dict(run=run, step=int(step), expected=value, expected_low=value,
                            expected_high=expected_cka_mean_sample(m, v, n, frobenius2=high), source="diagonal"))
    return pd.DataFrame(out, columns=["run", "step", "expected", "expected_low", "expected_high", "source"])


# --------------------------------------------------------------------------- tables
def regularisation_strength(objective: str, param: float) -> float:
    """Main parameter turned into a strength that grows with the pressure towards the prior."""
    return STRENGTH_SIGN.get(objective, 1.0) * float(param)


def mean_sample_rows(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``within_run`` rows pairing encoder.mean with encoder.sample of one run at one step."""
    rows = select(results, comparison="within_run", metric=metric)
    pair = {L.MEAN_LAYER, L.SAMPLE_LAYER}
    return rows[(rows["a_run"] == rows["b_run"]) & (rows["a_step"] == rows["b_step"])
                & (rows["a_layer"] != rows["b_layer"]) & rows["a_layer"].isin(pair) & rows["b_layer"].isin(pair)]


def mean_sample_similarity(results: pd.DataFrame, *, metric: str = "cka") -> pd.DataFrame:
    """Similarity of the mean and sampled representations of each run at its final step.

    From ``within_run`` rows pairing encoder.mean with encoder.sample of the
    same run, both at the final step. Returns run, objective, param_name,
    param, seed, strength, score.
    """
    check_results(results)
    rows = at_final_step(mean_sample_rows(results, metric), final_steps(results))
    scores = rows.groupby("a_run")["score"].mean().rename("score")
    info = run_info(results).set_index("run")
    out = info.join(scores, how="inner").rename_axis("run").reset_index()
    out["strength"] = [regularisation_strength(o, p) for o, p in zip(out["objective"], out["param"])]
    return out[["run", "objective", "param_name", "param", "seed", "strength", "score"]]


def passive_dimensions(latents: pd.DataFrame, *, threshold: float = PASSIVE_VARIANCE) -> pd.DataFrame:
    """Passive latent dimensions per (run, step) from the ``latents`` table: the report's one definition.

    A dimension u is active when Cov_x(E_q[z_u | x]) > ``threshold`` over the
    probe set (Burda et al. 2016, "Importance Weighted Autoencoders", Sec. 5.2),
    i.e. its ``mean_variance`` column; passive otherwise. Returns run, step,
    passive_dims, active_dims, latent_dim.
    """
    required = {"run_id", "step", "dim", "mean_variance"}
    missing = required - set(latents.columns)
    if missing:
        raise ValueError(f"latents: missing columns {sorted(missing)}; expected the latents.parquet table of a "
                         f"study (columns run_id, step, dim, mean_variance, ...)")
    grouped = latents.assign(passive=latents["mean_variance"] <= threshold).groupby(["run_id", "step"])
    out = grouped.agg(passive_dims=("passive", "sum"), latent_dim=("dim", "nunique")).reset_index()
    out["passive_dims"] = out["passive_dims"].astype(int)
    out["active_dims"] = out["latent_dim"] - out["passive_dims"]
    return out.rename(columns={"run_id": "run"})[["run", "step", "passive_dims", "active_dims", "latent_dim"]]


def final_active_dimensions(latents: pd.DataFrame | None, *, threshold: float = PASSIVE_VARIANCE) -> pd.Series:
    """Active dimensions (:func:`passive_dimensions`) of each run at its last recorded checkpoint: run -> count."""
    if latents is None or latents.empty:
        return pd.Series(dtype="int64")
    table = passive_dimensions(latents, threshold=threshold)
    last = table.loc[table.groupby("run")["step"].idxmax()]
    return last.set_index("run")["active_dims"]


def collapse_table(results: pd.DataFrame, latents: pd.DataFrame, *, metric: str = "cka",
                   threshold: float | None = None, passive_threshold: float = PASSIVE_VARIANCE,
                   trajectories: pd.DataFrame | None = None) -> pd.DataFrame:
    """metric(mean, sampled) beside its noise-only expectation and the passive dimensions, per run and checkpoint.

    ``threshold``: the settle threshold that decides converged checkpoints
    (None: :func:`settle_threshold`); ``trajectories``: its convergence
    table when the caller has it. Returns run, objective, param, strength,
    seed, step, n, score, expected, expected_low, expected_high, residual
    (score - expected), residual_low (score - expected_high), residual_high
    (score - expected_low), source, passive_dims, active_dims, latent_dim,
    converged; learned checkpoints only (step 0 is the initial weights).
    """
    columns = ["run", "objective", "param", "strength", "seed", "step", "n", "score", "expected", "expected_low",
               "expected_high", "residual", "residual_low", "residual_high", "source", "passive_dims", "active_dims",
               "latent_dim", "converged"]
    check_results(results)
    rows = mean_sample_rows(results, metric)
    if rows.empty or latents is None or latents.empty:
        return pd.DataFrame(columns=columns)
    scores = rows.groupby(["a_run", "a_step"]).agg(score=("score", "mean"), n=("n", "max")).reset_index()
    scores = scores.rename(columns={"a_run": "run", "a_step": "step"})
    scores = scores[scores["step"] > INITIAL_STEP]
    n = int(scores["n"].max()) if len(scores) else 0
    merged = scores.merge(passive_dimensions(latents, threshold=passive_threshold), on=["run", "step"], how="inner")
    merged = merged.merge(noise_expectations(latents, max(n, 2), metric=metric), on=["run", "step"], how="left")
    merged = merged.merge(run_info(results)[["run", "objective", "param", "seed"]], on="run", how="left")
    merged["strength"] = [regularisation_strength(o, p) for o, p in zip(merged["objective"], merged["param"])]
    converged = converged_checkpoints(results, metric=metric, threshold=threshold,
                                      trajectories=trajectories)[["run", "step", "converged"]]
    merged = merged.merge(converged, on=["run", "step"], how="left")
    merged["converged"] = merged["converged"].fillna(False).astype(bool)
    merged["residual"] = merged["score"] - merged["expected"]
    merged["residual_low"] = merged["score"] - merged["expected_high"]
    merged["residual_high"] = merged["score"] - merged["expected_low"]
    return merged.sort_values(["objective", "param", "seed", "step"]).reset_index(drop=True)[columns]


# --------------------------------------------------------------------------- claim 3
def _definition(metric: str, threshold_text: str, passive_threshold: float) -> str:
    name = metric.upper()
    return (
        f"Residual = {name}(encoder.mean, encoder.sample) (within-run rows) minus its noise-only expectation at the "
        f"same checkpoint, computed from latents.parquet alone: m_u = Cov_x(E[z_u|x]) and v_u = E_x[sigma_u^2] per "
        f"dimension, z = mu + sigma eps with eps independent (closed form to O(1/n), see "
        f"vaesim.report.collapse). A residual near 0 means the statistic says nothing about collapse that the "
        f"variances do not. Passive dimension (the report's one definition): Cov_x(E[z_u|x]) <= {passive_threshold:g} "
        f"on the probe set (Burda et al. 2016). Counted checkpoints: converged ones (at or after the settle point "
        f"of every encoder layer training changed, settle threshold {threshold_text}; always the final step). "
        f"Spearman's rho between residual and passive dimensions over the counted checkpoints of every run of the "
        f"objective, 95% leave-one-run-out jackknife t interval on Fisher's z scale (runs are the independent units). Holds if the CI is below 0 (the statistic falls with "
        f"collapse beyond arithmetic), opposite holds if above 0, inconclusive if it contains 0"
        + ("; for CKA without the mean code's off-diagonal covariances (latents column "
           f"'{COVARIANCE_COLUMN}') the expectation is bounded (uncorrelated to fully correlated dimensions) and "
           f"a verdict must hold at both bounds, else inconclusive ({BOUNDS})" if metric == "cka" else "")
        + f" (needs >= {MIN_RUNS_FOR_CORRELATION} runs and at least two distinct passive counts). Applies to "
        f"objectives whose parameter pushes towards the prior: "
        + ", ".join(f"{name} ({param})" for name, param in COLLAPSE_OBJECTIVES.items()) + ". Value = rho."
    )


def _by_strength_text(part: pd.DataFrame, metric: str) -> str:
    by = part.groupby("param").agg(passive=("passive_dims", "mean"), score=("score", "mean"),
                                   expected=("expected", "mean"), residual=("residual", "mean"),
                                   points=("run", "size"))
    return "; ".join(f"{param:g}: passive {r.passive:.1f}, {metric.upper()} {r.score:.3f} vs expected "
                     f"{r.expected:.3f} (residual {r.residual:+.3f}, {int(r.points)} pt)" for param, r in by.iterrows())


def _rho(part: pd.DataFrame, column: str) -> tuple[float, float, float]:
    values = part[column].to_numpy(dtype=np.float64)
    if np.ptp(values) == 0:
        return math.nan, math.nan, math.nan
    return clustered_spearman(values, part["passive_dims"].to_numpy(), part["run"].to_numpy())


def _objective_row(part: pd.DataFrame, objective: str, metric: str, definition: str) -> dict:
    name = f"{CLAIM} [{objective}]"
    counted = part[part["converged"] & part["expected"].notna()]
    n_runs = counted["run"].nunique()
    left_out = len(part) - len(counted)
    if (n_runs < MIN_RUNS_FOR_CORRELATION or counted["passive_dims"].nunique() < 2
            or counted["residual"].nunique() < 2):
        return finding_row(name, math.nan, NOT_ENOUGH_DATA, definition,
                    f"{n_runs} run(s), {len(counted)} converged checkpoint(s) ({left_out} learned checkpoint(s) "
                    f"before convergence left out); passive dimensions take the values "
                    f"{sorted(counted['passive_dims'].unique().tolist())}: needs >= {MIN_RUNS_FOR_CORRELATION} runs "
                    f"and at least two distinct counts", n=n_runs)
    rho, low, high = _rho(counted, "residual")
    verdict = interval_verdict(-high, -low)  # the claim: -rho > 0
    bounded = metric == "cka" and not (counted["source"] == "covariance").all()
    bound_text = ""
    if bounded:
        # the residual against the highest possible expectation; the one above is against the lowest
        rho_b, low_b, high_b = _rho(counted, "residual_low")
        verdict_b = interval_verdict(-high_b, -low_b) if np.isfinite(rho_b) else inconclusive(NULL_INSIDE)
        if verdict_word(verdict) != verdict_word(verdict_b):
            verdict = inconclusive(BOUNDS)
        bound_text = (f" Against the highest expectation (fully correlated mean code): rho {rho_b:+.3f} "
                      f"({ci_text(low_b, high_b)}). The store lacks the mean code's off-diagonal covariances "
                      f"('{COVARIANCE_COLUMN}' in latents.parquet), so the expectation is only bounded.")
    raw, raw_low, raw_high = _rho(counted, "score")
    param_name = part["param_name"].iloc[0] if "param_name" in part else "param"
    agreement = float(np.corrcoef(counted["score"], counted["expected"])[0, 1]) \
        if counted["expected"].nunique() > 1 and counted["score"].nunique() > 1 else math.nan
    detail = (
        f"rho(residual, passive) = {rho:+.3f} ({ci_text(low, high)}, jackknife over runs), {n_runs} runs, "
        f"{len(counted)} converged checkpoints ({left_out} earlier learned checkpoint(s) left out). "
        f"The raw statistic, as the paper reads it: rho({metric.upper()}, passive) = {raw:+.3f} "
        f"({ci_text(raw_low, raw_high)}); observed vs noise-only expectation r = {agreement:.3f}, mean |residual| "
        f"{counted['residual'].abs().mean():.3f}.{bound_text} By strength ({param_name}): "
        f"{_by_strength_text(counted, metric)}."
    )
    return finding_row(name, rho, verdict, definition, detail, (low, high), n_runs)


def claims_posterior_collapse(results: pd.DataFrame, latents: pd.DataFrame | None, *, metric: str = "cka",
                              threshold: float | None = None, passive_threshold: float = PASSIVE_VARIANCE,
                              trajectories: pd.DataFrame | None = None) -> list[dict]:
    """Claim 3, beyond arithmetic: the residual of metric(mean, sampled) falls as dimensions become passive.

    One row per objective in the store whose parameter pushes the posterior
    towards the prior (:data:`COLLAPSE_OBJECTIVES`); the others get no row
    (the claim says nothing about them). A store with none of them gets one
    ``not enough data`` row. ``threshold``: the settle threshold deciding
    converged checkpoints (None: from the store); ``passive_threshold``: the
    Burda threshold on Cov_x(E[z_u|x]); ``trajectories``: the convergence
    table at that threshold when the caller has it.
    """
    if threshold is None:
        threshold, threshold_text = settle_threshold(results, metric=metric)
    else:
        threshold_text = f"{threshold:.3f} (given)"
    definition = _definition(metric, threshold_text, passive_threshold)
    check_results(results)
    objectives = sorted(set(run_info(results)["objective"]))
    if not objectives:
        return [finding_row(CLAIM, math.nan, NOT_ENOUGH_DATA, definition, "the results store has no runs")]
    if not set(objectives) & set(COLLAPSE_OBJECTIVES):
        return [finding_row(CLAIM, math.nan, NOT_ENOUGH_DATA, definition,
                     f"no run of an objective whose parameter pushes towards the prior (the store has "
                     f"{', '.join(objectives)})")]
    table = None if latents is None else collapse_table(results, latents, metric=metric, threshold=threshold,
                                                        passive_threshold=passive_threshold,
                                                        trajectories=trajectories)
    if table is not None:
        table = table.merge(run_info(results)[["run", "param_name"]], on="run", how="left")
    rows = []
    for objective in objectives:
        if objective not in COLLAPSE_OBJECTIVES:
            # DIP-VAE's lambda penalises the covariance of the mean, beta-TC-VAE's beta the total correlation:
            # neither pushes the whole posterior towards the prior, so the claim is not tested on them
            logger.info("claim 3: %s's parameter does not push towards the prior; no verdict for it", objective)
            continue
        if table is None:
            rows.append(finding_row(f"{CLAIM} [{objective}]", math.nan, NOT_ENOUGH_DATA, definition,
                             "no per-checkpoint latent statistics (latents.parquet): rerun the study's extract "
                             "and store stages"))
            continue
        rows.append(_objective_row(table[table["objective"] == objective], objective, metric, definition))
    return rows
