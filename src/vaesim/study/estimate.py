"""A plan before a run: tasks, disk and time per stage, from work counts and measured rates.

Each stage's time is its *work* counted from the plan (training steps,
images through the network, floating-point operations of every layer
summary and every layer pair, disentanglement samples) divided by a *rate*
measured on this machine by :func:`calibrate`, at a size where that work
dominates, the way a study task runs it (torch and BLAS on one thread):

* training: seconds per step of the spec's network and batch (runs train side
  by side, one per core, on the CPU);
* extraction: seconds per image through the network, and flop rates of the
  summaries' kernels (float32 Gram tiles, float64 GEMM, Householder QR,
  centring per value), layers side by side on the cores;
* comparison: float64 GEMM (CKA inner products of packed Grams, Procrustes
  cross blocks and their Grams) and the symmetric eigensolver (seconds per
  ``s^3``), layer pairs side by side on the cores;
* disentanglement: one evaluation at two small protocol fractions and one UDR
  at two sample counts, fitted as ``a + b x`` and scaled to the spec.

Disk is counted exactly from the summary formats (:mod:`vaesim.similarity.summary`),
the checkpoint size measured, and the result rows. Under load the measured
rates are lower and the estimate follows the load it was made under.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from vaesim.study.measures import plugin_metrics
from vaesim.study.plan import (
    STAGES,
    CompareTask,
    DisentangleTask,
    ExtractTask,
    StudyPlan,
    UDRTask,
    noise_layers,
    task_layer_pairs,
)
from vaesim.study.summary_cache import cache_selection, read_checkpoints, selected_checkpoints, with_cache

RESULT_ROW_BYTES = 40  # compressed Parquet bytes per similarity row (measured on the quick preset: ~35)
#: a compare task's own cost beside its arithmetic: reading and verifying its inputs, writing its table
COMPARE_TASK_SECONDS = 0.5
READ_AND_HASH_RATE = 0.5e9  # bytes/s: np.load of a summary file plus its SHA-256 check
#: an extract task's own cost beside the forward pass and the summaries: loading and verifying the checkpoint and
#: the probe set, writing the latents table and the summary file with their checksums (measured here: ~1 s)
EXTRACT_TASK_SECONDS = 1.0
LATENTS_FILE_BYTES = 12_000  # one checkpoint's latents.parquet and its checksum (measured: ~8 KB at 10 dims)
RUN_LOG_BYTES_PER_STEP = 400  # metrics.jsonl per logged step, checkpoint JSON and sums (measured: ~250)
#: ``n^2 p`` from which a Gram is formed in mixed precision (vaesim.similarity.summary.MIXED_MIN_WORK)
_MIXED_MIN_WORK = 2**27


@dataclass(frozen=True)
class Calibration:
    """Rates measured here, one thread each (as study tasks compute), and what the calibration took.

    Flop rates in flop/s; ``eig_seconds_per_cube``: seconds of ``eigvalsh`` per ``s^3`` of an ``s x s``
    matrix; ``disentangle_seconds``: seconds at ``disentangle_fractions``; ``udr_seconds``: one UDR group
    of two runs at ``udr_points``.
    """

    seconds_per_step: float
    checkpoint_bytes: int
    forward_seconds_per_image: float
    gram32_rate: float
    gemm64_rate: float
    qr64_rate: float
    centre_seconds_per_value: float
    eig_seconds_per_cube: float
    disentangle_fractions: tuple[float, float]
    disentangle_seconds: tuple[float, float]
    udr_points: tuple[int, int]
    udr_seconds: tuple[float, float]
    cores: int
    seconds: float  # how long the calibration itself took
    pair_overhead_seconds: float = 0.0  # per layer pair and metric: the engine's bookkeeping, rows, the table
    busy: float = 1.0  # CPU time / wall time while training one thread: < 1 when other work shares the cores
    load: float = float("nan")  # the 1-minute load average when the calibration started (os.getloadavg)
    #: seconds of singular values (``np.linalg.svd``, no vectors) per ``s^2 l`` of an ``l x s`` block, ``s <= l``
    #: (0: not measured; priced as ``eigvalsh``'s rate x 4)
    svd_seconds_per_cube: float = 0.0


@dataclass(frozen=True)
class StageEstimate:
    stage: str
    tasks: int
    bytes: int
    seconds: float
    what: str  # what the numbers count


def linear(measured: tuple[float, float], at: tuple[float, float], x: float) -> float:
    """``a + b x`` through two measurements (``b >= 0``, ``a >= 0``), evaluated at ``x``."""
    (v1, v2), (x1, x2) = measured, at
    slope = max(0.0, (v2 - v1) / (x2 - x1)) if x2 != x1 else 0.0
    intercept = max(0.0, v1 - slope * x1)
    return intercept + slope * x


def _stand_in(num_channels: int) -> str:
    return "dsprites-procedural" if num_channels == 1 else "color-dsprites"


def _timed(fn, repeats: int = 3) -> float:
    """Best of ``repeats`` wall times of ``fn()`` (after one untimed call)."""
    fn()
    best = math.inf
    for _ in range(repeats):
        begin = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - begin)
    return best


def measure_kernels() -> dict[str, float]:
    """Single-thread rates of the summary and pair kernels, each at a size where it dominates."""
    import numpy as np

    from vaesim.similarity.summary import tiled_gram
    from vaesim.utils.threads import single_threaded_blas

    rng = np.random.default_rng(0)
    x32 = rng.standard_normal((512, 2048), dtype=np.float32)
    x64 = rng.standard_normal((512, 2048))
    tall = rng.standard_normal((2048, 256))
    square = rng.standard_normal((384, 384))
    square = square @ square.T
    with single_threaded_blas():
        gram32 = 512 * 512 * 2048 / _timed(lambda: tiled_gram(x32))
        gemm64 = 2 * 512 * 512 * 2048 / _timed(lambda: x64 @ x64.T.copy())
        qr64 = (2 * 2048 * 256**2 - 2 / 3 * 256**3) / _timed(lambda: np.linalg.qr(tall, mode="r"))
        eig = _timed(lambda: np.linalg.eigvalsh(square)) / 384**3
        block = rng.standard_normal((384, 256))  # a cross block of two non-tall layers (the SVD route)
        svd = _timed(lambda: np.linalg.svd(block, compute_uv=False)) / (256**2 * 384)
    centre = _timed(lambda: (x64 - x64.mean(0)) * 1.0) / x64.size
    return {"gram32_rate": gram32, "gemm64_rate": gemm64, "qr64_rate": qr64, "eig_seconds_per_cube": eig,
            "centre_seconds_per_value": centre, "svd_seconds_per_cube": svd}


def _load_average() -> float:
    """The 1-minute load average (NaN where the system has none)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return float("nan")


