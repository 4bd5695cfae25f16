"""Two models compared layer by layer: vaesim's compare_models against pytorch-cka, side by side in one run.

Workload: two seeds of the paper's encoder (conv 32-32-64-64, kernel 4,
stride 2; dense 256; dense 10; untrained, different seeds), ``n`` probe
images of procedural dSprites (binary 64 x 64), the outputs of its 6 layers
(conv1 32,768 features ... mean 10), all 36 layer pairs, linear CKA, torch
on ``--threads`` threads, one DataLoader of ``--batch`` images for every route.

Timed, in the same run: ``--repeats`` rounds over the routes in alternating
order, each route in a fresh process (so that no route inherits another's
thread pools or allocations): a first call, whose peak resident memory above
the process's before it is reported, then the timed call; the median is
reported:

* pytorch-cka 1.1.3 ``compute_cka`` (minibatch unbiased-HSIC CKA, float32),
  when importable (``pip install --target /tmp/ckapkg pytorch-cka==1.1.3
  --no-deps`` and ``PYTHONPATH=/tmp/ckapkg``; it is not a vaesim dependency);
* vaesim ``LayerRecorder`` + ``compare`` (exact full-data CKA: every layer
  recorded whole, then summarised);
* ``compare_models`` (exact, streamed: bounded memory);
* ``compare_models(estimator="minibatch")`` (the estimator of pytorch-cka).

Checked: the exact routes agree (max |difference|); the minibatch route
against pytorch-cka in float32 (its own rounding: it forms uncentred float32
Grams) and in float64 (the same models and images in double precision:
the algorithm's values), with vaesim's scores clipped to [0, 1] as pytorch-cka
clips them.

    PYTHONPATH=/tmp/ckapkg python benchmarks/compare_models.py [--n 2000] [--batch 250] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vaesim.activations import LayerRecorder
from vaesim.similarity import compare, compare_models

LAYERS = ["conv1", "conv2", "conv3", "conv4", "fc", "mean"]
ROUTES = ["pytorch-cka", "recorder+compare", "compare_models", "compare_models minibatch"]


class Encoder(nn.Module):
    """The paper's encoder: 4 convolutions (kernel 4, stride 2) and 2 dense layers; outputs before the ReLUs."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(1, 32, 4, 2, 1)  # (B, 32, 32, 32)
        self.conv2 = nn.Conv2d(32, 32, 4, 2, 1)  # (B, 32, 16, 16)
        self.conv3 = nn.Conv2d(32, 64, 4, 2, 1)  # (B, 64, 8, 8)
        self.conv4 = nn.Conv2d(64, 64, 4, 2, 1)  # (B, 64, 4, 4)
        self.fc = nn.Linear(1024, 256)
        self.mean = nn.Linear(256, 10)

    def forward(self, x):
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = F.relu(conv(x))
        return self.mean(F.relu(self.fc(x.flatten(1))))


def probe_images(n: int) -> torch.Tensor:
    """``n`` procedural dSprites images (B, 1, 64, 64) float32 in {0, 1}."""
    from vaesim.data import get_dataset, make_probe_set

    probe = make_probe_set(get_dataset("dsprites-procedural"), n, seed=0)
    return torch.as_tensor(np.asarray(probe.images, dtype=np.float32)).reshape(n, 1, 64, 64)


def import_pytorch_cka():
    try:
        from cka import compute_cka
    except ImportError:
        return None
    return compute_cka


# ---------------------------------------------------------------- the routes


def run_pytorch_cka(model_a, model_b, loader):
    compute_cka = import_pytorch_cka()
    matrix = compute_cka(model_a, model_b, loader, layers=LAYERS, device="cpu", progress=False)[0]
    return matrix.double().numpy()  # (6, 6)


def run_recorder_compare(model_a, model_b, loader):
    activations = {}
    for key, model in (("a", model_a), ("b", model_b)):
        model.eval()
        with LayerRecorder(model, LAYERS) as recorder, torch.no_grad():
            for (images,) in loader:
                model(images)
        activations[key] = recorder.arrays()
    table = compare(activations, metrics=("cka",), model_pairs=[("a", "b")])
    return table["score"].to_numpy().reshape(len(LAYERS), len(LAYERS))


def run_compare_models(model_a, model_b, loader, estimator="exact"):
    table = compare_models(model_a, model_b, loader, layers=LAYERS, estimator=estimator)
    return table["score"].to_numpy().reshape(len(LAYERS), len(LAYERS))


def route_function(name: str):
    return {
        "pytorch-cka": run_pytorch_cka,
        "recorder+compare": run_recorder_compare,
        "compare_models": run_compare_models,
        "compare_models minibatch": lambda a, b, loader: run_compare_models(a, b, loader, "minibatch"),
    }[name]


# ---------------------------------------------------------------- memory


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_extra_memory(fn) -> int:
    """Largest resident memory while ``fn()`` runs, above the resident memory before it (sampled every 2 ms)."""
    before = rss_bytes()
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(peak[0], rss_bytes()) - before


# ---------------------------------------------------------------- main


def setup(args):
    torch.set_num_threads(args.threads)
    images = probe_images(args.n)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images), batch_size=args.batch)
    return Encoder(0).eval(), Encoder(1).eval(), images, loader


