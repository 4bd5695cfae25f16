"""The training loop: one loop for every objective, resumable, seeded.

A run directory holds ``config.json``, ``checkpoints/step_NNNNNNNN.{safetensors,json}``,
``metrics.jsonl`` and, once finished, ``DONE``. Rerunning a finished run does
nothing; rerunning a killed one restarts from its last complete checkpoint
and ends with the same weights as an uninterrupted run (CPU, same seed):
batches come from per-epoch permutations derived from ``(seed, epoch)``, and
the checkpoint restores weights, both optimisers and every RNG state.

Ctrl-C (SIGINT) or SIGTERM while training finishes the step under way, saves
an interrupt checkpoint (``interrupted.{safetensors,json}``, never one of the
scheduled checkpoints) and raises :class:`TrainingInterrupted`; the next call
resumes from that step, and the run ends with the same checkpoints and
metrics as an uninterrupted one. A second Ctrl-C stops at once (the last
scheduled checkpoint is then where the run resumes).
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from vaesim.models.architectures import VAE, build_vae
from vaesim.models.losses import kl_per_dimension, reconstruction_loss
from vaesim.models.objectives import Objective, make_objective, objective_params
from vaesim.training.checkpoint import (
    checkpoint_damage,
    checkpoint_paths,
    interrupt_step,
    join_optimizer_state,
    list_checkpoints,
    model_state,
    read_checkpoint,
    remove_interrupt_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from vaesim.training.config import TrainConfig, checkpoint_steps
from vaesim.training.images import check_image_source
from vaesim.training.metrics import MetricsWriter, truncate_metrics
from vaesim.utils import atomic_write_json

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
DONE_FILE = "DONE"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run's last good checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT or SIGTERM after saving an interrupt checkpoint at ``step``.

    A :class:`KeyboardInterrupt`, so code that already stops on Ctrl-C stops on it.
    """

    def __init__(self, signum: int, step: int, run_dir: Path) -> None:
        super().__init__(f"{run_dir}: stopped by {signal.Signals(signum).name} after step {step}; "
                         "its state is saved, rerun to resume")
        self.signum, self.step, self.run_dir = signum, step, run_dir