#: wall time to adopt one imported run (check and link its checkpoints, initialise and save step 0), measured
#: 2026-12-07 on a 2-core Xeon VM: 0.2-0.3 s per run (tests/study/test_study_imported.py's runs)
ADOPT_SECONDS = 0.3


def _adopt_estimate(plan: StudyPlan, c: Calibration) -> "StageEstimate":
    """The train stage of a study over imported runs: adoption, one step-0 checkpoint written per run."""
    runs = plan.tasks["train"]
    cores = max(1, c.cores)
    return StageEstimate("train", len(runs), len(runs) * c.checkpoint_bytes,
                         ADOPT_SECONDS * len(runs) / min(len(runs), cores),
                         f"{len(runs)} imported runs adopted from {plan.spec.imported} (learned checkpoints "
                         f"hard-linked, not copied; step 0 initialised here: {c.checkpoint_bytes / 1e6:.1f} MB each)")


def calibrate(plan: StudyPlan, *, train_steps: int = 5) -> Calibration:
    """Measure the rates with ``plan``'s first run config (about half a minute on a CPU)."""
    import numpy as np

    from vaesim.activations import extract_activations
    from vaesim.data.registry import get_spec
    from vaesim.models import build_vae
    from vaesim.study.stages.checkpoints import train_config
    from vaesim.study.stages.devices import resolve_device
    from vaesim.training import train
    from vaesim.utils.threads import available_cpus, thread_limit

    started = time.perf_counter()
    spec = plan.spec
    task = plan.tasks["train"][0]
    channels = get_spec(task.run.dataset).num_channels
    load = _load_average()
    with tempfile.TemporaryDirectory(prefix="vaesim-calibrate-") as folder, thread_limit(1):
        if task.run.config.get("source") == "imported":  # adopted runs: nothing is trained; step 0 is saved
            from safetensors.torch import save_file

            architecture, latent_dim = task.run.config["architecture"], task.run.config["latent_dim"]
            seconds_per_step, busy = 0.0, 1.0
            save_file(build_vae(architecture, channels, latent_dim).state_dict(), str(Path(folder) / "step_0"))
            checkpoint_bytes = (Path(folder) / "step_0").stat().st_size  # the weights alone, no optimiser state
        else:
            base = train_config(task)
            architecture, latent_dim = base.architecture, base.latent_dim
            warmup = 2
            config = type(base).from_dict({**base.to_dict(), "dataset": _stand_in(channels), "dataset_root": None,
                                           "steps": warmup + train_steps, "checkpoints": [warmup + train_steps],
                                           "monitor_every": 0, "validation_split": 0.0})
            marks: dict[int, tuple[float, float]] = {}
            run_dir = Path(folder) / "run"
            train(config, run_dir, progress=False, device=resolve_device(task.device),
                  callback=lambda finished: marks.__setitem__(finished, (time.perf_counter(), time.process_time())))
            (wall_0, cpu_0), (wall_1, cpu_1) = marks[warmup], marks[warmup + train_steps]
            seconds_per_step = (wall_1 - wall_0) / train_steps
            busy = min(1.0, (cpu_1 - cpu_0) / max(wall_1 - wall_0, 1e-9))
            checkpoint_bytes = sum(p.stat().st_size for p in (run_dir / "checkpoints").glob("step_*"))

        model = build_vae(architecture, channels, latent_dim).eval()
        images = np.random.default_rng(0).random((128, channels, 64, 64), dtype=np.float32)
        layers = tuple(spec.layer_names())
        forward = _timed(lambda: extract_activations(model, images, layers=layers, seed=0), repeats=2) / 128
        kernels = measure_kernels()
        overhead = _pair_overhead(model, channels, layers, tuple(spec.metrics))
        fractions, disentangle_seconds, points, udr_seconds = _calibrate_disentangle(spec, model, channels)
    return Calibration(
        seconds_per_step=seconds_per_step, checkpoint_bytes=checkpoint_bytes, forward_seconds_per_image=forward,
        disentangle_fractions=fractions, disentangle_seconds=disentangle_seconds, udr_points=points,
        udr_seconds=udr_seconds, cores=available_cpus(), seconds=time.perf_counter() - started, busy=busy,
        load=load,
        pair_overhead_seconds=overhead, **kernels)


