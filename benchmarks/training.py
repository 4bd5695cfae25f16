"""Training throughput: ``vaesim.training.train``'s loop beside a plain PyTorch loop.

Same network (the conv VAE of Locatello et al. 2019), same batch size, same
optimiser (Adam, the paper's settings), same images held in memory; repeats
are interleaved (vaesim, plain, vaesim, plain, ...) and the median images/s
of each is reported with their ratio (target: vaesim / plain >= 0.95).

Two measures, both after ``--warmup`` steps: the run's throughput (first
timed step to the last) and the median time of one step (robust when other
processes share the CPU: a step that was preempted does not move the
median). The vaesim loop is timed through ``train``'s step callback, so it
includes batch assembly from uint8 storage, the objective hook, metrics every
``--log-every`` steps and the NaN checks; the whole ``train`` call (setup and
final checkpoint included) is reported beside it. On a GPU every timed step
is synchronised in both loops.

    python benchmarks/training.py --steps 40 --batch-size 64 --repeats 3 [--device cuda]

``--short-run STEPS`` instead trains two beta-VAEs (beta 1 and ``--large-beta``)
on ``dsprites-procedural`` with the posterior-collapse monitor on, and prints
reconstruction loss and active latent dimensions through training (the
numbers quoted in the training issue's closing note).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vaesim.models import build_vae
from vaesim.training import ImageArray, TrainConfig, train


def probe_images(n: int) -> np.ndarray:
    """uint8 (n, 1, 64, 64) dSprites-style images (procedural dSprites when available)."""
    try:
        from vaesim.data import get_dataset

        dataset = get_dataset("dsprites-procedural")
        indices = np.random.default_rng(0).choice(len(dataset), n, replace=False)
        return (dataset.images(np.sort(indices)) * 255).round().astype(np.uint8)
    except ImportError:
        rng = np.random.default_rng(0)
        return ((rng.random((n, 1, 64, 64)) > 0.8) * 255).astype(np.uint8)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _clock() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process)."""
    return time.perf_counter(), time.process_time()


def _step_times(stamps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(stamps, stamps[1:])]


def _span(stamps: list[tuple[float, float]]) -> tuple[float, float]:
    return stamps[-1][0] - stamps[0][0], stamps[-1][1] - stamps[0][1]


def time_vaesim(images: np.ndarray, steps: int, warmup: int, batch_size: int, log_every: int, device):
    """(per-step seconds after warm-up, timed-run seconds, whole-call seconds) of ``train``."""
    config = TrainConfig(
        dataset="benchmark", steps=steps, batch_size=batch_size, checkpoints=[], log_every=log_every, seed=0
    )
    stamps: list[tuple[float, float]] = []

    def callback(step: int) -> None:
        if step >= warmup:
            _sync(device)
            stamps.append(_clock())

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train(config, Path(tmp) / "run", dataset=ImageArray(images), progress=False, device=device, callback=callback)
        whole = time.perf_counter() - start
    return _step_times(stamps), _span(stamps), whole


