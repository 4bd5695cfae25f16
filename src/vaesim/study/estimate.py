"""A plan before a run: tasks, disk and time per stage, from a short measured calibration.

:func:`calibrate` measures, on this machine and with the spec's own model,
batch size, layers and metrics: seconds per training step (a few real steps
of :func:`vaesim.training.train` on a procedural stand-in with the same
number of channels, so no data files are needed), the size of a checkpoint,
and the time and file size of extracting and summarising one checkpoint and
of comparing one model pair at two probe sizes. :func:`estimate` scales these
to the study: linearly in steps, runs and tasks; in the probe size ``n`` along
the power law through the two measured sizes (about ``n^2``: centred Grams are
``n x n``). The result is an estimate for sequential work on this machine.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from vaesim.study.plan import STAGES, StudyPlan

RESULT_ROW_BYTES = 40  # compressed Parquet bytes per similarity row (measured on the quick preset: ~35)


@dataclass(frozen=True)
class Calibration:
    """What one unit of each stage costs here: seconds and bytes, measured at probe sizes ``sizes``."""

    seconds_per_step: float
    checkpoint_bytes: int
    sizes: tuple[int, int]
    extract_seconds: tuple[float, float]
    summary_bytes: tuple[int, int]
    pair_seconds: tuple[float, float]  # one more model pair, once the models' summaries are prepared
    model_seconds: tuple[float, float]  # preparing one model's summaries inside a comparison
    seconds: float  # how long the calibration itself took
    busy: float = 1.0  # CPU time / (threads x wall time) while training: < 1 when other work shares the cores


@dataclass(frozen=True)
class StageEstimate:
    stage: str
    tasks: int
    bytes: int
    seconds: float
    what: str  # what the numbers count


def scale(measured: tuple[float, float], sizes: tuple[int, int], n: int) -> float:
    """Extrapolate two measurements at ``sizes`` to ``n`` along ``v = c n^p``, ``p`` kept within [1, 2]."""
    (v1, v2), (n1, n2) = measured, sizes
    if v1 <= 0 or v2 <= 0:
        return max(v1, v2) * n / n2
    power = min(2.0, max(1.0, math.log(v2 / v1) / math.log(n2 / n1)))
    return v2 * (n / n2) ** power


def _stand_in(num_channels: int) -> str:
    return "dsprites-procedural" if num_channels == 1 else "color-dsprites"


def calibrate(plan: StudyPlan, *, train_steps: int = 5, sizes: tuple[int, int] = (48, 96)) -> Calibration:
    """Measure one unit of each stage with ``plan``'s first run config (a few seconds on a CPU)."""
    import numpy as np

    from vaesim.activations import extract_activations
    from vaesim.data.registry import get_spec
    from vaesim.models import build_vae
    from vaesim.similarity import compare, save_summaries, summarise
    from vaesim.study.stages import resolve_device, train_config
    from vaesim.training import train

    started = time.perf_counter()
    spec = plan.spec
    task = plan.tasks["train"][0]
    channels = get_spec(task.run.dataset).num_channels
    base = train_config(task)
    warmup = 2
    config = type(base).from_dict({**base.to_dict(), "dataset": _stand_in(channels), "dataset_root": None,
                                   "steps": warmup + train_steps, "checkpoints": [warmup + train_steps],
                                   "monitor_every": 0, "validation_split": 0.0})
    marks: dict[int, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="vaesim-calibrate-") as folder:
        run_dir = Path(folder) / "run"
        train(config, run_dir, progress=False, device=resolve_device(task.device),
              callback=lambda finished: marks.__setitem__(finished, (time.perf_counter(), time.process_time())))
        (wall_0, cpu_0), (wall_1, cpu_1) = marks[warmup], marks[warmup + train_steps]
        seconds_per_step = (wall_1 - wall_0) / train_steps
        import torch

        busy = min(1.0, (cpu_1 - cpu_0) / max(torch.get_num_threads(), 1) / max(wall_1 - wall_0, 1e-9))
        checkpoint_bytes = sum(p.stat().st_size for p in (run_dir / "checkpoints").glob("step_*"))

        layers = spec.layer_names()
        model = build_vae(base.architecture, channels, base.latent_dim)
        rng = np.random.default_rng(0)
        extract_seconds, summary_bytes, pair_seconds, model_seconds = [], [], [], []
        for n in (16, *sizes):  # the first, small pass pays the one-time costs (imports, allocations): not timed
            images = rng.random((n, channels, 64, 64), dtype=np.float32)
            begin = time.perf_counter()
            activations = extract_activations(model, images, layers=tuple(layers), seed=0)
            summaries = {name: summarise(activations[name], name=name, metrics=tuple(spec.metrics))
                         for name in layers}
            path = Path(folder) / f"summary_{n}.npz"
            save_summaries(path, summaries)
            extract_seconds.append(time.perf_counter() - begin)
            summary_bytes.append(path.stat().st_size)
            # one call over 4 models and all their pairs, as a compare task batches them (the engine prepares
            # each model once and scores the pairs together): 6 pairs of different models + 4 self pairs (half)
            begin = time.perf_counter()
            compare({key: summaries for key in "abcd"}, metrics=tuple(spec.metrics))
            pair_seconds.append((time.perf_counter() - begin) / (6 + 4 * 0.5))
            model_seconds.append(0.0)
    return Calibration(seconds_per_step, checkpoint_bytes, tuple(sizes), tuple(extract_seconds[1:]),
                       tuple(summary_bytes[1:]), tuple(pair_seconds[1:]), tuple(model_seconds[1:]),
                       time.perf_counter() - started, busy)