def _pair_overhead(model, channels: int, layers: tuple, metrics: tuple) -> float:
    """Seconds per layer pair and metric that are not arithmetic: all layer pairs of two models at n = 16."""
    import numpy as np

    from vaesim.activations import extract_activations
    from vaesim.similarity import compare, summarise

    images = np.random.default_rng(1).random((16, channels, 64, 64), dtype=np.float32)
    built = [extract_activations(model, images, layers=layers, seed=seed) for seed in (0, 1)]
    models = {k: {name: summarise(x, name=name, metrics=metrics) for name, x in acts.items()}
              for k, acts in enumerate(built)}
    seconds = _timed(lambda: compare(models, metrics=metrics, model_pairs=[(0, 1)]), repeats=2)
    return seconds / (len(layers) ** 2 * len(metrics))


def _calibrate_disentangle(spec, model, channels: int):
    """Seconds of one metrics evaluation at two protocol fractions and of one UDR (2 runs) at two sizes."""
    if spec.disentanglement is None:
        return (0.0, 1.0), (0.0, 0.0), (0, 1), (0.0, 0.0)
    import warnings

    import numpy as np
    import torch

    from vaesim.data import get_dataset
    from vaesim.metrics import (
        METRIC_NAMES,
        Protocol,
        evaluate_disentanglement,
        model_factor_codes,
    )
    from vaesim.metrics.udr import LatentCodes, udr

    dataset = get_dataset(_stand_in(channels))
    metrics = tuple(spec.disentanglement.metrics or METRIC_NAMES)
    fractions = (0.002, 0.004)
    seconds = []
    for fraction in fractions:
        begin = time.perf_counter()
        truth = model_factor_codes(dataset, model)
        with warnings.catch_warnings():  # tiny calibration samples: scikit-learn's class-count notes
            warnings.simplefilter("ignore")
            evaluate_disentanglement(truth, protocol=Protocol().scaled(fraction), metrics=metrics)
        seconds.append(time.perf_counter() - begin)
    sizes, udr_seconds = (200, 400), []
    for count in sizes:
        begin = time.perf_counter()
        codes = {}
        for key in "ab":
            with torch.no_grad():
                mean, logvar = model.encode(torch.from_numpy(dataset.images(np.arange(count))))
            codes[key] = LatentCodes.from_encoder(mean.double().numpy(), logvar.double().numpy())
        udr(codes, method="lasso")
        udr(codes, method="spearman")
        udr_seconds.append(time.perf_counter() - begin)
    return fractions, tuple(seconds), sizes, tuple(udr_seconds)


# ---------------------------------------------------------------- work counts


