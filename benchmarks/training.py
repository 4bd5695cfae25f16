"""Training throughput: ``vaesim.training.train``'s loop beside a plain PyTorch loop.

Same network (the conv VAE of Locatello et al. 2019), same batch size, same
optimiser (Adam, the paper's settings), same images held in memory; repeats
are interleaved (vaesim, plain, vaesim, plain, ...) and the median images/s
of each is reported with their ratio (target: vaesim / plain >= 0.95).

The vaesim number is the steady-state loop (timed from a warm-up step to the
last step through ``train``'s step callback: batch assembly from uint8
storage, objective hook, metrics logging every ``--log-every`` steps, NaN
checks) and, beside it, the whole ``train`` call including setup and the
final checkpoint.

    python benchmarks/training.py --steps 40 --batch-size 64 --repeats 3 [--device cuda]
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


def time_vaesim(images: np.ndarray, steps: int, warmup: int, batch_size: int, log_every: int, device) -> tuple[float, float]:
    """(steady-state images/s, whole-call images/s) of ``train``."""
    config = TrainConfig(
        dataset="benchmark", steps=steps, batch_size=batch_size, checkpoints=[], log_every=log_every, seed=0
    )
    stamps: dict[int, float] = {}

    def callback(step: int) -> None:
        if step in (warmup, steps):
            _sync(device)
            stamps[step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train(config, Path(tmp) / "run", dataset=ImageArray(images), progress=False, device=device, callback=callback)
        whole = time.perf_counter() - start
    steady = (steps - warmup) * batch_size / (stamps[steps] - stamps[warmup])
    return steady, steps * batch_size / whole


def time_plain(images: np.ndarray, steps: int, warmup: int, batch_size: int, device) -> float:
    """Images/s of the loop a user would write by hand: same network, batch, optimiser and loss."""
    torch.manual_seed(0)
    model = build_vae(num_channels=images.shape[1]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    data = torch.from_numpy(images).to(device)
    generator = torch.Generator(device="cpu").manual_seed(0)
    start = 0.0
    for step in range(steps):
        if step == warmup:
            _sync(device)
            start = time.perf_counter()
        index = torch.randint(0, data.shape[0], (batch_size,), generator=generator).to(device)
        x = data[index].float() / 255.0
        out = model(x)
        reconstruction = F.binary_cross_entropy_with_logits(out.logits, x, reduction="sum") / batch_size
        kl = 0.5 * (out.mean.square() + out.logvar.exp() - out.logvar - 1).sum(1).mean()
        loss = reconstruction + kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _sync(device)
    return (steps - warmup) * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    images = probe_images(args.images)
    print(f"device={device} threads={torch.get_num_threads()} steps={args.steps} (warm-up {args.warmup}) "
          f"batch={args.batch_size} repeats={args.repeats} log_every={args.log_every}")
    steady, whole, plain = [], [], []
    for repeat in range(args.repeats):
        s, w = time_vaesim(images, args.steps, args.warmup, args.batch_size, args.log_every, device)
        p = time_plain(images, args.steps, args.warmup, args.batch_size, device)
        steady.append(s), whole.append(w), plain.append(p)
        print(f"  repeat {repeat}: vaesim loop {s:8.1f} img/s   plain loop {p:8.1f} img/s   ratio {s / p:.3f}")
    median_steady, median_plain = statistics.median(steady), statistics.median(plain)
    print(f"median  vaesim train loop : {median_steady:8.1f} images/s")
    print(f"median  plain PyTorch loop: {median_plain:8.1f} images/s")
    print(f"median  whole train() call: {statistics.median(whole):8.1f} images/s (setup + final checkpoint included)")
    print(f"ratio vaesim / plain = {median_steady / median_plain:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
