"""Data throughput beside the training throughput of the paper's network, in one run.

Prints, on this machine:
  1. procedural dSprites rendering, images/s (bool masks, and float32 batches);
  2. training-batch assembly, images/s (``iterate_batches`` and a torch
     DataLoader over ``torch_dataset()`` with the seeded batch sampler) for the
     procedural renderer, the colour/noisy variants and the in-memory digits;
  3. training images/s of the paper's network (Locatello et al. conv VAE,
     batch 64, Bernoulli + KL, Adam), from ``vaesim.models`` when present,
     else a plain PyTorch copy of the same architecture;
and the ratio data/training: above 1 means data assembly never slows training.

Usage: python benchmarks/data.py [--seconds 3] [--threads N] [--grid-png PATH]
``--grid-png`` also writes a contact sheet of rendered sprites (each row sweeps
one factor) to PATH.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from vaesim.data import get_dataset, render_dsprites
from vaesim.data.procedural import FACTOR_SIZES


def rate(fn, images_per_call: int, seconds: float) -> float:
    """Images/s of ``fn`` over at least ``seconds`` (after one warm-up call)."""
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls * images_per_call / elapsed


def paper_network(num_channels: int = 1):
    """(model, loss_fn) for the paper's conv VAE; loss = Bernoulli rec + KL (beta = 1)."""
    try:
        from vaesim.models import build_vae, kl_per_dimension, reconstruction_loss

        model = build_vae("conv", num_channels=num_channels, latent_dim=10)

        def loss_fn(x):
            out = model(x)
            return reconstruction_loss(x, out.logits).mean() + kl_per_dimension(out.mean, out.logvar).sum()

        return model, loss_fn, "vaesim.models.build_vae"
    except ImportError:
        return _plain_network(num_channels)


def _plain_network(num_channels: int):
    nn = torch.nn
    encoder = nn.Sequential(
        nn.Conv2d(num_channels, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(32, 64, 2, 2, 0), nn.ReLU(), nn.Conv2d(64, 64, 2, 2, 0), nn.ReLU(),
        nn.Flatten(), nn.Linear(1024, 256), nn.ReLU(), nn.Linear(256, 20),
    )
    decoder = nn.Sequential(
        nn.Linear(10, 256), nn.ReLU(), nn.Linear(256, 1024), nn.ReLU(), nn.Unflatten(1, (64, 4, 4)),
        nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, num_channels, 4, 2, 1),
    )
    model = nn.ModuleDict({"encoder": encoder, "decoder": decoder})

    def loss_fn(x):
        mean, logvar = encoder(x).chunk(2, dim=1)
        z = mean + torch.exp(logvar / 2) * torch.randn_like(mean)
        logits = decoder(z)
        rec = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mean.square() + logvar.exp() - logvar - 1).sum(1)
        return (rec + kl).mean()

    return model, loss_fn, "plain PyTorch (vaesim.models not found)"


def training_rate(seconds: float, batch_size: int = 64) -> tuple[float, str]:
    torch.manual_seed(0)
    model, loss_fn, source = paper_network(1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    batch = torch.from_numpy(get_dataset("dsprites-procedural").images(np.arange(batch_size) * 9973))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(batch).backward()
        optimizer.step()

    return rate(step, batch_size, seconds), source


def write_grid_png(path: str) -> None:
    """Contact sheet: for each shape, rows sweep scale, orientation (0..2pi), posX and posY."""
    import matplotlib.image

    columns = 10
    rows = []
    for shape in range(3):
        sweeps = [
            [[shape, s, 0, 16, 16] for s in np.linspace(0, 5, columns).round().astype(int)],
            [[shape, 5, o, 16, 16] for o in np.linspace(0, 39, columns).round().astype(int)],
            [[shape, 3, 5, x, 16] for x in np.linspace(0, 31, columns).round().astype(int)],
            [[shape, 3, 5, 16, y] for y in np.linspace(0, 31, columns).round().astype(int)],
        ]
        for sweep in sweeps:
            rows.append(render_dsprites(np.array(sweep)))
    pad = 2
    sheet = np.full((len(rows) * (64 + pad) + pad, columns * (64 + pad) + pad), 0.35)
    for r, masks in enumerate(rows):
        for c, mask in enumerate(masks):
            top, left = pad + r * (64 + pad), pad + c * (64 + pad)
            sheet[top : top + 64, left : left + 64] = mask
    matplotlib.image.imsave(path, sheet, cmap="gray", vmin=0, vmax=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--grid-png", default=None, help="also write a rendered grid PNG here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.grid_png:
        write_grid_png(args.grid_png)
        print(f"wrote {args.grid_png}")
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, torch {torch.__version__}")

    rng = np.random.default_rng(0)
    procedural = get_dataset("dsprites-procedural")
    rows = []
    for batch in (64, 1024):
        factors = np.stack([rng.integers(0, s, batch) for s in FACTOR_SIZES], axis=1)
        rows.append((f"procedural render, bool masks, batch {batch}", rate(lambda: render_dsprites(factors), batch, args.seconds)))
    idx = rng.integers(0, len(procedural), 64)
    rows.append(("procedural images(), float32, batch 64", rate(lambda: procedural.images(idx), 64, args.seconds)))

    def assembly(ds, batch=64):
        batches = ds.iterate_batches(batch, seed=0)
        return rate(lambda: next(batches), batch, args.seconds)

    def loader(ds, batch=64):
        it = iter(torch.utils.data.DataLoader(ds.torch_dataset(), batch_sampler=ds.batch_sampler(batch, seed=0)))
        return rate(lambda: next(it), batch, args.seconds)

    rows.append(("batch assembly, dsprites-procedural, iterate_batches(64)", assembly(procedural)))
    rows.append(("batch assembly, dsprites-procedural, DataLoader(64)", loader(procedural)))
    for name in ("color-dsprites", "noisy-dsprites", "digits"):
        rows.append((f"batch assembly, {name}, iterate_batches(64)", assembly(get_dataset(name))))
    train, source = training_rate(args.seconds)

    width = max(len(label) for label, _ in rows) + 2
    for label, value in rows:
        print(f"{label:<{width}} {value:>10.0f} images/s   {value / train:>7.1f}x training")
    print(f"{'training, paper network, batch 64 (' + source + ')':<{width}} {train:>10.0f} images/s")


if __name__ == "__main__":
    main()