def summary_bytes(n: int, p: int, procrustes: bool) -> int:
    """Bytes of one layer's summary as stored (vaesim.similarity.summary): features, packed Gram, packed R."""
    packed = n * (n + 1) // 2 * 8
    if p <= n / 2 or (procrustes and p <= n):
        stored = n * p * 8 + (packed if p > n / 2 else 0)
    else:
        stored = packed * (2 if procrustes and p > n else 1)
    return stored + n * 8


def summary_seconds(n: int, p: int, procrustes: bool, c: Calibration) -> float:
    """One thread's seconds to summarise one layer of width ``p`` on ``n`` examples."""
    seconds = 2 * n * p * c.centre_seconds_per_value  # centring and row norms
    if p <= n / 2:
        return seconds
    if procrustes and p > n:  # QR of Xc^T (p x n), then R^T R
        return seconds + (2 * p * n**2 - 2 / 3 * n**3) / c.qr64_rate + 2 * n**3 / c.gemm64_rate
    mixed = n * n * p >= _MIXED_MIN_WORK
    return seconds + n * n * p / (c.gram32_rate if mixed else c.gemm64_rate / 2)


def spread(unit_seconds: list[float], cores: int) -> float:
    """Wall time of independent units spread over ``cores`` threads (the largest unit is a floor)."""
    if not unit_seconds:
        return 0.0
    return max(sum(unit_seconds) / max(1, cores), max(unit_seconds))


def procrustes_pair_seconds(n: int, pa: int, pb: int, c: Calibration) -> float:
    """One layer pair's Procrustes by the route the engine takes (:func:`vaesim.similarity.nuclear.nuclear_norm`):
    the cross block ``F_a^T F_b`` ``(r_a, r_b)``, then for a tall block (``2 small <= large``) its smaller Gram
    and ``eigvalsh``, else its singular values (``svd``, ``s^2 l`` work)."""
    ra, rb = min(n, pa), min(n, pb)
    small, large = min(ra, rb), max(ra, rb)
    cross = 2 * n * ra * rb / c.gemm64_rate
    if 2 * small <= large:
        return cross + 2 * small * small * large / c.gemm64_rate + c.eig_seconds_per_cube * small**3
    per_cube = c.svd_seconds_per_cube or 4 * c.eig_seconds_per_cube
    return cross + per_cube * small * small * large


def plan_cache(plan: StudyPlan, widths: dict[str, dict[str, int]] | None = None) -> tuple[StudyPlan, int]:
    """``plan`` with its summary-cache selection (spec ``summaries: planned``: :mod:`vaesim.study.summary_cache`;
    unchanged otherwise) and the cache's peak bytes (the selected checkpoints' entries, all on disk once
    extraction is done). ``widths``: ``{dataset: {layer: features}}`` (default: measured from the network)."""
    spec = plan.spec
    if spec.summaries != "planned":
        return plan, 0
    if widths is None:
        from vaesim.data.registry import get_spec
        from vaesim.study.budget import layer_widths

        widths = {dataset: layer_widths(spec, get_spec(dataset).num_channels) for dataset in spec.datasets}
    n, procrustes = spec.probe.n, "procrustes" in spec.metrics

    def entry_bytes(task: ExtractTask) -> int:
        width = widths[task.dataset]
        layers = [name for name in task.layers if name in width]
        if task.resample:
            layers += [name for name in noise_layers(task.layers, task.decoder_input) if name in width]
        size = sum(summary_bytes(n, width[name], procrustes) for name in layers)
        if plugin_metrics(task.metrics):  # a pair-only plug-in measure keeps the float64 activations
            size += sum(n * width[name] * 8 for name in task.layers if name in width)
        return size

    selected, peak = cache_selection(plan, entry_bytes, spec.summaries_cap_gb * 1e9)
    return with_cache(plan, selected), peak


