"""Training: config, checkpoint schedule, the resumable loop, checkpoints and metrics."""

from vaesim.training.checkpoint import list_checkpoints, load_checkpoint, read_checkpoint
from vaesim.training.config import TrainConfig, checkpoint_steps
from vaesim.training.images import ImageArray
from vaesim.training.loop import EpochOrder, TrainingDiverged, build_objective, train
from vaesim.training.metrics import read_metrics

__all__ = [
    "EpochOrder",
    "ImageArray",
    "TrainConfig",
    "TrainingDiverged",
    "build_objective",
    "checkpoint_steps",
    "list_checkpoints",
    "load_checkpoint",
    "read_checkpoint",
    "read_metrics",
    "train",
]