def route_child(args) -> None:
    """``--route ROUTE``: in this fresh process, a first call (its peak memory above the process's before it),
    then a timed call; prints ``seconds peak_bytes`` and saves the 6 x 6 scores to ``--scores``."""
    model_a, model_b, _images, loader = setup(args)
    fn = route_function(args.route)
    peak = peak_extra_memory(lambda: fn(model_a, model_b, loader))
    start, cpu_start = time.perf_counter(), time.process_time()
    scores = fn(model_a, model_b, loader)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    np.save(args.scores, scores)
    print(seconds, cpu, peak)


def run_route(args, route: str, scores_path: str) -> tuple[float, float, int, np.ndarray]:
    command = [sys.executable, __file__, "--route", route, "--scores", scores_path, "--n", str(args.n),
               "--batch", str(args.batch), "--threads", str(args.threads)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()
    return float(output[-3]), float(output[-2]), int(output[-1]), np.load(scores_path)


def loadavg() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the routes, in alternating order")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--route", choices=ROUTES, help=argparse.SUPPRESS)
    parser.add_argument("--scores", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.route:
        route_child(args)
        return
    routes = list(ROUTES)
    if import_pytorch_cka() is None:
        print("pytorch-cka is not importable: timing the vaesim routes only "
              "(pip install --target /tmp/ckapkg pytorch-cka==1.1.3 --no-deps; PYTHONPATH=/tmp/ckapkg)")
        routes.remove("pytorch-cka")
    print(f"n={args.n}, batch {args.batch}, {len(LAYERS)} layers per model (features 32768, 8192, 4096, 1024, 256, "
          f"10), {len(LAYERS) ** 2} layer pairs, torch threads {args.threads}; each route in a fresh process per "
          f"round (a first call, then the timed call); load average {loadavg()}", flush=True)
    seconds, cpu, peaks, values = {r: [] for r in routes}, {r: [] for r in routes}, {r: [] for r in routes}, {}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            for route in (routes if repeat % 2 == 0 else routes[::-1]):
                time_s, cpu_s, peak, values[route] = run_route(args, route, os.path.join(folder, "scores.npy"))
                seconds[route].append(time_s)
                cpu[route].append(cpu_s)
                peaks[route].append(peak)
            print(f"  round {repeat + 1}: " + ", ".join(f"{r} {seconds[r][-1]:.2f} s" for r in routes)
                  + f"; load average {loadavg()}", flush=True)
    median = {route: statistics.median(times) for route, times in seconds.items()}
    cpu_median = {route: statistics.median(times) for route, times in cpu.items()}
    base, cpu_base = median.get("pytorch-cka"), cpu_median.get("pytorch-cka")
    print(f"\n{'route':<26} {'median s':>9} {'min s':>7} {'ratio':>6} {'CPU s':>7} {'ratio':>6} {'peak memory':>12}")
    for route in routes:
        ratio = f"{median[route] / base:.2f}" if base else "-"
        cpu_ratio = f"{cpu_median[route] / cpu_base:.2f}" if cpu_base else "-"
        print(f"{route:<26} {median[route]:9.3f} {min(seconds[route]):7.3f} {ratio:>6} {cpu_median[route]:7.2f} "
              f"{cpu_ratio:>6} {max(peaks[route]) / 2**20:8.0f} MiB")
    print("ratio: to pytorch-cka (wall-clock medians; CPU s: process CPU time of all threads, less sensitive to "
          "other processes on the machine)")
    if base:
        for what, table in (("wall", median), ("CPU", cpu_median)):
            print(f"{what}: compare_models exact {table['compare_models'] / table['pytorch-cka']:.2f}x pytorch-cka "
                  f"(target <= 2); minibatch {table['pytorch-cka'] / table['compare_models minibatch']:.2f}x as fast "
                  "(target >= 2)")
    print("recorder+compare / compare_models exact (wall): "
          f"{median['recorder+compare'] / median['compare_models']:.2f}")
    print("peak memory: resident memory above the process's before the route's first call (largest over rounds)")

    exact_gap = np.abs(values["compare_models"] - values["recorder+compare"]).max()
    print(f"\nmax |compare_models exact - recorder+compare| = {exact_gap:.2e}")
    minibatch = np.clip(values["compare_models minibatch"], 0.0, 1.0)
    if "pytorch-cka" in values:
        model_a, model_b, images, _loader = setup(args)
        double_loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images.double()),
                                                    batch_size=args.batch)
        double = run_pytorch_cka(model_a.double(), model_b.double(), double_loader)
        print(f"max |compare_models minibatch (clipped to [0, 1]) - pytorch-cka float32| = "
              f"{np.abs(minibatch - values['pytorch-cka']).max():.2e}")
        print(f"max |compare_models minibatch (clipped) - pytorch-cka float64| = {np.abs(minibatch - double).max():.2e}"
              f"; pytorch-cka float32 vs float64: {np.abs(values['pytorch-cka'] - double).max():.2e}")
    print(f"max |minibatch - exact| (the estimators differ: not an error) = "
          f"{np.abs(values['compare_models minibatch'] - values['compare_models']).max():.3f}")
    print(f"\nload average at the end {loadavg()}")


if __name__ == "__main__":
    main()