def estimate(plan: StudyPlan, calibration: Calibration, widths: dict[str, int] | None = None) -> list[StageEstimate]:
    """Tasks, disk bytes and wall seconds per stage of ``plan`` on the calibrated machine.

    ``widths``: features per layer (default: measured from the spec's network).
    """
    c = calibration
    spec = plan.spec
    if widths is None:
        from vaesim.data.registry import get_spec
        from vaesim.study.budget import layer_widths

        widths = layer_widths(spec, get_spec(spec.datasets[0]).num_channels)
    n = spec.probe.n
    procrustes = "procrustes" in spec.metrics
    cka = bool({"cka", "cka_debiased"} & set(spec.metrics))
    layers = [name for name in spec.layer_names() if name in widths]
    cores = max(1, c.cores)
    if spec.summaries == "planned":
        if not selected_checkpoints(plan):
            plan, _peak = plan_cache(plan, {dataset: widths for dataset in spec.datasets})
        cached = selected_checkpoints(plan)
    else:
        cached = frozenset()
    runs = plan.tasks["train"]
    steps = sum(task.run.config["steps"] for task in runs)
    checkpoints = sum(len(task.run.steps) for task in runs)
    train_seconds = steps * c.seconds_per_step / min(max(1, len(runs)), cores)

    per_layer = {name: summary_seconds(n, widths[name], procrustes, c) for name in layers}
    extract_bytes = extract_seconds = cache_bytes = 0.0
    for task in plan.tasks["extract"]:
        units = [per_layer[name] for name in task.layers if name in per_layer]
        images = n
        if task.decoder_input == "final_mean" and task.step != task.final_step:
            images += n / 2  # the final checkpoint's encoder, for the decoder's code (about half a forward)
        if task.resample:
            units += [per_layer[name] for name in noise_layers(task.layers, task.decoder_input) if name in per_layer]
            images *= 2
        extract_seconds += EXTRACT_TASK_SECONDS
        if not task.writes_summaries:  # no summary stored: extraction records the latents (and kept activations)
            extract_seconds += n * c.forward_seconds_per_image
        else:
            written = sum(summary_bytes(n, widths[name], procrustes) for name in task.layers if name in widths)
            extract_seconds += images * c.forward_seconds_per_image + spread(units, cores) + written / READ_AND_HASH_RATE
            if task.resample:
                written += sum(summary_bytes(n, widths[name], procrustes)
                               for name in noise_layers(task.layers, task.decoder_input) if name in widths)
            extract_bytes += written
            cache_bytes += written if task.cache_file else 0
        extract_bytes += LATENTS_FILE_BYTES + sum(n * widths[name] * 4 for name in task.keep_activations
                                                  if name in widths)

    compare_seconds = 0.0
    rows = 0
    pairs_total = 0
    for task in plan.tasks["compare"]:
        involved = read_checkpoints(task)
        compare_seconds += _compare_task_seconds(task, widths, n, cka, procrustes, c, cores,
                                                 read=len(involved & cached) if task.cache_summaries else None)
        if task.cache_summaries:  # each involved checkpoint not in the planned cache recorded and summarised again
            units = [per_layer[name] for name in task.layers if name in per_layer]
            compare_seconds += len(involved - cached) * (n * c.forward_seconds_per_image + spread(units, cores))
        task_rows, task_pairs = _compare_rows(task, len(spec.metrics))
        rows += task_rows
        pairs_total += task_pairs

    disentangle_tasks = plan.tasks.get("disentangle", [])
    disentangle_seconds = 0.0
    for task in disentangle_tasks:
        if isinstance(task, UDRTask):
            group = len(task.runs)
            scale_runs = (group + group * (group - 1) / 2) / 3  # encodes per run + fits per pair, 2 runs = 3 units
            disentangle_seconds += linear(c.udr_seconds, c.udr_points, task.points) * scale_runs
        elif isinstance(task, DisentangleTask):
            disentangle_seconds += linear(c.disentangle_seconds, c.disentangle_fractions, task.protocol_fraction)
    disentangle_bytes = 4_000 * len(disentangle_tasks)

    # uint8 probe images, the factors' summary (n x factors float64, <= 8 factors) and small records per dataset
    probe_bytes = len(spec.datasets) * (64 * 64 * 3 * n + n * 8 * 9 + 50_000)
    return [
        StageEstimate("probe", len(plan.tasks["probe"]), probe_bytes, 1.0 * len(plan.tasks["probe"]),
                      f"{len(spec.datasets)} probe set(s) of {n} images"),
        _adopt_estimate(plan, c) if runs and runs[0].run.config.get("source") == "imported" else
        StageEstimate("train", len(runs), checkpoints * c.checkpoint_bytes + sum(
                          RUN_LOG_BYTES_PER_STEP * (task.run.config["steps"] // max(1, task.run.config.get(
                              "log_every", 1)) + len(task.run.steps)) for task in runs), train_seconds,
                      f"{len(runs)} runs x {steps // max(len(runs), 1):,} steps, {min(len(runs), cores)} at once; "
                      f"{checkpoints} checkpoints of {c.checkpoint_bytes / 1e6:.1f} MB (weights + Adam state)"),
        StageEstimate("extract", len(plan.tasks["extract"]), int(extract_bytes), extract_seconds,
                      f"{len(plan.tasks['extract'])} checkpoints x {len(layers)} layers on {n} probe images"
                      + (_cache_text(plan, cached, cache_bytes) if spec.summaries == "planned" else "")),
        StageEstimate("compare", len(plan.tasks["compare"]), rows * RESULT_ROW_BYTES, compare_seconds,
                      f"{pairs_total:,} model pairs, {rows:,} similarity rows"),
        StageEstimate("disentangle", len(disentangle_tasks), disentangle_bytes, disentangle_seconds,
                      f"{sum(isinstance(t, DisentangleTask) for t in disentangle_tasks)} metric evaluations, "
                      f"{sum(isinstance(t, UDRTask) for t in disentangle_tasks)} UDR groups"
                      if disentangle_tasks else "no disentanglement: section"),
        StageEstimate("store", len(plan.tasks["store"]), len(runs) * 20_000 + 200_000, 1.0 + 0.05 * checkpoints,
                      "runs.parquet, training_metrics.parquet, latents.parquet"),
    ]


