"""Training configuration and the checkpoint schedule (pure)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from vaesim.models.names import ARCHITECTURES, INITIALISATIONS, RECONSTRUCTIONS, check_objective_params  # torch-free

SAMPLE_NOISE = ("independent", "shared")
#: training precision, in PyTorch Lightning's names: "32" (float32, the default) or "bf16-mixed" (the forward
#: pass under torch.autocast in bfloat16, weights, optimiser state, losses and gradients' accumulation in float32)
PRECISIONS = ("32", "bf16-mixed")
SCHEDULE_HELP = (
    "a checkpoint schedule is 'every:N' (every N steps), 'log:N' (N log-spaced steps, dense early), "
    "'even:N' (N evenly spaced steps from 0 to the end, both included), explicit steps '0,100,1000' "
    "or a comma-separated mix such as '0,log:10'; "
    "the final step is always included"
)


@dataclass
class TrainConfig:
    """Everything that defines a training run; JSON round-trip via :meth:`to_dict` / :meth:`from_dict`.

    Defaults are the paper's (Adam lr 1e-4, betas (0.9, 0.999), eps 1e-8,
    batch 64, 300,000 steps, Bernoulli reconstruction, latent size 10).
    ``checkpoints`` is a schedule (see :func:`checkpoint_steps`).
    ``log_every``: metrics row every N steps (and at every checkpoint).
    ``monitor_every``: posterior-collapse monitor every K steps (0 = off) on
    ``monitor_size`` fixed probe images; a latent dimension is active when its
    KL exceeds ``active_threshold`` nats.
    ``init``: ``glorot`` (the references' Glorot-uniform weights, zero
    biases) or ``pytorch`` (torch's default). ``sample_noise``: the monitor's
    eps, ``independent`` (fresh per run and step) or ``shared`` (one eps from
    the seed). ``validation_split``: fraction of the dataset held out of
    training (fixed across runs); the held-out ELBO terms are logged as
    ``val_reconstruction``, ``val_kl``, ``val_elbo`` (0 = no split).
    ``precision``: ``"32"`` or ``"bf16-mixed"`` (:data:`PRECISIONS`; the
    forward pass in bfloat16 under ``torch.autocast``, on a CPU or GPU with
    bfloat16 support, else training refuses). Part of the run's identity: a
    ``"32"`` run's config omits it, so its bytes and ids are as before the
    option existed.
    """

    dataset: str = "dsprites-procedural"
    dataset_root: str | None = None
    objective: str = "beta_vae"
    params: dict = field(default_factory=dict)
    seed: int = 0
    steps: int = 300_000
    batch_size: int = 64
    lr: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    checkpoints: str | list[int] = "0,log:10"
    latent_dim: int = 10
    architecture: str = "conv"
    reconstruction: str = "bernoulli"
    log_every: int = 100
    monitor_every: int = 0
    monitor_size: int = 256
    active_threshold: float = 0.01
    init: str = "glorot"
    sample_noise: str = "independent"
    validation_split: float = 0.0
    precision: str = "32"

    def __post_init__(self) -> None:
        self.adam_betas = (float(self.adam_betas[0]), float(self.adam_betas[1]))
        if isinstance(self.checkpoints, (list, tuple)):
            self.checkpoints = [int(s) for s in self.checkpoints]
        self.params = dict(self.params)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        for name in ("steps", "batch_size", "latent_dim", "log_every", "monitor_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        if self.monitor_every < 0:
            raise ValueError(f"TrainConfig.monitor_every must be >= 0 (0 turns the monitor off), got {self.monitor_every}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.architecture not in ARCHITECTURES and (not isinstance(self.architecture, str)
                                                       or not self.architecture.strip(": ")):
            raise ValueError(f"TrainConfig.architecture={self.architecture!r} is unknown; expected one of "
                             f"{list(ARCHITECTURES)} or a plug-in 'module:factory' (vaesim.models.plugins)")
        if self.reconstruction not in RECONSTRUCTIONS:
            raise ValueError(
                f"TrainConfig.reconstruction={self.reconstruction!r} is unknown; expected one of {list(RECONSTRUCTIONS)}"
            )
        if self.init not in INITIALISATIONS:
            raise ValueError(f"TrainConfig.init={self.init!r} is unknown; expected one of {list(INITIALISATIONS)}")
        if self.sample_noise not in SAMPLE_NOISE:
            raise ValueError(f"TrainConfig.sample_noise={self.sample_noise!r} is unknown; expected one of {list(SAMPLE_NOISE)}")
        if isinstance(self.validation_split, bool) or not 0.0 <= float(self.validation_split) < 1.0:
            raise ValueError(f"TrainConfig.validation_split must be a fraction in [0, 1), got {self.validation_split!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"TrainConfig.precision={self.precision!r} is unknown; expected one of {list(PRECISIONS)}")
        check_objective_params(self.objective, self.params)
        checkpoint_steps(self.checkpoints, self.steps)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["adam_betas"] = list(self.adam_betas)
        if out["precision"] == "32":  # the default leaves configs (and the run ids and noise keys from them) as before
            del out["precision"]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"TrainConfig: unknown field(s) {unknown}; valid fields: {sorted(known)}")
        return cls(**data)


def checkpoint_steps(schedule: str | int | list[int] | tuple[int, ...], steps: int) -> list[int]:
    """Sorted unique steps at which to save, always ending with ``steps``.

    ``schedule``: ``"every:N"`` (N, 2N, ...), ``"log:N"`` (N steps spaced
    evenly in log between 1 and ``steps``: dense early, where the dynamics
    are), ``"even:N"`` (N steps spaced evenly from 0, the initial weights, to
    ``steps``), explicit steps as a list or ``"0,100,1000"``, or a
    comma-separated mix of both (``"0,log:10"``, the default of
    :class:`TrainConfig` and ``vaesim train``: the initial weights too, as in
    studies). Step 0 means the weights before any update.
    """
    if steps < 1:
        raise ValueError(f"checkpoint_steps: steps must be >= 1, got {steps}")
    chosen = _parse_schedule(schedule, steps)
    bad = [s for s in chosen if s < 0 or s > steps]
    if bad:
        raise ValueError(f"checkpoint schedule {schedule!r}: steps {bad} fall outside 0..{steps}")
    return sorted(set(chosen) | {steps})


def _parse_schedule(schedule, steps: int) -> list[int]:
    if isinstance(schedule, (list, tuple)):
        return [_as_step(s, schedule) for s in schedule]
    if not isinstance(schedule, str):
        raise TypeError(f"checkpoint schedule must be a string or a list of steps, got {type(schedule).__name__}; {SCHEDULE_HELP}")
    parts = [part.strip() for part in schedule.split(",") if part.strip()]
    if len(parts) > 1:  # a mix of explicit steps and kinds, e.g. "0,log:10"
        return [step for part in parts for step in _parse_schedule(part, steps)]
    text = schedule.strip()
    kind, sep, count_text = text.partition(":")
    if sep:
        try:
            count = int(count_text)
        except ValueError:
            count = 0
        if count < 1:
            raise ValueError(f"checkpoint schedule {schedule!r}: N must be a positive integer; {SCHEDULE_HELP}")
        if kind == "every":
            return list(range(count, steps + 1, count))
        if kind == "log":
            return [int(round(s)) for s in np.geomspace(1, steps, count)]
        if kind == "even":
            return [int(round(s)) for s in np.linspace(0, steps, count)] if count > 1 else [steps]
        raise ValueError(f"checkpoint schedule {schedule!r}: unknown kind {kind!r}; {SCHEDULE_HELP}")
    return [_as_step(text, schedule)] if text else []


def _as_step(value, schedule) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number != int(number):
        raise ValueError(f"checkpoint schedule {schedule!r}: {value!r} is not a whole step; {SCHEDULE_HELP}")
    return int(number)