class _StopRequest:
    """Turns the first SIGINT/SIGTERM into a flag read between steps; a second SIGINT interrupts at once.

    Handlers are installed only in the main thread (Python allows no other) and restored on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                try:
                    self._previous[signum] = signal.signal(signum, self._handle)
                except (ValueError, OSError):  # an embedding interpreter that forbids it: default behaviour
                    pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        logger.warning("%s received: finishing this step and saving a resumable checkpoint "
                       "(Ctrl-C again to stop at once)", signal.Signals(signum).name)

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def check_tensorboard() -> None:
    """ImportError with the fix when the optional ``tensorboard`` package is missing."""
    try:
        import tensorboard  # noqa: F401 - only whether it is installed
    except ImportError:
        raise ImportError("TensorBoard logging needs the tensorboard package: pip install 'vaesim[tensorboard]' "
                          "(or leave TensorBoard logging off)") from None


class TensorBoardLog:
    """Every logged metrics row as TensorBoard scalars (``pip install 'vaesim[tensorboard]'``).

    Tags: ``train/<term>`` (loss, reconstruction, kl, elbo and the objective's own terms),
    ``kl_per_dim/<i>``, ``val/<term>`` (held-out ELBO terms), ``monitor/<name>`` (posterior-collapse
    monitor); the x axis is the training step. metrics.jsonl is written as without it. On resume from step
    ``start``, events at or after ``start`` (from the interrupted attempt) are purged, as Lightning does.
    """

    def __init__(self, log_dir: str | Path, start: int = 0) -> None:
        check_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: what an earlier, killed attempt logged from ``start`` on is hidden (also from step 0)
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=start)

    @staticmethod
    def tag(name: str) -> str:
        if name.startswith("kl_dim_"):
            return f"kl_per_dim/{name[len('kl_dim_'):]}"
        if name.startswith("val_"):
            return f"val/{name[len('val_'):]}"
        if name in ("cka_mean_sample", "active_dims"):
            return f"monitor/{name}"
        return f"train/{name}"

    def write(self, row: dict) -> None:
        step = int(row["step"])
        for name, value in row.items():
            if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(self.tag(name), value, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class EpochOrder:
    """Batch indices for every step from per-epoch permutations seeded by ``(seed, epoch)``.

    Step t (0-based) reads positions ``t*B .. t*B + B - 1`` of the endless
    concatenation of epoch permutations, so any step's batch is known without
    replaying earlier ones (resume needs no saved iterator state).
    """

    def __init__(self, seed: int, size: int) -> None:
        self.seed, self.size = int(seed), int(size)
        self._cache: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            if len(self._cache) >= 2:
                self._cache.pop(min(self._cache))
            self._cache[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.size)
        return self._cache[epoch]

    def batch(self, step: int, batch_size: int) -> np.ndarray:
        """int64 (batch_size,) dataset indices of step ``step``."""
        start, end = step * batch_size, (step + 1) * batch_size
        parts = []
        while start < end:
            epoch, offset = divmod(start, self.size)
            take = min(end - start, self.size - offset)
            parts.append(self.permutation(epoch)[offset : offset + take])
            start += take
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def build_objective(config: TrainConfig, dataset_size: int) -> Objective:
    """The configured objective; FactorVAE gets the latent size, beta-TC-VAE the training set size."""
    params = dict(config.params)
    valid = objective_params(config.objective)
    if "latent_dim" in valid:
        params.setdefault("latent_dim", config.latent_dim)
    if "dataset_size" in valid:  # stratified TC weights; the logged MWS TC's constant
        params.setdefault("dataset_size", dataset_size)
    return make_objective(config.objective, **params)


def load_dataset(config: TrainConfig):
    """``vaesim.data.get_dataset(config.dataset, config.dataset_root)``."""
    from vaesim.data import get_dataset

    return get_dataset(config.dataset, config.dataset_root)


def _check_run_dir(run_dir: Path, config: TrainConfig) -> None:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    if saved != json.loads(json.dumps(config.to_dict())):
        changed = sorted(k for k in set(saved) | set(config.to_dict()) if saved.get(k) != json.loads(json.dumps(config.to_dict())).get(k))
        raise ValueError(
            f"train: {run_dir} holds a run with a different config (fields {changed} differ); "
            "use a new output directory or delete this one to retrain"
        )


def _use_channels_last(model: VAE, device: torch.device, channels_last: bool | None) -> bool:
    """channels_last for the conv network on CPU and CUDA unless told otherwise (None = auto)."""
    if channels_last is not None:
        return bool(channels_last)
    has_conv = any(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for m in model.modules())
    return has_conv and device.type in ("cpu", "cuda")


def _make_adam(model: VAE, config: TrainConfig, device: torch.device) -> torch.optim.Adam:
    """The paper's Adam, with torch's fused kernel on CPU and CUDA (one pass over all parameters).

    The fused kernel computes Adam's update with the same formula as the
    per-tensor one; it measured 1.5 ms faster per step at batch 64 on CPU
    (benchmarks/training.py). Other devices keep torch's default.
    """
    fused = True if device.type in ("cpu", "cuda") else None
    return torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.adam_betas, eps=config.adam_eps, fused=fused)


def _match_parameter_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give restored optimiser state the memory layout of its parameter (checkpoints store contiguous tensors)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                    optimizer.state[param][key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def _use_compile(compile: bool | None) -> bool:
    """``compile`` as given, else ``VAESIM_COMPILE=1`` in the environment (default off)."""
    if compile is not None:
        return bool(compile)
    return os.environ.get("VAESIM_COMPILE", "").strip() not in ("", "0")


class _Forward:
    """The model's forward pass, compiled with ``torch.compile`` when asked, with an eager fallback.

    The compiled module shares the model's parameters, so checkpoints, the
    monitor and the optimiser keep using ``model``. If compiling fails (no
    C++ compiler, an unsupported backend), a warning names the error and the
    run goes on eagerly; the failed step is recomputed with the same eps,
    nothing was updated.
    """

    def __init__(self, model: VAE, compile: bool) -> None:
        self.model = model
        self.compiled = None
        self.checked = False
        if compile:
            self.compiled = torch.compile(model, dynamic=False)

    def __call__(self, images: torch.Tensor):
        if self.compiled is not None:
            # eps is drawn eagerly from torch's generator, exactly as the eager model's randn_like does: compiled
            # code would draw it with its own generator (other numbers, another RNG state after the step)
            noise = torch.randn(images.shape[0], self.model.latent_dim, device=images.device)
            try:
                out = self.compiled(images, noise)
            except Exception as error:  # noqa: BLE001 - any compiler failure falls back to eager
                logger.warning("torch.compile failed (%s: %s); training eagerly", type(error).__name__, error)
                self.compiled = None
                return self.model(images, noise)
            if not self.checked:
                self.checked = True
                problem = self._disagreement(out, images, noise)
                if problem:
                    logger.warning("torch.compile's forward disagrees with eager (%s); training eagerly", problem)
                    self.compiled = None
                    return self.model(images, noise)
            return out
        return self.model(images)

    def _disagreement(self, out, images: torch.Tensor, noise: torch.Tensor) -> str:
        """'' when the compiled outputs match eager's on this batch to float32 accuracy, else what differs.

        A compiler that builds but computes wrongly exists: torch 2.13's inductor under
        ``ATEN_CPU_CAPABILITY=avx2`` on an AVX-512 CPU returns logits of 1e36 or NaN. Checked once, on the
        first batch (one extra forward): each output within 1e-3 of its largest eager value (float32
        reorderings move it by ~1e-6 of that; wrong code by orders of magnitude).
        """
        with torch.no_grad():
            eager = self.model(images, noise)
        for name in ("logits", "mean", "logvar"):
            got, want = getattr(out, name).detach(), getattr(eager, name)
            scale = float(want.abs().max())
            error = float((got - want).abs().max())
            if not error <= 1e-3 * scale + 1e-6:  # NaN fails too
                return f"{name}: max |compiled - eager| = {error:.3g} against a scale of {scale:.3g}"
        return ""


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively: CUDA's own check, on the CPU oneDNN's (AVX512-BF16 /
    AMX, or AVX-512 where oneDNN emulates it)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse ``precision="bf16-mixed"`` on a device without bfloat16 support, in one line naming both."""
    if precision == "bf16-mixed" and not bf16_supported(device):
        raise ValueError(f"training.precision='bf16-mixed': this {device.type.upper()} has no bfloat16 support "
                         f"(torch reports none); train with precision '32' or on a machine that has it")


def _resolve_device(device) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def split_indices(size: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) dataset indices, each sorted int64, for a validation ``fraction`` in [0, 1).

    The held-out part is ``round(fraction * size)`` examples drawn with a
    fixed seed (the same for every run and seed of a study, so held-out
    ELBOs compare across runs); the rest is trained on.
    """
    count = int(round(fraction * size))
    if fraction and not 0 < count < size:
        raise ValueError(f"validation_split={fraction} of {size} examples leaves {count} held out; "
                         "it must keep at least one example on each side")
    held = np.sort(np.random.default_rng(104_729).choice(size, count, replace=False)) if count else np.empty(0, np.int64)
    keep = np.ones(size, dtype=bool)
    keep[held] = False
    return np.flatnonzero(keep).astype(np.int64), held.astype(np.int64)


def noise_key(config: TrainConfig) -> int:
    """A 63-bit integer that identifies the run (its whole config), for per-run noise seeds."""
    import hashlib

    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class _Monitor:
    """Posterior-collapse monitor (claim 3): linear CKA(mean, sample) and active dimensions on a fixed probe batch.

    Sampling noise follows ``config.sample_noise``: ``independent`` draws a
    fresh eps at every measurement from (run, step); ``shared`` reuses one eps
    drawn from the run's seed. A collapsed ``encoder.mean`` (zero variance)
    gives a NaN CKA, not an error: the monitor exists to record collapse.
    """

    def __init__(self, config: TrainConfig, dataset, device: torch.device) -> None:
        count = min(config.monitor_size, len(dataset))
        indices = np.sort(np.random.default_rng([config.seed, 7919]).choice(len(dataset), count, replace=False))
        self.images = torch.from_numpy(dataset.images(indices)).to(device)
        self.shape = (count, config.latent_dim)
        self.key = noise_key(config) if config.sample_noise == "independent" else None
        self.noise = torch.randn(self.shape, generator=torch.Generator().manual_seed(config.seed)).to(device)
        self.threshold = config.active_threshold

    def eps(self, step: int) -> torch.Tensor:
        if self.key is None:
            return self.noise
        generator = torch.Generator().manual_seed((self.key + step) % 2**63)
        return torch.randn(self.shape, generator=generator).to(self.noise.device)

    @torch.no_grad()
    def measure(self, model: VAE, step: int = 0) -> dict:
        from vaesim.similarity import linear_cka

        was_training = model.training
        model.eval()
        out = model(self.images, noise=self.eps(step))
        model.train(was_training)
        kl_dim = kl_per_dimension(out.mean, out.logvar)
        row = {"active_dims": int((kl_dim > self.threshold).sum())}
        try:
            row["cka_mean_sample"] = float(linear_cka(out.mean.double().cpu().numpy(),
                                                      out.sample.double().cpu().numpy()))
        except (ValueError, ArithmeticError) as error:
            # A collapsed encoder (constant mean) is what the monitor exists to record: NaN + why, and go on.
            row["cka_mean_sample"] = float("nan")
            row["monitor_note"] = f"cka_mean_sample undefined: {error}"
            logger.warning("posterior-collapse monitor at step %d: %s", step, row["monitor_note"])
        return {"cka_mean_sample": row.pop("cka_mean_sample"), **row}


class _HeldOut:
    """Held-out ELBO terms on up to :data:`HELD_OUT_SIZE` fixed held-out examples (fixed eps)."""

    def __init__(self, config: TrainConfig, dataset, held: np.ndarray, device: torch.device) -> None:
        chosen = held[np.linspace(0, len(held) - 1, min(HELD_OUT_SIZE, len(held))).round().astype(int)]
        self.images = torch.from_numpy(dataset.images(np.unique(chosen))).to(device)
        generator = torch.Generator().manual_seed(config.seed)
        self.noise = torch.randn(len(self.images), config.latent_dim, generator=generator).to(device)
        self.reconstruction = config.reconstruction

    @torch.no_grad()
    def measure(self, model: VAE) -> dict:
        was_training = model.training
        model.eval()
        rec_sum = kl_sum = 0.0
        for start in range(0, len(self.images), 256):
            images = self.images[start : start + 256]
            out = model(images, noise=self.noise[start : start + 256])
            rec_sum += float(reconstruction_loss(images, out.logits, self.reconstruction).sum())
            kl_sum += float(kl_per_dimension(out.mean, out.logvar).sum()) * len(images)
        model.train(was_training)
        rec, kl = rec_sum / len(self.images), kl_sum / len(self.images)
        return {"val_reconstruction": rec, "val_kl": kl, "val_elbo": rec + kl}


HELD_OUT_SIZE = 512


def _intact_checkpoints(run_dir: Path) -> list[int]:
    """Steps of the complete checkpoints up to the last one that is as saved; the damaged ones after it are removed.

    Training resumes from the last intact checkpoint: one whose JSON was
    edited (say, its learning rate) or whose weights were damaged is never
    restored; it and every later one are written again by the resumed run.
    """
    steps = list_checkpoints(run_dir)
    while steps:
        why = checkpoint_damage(run_dir, steps[-1])
        if why is None:
            break
        logger.warning("%s; resuming from the checkpoint before it, which is written again", why)
        for path in checkpoint_paths(run_dir, steps.pop()):
            path.unlink(missing_ok=True)
    return steps


def _restore(run_dir, step, model, objective, optimizer, *, interrupt: bool = False) -> dict:
    tensors, meta = read_checkpoint(run_dir, step, interrupt=interrupt)
    if meta["model"] != model.config():
        raise ValueError(
            f"train: checkpoint {step} of {run_dir} holds a model {meta['model']}, but this run builds "
            f"{model.config()}; was the dataset changed? Use a new output directory"
        )
    model.load_state_dict(model_state(tensors))
    objective.load_state_dict({k[len("objective.") :]: v for k, v in tensors.items() if k.startswith("objective.")})
    optimizer.load_state_dict(join_optimizer_state(tensors, meta["optimizer"]["vae"], "optimizer.vae"))
    if objective.optimizer() is not None:
        objective.optimizer().load_state_dict(
            join_optimizer_state(tensors, meta["optimizer"]["objective"], "optimizer.objective")
        )
    set_rng_state(meta["rng"])
    return meta


class _NoBar:
    """Stands in for the tqdm bar when training shows none."""

    def update(self, count: int = 1) -> None:
        pass

    def set_postfix(self, **fields) -> None:
        pass

    def close(self) -> None:
        pass


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    dataset=None,
    progress: bool = True,
    device: str | torch.device | None = None,
    callback: Callable[[int], None] | None = None,
    channels_last: bool | None = None,
    on_log: Callable[[dict], None] | None = None,
    compile: bool | None = None,
    tensorboard: str | Path | None = None,
) -> Path:
    """Train (or resume, or skip if finished) the run ``config`` in ``run_dir``; return ``run_dir``.

    dataset: anything with ``__len__``, ``num_channels`` and
    ``images(indices) -> float32 (B, C, 64, 64)``; default
    ``vaesim.data.get_dataset(config.dataset, config.dataset_root)``.
    device: default CUDA when available, else CPU.
    callback: called with the number of finished steps after every update
    (progress hooks, tests that simulate a crash).
    channels_last: train the conv network in the channels-last memory layout
    (None = yes on CPU and CUDA; measured faster, see benchmarks/training.py).
    It, vaesim's CPU layers (vaesim.models.layers) and the fused Adam kernel
    change only the order of floating-point sums, not what is learned: after
    50 steps the weights and the learned function are no further from those of
    torch's stock layers in NCHW with per-tensor Adam than a one-ulp change of
    the initial weights moves that stock path
    (tests/training/test_training_fast_path.py). Checkpoints are stored in
    the usual contiguous layout either way.
    on_log: called with every logged metrics row (``step``, ``loss``, ...).
    compile: run the model's forward (and so its backward) through
    ``torch.compile`` (None = ``VAESIM_COMPILE=1`` in the environment; off by
    default: compiling takes seconds to a minute per run and pays only on
    long runs; see benchmarks/training.py). Same maths as eager, to float32
    rounding; falls back to eager with a warning if compiling fails.
    tensorboard: a folder for TensorBoard event files: every logged row also
    goes there as scalars (:class:`TensorBoardLog`; needs ``vaesim[tensorboard]``;
    None = off, the default).
    Raises :class:`TrainingDiverged` when the loss stops being finite.
    """
    run_dir = Path(run_dir)
    _check_run_dir(run_dir, config)
    if (run_dir / DONE_FILE).is_file():
        logger.info("%s is finished; nothing to do", run_dir)
        return run_dir
    if tensorboard is not None:
        check_tensorboard()  # a missing package is said before any work
    if dataset is None:
        dataset = load_dataset(config)
    check_image_source(dataset)
    device = _resolve_device(device)
    check_precision(config.precision, device)
    schedule = checkpoint_steps(config.checkpoints, config.steps)
    logged_steps = set(schedule)

    # Build: seeded model, objective and optimiser
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    random.seed(config.seed)
    train_indices, held_indices = split_indices(len(dataset), config.validation_split)
    model = build_vae(config.architecture, int(dataset.num_channels), config.latent_dim, init=config.init).to(device)
    layout = torch.channels_last if _use_channels_last(model, device, channels_last) else torch.contiguous_format
    model = model.to(memory_format=layout)
    objective = build_objective(config, len(train_indices)).to(device)
    optimizer = _make_adam(model, config, device)
    forward = _Forward(model, _use_compile(compile))

    # Resume from the last complete checkpoint (an interrupt checkpoint past the scheduled ones first), or start afresh
    run_dir.mkdir(parents=True, exist_ok=True)
    done = _intact_checkpoints(run_dir)
    start = 0
    interrupted = interrupt_step(run_dir)
    if interrupted is not None and interrupted > (done[-1] if done else -1) and interrupted < config.steps:
        _restore(run_dir, interrupted, model, objective, optimizer, interrupt=True)
        _match_parameter_layout(optimizer)
        start = interrupted
        logger.info("%s: resuming from step %d (saved when the run was interrupted)", run_dir, start)
    elif done:
        remove_interrupt_checkpoint(run_dir)  # stale or damaged: the scheduled checkpoints are ahead of it
        _restore(run_dir, done[-1], model, objective, optimizer)
        _match_parameter_layout(optimizer)
        start = done[-1]
        logger.info("%s: resuming from step %d", run_dir, start)
    else:
        remove_interrupt_checkpoint(run_dir)
        atomic_write_json(run_dir / CONFIG_FILE, config.to_dict())
    truncate_metrics(run_dir, start if done or start else -1)
    meta = {"config": config.to_dict(), "objective": {"name": objective.name, "params": objective.params()}}
    writer = MetricsWriter(run_dir)
    board = TensorBoardLog(tensorboard, start) if tensorboard is not None else None
    if start == 0 and 0 in logged_steps and 0 not in done:
        save_checkpoint(run_dir, 0, model=model, objective=objective, optimizer=optimizer, meta={**meta, "losses": {}})

    monitor = _Monitor(config, dataset, device) if config.monitor_every else None
    held_out = _HeldOut(config, dataset, held_indices, device) if len(held_indices) else None
    order = EpochOrder(config.seed, len(train_indices))
    # Without a validation split the positions are the dataset indices themselves
    to_dataset = None if held_out is None else train_indices
    # no tqdm at all without a bar: even a disabled one creates tqdm's multiprocessing lock, a semaphore that a
    # pool worker stopped by Ctrl-C leaves behind ("leaked semaphore objects" after the clean message)
    bar = (tqdm(total=config.steps, initial=start, desc=run_dir.name, unit="step", dynamic_ncols=True) if progress
           else _NoBar())
    interval_losses: list[torch.Tensor] = []
    interval_start = start
    last_row: dict = {}
    model.train()
    mixed = config.precision == "bf16-mixed"
    stop = _StopRequest()
    try:
        stop.__enter__()
        for step in range(start, config.steps):
            # Batch: the step's indices from the seeded epoch order
            positions = order.batch(step, config.batch_size)
            indices = positions if to_dataset is None else to_dataset[positions]
            images = torch.from_numpy(dataset.images(indices)).to(device, non_blocking=True)
            images = images.contiguous(memory_format=layout)

            # Forward (bfloat16 under autocast for precision "bf16-mixed"): shared reconstruction + KL, then the
            # objective's regulariser, in float32 either way
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed):
                out = forward(images)
            if mixed:
                out = type(out)(*(t.float() for t in out))
            reconstruction = reconstruction_loss(images, out.logits, config.reconstruction).mean()
            kl_dim = kl_per_dimension(out.mean, out.logvar)  # (D,)
            kl = kl_dim.sum()
            regularizer, terms = objective.regularizer(kl, out.mean, out.logvar, out.sample, step)
            loss = reconstruction + regularizer

            # Update the VAE, then whatever the objective trains itself (FactorVAE's discriminator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            terms.update(objective.extra_step(out.sample.detach()))
            finished = step + 1
            interval_losses.append(loss.detach())
            bar.update(1)
            if callback is not None:
                callback(finished)

            # Log (one device-to-host transfer per logged step), check for NaN, checkpoint
            monitor_due = monitor is not None and finished % config.monitor_every == 0
            if finished % config.log_every == 0 or finished in logged_steps or finished == 1 or monitor_due:
                _check_finite(interval_losses, interval_start, run_dir)
                interval_losses, interval_start = [], finished
                names = ["loss", "reconstruction", "kl", *terms]
                values = torch.stack([loss.detach(), reconstruction.detach(), kl.detach(), *(t.detach() for t in terms.values())])
                row = {"step": finished, **dict(zip(names, values.tolist()))}
                row["elbo"] = row["reconstruction"] + row["kl"]
                row.update({f"kl_dim_{i}": v for i, v in enumerate(kl_dim.detach().tolist())})
                if monitor_due:
                    row.update(monitor.measure(model, finished))
                if held_out is not None:
                    row.update(held_out.measure(model))
                writer.write(row)
                if board is not None:
                    board.write(row)
                last_row = row
                if on_log is not None:
                    on_log(row)
                bar.set_postfix(loss=f"{row['loss']:.1f}", rec=f"{row['reconstruction']:.1f}", kl=f"{row['kl']:.2f}", refresh=False)
                if finished in logged_steps:
                    writer.sync()
                    if board is not None:
                        board.flush()
                    save_checkpoint(run_dir, finished, model=model, objective=objective, optimizer=optimizer, meta={**meta, "losses": row})
                    if finished > start:
                        remove_interrupt_checkpoint(run_dir)
            if stop.signum is not None and finished < config.steps:
                _check_finite(interval_losses, interval_start, run_dir)  # a diverged state is never kept
                _save_interrupt(run_dir, finished, logged_steps, writer, model, objective, optimizer, meta, last_row)
                raise TrainingInterrupted(stop.signum, finished, run_dir)
    finally:
        stop.__exit__()
        bar.close()
        writer.close()
        if board is not None:
            board.close()
    remove_interrupt_checkpoint(run_dir)
    atomic_write_json(run_dir / DONE_FILE, {"step": config.steps, "losses": last_row, "finished_at": time.time()})
    logger.info("%s: finished %d steps", run_dir, config.steps)
    if stop.signum is not None:  # the signal came during the last step: the run is finished, the caller still stops
        raise TrainingInterrupted(stop.signum, config.steps, run_dir)
    return run_dir


def _save_interrupt(run_dir, finished, logged_steps, writer, model, objective, optimizer, meta, last_row) -> None:
    """Keep the state after step ``finished`` in the interrupt checkpoint (unless a scheduled one holds it)."""
    writer.sync()  # the metrics rows up to ``finished`` are kept on resume
    if finished in logged_steps:
        return
    save_checkpoint(run_dir, finished, model=model, objective=objective, optimizer=optimizer,
                    meta={**meta, "losses": last_row}, interrupt=True)
    logger.warning("%s: interrupted after step %d; saved %s (rerun to resume from it)", run_dir, finished,
                   run_dir / "interrupted.safetensors")


def _check_finite(losses: list[torch.Tensor], first_step: int, run_dir: Path) -> None:
    if not losses:
        return
    values = torch.stack(losses).cpu()
    bad = ~torch.isfinite(values)
    if bool(bad.any()):
        step = first_step + int(bad.to(torch.int8).argmax()) + 1
        kept = list_checkpoints(run_dir)
        raise TrainingDiverged(
            f"training diverged: the loss became {values[bad][0].item()} at step {step} of {run_dir}; "
            f"the last good checkpoint is step {kept[-1] if kept else 'none'}. "
            "Lower the learning rate or the regularisation strength, or check the data for NaN"
        )