#: the compare engine's working copies beside summaries held in memory (measured by benchmarks/task_memory.py)
COMPARE_WORKING_FACTOR = 1.0

PROCESS_BYTES = 400_000_000  # a task process's own resident memory: Python, numpy, torch, the model (measured 361 MB)


def task_memory(plan: StudyPlan, widths: dict[str, int]) -> list[tuple[str, int, str]]:
    """``(stage, bytes, what)``: the largest resident memory one task of each computing stage needs.

    - extract: one checkpoint's activations on the probe set (float32, every recorded layer at once, held by
      torch and as the recorder's arrays: twice; a noise floor's second recording of the sampled layers comes
      after the first is released), the float64 centred copy of the widest layer being summarised, and the
      summaries;
    - compare: the summaries of every checkpoint the largest task compares, all held at once (the engine
      scores every model pair of the task in one call), plus, with ``summaries: cache``, the activations of
      the checkpoint being recorded again;
    - train: one training step (:func:`vaesim.study.budget.memory_needs`'s figure).

    Each adds :data:`PROCESS_BYTES` for the process itself. Summary sizes are exact
    (:func:`summary_bytes`); ``widths``: features per layer.
    """
    spec = plan.spec
    n = spec.probe.n
    procrustes = "procrustes" in spec.metrics
    layers = [name for name in spec.layer_names() if name in widths]
    per_model = sum(summary_bytes(n, widths[name], procrustes) for name in layers)
    activations = n * sum(widths[name] for name in layers) * 4
    out = []
    from vaesim.study.budget import memory_needs

    step = max((need for field, need, _ in memory_needs(spec) if field.startswith("training.batch_size")), default=0)
    if plan.tasks.get("train") and spec.imported is None:
        out.append(("train", PROCESS_BYTES + step, f"one training step at batch {spec.training.batch_size}"))
    if plan.tasks.get("extract"):  # a noise floor's second recording comes after the first is released
        widest = 8 * n * max(widths[name] for name in layers)
        out.append(("extract", PROCESS_BYTES + 2 * activations + widest + per_model,
                    f"one checkpoint's {len(layers)} layers on {n} images and their summaries"))
    largest, involved = None, 0
    for task in plan.tasks.get("compare", []):
        models = {(p[0], p[1]) for p in task.pairs} | (
            set() if task.comparison == "factors" else {(p[2], p[3]) for p in task.pairs})
        if len(models) > involved:
            largest, involved = task, len(models)
    if largest is not None:
        from vaesim.similarity.engine import DEFAULT_BLOCK_BYTES, FACTOR_CACHE_BYTES
        from vaesim.study.stages.compare import SPILL_MIN_BYTES

        kind = largest.task_id.split("/")[1]
        computed = largest.cache_summaries and not (largest.read_cache and selected_checkpoints(plan))
        if per_model >= SPILL_MIN_BYTES or not computed:
            # memory-mapped summaries (files, or spilled): one Gram row block of every summary, the Procrustes
            # factors unpacked for the model pair at hand plus the bounded cache, a cross block and its
            # factorisation per core; with summaries computed here, one checkpoint being recorded and summarised
            wide = [name for name in layers if widths[name] > n]
            factors = 2 * len(wide) * n * n * 8 if procrustes else 0
            cached = min(FACTOR_CACHE_BYTES, involved * len(wide) * n * n * 8) if procrustes else 0
            row_block = max(DEFAULT_BLOCK_BYTES, 8 * involved * len(layers) * n)
            blocks = 3 * n * n * 8 * max(1, _cores()) if procrustes else 0
            scoring = row_block + factors + cached + blocks
            what = (f"{involved} checkpoints' summaries memory-mapped ({human_bytes(per_model)} each, {kind} task): "
                    f"Gram row blocks, Procrustes factors of one model pair and a {human_bytes(FACTOR_CACHE_BYTES)} "
                    "cache, a cross block per core")
            loading = 0
            if largest.cache_summaries:  # some or all are computed here first: one checkpoint at a time, spilled
                widest = 8 * n * max(widths[name] for name in layers)
                loading = 2 * activations + widest + per_model  # as an extraction, before any scoring
                what += "; before that, one checkpoint recorded and summarised at a time, then spilled to disk"
            need = PROCESS_BYTES + max(scoring, loading)
        else:
            need = PROCESS_BYTES + int(involved * per_model * (1 + COMPARE_WORKING_FACTOR)) + activations
            what = f"the summaries of {involved} checkpoints at once ({human_bytes(per_model)} each: {kind} task)"
        out.append(("compare", need, what))
    return out


