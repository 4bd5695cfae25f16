"""All-pairs similarity over a study-like workload: vaesim vs the straightforward method vs a PyPI peer.

Workload: the paper's architecture widths (15 layers, input 4096 ... decoder
output 4096), ``n`` probe examples, ``K`` checkpoints, every layer pair of
every unordered checkpoint pair (each checkpoint with itself included).
Activations are synthetic (shared low-rank signal + noise, ReLU, float32),
produced one checkpoint at a time, summarised and discarded, as the study
pipeline does; only two checkpoints' raw activations are kept, for the
baselines.

Timed, in the same run:
* vaesim: ``summarise`` of every (checkpoint, layer) once (excluding the time
  to generate the activations) + one ``compare`` over all summaries;
* straightforward (Kornblith et al.'s demo, float64): for each checkpoint pair,
  the n x n Gram of every layer of both checkpoints, centred, then all layer
  pairs (generous: each Gram centred and its norm taken once per checkpoint
  pair, not once per layer pair). Timed on sampled checkpoint pairs spread
  over the run and multiplied by K(K+1)/2;
* ckatorch.cka_base (PyPI, float64) on a subset of layer pairs;
* Procrustes: vaesim (QR factors once + per-pair SVD of min(n, p) size) vs
  Ding et al.'s per-pair SVD of the p x p cross-product, on a layer subset;
* straightforward float32 (centre in float32, ``x @ x.T`` in float32), sampled
  on the same checkpoint pairs;
* the Gram phase of vaesim's float64 route (before issue 11) and of its mixed
  route (now) on the same ``--before-samples`` checkpoints, layer by layer;
* an accuracy table against float64 textbook CKA (as generated and with a
  1e4 float32 offset);
* measured float32 SSYRK, float64 SYRK and GEMM peaks, to report achieved GFLOP/s.

Usage: python benchmarks/similarity.py [--checkpoints 10 40] [--n 5000] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shutil
import tempfile
import time

import numpy as np

from vaesim.similarity import compare, summarise

LAYERS = [
    ("input", 4096),
    ("encoder.conv1", 32768), ("encoder.conv2", 8192), ("encoder.conv3", 4096), ("encoder.conv4", 1024),
    ("encoder.fc", 256), ("encoder.mean", 10), ("encoder.logvar", 10), ("encoder.sample", 10),
    ("decoder.fc1", 256), ("decoder.fc2", 1024),
    ("decoder.deconv1", 4096), ("decoder.deconv2", 8192), ("decoder.deconv3", 32768), ("decoder.output", 4096),
]
PEER_LAYERS = ["input", "encoder.conv3", "encoder.fc", "encoder.mean", "decoder.fc2"]
PROCRUSTES_LAYERS = ["input", "encoder.conv4", "encoder.fc", "encoder.mean", "decoder.fc1", "decoder.fc2"]
#: Ding et al.'s p_a x p_b SVD is timed only where p_a * p_b <= this (wider pairs: see WIDE_PAIR, timed once)
DING_MAX_CROSS = 4096 * 1024
#: one wide layer pair (p > n on both sides) timed separately: Ding et al. need a 4096 x 4096 SVD, vaesim min(n, p)
WIDE_PAIR = ("encoder.conv3", "decoder.output")
#: layers of the accuracy table (every storage route: wide Grams, p ~ n, features)
ACCURACY_LAYERS = ["input", "encoder.conv1", "encoder.conv3", "encoder.fc", "encoder.mean", "decoder.deconv3"]


# ---------------------------------------------------------------- synthetic activations

class SyntheticStudy:
    """Checkpoint k's activations: ReLU(shared signal mixed per checkpoint + noise), float32 (n, p)."""

    def __init__(self, n: int, seed: int = 0, rank: int = 12):
        self.n, self.seed, self.rank = n, seed, rank
        rng = np.random.default_rng(seed)
        self.signal = rng.normal(size=(n, rank)).astype(np.float32)  # probe-set latent structure

    def layer(self, checkpoint: int, index: int) -> np.ndarray:
        name, p = LAYERS[index]
        if name == "input":
            checkpoint = 0  # the probe images are the same for every checkpoint
        rng = np.random.default_rng([self.seed, checkpoint, index])
        drift = rng.normal(size=(self.rank, self.rank)).astype(np.float32) * (0.1 + 0.05 * checkpoint)
        mixing = rng.normal(size=(self.rank, p)).astype(np.float32)
        out = rng.standard_normal(size=(self.n, p), dtype=np.float32)  # noise
        out *= 0.5
        out += (self.signal + self.signal @ drift) @ mixing
        np.maximum(out, 0.0, out=out)
        return out

    def checkpoint(self, k: int) -> dict[str, np.ndarray]:
        return {name: self.layer(k, i) for i, (name, _) in enumerate(LAYERS)}