def time_plain(images: np.ndarray, steps: int, warmup: int, batch_size: int, device):
    """(per-step seconds after warm-up, timed-run seconds) of the loop a user would write by hand:
    same network, batch, optimiser and loss (Bernoulli reconstruction + KL)."""
    torch.manual_seed(0)
    model = build_vae(num_channels=images.shape[1]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    data = torch.from_numpy(images).to(device)
    generator = torch.Generator(device="cpu").manual_seed(0)
    stamps: list[tuple[float, float]] = []
    for step in range(1, steps + 1):
        index = torch.randint(0, data.shape[0], (batch_size,), generator=generator).to(device)
        x = data[index].float() / 255.0
        out = model(x)
        reconstruction = F.binary_cross_entropy_with_logits(out.logits, x, reduction="sum") / batch_size
        kl = 0.5 * (out.mean.square() + out.logvar.exp() - out.logvar - 1).sum(1).mean()
        loss = reconstruction + kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            _sync(device)
            stamps.append(_clock())
    return _step_times(stamps), _span(stamps)


def short_run(steps: int, batch_size: int, lr: float, large_beta: float, out: str, device) -> None:
    """Reconstruction falls; with a large beta, active dimensions drop (claim 3's monitor)."""
    from vaesim.training import read_metrics

    every = max(1, steps // 8)
    for beta in (1.0, large_beta):
        config = TrainConfig(
            dataset="dsprites-procedural", objective="beta_vae", params={"beta": beta}, steps=steps,
            batch_size=batch_size, lr=lr, checkpoints=f"every:{every}", log_every=every, monitor_every=every, seed=0,
        )
        run_dir = Path(out) / f"beta_{beta:g}"
        start = time.perf_counter()
        train(config, run_dir, progress=False, device=device)
        metrics = read_metrics(run_dir)
        print(f"beta={beta:g}: {steps} steps, batch {batch_size}, lr {lr:g} ({time.perf_counter() - start:.0f} s; {run_dir})")
        print(f"  {'step':>6s} {'reconstruction':>15s} {'kl':>8s} {'active_dims':>12s} {'cka(mean,sample)':>17s}")
        for _, row in metrics.dropna(subset=["active_dims"]).iterrows():
            print(f"  {int(row.step):6d} {row.reconstruction:15.1f} {row.kl:8.2f} {int(row.active_dims):12d} "
                  f"{row.cka_mean_sample:17.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--short-run", type=int, default=0, metavar="STEPS", help="run the beta 1 vs large-beta demo")
    parser.add_argument("--large-beta", type=float, default=16.0)
    parser.add_argument("--lr", type=float, default=5e-4, help="learning rate of --short-run")
    parser.add_argument("--out", default="short-run", help="run directories of --short-run")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.short_run:
        short_run(args.short_run, args.batch_size, args.lr, args.large_beta, args.out, device)
        return
    images = probe_images(args.images)
    print(f"device={device} threads={torch.get_num_threads()} steps={args.steps} (warm-up {args.warmup}) "
          f"batch={args.batch_size} repeats={args.repeats} log_every={args.log_every}")
    vaesim_steps, plain_steps, vaesim_runs, plain_runs, whole_runs = [], [], [], [], []
    timed_images = (args.steps - args.warmup) * args.batch_size
    for repeat in range(args.repeats):
        steps_v, run_v, whole = time_vaesim(images, args.steps, args.warmup, args.batch_size, args.log_every, device)
        steps_p, run_p = time_plain(images, args.steps, args.warmup, args.batch_size, device)
        vaesim_steps += steps_v
        plain_steps += steps_p
        vaesim_runs.append(run_v)
        plain_runs.append(run_p)
        whole_runs.append(args.steps * args.batch_size / whole)
        print(f"  repeat {repeat}: vaesim {timed_images / run_v[0]:8.1f} img/s   plain {timed_images / run_p[0]:8.1f} img/s   "
              f"wall ratio {run_p[0] / run_v[0]:.3f}   CPU-time ratio {run_p[1] / run_v[1]:.3f}")

    def rate(samples, which, per):
        return per / statistics.median(s[which] for s in samples)

    rows = [
        ("median step, wall", rate(vaesim_steps, 0, args.batch_size), rate(plain_steps, 0, args.batch_size)),
        ("median step, CPU time", rate(vaesim_steps, 1, args.batch_size), rate(plain_steps, 1, args.batch_size)),
        ("median run, wall", rate(vaesim_runs, 0, timed_images), rate(plain_runs, 0, timed_images)),
        ("median run, CPU time", rate(vaesim_runs, 1, timed_images), rate(plain_runs, 1, timed_images)),
    ]
    print(f"{'measure':24s} {'vaesim img/s':>13s} {'plain img/s':>12s} {'ratio':>7s}")
    for label, ours, theirs in rows:
        print(f"{label:24s} {ours:13.1f} {theirs:12.1f} {ours / theirs:7.3f}")
    print(f"whole train() call (setup + final checkpoint): {statistics.median(whole_runs):.1f} images/s")
    print("target: ratio >= 0.95 (CPU-time rows are the robust ones when other processes share the CPU)")


if __name__ == "__main__":
    main()