def _cores() -> int:
    from vaesim.utils.threads import available_cpus

    return available_cpus()


def check_task_memory(plan: StudyPlan, out_dir: Path) -> None:
    """Refuse, before any work, a plan whose largest extract or compare task needs more memory than is available
    now, unless that stage is finished (one line naming the figure and what holds it); local executor only (a
    cluster's nodes have their own memory). The figures are :func:`vaesim.study.estimate.task_memory`'s
    (measured against real tasks by benchmarks/task_memory.py; a training step is checked from the spec by
    :func:`vaesim.study.budget.check_memory`)."""
    from vaesim.data.registry import get_spec
    from vaesim.study import budget

    memory = budget.available_memory()
    if memory is None:
        return
    widths = budget.layer_widths(plan.spec, get_spec(plan.spec.datasets[0]).num_channels)
    for stage, need, what in task_memory(plan, widths):
        if stage not in ("extract", "compare") or need <= memory:  # training: check_memory, from the spec
            continue
        if all((out_dir / output).exists() for task in plan.tasks[stage] for output in task.outputs):
            continue  # the stage is finished: nothing of that size will run
        advice = ("a smaller probe.n, or a larger machine" if stage == "extract" else
                  "fewer checkpoints or models per comparison (comparisons.across_steps final, "
                  "comparisons.objectives false), a smaller probe.n, or a larger machine")
        article = "an" if stage[0] in "aeiou" else "a"
        raise ValueError(f"study spec: {article} {stage} task needs about {human_bytes(need)} of memory ({what}), but "
                         f"{human_bytes(memory)} is available; {advice}")


def _cache_text(plan: StudyPlan, cached: frozenset, peak: float) -> str:
    """The planned summary cache in the extract stage's line: what it holds at its peak, what is recomputed."""
    users = [c for task in plan.tasks["compare"] for c in read_checkpoints(task)]
    read = set(users)
    text = (f"; summary cache: {len(cached)} of {len(read)} compared checkpoints, peak {human_bytes(peak)} "
            f"(cap {human_bytes(plan.spec.summaries_cap_gb * 1e9)}), each entry removed after its last comparison")
    if len(cached) < len(read):
        again = sum(1 for c in users if c not in cached)
        text += (f"; the other {len(read) - len(cached)} are summarised by each compare task that reads them "
                 f"({again:,} times in all: raise summaries_cap_gb to compute each once)")
    return text


def _compare_rows(task: CompareTask, n_metrics: int) -> tuple[int, int]:
    rows = sum(n_metrics * len(task_layer_pairs(task, pair)) for pair in task.pairs)
    return rows, len(task.pairs)


def _compare_task_seconds(task: CompareTask, widths: dict[str, int], n: int, cka: bool, procrustes: bool,
                          c: Calibration, cores: int, read: int | None = None) -> float:
    """Wall seconds of one compare task: CKA products of packed Grams, Procrustes layer pairs.

    ``read``: how many checkpoints' summary files the task reads (default: all it compares, none with
    ``summaries: cache``; a planned cache's entries)."""
    layers = [name for name in task.layers if name in widths]
    factors = task.comparison == "factors"
    models = {(p[0], p[1]) for p in task.pairs} | (set() if factors else {(p[2], p[3]) for p in task.pairs})
    layer_pairs = 0
    procrustes_units: list[float] = []
    for pair in task.pairs:
        pairs = task_layer_pairs(task, pair, layers)
        layer_pairs += len(pairs)
        if procrustes:
            procrustes_units += [procrustes_pair_seconds(n, widths[la], widths.get(lb, 8), c) for la, lb in pairs]
    seconds = COMPARE_TASK_SECONDS + layer_pairs * c.pair_overhead_seconds * (int(cka) + int(procrustes))
    if read is None:
        read = 0 if task.cache_summaries else len(models)
    if read:  # each checkpoint's summary file read and checked against its SHA-256
        per_model = sum(summary_bytes(n, widths[name], procrustes) for name in layers)
        seconds += read * per_model / READ_AND_HASH_RATE
    if cka:  # packed-Gram inner products (n^2 flops per layer pair) + Grams of narrow layers formed per call
        summaries = len(models) * len(layers)
        narrow = sum(n * n * widths[name] for name in layers if widths[name] <= n / 2) * len(models)
        seconds += (summaries**2 * n * n / 2 * 2 + narrow) / c.gemm64_rate / cores if layer_pairs else 0.0
        seconds += summaries * n * n / 2 * 8 / 2e9  # reading the packed Grams (~2 GB/s)
    return seconds + spread(procrustes_units, cores)


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError  # pragma: no cover


