"""Training throughput: ``vaesim.training.train``'s loop beside a plain PyTorch loop.

Same network (the conv VAE of Locatello et al. 2019), same batch size, same
optimiser (Adam, the paper's settings), same loss (Bernoulli reconstruction +
KL), same images held in memory as uint8.

The two loops are interleaved step by step in one process: ``train`` calls
its step callback after every update, and the callback runs one step of the
plain loop. Each pair of steps thus shares the machine's conditions, which
matters when other processes share the CPU. Reported: images/s of each loop
(total time over all timed steps, the vaesim side including its metrics
logging every ``--log-every`` steps, NaN checks, batch assembly and the
objective hook), the median of the per-pair ratios, and the whole ``train``
call (setup and final checkpoint included). vaesim trains the conv network in
the channels_last layout (``--vaesim-layout nchw`` measures its NCHW path
instead); the plain loop is NCHW. Target: vaesim / plain NCHW >= 1.3.
On a GPU every timed step is synchronised in both loops.

    python benchmarks/training.py --steps 40 --batch-size 64 --repeats 3 [--device cuda] [--vaesim-layout nchw]

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
from vaesim.models.layers import with_torch_layers
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


class PlainLoop:
    """The loop a user would write by hand: same network built from torch's own layers, batch, optimiser, loss."""

    def __init__(self, images: np.ndarray, batch_size: int, device: torch.device) -> None:
        torch.manual_seed(0)
        self.model = with_torch_layers(build_vae(num_channels=images.shape[1])).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
        self.data = torch.from_numpy(images).to(device)
        self.generator = torch.Generator(device="cpu").manual_seed(0)
        self.batch_size, self.device = batch_size, device

    def step(self) -> None:
        index = torch.randint(0, self.data.shape[0], (self.batch_size,), generator=self.generator).to(self.device)
        x = self.data[index].float() / 255.0
        out = self.model(x)
        reconstruction = F.binary_cross_entropy_with_logits(out.logits, x, reduction="sum") / self.batch_size
        kl = 0.5 * (out.mean.square() + out.logvar.exp() - out.logvar - 1).sum(1).mean()
        loss = reconstruction + kl
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def paired_run(images: np.ndarray, steps: int, warmup: int, batch_size: int, log_every: int, device,
               channels_last: bool | None = None, compile: bool = False):
    """[(vaesim step seconds, plain step seconds)] after warm-up, and the seconds of the whole ``train``
    call less the plain steps run inside it (setup and final checkpoint included)."""
    plain = PlainLoop(images, batch_size, device)
    config = TrainConfig(
        dataset="benchmark", steps=steps, batch_size=batch_size, checkpoints=[], log_every=log_every, seed=0
    )
    pairs: list[tuple[float, float]] = []
    previous: list[float] = []
    plain_seconds: list[float] = []

    def callback(step: int) -> None:
        _sync(device)
        reached = time.perf_counter()
        plain.step()
        _sync(device)
        after = time.perf_counter()
        plain_seconds.append(after - reached)
        if step > warmup:
            pairs.append((reached - previous[-1], after - reached))
        previous.append(after)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train(config, Path(tmp) / "run", dataset=ImageArray(images), progress=False, device=device, callback=callback,
              channels_last=channels_last, compile=compile)
        whole = time.perf_counter() - start
    return pairs, whole - sum(plain_seconds)