# ---------------------------------------------------------------- baselines

def gram_linear(x: np.ndarray) -> np.ndarray:
    """Kornblith et al.'s demo: x @ x.T (numpy uses syrk for this)."""
    return x.dot(x.T)


def center_gram(gram: np.ndarray) -> np.ndarray:
    """Kornblith et al.'s demo (biased): double-centre an n x n Gram."""
    gram = gram.copy()
    means = np.mean(gram, 0, dtype=np.float64)
    means -= np.mean(means) / 2
    gram -= means[:, None]
    gram -= means[None, :]
    return gram


def gram_float32(x: np.ndarray) -> np.ndarray:
    """The straightforward float32 method: centre the features in float32, then x @ x.T in float32 (ssyrk)."""
    x = x.astype(np.float32, copy=False)
    xc = x - x.mean(0)
    return (xc @ xc.T).astype(np.float64)


def straightforward_pair(acts_a: dict, acts_b: dict, same: bool, dtype=np.float64) -> dict:
    """All layer pairs of one checkpoint pair, Grams recomputed for this pair."""
    gram = gram_float32 if dtype == np.float32 else (lambda v: center_gram(gram_linear(v.astype(np.float64))))
    grams_a = {k: gram(v) for k, v in acts_a.items()}
    grams_b = grams_a if same else {k: gram(v) for k, v in acts_b.items()}
    norms_a = {k: np.linalg.norm(g) for k, g in grams_a.items()}
    norms_b = norms_a if same else {k: np.linalg.norm(g) for k, g in grams_b.items()}
    names_a, names_b = list(acts_a), list(acts_b)
    scores = {}
    for i, la in enumerate(names_a):
        for lb in (names_b[i:] if same else names_b):
            scores[(la, lb)] = float(grams_a[la].ravel().dot(grams_b[lb].ravel()) / (norms_a[la] * norms_b[lb]))
    return scores


def ding_procrustes(x: np.ndarray, y: np.ndarray) -> float:
    """Ding et al. 2021: centre, unit Frobenius norm, 1 - d^2/2 with the p x p cross-product's SVD."""
    x = x.astype(np.float64) - x.mean(0, dtype=np.float64)
    y = y.astype(np.float64) - y.mean(0, dtype=np.float64)
    x /= np.linalg.norm(x)
    y /= np.linalg.norm(y)
    nuclear = np.linalg.svd(x.T @ y, compute_uv=False).sum()
    return float(1.0 - (2.0 - 2.0 * nuclear) / 2.0)