def human_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 600:  # whole minutes would hide up to 40% here
        return f"{seconds / 60:.1f} min"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def format_plan(plan: StudyPlan, estimates: list[StageEstimate] | None, calibration: Calibration | None,
                memory: list[tuple[str, int, str]] | None = None, available: int | None = None) -> str:
    """The table ``vaesim study plan`` prints; ``memory``: :func:`task_memory`'s peaks, ``available``: bytes free."""
    lines = [f"study '{plan.spec.name}': {len(plan.runs)} runs, {len(plan.all_tasks())} tasks"]
    if estimates is None:
        lines.append(f"  {'stage':11s} {'tasks':>7s}")
        lines += [f"  {stage:11s} {len(plan.tasks[stage]):>7d}" for stage in STAGES]
        return "\n".join(lines)
    lines.append(f"  {'stage':11s} {'tasks':>7s} {'disk':>10s} {'time':>10s}  what")
    for item in estimates:
        lines.append(f"  {item.stage:11s} {item.tasks:>7d} {human_bytes(item.bytes):>10s} "
                     f"{human_seconds(item.seconds):>10s}  {item.what}")
    lines.append(f"  {'total':11s} {sum(e.tasks for e in estimates):>7d} "
                 f"{human_bytes(sum(e.bytes for e in estimates)):>10s} "
                 f"{human_seconds(sum(e.seconds for e in estimates)):>10s}")
    if memory:
        lines.append("peak memory of one task: " + "; ".join(f"{stage} {human_bytes(need)} ({what})"
                                                           for stage, need, what in memory)
                     + (f"; available now {human_bytes(available)}" if available else ""))
        beyond = [stage for stage, need, _ in memory if available and need > available]
        if beyond:
            lines.append(f"  the largest {' and '.join(beyond)} task(s) will not fit in this machine's memory: "
                         "`study run` refuses them here (local executor)")
    lines.append(
        f"calibration ({calibration.seconds:.0f} s on this machine, {calibration.cores} usable cores, device "
        f"'{plan.spec.device}', one thread per task): "
        + ("no training (imported runs)" if plan.spec.imported is not None else
           f"{calibration.seconds_per_step * 1000:.0f} ms per training step at batch {plan.spec.training.batch_size}")
        + f", {calibration.forward_seconds_per_image * 1000:.2f} ms per "
        f"image through the network; float32 Gram {calibration.gram32_rate / 1e9:.1f}, float64 GEMM "
        f"{calibration.gemm64_rate / 1e9:.1f}, QR {calibration.qr64_rate / 1e9:.1f} GFLOP/s per core; "
        f"work counted for n={plan.spec.probe.n} probe images.")
    total = sum(e.seconds for e in estimates)
    known = calibration.load == calibration.load
    load = (f"load {calibration.load:.1f} (1-minute average) on {calibration.cores} usable cores" if known
            else f"{calibration.cores} usable cores")
    if calibration.busy < 0.8:
        lines.append(f"Calibrated at {load}: this machine is busy, training got {calibration.busy:.0%} of its "
                     f"threads' time. As loaded now: {human_seconds(total)} in all; on an idle machine about "
                     f"{human_seconds(total * calibration.busy)}. The times hold while the load stays as it was.")
    elif known and calibration.load >= 0.5 * calibration.cores:
        lines.append(f"Calibrated at {load}: other work was running, so these times are this load's; they shrink "
                     "on an idle machine and grow if the load rises during the study (rerun `study plan` then).")
    else:
        lines.append(f"Calibrated at {load}, an idle machine: other work on the same cores stretches these times.")
    lines.append("Times are wall times on this machine as loaded now, with the local executor's defaults (runs "
                 "train one per core; other stages spread their units over the cores); a GPU or a Ray cluster "
                 "divides them. Disk excludes keep_activations.")
    return "\n".join(lines)
