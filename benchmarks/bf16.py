"""``training.precision: bf16-mixed`` against float32: speed per step side by side, and quality after training.

    python benchmarks/bf16.py [--steps 2000] [--seeds 0 1 2] [--batch-size 32] [--speed-steps 100 --repeats 3]

1. Speed: the same run (beta-VAE beta 4, procedural dSprites, conv VAE, one thread, as a study trains) for
   --speed-steps steps, float32 and bf16-mixed alternating --repeats times in this process; the median time
   per step of each and their ratio (start-up excluded: each block is timed from its first step's end).
2. Quality: each seed trained --steps steps (lr 1e-3, the evidence preset's optimiser) in both precisions;
   per run the mean loss, reconstruction and KL over the last quarter of the logged steps, side by side, and
   the difference bf16 - fp32 against the float32 runs' seed-to-seed spread (the tolerance: a precision
   change that moves the final loss by less than a change of seed does is not visible in the study).

Needs a CPU with bfloat16 support (AVX512-BF16 or AMX; training refuses elsewhere).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def timed_steps(precision: str, steps: int, batch_size: int) -> float:
    """Seconds per step of ``steps`` steps, timed from the end of the first step (start-up excluded)."""
    from vaesim.training import TrainConfig, train

    marks: list[float] = []
    config = TrainConfig(steps=steps + 1, batch_size=batch_size, lr=1e-3, params={"beta": 4.0},
                         checkpoints=[steps + 1], log_every=1000, precision=precision)
    with tempfile.TemporaryDirectory() as root:
        train(config, Path(root) / "run", progress=False, device="cpu", callback=lambda step: marks.append(
            time.perf_counter()))
    return (marks[-1] - marks[0]) / steps


def final_losses(precision: str, seed: int, steps: int, batch_size: int, root: Path) -> dict[str, float]:
    from vaesim.training import TrainConfig, read_metrics, train

    config = TrainConfig(steps=steps, batch_size=batch_size, lr=1e-3, params={"beta": 4.0}, seed=seed,
                         checkpoints=[steps], log_every=10, precision=precision)
    run = train(config, root / f"{precision}-{seed}", progress=False, device="cpu")
    metrics = read_metrics(run)
    tail = metrics[metrics["step"] > steps * 3 // 4]
    return {name: float(tail[name].mean()) for name in ("loss", "reconstruction", "kl")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--speed-steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    import torch

    from vaesim.training.loop import bf16_supported

    if not bf16_supported(torch.device("cpu")):
        raise SystemExit("bf16.py: this CPU has no bfloat16 support; nothing to compare")
    torch.set_num_threads(1)
    print(f"bf16-mixed vs float32, batch {args.batch_size}, one thread; load {os.getloadavg()[0]:.1f}")
    times: dict[str, list[float]] = {"32": [], "bf16-mixed": []}
    for _ in range(args.repeats):
        for precision in times:
            times[precision].append(timed_steps(precision, args.speed_steps, args.batch_size))
    fp32, bf16 = statistics.median(times["32"]), statistics.median(times["bf16-mixed"])
    print(f"speed: float32 {fp32 * 1000:.1f} ms/step, bf16-mixed {bf16 * 1000:.1f} ms/step (medians of "
          f"{args.repeats} x {args.speed_steps} steps): {fp32 / bf16:.2f}x; load {os.getloadavg()[0]:.1f}",
          flush=True)
    if args.skip_quality:
        return
    with tempfile.TemporaryDirectory() as root:
        rows = {(p, s): final_losses(p, s, args.steps, args.batch_size, Path(root)) for s in args.seeds
                for p in ("32", "bf16-mixed")}
    print(f"\nquality after {args.steps} steps (means over the last quarter of the logged steps)")
    print(f"{'seed':>4s} {'loss fp32':>10s} {'loss bf16':>10s} {'diff':>8s} {'rec fp32':>9s} {'rec bf16':>9s} "
          f"{'kl fp32':>8s} {'kl bf16':>8s}")
    for seed in args.seeds:
        a, b = rows[("32", seed)], rows[("bf16-mixed", seed)]
        print(f"{seed:>4d} {a['loss']:>10.2f} {b['loss']:>10.2f} {b['loss'] - a['loss']:>+8.2f} "
              f"{a['reconstruction']:>9.2f} {b['reconstruction']:>9.2f} {a['kl']:>8.2f} {b['kl']:>8.2f}")
    diffs = [rows[("bf16-mixed", s)]["loss"] - rows[("32", s)]["loss"] for s in args.seeds]
    spread = statistics.stdev(rows[("32", s)]["loss"] for s in args.seeds) if len(args.seeds) > 1 else float("nan")
    print(f"mean bf16 - fp32: {statistics.mean(diffs):+.2f} (largest |diff| {max(map(abs, diffs)):.2f}); float32 "
          f"seed-to-seed SD {spread:.2f}; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
