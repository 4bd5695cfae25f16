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
* a measured float64 GEMM / SYRK peak, to report achieved GFLOP/s.

Usage: python benchmarks/similarity.py [--checkpoints 40] [--n 5000] [--json out.json]
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


def straightforward_pair(acts_a: dict, acts_b: dict, same: bool, dtype=np.float64) -> dict:
    """All layer pairs of one checkpoint pair, Grams recomputed for this pair."""
    grams_a = {k: center_gram(gram_linear(v.astype(dtype)).astype(np.float64)) for k, v in acts_a.items()}
    grams_b = grams_a if same else {k: center_gram(gram_linear(v.astype(dtype)).astype(np.float64)) for k, v in acts_b.items()}
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
    """Best-of float64 SYRK (n x 8192 -> n x n) and GEMM rates in GFLOP/s."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=(n, 8192))
    b = rng.normal(size=(8192, n))
    syrk = gemm = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        a @ a.T
        syrk = max(syrk, n * n * 8192 / (time.perf_counter() - t) / 1e9)
        t = time.perf_counter()
        a @ b
        gemm = max(gemm, 2 * n * n * 8192 / (time.perf_counter() - t) / 1e9)
    return {"dsyrk_gflops": syrk, "dgemm_gflops": gemm}


# ---------------------------------------------------------------- main workload

def run(args) -> dict:
    n, k_total = args.n, args.checkpoints
    study = SyntheticStudy(n, seed=args.seed)
    tri_bytes = 8 * n * (n + 1) // 2
    gram_layers = [name for name, p in LAYERS if p > n / 2]
    spill = len(gram_layers) * k_total * tri_bytes > args.ram_budget_gb * 1e9
    spill_dir = tempfile.mkdtemp(prefix="vaesim-bench-", dir=args.spill_dir) if spill else None
    store = None
    if spill:
        store = np.lib.format.open_memmap(os.path.join(spill_dir, "grams.npy"), mode="w+", dtype=np.float64,
                                          shape=(len(gram_layers) * k_total, n * (n + 1) // 2))
    results = {"n": n, "checkpoints": k_total, "layers": len(LAYERS), "spilled_to_disk": spill,
               "peak_before": measure_peak(n)}
    print(f"n={n}, K={k_total}, {len(LAYERS)} layers, sum p={sum(p for _, p in LAYERS)}; "
          f"packed Grams {'memory-mapped on disk' if spill else 'in RAM'}", flush=True)

    sample_points = sorted({1, k_total // 2, k_total - 1}) if k_total > 1 else []
    kept: dict[int, dict] = {}
    straight_times: list[float] = []
    straight_scores = None
    summaries: dict[int, dict] = {}
    t_summarise = t_generate = 0.0
    row = 0
    for k in range(k_total):
        t = time.perf_counter()
        layer_summaries = {}
        acts_kept = {}
        for i, (name, p) in enumerate(LAYERS):
            tg = time.perf_counter()
            act = study.layer(k, i)
            t_generate += time.perf_counter() - tg
            ts = time.perf_counter()
            summary = summarise(act, name=f"ckpt{k}/{name}", metrics=("cka",))
            if store is not None and summary.gram is not None:
                store[row] = summary.gram
                summary = dataclasses.replace(summary, gram=store[row])
                row += 1
            t_summarise += time.perf_counter() - ts
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
            print(f"  straightforward checkpoint pair sample: {straight_times[-1]:.1f} s", flush=True)
    if store is not None:
        store.flush()

    t = time.perf_counter()
    frame = compare(summaries, metrics=("cka",))
    t_pairs = time.perf_counter() - t
    model_pairs = k_total * (k_total + 1) // 2
    vaesim_total = t_summarise + t_pairs
    gram_flops = k_total * sum(n * n * p for _, p in LAYERS)
    results.update({
        "layer_pair_rows": len(frame), "model_pairs": model_pairs,
        "vaesim_summarise_s": t_summarise, "vaesim_pairs_s": t_pairs, "vaesim_total_s": vaesim_total,
        "generation_s_excluded": t_generate,
        "vaesim_gram_phase_gflops": gram_flops / t_summarise / 1e9,
        "vaesim_layer_pairs_per_s": len(frame) / vaesim_total,
    })
    if straight_times:
        per_pair = float(np.mean(straight_times))
        straight_total = per_pair * model_pairs
        sub = frame[(frame.a_model == 0) & (frame.b_model == 1)]
        ours = {(r.a_layer, r.b_layer): r.score for r in sub.itertuples()}
        diff = max(abs(ours[key] - value) for key, value in straight_scores.items())
        results.update({
            "straightforward_pair_samples_s": straight_times, "straightforward_per_pair_s": per_pair,
            "straightforward_total_s_estimated": straight_total,
            "straightforward_layer_pairs_per_s": len(frame) / straight_total,
            "speedup": straight_total / vaesim_total, "target_speedup": 0.8 * k_total,
            "max_abs_diff_vs_straightforward": diff,
        })
        t = time.perf_counter()
        f32 = straightforward_pair(kept[0], kept[1], same=False, dtype=np.float32)
        results["straightforward_float32_pair_s"] = time.perf_counter() - t
        results["straightforward_float32_max_abs_diff"] = max(abs(ours[key] - v) for key, v in f32.items())
        results.update(peer(kept, frame) if not args.skip_peer else {})
        results.update(procrustes(kept, k_total) if not args.skip_procrustes else {})
    results["peak_after"] = measure_peak(n)
    peak = max(results["peak_before"]["dsyrk_gflops"], results["peak_after"]["dsyrk_gflops"])
    results["vaesim_gram_phase_fraction_of_syrk_peak"] = results["vaesim_gram_phase_gflops"] / peak
    if spill_dir:
        del store
        shutil.rmtree(spill_dir, ignore_errors=True)
    return results


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
    print("\n=== all-pairs linear CKA (float64 products) ===")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"float64 peak dsyrk {max(r['peak_before']['dsyrk_gflops'], r['peak_after']['dsyrk_gflops']):.0f} GFLOP/s, "
          f"dgemm {max(r['peak_before']['dgemm_gflops'], r['peak_after']['dgemm_gflops']):.0f} GFLOP/s (best of before/after)")
    print(f"workload: n={r['n']}, K={r['checkpoints']} checkpoints, {r['layers']} layers, "
          f"{r['model_pairs']} checkpoint pairs, {r['layer_pair_rows']} layer pairs")
    print(f"vaesim: summarise {r['vaesim_summarise_s']:.1f} s + pairs {r['vaesim_pairs_s']:.1f} s = "
          f"{r['vaesim_total_s']:.1f} s ({r['vaesim_layer_pairs_per_s']:.0f} layer pairs/s); Gram phase "
          f"{r['vaesim_gram_phase_gflops']:.0f} GFLOP/s = {100 * r['vaesim_gram_phase_fraction_of_syrk_peak']:.0f}% "
          f"of the measured dsyrk peak (activation generation, {r['generation_s_excluded']:.0f} s, not counted)")
    if "speedup" in r:
        print(f"straightforward (Kornblith demo, float64): {r['straightforward_per_pair_s']:.1f} s per checkpoint pair "
              f"(mean of {len(r['straightforward_pair_samples_s'])} sampled pairs) x {r['model_pairs']} pairs = "
              f"{r['straightforward_total_s_estimated']:.0f} s estimated "
              f"({r['straightforward_layer_pairs_per_s']:.1f} layer pairs/s)")
        print(f"speed ratio vaesim / straightforward = {r['speedup']:.1f}x   (target 0.8 x K = {r['target_speedup']:.1f}x: "
              f"{'MET' if r['speedup'] >= r['target_speedup'] else 'NOT MET'})")
        print(f"agreement: max |vaesim - straightforward| = {r['max_abs_diff_vs_straightforward']:.2e}; "
              f"straightforward float32 Grams: {r['straightforward_float32_pair_s']:.1f} s per pair, "
              f"max |diff| = {r['straightforward_float32_max_abs_diff']:.2e}")
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
              f"{r['procrustes_speedup_at_K_estimated']:.1f}x estimated for all pairs of K={r['checkpoints']}; "
              f"max |diff| = {r['procrustes_max_abs_diff']:.2e}")
        la, lb = r["procrustes_wide_pair"]
        print(f"wide pair {la} x {lb} (p = 4096 > n, checkpoints 0 and 1): vaesim {r['procrustes_wide_vaesim_s']:.1f} s "
              f"(both QR summaries + the pair) vs Ding et al. {r['procrustes_wide_ding_s']:.1f} s: "
              f"{r['procrustes_wide_ding_s'] / r['procrustes_wide_vaesim_s']:.1f}x; |diff| = {r['procrustes_wide_abs_diff']:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=10)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
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