def pair_weight(pair: tuple, comparison: str, n_layers: int) -> float:
    """Cost of a model pair relative to two different models (L x L layer pairs)."""
    a_run, a_step, b_run, b_step = pair
    if comparison == "factors":
        return 1.0 / n_layers
    return 0.5 if (a_run, a_step) == (b_run, b_step) else 1.0


def estimate(plan: StudyPlan, calibration: Calibration) -> list[StageEstimate]:
    """Tasks, disk bytes and seconds per stage of ``plan`` (sequential, on the calibrated machine)."""
    spec = plan.spec
    n = spec.probe.n
    n_layers = len(spec.layer_names())
    n_metrics = len(spec.metrics)
    runs = plan.tasks["train"]
    steps = sum(task.run.config["steps"] for task in runs)
    checkpoints = sum(len(task.run.steps) for task in runs)
    extracts = len(plan.tasks["extract"])
    pairs = [(task.comparison, pair) for task in plan.tasks["compare"] for pair in task.pairs]
    weighted = sum(pair_weight(pair, comparison, n_layers) for comparison, pair in pairs)
    models = sum(len({(p[0], p[1]) for p in task.pairs} | ({(p[2], p[3]) for p in task.pairs}
                                                           if task.comparison != "factors" else set()))
                 for task in plan.tasks["compare"])
    rows = sum(n_metrics * (n_layers if c == "factors" else
                            n_layers * (n_layers + 1) // 2 if (p[0], p[1]) == (p[2], p[3]) else n_layers**2)
               for c, p in pairs)
    channels_bytes = 64 * 64 * len(spec.datasets) * n  # uint8 probe images
    return [
        StageEstimate("probe", len(plan.tasks["probe"]), channels_bytes + int(scale(
            calibration.summary_bytes, calibration.sizes, n) / n_layers), 1.0 * len(plan.tasks["probe"]),
            f"{len(spec.datasets)} probe set(s) of {n} images"),
        StageEstimate("train", len(runs), checkpoints * calibration.checkpoint_bytes,
                      steps * calibration.seconds_per_step,
                      f"{len(runs)} runs x {steps // max(len(runs), 1):,} steps; {checkpoints} checkpoints of "
                      f"{calibration.checkpoint_bytes / 1e6:.1f} MB (weights + Adam state)"),
        StageEstimate("extract", extracts, int(extracts * scale(calibration.summary_bytes, calibration.sizes, n)),
                      extracts * scale(calibration.extract_seconds, calibration.sizes, n),
                      f"{extracts} checkpoints x {n_layers} layers on {n} probe images"),
        StageEstimate("compare", len(plan.tasks["compare"]), rows * RESULT_ROW_BYTES,
                      weighted * scale(calibration.pair_seconds, calibration.sizes, n)
                      + models * scale(calibration.model_seconds, calibration.sizes, n),
                      f"{len(pairs):,} model pairs, {rows:,} similarity rows"),
        StageEstimate("store", len(plan.tasks["store"]), len(runs) * 20_000, 1.0,
                      "runs.parquet, training_metrics.parquet, latents.parquet"),
    ]


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError  # pragma: no cover


def human_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def format_plan(plan: StudyPlan, estimates: list[StageEstimate] | None, calibration: Calibration | None) -> str:
    """The table ``vaesim study plan`` prints."""
    lines = [f"study '{plan.spec.name}': {len(plan.runs)} runs, {len(plan.all_tasks())} tasks"]
    if estimates is None:
        lines.append(f"  {'stage':8s} {'tasks':>7s}")
        lines += [f"  {stage:8s} {len(plan.tasks[stage]):>7d}" for stage in STAGES]
        return "\n".join(lines)
    lines.append(f"  {'stage':8s} {'tasks':>7s} {'disk':>10s} {'time':>10s}  what")
    for item in estimates:
        lines.append(f"  {item.stage:8s} {item.tasks:>7d} {human_bytes(item.bytes):>10s} "
                     f"{human_seconds(item.seconds):>10s}  {item.what}")
    lines.append(f"  {'total':8s} {sum(e.tasks for e in estimates):>7d} "
                 f"{human_bytes(sum(e.bytes for e in estimates)):>10s} "
                 f"{human_seconds(sum(e.seconds for e in estimates)):>10s}")
    import os

    lines.append(
        f"calibration ({calibration.seconds:.0f} s on this machine, {os.cpu_count()} cores, device "
        f"'{plan.spec.device}'): {calibration.seconds_per_step * 1000:.0f} ms per training step at batch "
        f"{plan.spec.training.batch_size}; at n={calibration.sizes[1]} probe images: extract "
        f"{calibration.extract_seconds[1]:.2f} s per checkpoint, compare {calibration.pair_seconds[1]:.3f} s per "
        f"model pair (batched as in a compare task); scaled to n={plan.spec.probe.n}.")
    total = sum(e.seconds for e in estimates)
    if calibration.busy < 0.8:
        lines.append(f"This machine is busy: training got {calibration.busy:.0%} of its threads' time; on an idle "
                     f"machine expect about {human_seconds(total * calibration.busy)} in all.")
    lines.append("Times are for sequential work on this machine as loaded now; parallel workers or a GPU divide "
                 "them. Disk excludes keep_activations.")
    return "\n".join(lines)