def child_rate(kind: str, images: np.ndarray, steps: int, warmup: int, batch_size: int, log_every: int,
               device) -> float:
    """images/s of one loop alone in this process, after ``warmup`` steps (compiling included in warm-up)."""
    if kind == "plain":
        plain = PlainLoop(images, batch_size, device)
        for _ in range(warmup):
            plain.step()
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            plain.step()
        _sync(device)
        return steps * batch_size / (time.perf_counter() - start)
    marks: list[float] = []

    def callback(step: int) -> None:
        if step == warmup or step == warmup + steps:
            _sync(device)
            marks.append(time.perf_counter())

    config = TrainConfig(dataset="benchmark", steps=warmup + steps, batch_size=batch_size, checkpoints=[],
                         log_every=log_every, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        train(config, Path(tmp) / "run", dataset=ImageArray(images), progress=False, device=device, callback=callback,
              compile=kind == "vaesim-compile")
    return steps * batch_size / (marks[1] - marks[0])


def process_runs(args) -> None:
    """Each loop in its own fresh process, alternated: the plain loop with the runtimes' own thread settings
    (``VAESIM_WAIT=spin``: what a user's script gets), vaesim with its defaults (and compiled, if asked)."""
    import json
    import os
    import subprocess
    import sys

    kinds = ["plain", "vaesim"] + (["vaesim-compile"] if args.compile else [])
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    print(f"separate processes, alternated: {', '.join(kinds)}; steps={args.steps} (warm-up {args.warmup}) "
          f"batch={args.batch_size} repeats={args.repeats}")
    for repeat in range(args.repeats):
        for kind in kinds:
            from vaesim.utils.threads import WAIT_ENV_KEYS

            # importing vaesim here set its wait policy in os.environ: start each child from the runtimes' defaults
            env = {k: v for k, v in os.environ.items()
                   if k not in ("VAESIM_WAIT", "VAESIM_SPIN_WAIT", *WAIT_ENV_KEYS)}
            if kind == "plain":
                env["VAESIM_WAIT"] = "spin"
            command = [sys.executable, __file__, "--child", kind, "--steps", str(args.steps), "--warmup",
                       str(args.warmup), "--batch-size", str(args.batch_size), "--images", str(args.images),
                       "--device", args.device, "--log-every", str(args.log_every)]
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            rates[kind].append(json.loads(out.stdout.strip().splitlines()[-1])["rate"])
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"
        print(f"  repeat {repeat}: " + "   ".join(f"{k} {rates[k][-1]:7.1f} img/s" for k in kinds) + f"   (load {load})")
    plain = statistics.median(rates["plain"])
    for kind in kinds:
        print(f"{kind:15s} median {statistics.median(rates[kind]):7.1f} images/s   ratio to plain "
              f"{statistics.median(rates[kind]) / plain:.3f}")


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
    parser.add_argument("--vaesim-layout", choices=("auto", "nchw"), default="auto",
                        help="vaesim's layout: auto (channels_last for the conv network) or nchw (the previous path)")
    parser.add_argument("--short-run", type=int, default=0, metavar="STEPS", help="run the beta 1 vs large-beta demo")
    parser.add_argument("--large-beta", type=float, default=16.0)
    parser.add_argument("--lr", type=float, default=5e-4, help="learning rate of --short-run")
    parser.add_argument("--compile", action="store_true", help="also measure vaesim with torch.compile")
    parser.add_argument("--processes", action="store_true",
                        help="each loop alone in its own process (plain with the runtimes' default threads)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="short-run", help="run directories of --short-run")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.short_run:
        short_run(args.short_run, args.batch_size, args.lr, args.large_beta, args.out, device)
        return
    if args.processes:
        process_runs(args)
        return
    images = probe_images(args.images)
    if args.child:
        import json

        print(json.dumps({"rate": child_rate(args.child, images, args.steps, args.warmup, args.batch_size,
                                             args.log_every, device)}))
        return
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"
    print(f"device={device} threads={torch.get_num_threads()} steps={args.steps} (warm-up {args.warmup}) "
          f"batch={args.batch_size} repeats={args.repeats} log_every={args.log_every} vaesim layout={args.vaesim_layout} "
          f"load average {load}")
    pairs: list[tuple[float, float]] = []
    whole_rates = []
    for repeat in range(args.repeats):
        run_pairs, whole = paired_run(images, args.steps, args.warmup, args.batch_size, args.log_every, device,
                                      channels_last=False if args.vaesim_layout == "nchw" else None,
                                      compile=args.compile)
        pairs += run_pairs
        whole_rates.append(args.steps * args.batch_size / whole)
        ours, theirs = sum(v for v, _ in run_pairs), sum(p for _, p in run_pairs)
        print(f"  repeat {repeat}: vaesim {len(run_pairs) * args.batch_size / ours:8.1f} img/s   "
              f"plain {len(run_pairs) * args.batch_size / theirs:8.1f} img/s   ratio {theirs / ours:.3f}")
    ours, theirs = sum(v for v, _ in pairs), sum(p for _, p in pairs)
    images_timed = len(pairs) * args.batch_size
    print(f"vaesim train loop : {images_timed / ours:8.1f} images/s  ({len(pairs)} steps)")
    print(f"plain PyTorch loop: {images_timed / theirs:8.1f} images/s  ({len(pairs)} steps)")
    print(f"ratio vaesim / plain, total time: {theirs / ours:.3f}   median of per-step pairs: "
          f"{statistics.median(p / v for v, p in pairs):.3f}   (target >= 1.3 with the default layout)")
    print(f"whole train() call (setup + final checkpoint, plain steps excluded): "
          f"{statistics.median(whole_rates):.1f} images/s (median of repeats)")


if __name__ == "__main__":
    main()
