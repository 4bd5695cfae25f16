"""Error rates and power of the verdicts of claims 1-3, by simulation (issue 32).

    python benchmarks/calibration.py [--reps 1000] [--claims 1 2 3] [--seed 0] [--runs 6 8 ...] [--seeds 3 5 8]
                                     [--groups 5 6 ...]

Every number comes from the code the report runs, fed with data whose truth is known:

* claim 1: ``vaesim.report.settling.paired_decision`` on the per-run differences d (decoder minus encoder
  settle point). Nulls: d symmetric about 0 (encoder and decoder exchangeable): normal, heavy-tailed
  (Student t, 2 df), on a coarse checkpoint grid with many ties (d in {-1/12, 0, +1/12} steps of a 13-point
  grid). Positive controls: d = delta x SD + noise, for delta = 0.5, 0.8, 1.0, 1.5 (normal noise). Also the
  coverage of the exact interval for skewed-but-symmetric and asymmetric d.
* claim 2: ``vaesim.report.findings.claim_encoder_agreement`` on results tables drawn from a random-effects
  model of the stored scores with the preset's seed structure (S seeds x 4 strengths, pairs within one seed
  across strengths, step-0 and final cross-seed pairs, each run's initial-to-final score; two trunk layers
  and two heads). Per-seed effects SD 0.01, per-pair noise SD 0.01 (about the spread of 28 untrained pairs,
  0.015 in CKA). Nulls: shared initial weights with independent drift (runs of one seed agree less than each
  agrees with its start, trained seeds as untrained ones), weight drift without learning (more drift), and
  the three boundary nulls of the intersection-union rule (two contrasts true, one exactly 0). Positive
  controls: every contrast = delta x 0.01.
* claim 3: ``vaesim.report.statistics.clustered_spearman`` (the interval claim 3 decides from) on clustered
  points of G runs x 3-7 converged checkpoints: passive counts set by each run's strength plus checkpoint
  noise. Nulls: residual independent of the passive count, without and with a per-run offset (SD 2.5x the
  checkpoint noise). Positive controls: residual = -b x passive (standardised) + noise, b = 0.3, 0.5, 0.8.

A false decision is "holds" or "opposite holds" on a null; detection is "holds" on a positive control.
Each rate is printed with its Monte Carlo standard error sqrt(p (1 - p) / reps). Takes minutes at
--reps 1000 on one core (claim 2 dominates); docs/evidence.md has the table of the last run.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import time

import numpy as np
import pandas as pd

SIZES_RUNS = (6, 8, 10, 15, 25)  # claim 1: runs (the evidence preset: 25 = 5 seeds x 5 settings)
SIZES_SEEDS = (3, 5, 8)  # claim 2: seeds (3 is the least the claim accepts; the evidence preset has 5)
SIZES_GROUPS = (5, 6, 10, 20, 32)  # claim 3: runs of one objective (evidence: 4 strengths x 5 seeds = 20)


def rate(hits: int, reps: int) -> str:
    p = hits / reps
    return f"{p:.3f} +/- {math.sqrt(max(p * (1 - p), 1.0 / reps) / reps):.3f}"


# --------------------------------------------------------------------------- claim 1
def claim1(reps: int, rng: np.random.Generator) -> None:
    from vaesim.report.settling import paired_decision

    grid = 1.0 / 12.0
    nulls = {
        "null: normal d": lambda n: rng.normal(0.0, 0.1, n),
        "null: heavy tails (t, 2 df)": lambda n: 0.1 * rng.standard_t(2, n),
        "null: coarse grid, ties": lambda n: grid * rng.choice([-1, 0, 0, 1], n),
    }
    positives = {f"effect {delta:g} SD": (lambda n, delta=delta: rng.normal(delta * 0.1, 0.1, n))
                 for delta in (0.5, 0.8, 1.0, 1.5)}
    print("\nclaim 1 (exact signed-rank interval, 95%): rate of 'holds' or 'opposite holds' on nulls, 'holds' "
          "on positive controls")
    print(f"{'case':32s} " + " ".join(f"{'runs ' + str(n):>17s}" for n in SIZES_RUNS))
    for name, draw in {**nulls, **positives}.items():
        cells = []
        for n in SIZES_RUNS:
            hits = 0
            for _ in range(reps):
                verdict = paired_decision(draw(n))[0]
                hits += verdict in (("holds", "opposite holds") if name.startswith("null") else ("holds",))
            cells.append(rate(hits, reps))
        print(f"{name:32s} " + " ".join(f"{c:>17s}" for c in cells), flush=True)
    covers = {"symmetric (Laplace)": lambda n: rng.laplace(0.2, 0.1, n),
              "asymmetric (exponential; target: pseudo-median)": lambda n: rng.exponential(0.1, n)}
    pseudo = float(np.median((lambda e: (e[:, None] + e[None, :]) / 2)(rng.exponential(0.1, 3000))))
    print("coverage of the exact 95% interval")
    for name, draw in covers.items():
        truth = 0.2 if name.startswith("symmetric") else pseudo
        cells = []
        for n in SIZES_RUNS:
            hits = 0
            for _ in range(reps):
                _, _, low, high, _ = paired_decision(draw(n))
                hits += low <= truth <= high
            cells.append(rate(hits, reps))
        print(f"{name:32s} " + " ".join(f"{c:>17s}" for c in cells), flush=True)


# --------------------------------------------------------------------------- claim 2
TRUNK = ("encoder.conv4", "encoder.fc")
HEADS = ("encoder.mean", "encoder.logvar")
COLUMNS = ["dataset", "comparison", "metric", "a_run", "a_objective", "a_param_name", "a_param", "a_seed",
           "a_step", "a_layer", "b_run", "b_objective", "b_param_name", "b_param", "b_seed", "b_step", "b_layer",
           "n", "score", "note"]
FINAL = 1000


def claim2_store(rng: np.random.Generator, seeds: int, *, together_trunk: float, together_heads: float,
                 beyond_untrained: float, seed_sd: float = 0.01, pair_sd: float = 0.01) -> pd.DataFrame:
    """Stored rows of ``seeds`` x 4 strengths whose three claim 2 contrasts are (together_trunk,
    beyond_untrained, together_trunk - together_heads) in expectation."""
    params = (1.0, 4.0, 8.0, 16.0)
    c_level = {layer: (0.6 if layer in TRUNK else 0.5) for layer in TRUNK + HEADS}
    u_level = {layer: (0.7 if layer in TRUNK else 0.5) for layer in TRUNK + HEADS}
    rows = []

    def add(comparison, a, b, layer, score):
        (pa, sa, ta), (pb, sb, tb) = a, b
        rows.append(("d", comparison, "cka", f"r{pa:g}-{sa}", "beta_vae", "beta", pa, sa, ta, layer,
                     f"r{pb:g}-{sb}", "beta_vae", "beta", pb, sb, tb, layer, 100, float(score), ""))

    for layer in TRUNK + HEADS:
        together = together_trunk if layer in TRUNK else together_heads
        seed_c = rng.normal(0, seed_sd, seeds)
        c = {(p, s): c_level[layer] + seed_c[s] + rng.normal(0, pair_sd) for p in params for s in range(seeds)}
        for (p, s), value in c.items():
            add("within_run", (p, s, 0), (p, s, FINAL), layer, value)
        seed_a = rng.normal(0, seed_sd, seeds)
        for s in range(seeds):
            for pa, pb in itertools.combinations(params, 2):
                base = (c[(pa, s)] + c[(pb, s)]) / 2
                add("params", (pa, s, FINAL), (pb, s, FINAL), layer, base + together + seed_a[s]
                    + rng.normal(0, pair_sd))
                add("params", (pa, s, 0), (pb, s, 0), layer, 1.0)  # shared initial weights
        seed_u, seed_t = rng.normal(0, seed_sd, seeds), rng.normal(0, seed_sd, seeds)
        lift = beyond_untrained if layer in TRUNK else 0.0
        for sa, sb in itertools.combinations(range(seeds), 2):
            for p in params:
                add("seeds", (p, sa, 0), (p, sb, 0), layer,
                    u_level[layer] + seed_u[sa] + seed_u[sb] + rng.normal(0, pair_sd))
                add("seeds", (p, sa, FINAL), (p, sb, FINAL), layer,
                    u_level[layer] + lift + seed_t[sa] + seed_t[sb] + rng.normal(0, pair_sd))
    return pd.DataFrame(rows, columns=COLUMNS)


def claim2(reps: int, rng: np.random.Generator) -> None:
    from vaesim.report.findings import claim_encoder_agreement

    unit = 0.01
    cases = {
        "null: shared init, drift": dict(together_trunk=-0.02, together_heads=-0.02, beyond_untrained=0.0),
        "null: weight drift": dict(together_trunk=-0.06, together_heads=-0.04, beyond_untrained=0.0),
        "boundary: heads as trunk": dict(together_trunk=0.05, together_heads=0.05, beyond_untrained=0.05),
        "boundary: seeds as untrained": dict(together_trunk=0.05, together_heads=0.0, beyond_untrained=0.0),
        "boundary: no co-movement": dict(together_trunk=0.0, together_heads=-0.05, beyond_untrained=0.05),
        **{f"effect {d:g} x 0.01": dict(together_trunk=d * unit, together_heads=0.0, beyond_untrained=d * unit)
           for d in (1.0, 2.0, 3.0)},
    }
    print("\nclaim 2 (three contrasts, jackknife t intervals, every contrast must agree): rate of a decision on "
          "nulls, 'holds' on positive controls (4 strengths per seed; per-seed SD 0.01, pair SD 0.01)")
    print(f"{'case':32s} " + " ".join(f"{'seeds ' + str(s):>17s}" for s in SIZES_SEEDS))
    for name, knobs in cases.items():
        cells = []
        for seeds in SIZES_SEEDS:
            hits = 0
            for _ in range(reps):
                verdict = claim_encoder_agreement(claim2_store(rng, seeds, **knobs), threshold=0.9)["verdict"]
                hits += verdict in (("holds", "opposite holds") if not name.startswith("effect") else ("holds",))
            cells.append(rate(hits, reps))
        print(f"{name:32s} " + " ".join(f"{c:>17s}" for c in cells), flush=True)


# --------------------------------------------------------------------------- claim 3
def claim3_points(rng: np.random.Generator, runs: int, slope: float, run_sd: float):
    strengths = rng.choice([1.0, 4.0, 8.0, 16.0], runs)
    x, y, clusters = [], [], []
    for g, strength in enumerate(strengths):
        k = int(rng.integers(3, 8))
        passive = np.clip(np.round(min(10.0, strength / 2) + rng.normal(0, 1, k)), 0, 10)
        offset = rng.normal(0, run_sd)
        residual = offset - slope * (passive - 4.0) / 3.0 * 0.02 + rng.normal(0, 0.02, k)
        x += list(residual)
        y += list(passive)
        clusters += [g] * k
    return np.array(x), np.array(y), np.array(clusters)


def claim3(reps: int, rng: np.random.Generator) -> None:
    from vaesim.report.statistics import clustered_spearman

    cases = {"null: independent": (0.0, 0.0), "null: run offsets": (0.0, 0.05),
             **{f"effect b = {b:g}": (b, 0.0) for b in (0.3, 0.5, 0.8)}}
    print("\nclaim 3 (Spearman's rho, leave-one-run-out jackknife on Fisher's z): rate of an interval excluding 0 "
          "on nulls, below 0 ('holds') on positive controls")
    print(f"{'case':32s} " + " ".join(f"{'runs ' + str(g):>17s}" for g in SIZES_GROUPS))
    for name, (slope, run_sd) in cases.items():
        cells = []
        for runs in SIZES_GROUPS:
            hits = 0
            for _ in range(reps):
                x, y, clusters = claim3_points(rng, runs, slope, run_sd)
                if np.ptp(y) == 0:
                    continue
                _, low, high = clustered_spearman(x, y, clusters)
                hits += (high < 0 or low > 0) if name.startswith("null") else high < 0
            cells.append(rate(hits, reps))
        print(f"{name:32s} " + " ".join(f"{c:>17s}" for c in cells), flush=True)


def main() -> None:
    global SIZES_RUNS, SIZES_SEEDS, SIZES_GROUPS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=1000, help="simulated datasets per cell")
    parser.add_argument("--claims", nargs="+", type=int, default=[1, 2, 3], choices=[1, 2, 3])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", nargs="+", type=int, help=f"claim 1 sizes (default {SIZES_RUNS})")
    parser.add_argument("--seeds", nargs="+", type=int, help=f"claim 2 sizes (default {SIZES_SEEDS})")
    parser.add_argument("--groups", nargs="+", type=int, help=f"claim 3 sizes (default {SIZES_GROUPS})")
    args = parser.parse_args()
    SIZES_RUNS = tuple(args.runs or SIZES_RUNS)
    SIZES_SEEDS = tuple(args.seeds or SIZES_SEEDS)
    SIZES_GROUPS = tuple(args.groups or SIZES_GROUPS)
    from vaesim.utils.threads import thread_limit

    rng = np.random.default_rng(args.seed)
    print(f"calibration: {args.reps} datasets per cell, seed {args.seed}, load {os.getloadavg()[0]:.1f}")
    start = time.time()
    with thread_limit(1):
        for claim in args.claims:
            {1: claim1, 2: claim2, 3: claim3}[claim](args.reps, rng)
    print(f"\n{time.time() - start:.0f} s, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