def measure_peak(n: int, repeats: int = 3) -> dict:
    """Best-of float64 SYRK (n x 8192 -> n x n), float32 SYRK and float64 GEMM rates in GFLOP/s."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=(n, 8192))
    b = rng.normal(size=(8192, n))
    a32 = a.astype(np.float32)
    syrk = ssyrk = gemm = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        a @ a.T
        syrk = max(syrk, n * n * 8192 / (time.perf_counter() - t) / 1e9)
        t = time.perf_counter()
        a32 @ a32.T
        ssyrk = max(ssyrk, n * n * 8192 / (time.perf_counter() - t) / 1e9)
        t = time.perf_counter()
        a @ b
        gemm = max(gemm, 2 * n * n * 8192 / (time.perf_counter() - t) / 1e9)
    return {"dsyrk_gflops": syrk, "ssyrk_gflops": ssyrk, "dgemm_gflops": gemm}


# ---------------------------------------------------------------- main workload

def run(args) -> dict:
    n = args.n
    ks = sorted(set(args.checkpoints))
    k_total = ks[-1]
    study = SyntheticStudy(n, seed=args.seed)
    tri_bytes = 8 * n * (n + 1) // 2
    gram_layers = [name for name, p in LAYERS if p > n / 2]
    spill = len(gram_layers) * k_total * tri_bytes > args.ram_budget_gb * 1e9
    spill_dir = tempfile.mkdtemp(prefix="vaesim-bench-", dir=args.spill_dir) if spill else None
    store = None
    if spill:
        store = np.lib.format.open_memmap(os.path.join(spill_dir, "grams.npy"), mode="w+", dtype=np.float64,
                                          shape=(len(gram_layers) * k_total, n * (n + 1) // 2))
    results = {"n": n, "checkpoints": ks, "layers": len(LAYERS), "spilled_to_disk": spill,
               "load_before": loadavg(), "peak_before": measure_peak(n)}
    print(f"n={n}, K={', '.join(map(str, ks))} checkpoints, {len(LAYERS)} layers, sum p={sum(p for _, p in LAYERS)}; "
          f"packed Grams {'memory-mapped on disk' if spill else 'in RAM'}; load {results['load_before']}", flush=True)

    sample_points = sorted({1, k_total // 2, k_total - 1}) if k_total > 1 else []
    before_points = set(range(min(args.before_samples, k_total)))
    kept: dict[int, dict] = {}
    straight_times: list[float] = []
    straight32_times: list[float] = []
    summaries: dict[int, dict] = {}
    t_summarise = [0.0] * k_total  # vaesim now (precision="auto": mixed for the large layers), per checkpoint
    t_spill = [0.0] * k_total  # copying packed Grams into the on-disk memmap (K too large for RAM)
    t_before = t_after_same = 0.0  # float64 route (vaesim before) vs now, on the before_points checkpoints
    t_generate = 0.0
    row = 0
    for k in range(k_total):
        t = time.perf_counter()
        layer_summaries = {}
        acts_kept = {}
        for i, (name, p) in enumerate(LAYERS):
            tg = time.perf_counter()
            act = study.layer(k, i)
            t_generate += time.perf_counter() - tg
            if k in before_points:  # the float64 route, timed on the same activations just before
                ts = time.perf_counter()
                summarise(act, name=f"ckpt{k}/{name}", metrics=("cka",), precision="float64")
                t_before += time.perf_counter() - ts
            ts = time.perf_counter()
            summary = summarise(act, name=f"ckpt{k}/{name}", metrics=("cka",))
            elapsed = time.perf_counter() - ts
            if store is not None and summary.gram is not None:  # spilling to disk: counted in vaesim's total,
                ts = time.perf_counter()                        # not in the Gram phase
                store[row] = summary.gram
                summary = dataclasses.replace(summary, gram=store[row])
                row += 1
                t_spill[k] += time.perf_counter() - ts
            t_summarise[k] += elapsed
            if k in before_points:
                t_after_same += elapsed
            layer_summaries[name] = summary
            if k < 2:
                acts_kept[name] = act
            del act
        summaries[k] = layer_summaries
        if acts_kept:
            kept[k] = acts_kept
        print(f"  checkpoint {k + 1}/{k_total} summarised ({time.perf_counter() - t:.1f} s incl. generation)", flush=True)
        if k in sample_points:
            ts = time.perf_counter()
            straight_scores = straightforward_pair(kept[0], kept[1], same=False)
            straight_times.append(time.perf_counter() - ts)
            ts = time.perf_counter()
            straight32_scores = straightforward_pair(kept[0], kept[1], same=False, dtype=np.float32)
            straight32_times.append(time.perf_counter() - ts)
            print(f"  straightforward checkpoint pair sample: float64 {straight_times[-1]:.1f} s, "
                  f"float32 {straight32_times[-1]:.1f} s", flush=True)
    if store is not None:
        store.flush()

    flops_per_checkpoint = sum(n * n * p for _, p in LAYERS)
    results.update({"generation_s_excluded": t_generate, "flops_per_checkpoint": flops_per_checkpoint,
                    "before_samples": len(before_points),
                    "gram_phase_before_gflops": len(before_points) * flops_per_checkpoint / t_before / 1e9 if t_before else None,
                    "gram_phase_after_same_gflops": len(before_points) * flops_per_checkpoint / t_after_same / 1e9 if t_after_same else None,
                    "gram_phase_gflops": k_total * flops_per_checkpoint / sum(t_summarise) / 1e9})
    per_k = {}
    for k_report in ks:
        subset = {k: summaries[k] for k in range(k_report)}
        t = time.perf_counter()
        frame = compare(subset, metrics=("cka",))
        t_pairs = time.perf_counter() - t
        model_pairs = k_report * (k_report + 1) // 2
        total = sum(t_summarise[:k_report]) + sum(t_spill[:k_report]) + t_pairs
        entry = {"summarise_s": sum(t_summarise[:k_report]) + sum(t_spill[:k_report]), "pairs_s": t_pairs,
                 "spill_s": sum(t_spill[:k_report]), "total_s": total,
                 "layer_pairs": len(frame), "model_pairs": model_pairs}
        if straight_times:
            entry["straightforward64_s"] = float(np.mean(straight_times)) * model_pairs
            entry["straightforward32_s"] = float(np.mean(straight32_times)) * model_pairs
            entry["speedup_vs_float64"] = entry["straightforward64_s"] / total
            entry["speedup_vs_float32"] = entry["straightforward32_s"] / total
        per_k[k_report] = entry
        print(f"  K={k_report}: compare over {model_pairs} checkpoint pairs {t_pairs:.1f} s", flush=True)
    results["per_k"] = per_k
    if straight_times:
        sub = frame[(frame.a_model == 0) & (frame.b_model == 1)]
        ours = {(r.a_layer, r.b_layer): r.score for r in sub.itertuples()}
        results["straightforward64_per_pair_s"] = float(np.mean(straight_times))
        results["straightforward32_per_pair_s"] = float(np.mean(straight32_times))
        results["max_abs_diff_vs_straightforward"] = max(abs(ours[key] - v) for key, v in straight_scores.items())
        results["straightforward32_max_abs_diff"] = max(abs(straight_scores[key] - v)
                                                       for key, v in straight32_scores.items())
        results["accuracy"] = accuracy_table(kept)
        results.update(peer(kept, frame) if not args.skip_peer else {})
        results.update(procrustes(kept, k_total) if not args.skip_procrustes else {})
    results["peak_after"] = measure_peak(n)
    results["load_after"] = loadavg()
    dsyrk = max(results["peak_before"]["dsyrk_gflops"], results["peak_after"]["dsyrk_gflops"])
    ssyrk = max(results["peak_before"]["ssyrk_gflops"], results["peak_after"]["ssyrk_gflops"])
    results["gram_phase_fraction_of_ssyrk"] = results["gram_phase_gflops"] / ssyrk
    results["gram_phase_fraction_of_dsyrk"] = results["gram_phase_gflops"] / dsyrk
    if t_before:
        results["gram_phase_before_fraction_of_dsyrk"] = results["gram_phase_before_gflops"] / dsyrk
        results["gram_phase_before_fraction_of_ssyrk"] = results["gram_phase_before_gflops"] / ssyrk
        results["gram_phase_after_same_fraction_of_ssyrk"] = results["gram_phase_after_same_gflops"] / ssyrk
    if spill_dir:
        del store
        shutil.rmtree(spill_dir, ignore_errors=True)
    return results


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as handle:
            return " ".join(handle.read().split()[:3])
    except OSError:
        return "n/a"


def accuracy_table(kept: dict) -> dict:
    """Max |CKA - float64 textbook| over ACCURACY_LAYERS pairs of checkpoints 0 and 1, per method and input.

    Inputs: the synthetic activations as they are (float32, post-ReLU), and
    the same with a 1e4 offset (float32: a large mean on wide float32 layers,
    the case where centring in float32 loses digits).
    """
    table = {}
    for label, offset in (("as generated", 0.0), ("+1e4 offset, float32", 1e4)):
        a = {k: (kept[0][k] + np.float32(offset)).astype(np.float32) for k in ACCURACY_LAYERS}
        b = {k: (kept[1][k] + np.float32(offset)).astype(np.float32) for k in ACCURACY_LAYERS}
        exact = textbook_pair(a, b)  # float64: centre the features, then Grams (exact for any offset)
        methods = {
            "vaesim mixed (now)": _vaesim_scores(a, b, "mixed"),
            "vaesim float64 (before)": _vaesim_scores(a, b, "float64"),
            "straightforward float64": straightforward_pair(a, b, same=False),
            "straightforward float32": straightforward_pair(a, b, same=False, dtype=np.float32),
        }
        table[label] = {m: max(abs(scores[key] - v) for key, v in exact.items()) for m, scores in methods.items()}
    return table


def textbook_pair(a: dict, b: dict) -> dict:
    """Float64 reference: features centred in float64, then n x n Grams and <K, L> / (|K| |L|)."""
    def gram(v):
        x = v.astype(np.float64)
        x -= x.mean(0)
        return x @ x.T
    ga, gb = {k: gram(v) for k, v in a.items()}, {k: gram(v) for k, v in b.items()}
    return {(la, lb): float((ga[la] * gb[lb]).sum() / np.sqrt((ga[la] ** 2).sum() * (gb[lb] ** 2).sum()))
            for la in a for lb in b}


def _vaesim_scores(a: dict, b: dict, precision: str) -> dict:
    models = {m: {k: summarise(v, name=k, metrics=("cka",), precision=precision) for k, v in acts.items()}
              for m, acts in ((0, a), (1, b))}
    frame = compare(models, metrics=("cka",), model_pairs=[(0, 1)])
    return {(r.a_layer, r.b_layer): r.score for r in frame.itertuples()}


def peer(kept: dict, frame) -> dict:
    """ckatorch.cka_base (float64, Gram per call) on PEER_LAYERS x PEER_LAYERS of checkpoints 0 and 1."""
    try:
        import ckatorch
        import torch
    except ImportError:
        return {"peer": "ckatorch not installed"}
    sub = frame[(frame.a_model == 0) & (frame.b_model == 1)]
    ours = {(r.a_layer, r.b_layer): r.score for r in sub.itertuples()}
    a = {name: torch.from_numpy(kept[0][name]) for name in PEER_LAYERS}
    b = {name: torch.from_numpy(kept[1][name]) for name in PEER_LAYERS}
    t = time.perf_counter()
    scores = {(la, lb): float(ckatorch.cka_base(a[la], b[lb])) for la in PEER_LAYERS for lb in PEER_LAYERS}
    t_peer = time.perf_counter() - t
    t = time.perf_counter()
    straightforward_pair({k: kept[0][k] for k in PEER_LAYERS}, {k: kept[1][k] for k in PEER_LAYERS}, same=False)
    t_straight = time.perf_counter() - t
    return {
        "peer": f"ckatorch {getattr(ckatorch, '__version__', '1.0.3')} cka_base (float64)",
        "peer_layer_pairs": len(scores), "peer_s": t_peer, "peer_straightforward_same_subset_s": t_straight,
        "peer_max_abs_diff": max(abs(ours[key] - v) for key, v in scores.items()),
    }


def procrustes(kept: dict, k_total: int) -> dict:
    """vaesim Procrustes vs Ding et al.'s per-pair p x p SVD on PROCRUSTES_LAYERS of checkpoints 0 and 1."""
    t = time.perf_counter()
    models = {k: {name: summarise(kept[k][name], name=name, metrics=("procrustes",)) for name in PROCRUSTES_LAYERS}
              for k in (0, 1)}
    t_summary = (time.perf_counter() - t) / 2
    width = dict(LAYERS)
    pairs_timed = [(la, lb) for la in PROCRUSTES_LAYERS for lb in PROCRUSTES_LAYERS
                   if width[la] * width[lb] <= DING_MAX_CROSS]
    t = time.perf_counter()
    frame = compare(models, metrics=("procrustes",), model_pairs=[(0, 1)])
    t_all = time.perf_counter() - t
    t_pair = t_all  # conservative: vaesim does all layer pairs, Ding et al. only the ones timed
    t = time.perf_counter()
    ding = {(la, lb): ding_procrustes(kept[0][la], kept[1][lb]) for la, lb in pairs_timed}
    t_ding = time.perf_counter() - t
    ours = {(r.a_layer, r.b_layer): r.score for r in frame.itertuples()}
    pairs = k_total * (k_total + 1) // 2
    wide = procrustes_wide_pair(kept)
    return {**wide,
        "procrustes_layers": PROCRUSTES_LAYERS, "procrustes_layer_pairs": len(ding), "procrustes_vaesim_layer_pairs": len(frame),
        "procrustes_vaesim_summary_per_checkpoint_s": t_summary, "procrustes_vaesim_pair_s": t_pair,
        "procrustes_ding_pair_s": t_ding,
        "procrustes_speedup_one_pair": t_ding / (2 * t_summary + t_pair),
        "procrustes_speedup_at_K_estimated": pairs * t_ding / (k_total * t_summary + pairs * t_pair),
        "procrustes_max_abs_diff": max(abs(ours[key] - v) for key, v in ding.items()),
    }


