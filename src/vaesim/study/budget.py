"""Checks before any work that need the machine: the device, sizes against the dataset, memory and disk.

:func:`check_budget` refuses, with the numbers, a study that cannot run here:
a CUDA device that is not present, a probe set or batch larger than the
dataset, a probe set plus one layer's Gram that does not fit in the memory
available now, or summaries for every checkpoint that do not fit on the
disk holding the study directory.

Every size is checked against memory before anything is built from it
(:func:`check_memory`): the task plan (runs x checkpoints), a training step
(the model and Adam's state: parameters x 16; a batch's images and
activations kept for the backward pass: batch x (C 64 64 + 3 x activations) x 4),
and UDR (``udr_points`` x latent_dim x 8 per array, a few arrays per seed).

Estimates (bytes): probe set ``n C 64 64 x 4`` (float32 images); one layer's
activations ``n p x 4`` and its centred float64 copy ``n p x 8``; one Gram
``n^2 x 8``; a summary file per checkpoint ``sum_layers min(n(n+1)/2, n p) x 8``
(the packed Gram or the centred features, whichever the summary keeps),
plus kept activations ``n p x 4``. Layer widths ``p`` come from one forward
pass of the untrained model.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from vaesim.study.spec import StudySpec


def _gib(value: float) -> str:
    return f"{value / 2**30:,.2f} GiB"


def available_memory() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` in bytes (None where unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def free_disk(path: Path) -> int | None:
    """Free bytes on the file system that holds ``path`` (its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def check_device(device: str) -> None:
    """A ``cuda[:N]`` device must exist on this machine."""
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise ValueError(f"study spec device: {device!r} asked for, but this machine's torch sees no CUDA GPU "
                         "(a CPU build, or no driver); use device: cpu or auto")
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise ValueError(f"study spec device: {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) "
                         f"are visible (cuda:0 .. cuda:{torch.cuda.device_count() - 1})")


def layer_widths(spec: StudySpec, num_channels: int) -> dict[str, int]:
    """Features per compared layer of the spec's model (one forward pass on one blank image)."""
    import numpy as np

    from vaesim.activations import extract_activations
    from vaesim.models import build_vae

    model = build_vae(spec.training.architecture, num_channels, spec.training.latent_dim)
    images = np.zeros((2, num_channels, 64, 64), dtype=np.float32)
    activations = extract_activations(model, images, layers=tuple(spec.layer_names()))
    return {name: int(np.prod(value.shape[1:])) for name, value in activations.items()}


PLAN_BYTES_PER_CHECKPOINT = 4096  # the task records of one (run, checkpoint): extract, compare share, disentangle
# one model pair of a compare task in the plan: its tuple, its place in two lists and its share of the task id's
# text (measured: 160 bytes peak per pair planning the quick preset with 1,000 seeds, 4,068,000 pairs)
PLAN_BYTES_PER_PAIR = 200


def model_sizes(architecture: str, num_channels: int, latent_dim: int) -> tuple[int, int]:
    """(parameters, activation floats per example) of the model, without building it at ``latent_dim``.

    Both grow linearly with the latent size: measured on models with 1 and 2
    latent dimensions and extrapolated (a latent size of 2,000,000 is never allocated).
    """
    import torch

    from vaesim.models import build_vae

    def measure(latent: int) -> tuple[int, int]:
        model = build_vae(architecture, num_channels, latent)
        floats = [0]

        def count(_module, _inputs, output) -> None:
            floats[0] += output.numel() if torch.is_tensor(output) else 0

        hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
        with torch.no_grad():
            model(torch.zeros(1, num_channels, 64, 64))
        for hook in hooks:
            hook.remove()
        return sum(p.numel() for p in model.parameters()), floats[0]

    from vaesim.models.plugin_table import is_plugin

    if is_plugin(architecture):  # a plug-in may not build at other latent sizes: measured at its own
        return measure(latent_dim)
    (p1, a1), (p2, a2) = measure(1), measure(2)
    return p1 + (p2 - p1) * (latent_dim - 1), a1 + (a2 - a1) * (latent_dim - 1)


def plan_needs(spec: StudySpec) -> list[tuple[str, int, str]]:
    """``(spec field = value, bytes, what)`` of the plan itself: its task records and its model pairs."""
    from vaesim.study.plan import model_pair_count

    runs = len(spec.datasets) * sum(len(o.values) for o in spec.objectives) * len(spec.seeds)
    checkpoints = (len(spec.training.checkpoints.steps) if spec.training.checkpoints.steps is not None
                   else spec.training.checkpoints.count) + 1
    pairs = model_pair_count(spec)
    return [(f"training.checkpoints.count = {checkpoints - 1:,}", runs * checkpoints * PLAN_BYTES_PER_CHECKPOINT,
             f"the task plan of {runs:,} run(s) x {checkpoints:,} checkpoint(s)"),
            (f"seeds = {len(spec.seeds):,} seed(s) (and the comparisons)", pairs * PLAN_BYTES_PER_PAIR,
             f"the plan's {pairs:,} model pairs to compare ({runs:,} runs)")]


def memory_needs(spec: StudySpec) -> list[tuple[str, int, str]]:
    """``(spec field = value, bytes, what needs them)`` for each size of the spec, from the spec alone."""
    from vaesim.data.registry import get_spec

    needs = plan_needs(spec)
    training, latent = spec.training, spec.training.latent_dim
    for dataset in spec.datasets:
        channels = get_spec(dataset).num_channels
        params, floats = model_sizes(training.architecture, channels, latent)
        needs.append((f"training.latent_dim = {latent:,}", params * 16,
                      f"the model's {params:,} parameters with their gradients and Adam's two moments"))
        needs.append((f"training.batch_size = {training.batch_size:,}",
                      params * 16 + training.batch_size * (channels * 64 * 64 + 3 * floats) * 4,
                      "one training step (the model, a batch's images and the activations kept for the backward "
                      "pass)"))
    options = spec.disentanglement
    if options is not None and options.udr:
        group = len(spec.seeds)
        needs.append((f"disentanglement.udr_points = {options.udr_points:,}",
                      options.udr_points * (8 + latent * 8 * (2 * group + 4)),
                      f"UDR's codes of {group} seed(s) on {options.udr_points:,} images"))
    return needs


def _refuse_beyond_memory(needs, purpose: str, advice: str) -> None:
    """ValueError (one line) for the first ``(field, bytes, what)`` of ``needs`` beyond the memory available now."""
    memory = available_memory()
    if memory is None:
        return
    for field, need, what in needs:
        if need > memory:
            raise ValueError(f"study spec {field}: {what} needs about {_gib(need)} of memory{purpose}, but "
                             f"{_gib(memory)} is available; {advice}")


def check_plan_size(spec: StudySpec) -> None:
    """Refuse, before planning, a grid whose plan alone needs more memory than is available now (one line)."""
    _refuse_beyond_memory(plan_needs(spec), " to plan", "make the grid smaller (fewer seeds, checkpoints or "
                          "comparisons: comparisons.across_steps final, comparisons.seeds false)")


def check_memory(spec: StudySpec) -> None:
    """Refuse, before any work, a spec with a size whose memory need exceeds what is available now."""
    if available_memory() is None:
        return
    _refuse_beyond_memory(memory_needs(spec), "", "lower it or run on a larger machine")


def check_training_precision(spec: StudySpec) -> None:
    """``training.precision: bf16-mixed`` needs bfloat16 on the device the runs train on (one line, before any
    file); imported runs are not trained here."""
    if spec.training.precision == "32" or spec.imported is not None:
        return
    import torch

    from vaesim.training.loop import bf16_supported

    device = "cuda" if spec.device.startswith("cuda") or (spec.device == "auto" and torch.cuda.is_available()) \
        else "cpu"
    if not bf16_supported(torch.device(device)):
        raise ValueError(f"study spec training.precision: 'bf16-mixed' asked for, but this machine's {device.upper()} "
                         f"has no bfloat16 support (torch reports none); use precision: '32'")


def check_budget(spec: StudySpec, out_dir: Path) -> None:
    """Refuse a spec whose sizes cannot work here (see the module docstring); no file is written."""
    from vaesim.data.registry import get_spec
    from vaesim.study.plan import plan_runs

    check_device(spec.device)
    check_training_precision(spec)
    n = spec.probe.n
    for dataset in spec.datasets:
        facts = get_spec(dataset)
        size = facts.num_examples
        if n > size:
            raise ValueError(f"study spec probe.n: {n:,} examples asked for, but {dataset} has {size:,}; "
                             f"use probe.n <= {size:,}")
        if spec.training.batch_size > size:
            raise ValueError(f"study spec training.batch_size: {spec.training.batch_size:,} is larger than "
                             f"{dataset} ({size:,} examples); use a batch of at most {size:,}")
    check_memory(spec)  # before anything is built at the spec's sizes (the model below, the plan, training)
    checkpoints = len(spec.checkpoint_steps())
    runs_per_dataset = len(plan_runs(spec)) // len(spec.datasets)
    memory_need = disk_need = summaries = 0
    for dataset in spec.datasets:
        facts = get_spec(dataset)
        widths = layer_widths(spec, facts.num_channels)
        widest = max(widths.values())
        probe_bytes = n * facts.num_channels * 64 * 64 * 4
        memory_need = max(memory_need, probe_bytes + n * widest * (4 + 8) + n * n * 8)
        kept = set(spec.kept_layers())
        summary = sum(min(n * (n + 1) // 2, n * p) * 8 for p in widths.values())
        kept_bytes = sum(n * p * 4 for name, p in widths.items() if name in kept)
        summaries += runs_per_dataset * checkpoints * summary
        disk_need += probe_bytes + runs_per_dataset * checkpoints * kept_bytes
    if spec.summaries == "cache":  # recomputed by the compare tasks, never stored
        summaries = 0
    elif spec.summaries == "planned":  # a cache of at most summaries_cap_gb for the study (vaesim.study.summary_cache)
        summaries = min(summaries, spec.summaries_cap_gb * 1e9)
    disk_need += summaries
    memory = available_memory()
    if memory is not None and memory_need > memory:
        raise ValueError(
            f"study spec probe.n = {n:,}: extracting one checkpoint needs about {_gib(memory_need)} of memory "
            f"(probe set, the widest layer's activations and one {n:,} x {n:,} Gram), but {_gib(memory)} is "
            f"available; lower probe.n or run on a larger machine")
    disk = free_disk(out_dir)
    if disk is not None and disk_need > disk:
        raise ValueError(
            f"the study needs about {_gib(disk_need)} of disk for its probe sets and summaries "
            f"({checkpoints} checkpoint(s) x {runs_per_dataset * len(spec.datasets)} run(s), probe.n = {n:,}), "
            f"but {_gib(disk)} is free where {out_dir} lives; lower probe.n, keep fewer activations, "
            f"or use another --out")


def writable_directory(out_dir: Path) -> None:
    """Refuse an ``--out`` that cannot hold a study (an existing file, a read-only or non-writable place)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir}: exists and is not a directory; give a directory path")
    parent = out_dir
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out {out_dir}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out_dir}: cannot write in {parent} (permission denied or read-only)")
    try:
        statvfs = os.statvfs(parent)
    except OSError:
        return
    if statvfs.f_flag & os.ST_RDONLY:
        raise ValueError(f"--out {out_dir}: {parent} is on a read-only file system")