def procrustes_wide_pair(kept: dict) -> dict:
    """One wide layer pair (WIDE_PAIR, both p = 4096 > n): vaesim (2 QR summaries + 1 pair) vs Ding et al.'s SVD."""
    la, lb = WIDE_PAIR
    t = time.perf_counter()
    a = summarise(kept[0][la], name=la, metrics=("procrustes",))
    b = summarise(kept[1][lb], name=lb, metrics=("procrustes",))
    ours = float(compare({0: {la: a}, 1: {lb: b}}, metrics=("procrustes",), model_pairs=[(0, 1)])["score"].iloc[0])
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    ding = ding_procrustes(kept[0][la], kept[1][lb])
    t_ding = time.perf_counter() - t
    return {"procrustes_wide_pair": [la, lb], "procrustes_wide_vaesim_s": t_ours, "procrustes_wide_ding_s": t_ding,
            "procrustes_wide_abs_diff": abs(ours - ding)}


def report(r: dict) -> None:
    print("\n=== all-pairs linear CKA ===")
    peak = {key: max(r["peak_before"][key], r["peak_after"][key]) for key in r["peak_before"]}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load average "
          f"{r['load_before']} (start) / {r['load_after']} (end); peaks (best of before/after): float32 ssyrk "
          f"{peak['ssyrk_gflops']:.0f}, float64 dsyrk {peak['dsyrk_gflops']:.0f}, dgemm {peak['dgemm_gflops']:.0f} GFLOP/s")
    print(f"workload: n={r['n']}, {r['layers']} layers, {r['flops_per_checkpoint'] / 1e9:.0f} GFLOP of Grams "
          f"(n^2 p) per checkpoint; activation generation ({r['generation_s_excluded']:.0f} s) not counted")
    if r.get("gram_phase_before_gflops"):
        print(f"Gram phase on the same {r['before_samples']} checkpoint(s), interleaved layer by layer: "
              f"float64 route (before) {r['gram_phase_before_gflops']:.0f} GFLOP/s = "
              f"{100 * r['gram_phase_before_fraction_of_ssyrk']:.0f}% of ssyrk peak "
              f"({100 * r['gram_phase_before_fraction_of_dsyrk']:.0f}% of dsyrk); mixed route (now) "
              f"{r['gram_phase_after_same_gflops']:.0f} GFLOP/s = {100 * r['gram_phase_after_same_fraction_of_ssyrk']:.0f}% "
              f"of ssyrk peak (target >= 75%)")
    print(f"Gram phase over all checkpoints (now): {r['gram_phase_gflops']:.0f} GFLOP/s = "
          f"{100 * r['gram_phase_fraction_of_ssyrk']:.0f}% of ssyrk peak, "
          f"{100 * r['gram_phase_fraction_of_dsyrk']:.0f}% of dsyrk peak")
    if "straightforward64_per_pair_s" in r:
        print(f"straightforward per checkpoint pair (mean of sampled pairs): float64 (Kornblith demo) "
              f"{r['straightforward64_per_pair_s']:.1f} s, float32 (centre in float32, x @ x.T) "
              f"{r['straightforward32_per_pair_s']:.1f} s")
    print(f"\n{'K':>4s} {'ckpt pairs':>10s} {'layer pairs':>11s} {'vaesim s':>22s} {'float64 s':>10s} "
          f"{'ratio':>7s} {'float32 s':>10s} {'ratio':>7s} {'target 0.8K':>11s}")
    for k, e in sorted(r["per_k"].items()):
        vaesim = f"{e['summarise_s']:.0f}+{e['pairs_s']:.1f}={e['total_s']:.0f}"
        if "speedup_vs_float64" in e:
            print(f"{k:>4d} {e['model_pairs']:>10d} {e['layer_pairs']:>11d} {vaesim:>22s} "
                  f"{e['straightforward64_s']:>10.0f} {e['speedup_vs_float64']:>6.1f}x "
                  f"{e['straightforward32_s']:>10.0f} {e['speedup_vs_float32']:>6.1f}x {0.8 * k:>10.1f}x")
        else:
            print(f"{k:>4d} {e['model_pairs']:>10d} {e['layer_pairs']:>11d} {vaesim:>22s}")
    if "accuracy" in r:
        print(f"\naccuracy: max |CKA - float64 textbook| over {len(ACCURACY_LAYERS)} x {len(ACCURACY_LAYERS)} layer pairs "
              f"({', '.join(ACCURACY_LAYERS)}) of checkpoints 0 and 1")
        methods = list(next(iter(r["accuracy"].values())))
        print(f"{'input':>24s} " + " ".join(f"{m:>24s}" for m in methods))
        for label, row in r["accuracy"].items():
            print(f"{label:>24s} " + " ".join(f"{row[m]:>24.1e}" for m in methods))
        print(f"all pairs of checkpoints 0 and 1 (all 15 layers): vaesim vs float64 straightforward "
              f"{r['max_abs_diff_vs_straightforward']:.1e}; float32 straightforward vs float64 "
              f"{r['straightforward32_max_abs_diff']:.1e}")
    if "peer_s" in r:
        print(f"peer {r['peer']}: {r['peer_layer_pairs']} layer pairs of one checkpoint pair in {r['peer_s']:.1f} s "
              f"(straightforward on the same subset {r['peer_straightforward_same_subset_s']:.1f} s); "
              f"max |diff| vs vaesim = {r['peer_max_abs_diff']:.2e}")
    if "procrustes_ding_pair_s" in r:
        print(f"\n=== Procrustes on {len(r['procrustes_layers'])} layers ({', '.join(r['procrustes_layers'])}) ===")
        print(f"vaesim: {r['procrustes_vaesim_summary_per_checkpoint_s']:.1f} s summary per checkpoint (QR factors) + "
              f"{r['procrustes_vaesim_pair_s']:.1f} s for all {r['procrustes_vaesim_layer_pairs']} layer pairs of one checkpoint pair")
        print(f"Ding et al. per-pair p x p SVD: {r['procrustes_ding_pair_s']:.1f} s for only {r['procrustes_layer_pairs']} of them "
              f"(p_a p_b <= 4096 x 1024; so the ratios below understate vaesim's gain)")
        print(f"speed ratio: {r['procrustes_speedup_one_pair']:.1f}x for one checkpoint pair, "
              f"{r['procrustes_speedup_at_K_estimated']:.1f}x estimated for all pairs of K={max(r['checkpoints'])}; "
              f"max |diff| = {r['procrustes_max_abs_diff']:.2e}")
        la, lb = r["procrustes_wide_pair"]
        print(f"wide pair {la} x {lb} (p = 4096 > n, checkpoints 0 and 1): vaesim {r['procrustes_wide_vaesim_s']:.1f} s "
              f"(both QR summaries + the pair) vs Ding et al. {r['procrustes_wide_ding_s']:.1f} s: "
              f"{r['procrustes_wide_ding_s'] / r['procrustes_wide_vaesim_s']:.1f}x; |diff| = {r['procrustes_wide_abs_diff']:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[10],
                        help="K values to report (one run of the largest; e.g. 10 40)")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--before-samples", type=int, default=2,
                        help="checkpoints also summarised by the float64 route (vaesim before), for the before/after Gram phase")
    parser.add_argument("--ram-budget-gb", type=float, default=4.0, help="spill packed Grams to disk beyond this")
    parser.add_argument("--spill-dir", default=None)
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--skip-procrustes", action="store_true")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    results = run(args)
    report(results)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2, default=float)


if __name__ == "__main__":
    main()
