"""Training: config, checkpoint schedule, the resumable loop, checkpoints and metrics."""

from typing import TYPE_CHECKING

from vaesim._lazy import lazy_exports

# Imported on first use, so the CLI's --help never pays for torch / pandas / matplotlib.
_EXPORTS = {
    "list_checkpoints": "vaesim.training.checkpoint_files",
    "load_checkpoint": "vaesim.training.checkpoint",
    "read_checkpoint": "vaesim.training.checkpoint",
    "TrainConfig": "vaesim.training.config",
    "checkpoint_steps": "vaesim.training.config",
    "ImageArray": "vaesim.training.images",
    "EpochOrder": "vaesim.training.loop",
    "TrainingDiverged": "vaesim.training.loop",
    "TrainingInterrupted": "vaesim.training.loop",
    "build_objective": "vaesim.training.loop",
    "train": "vaesim.training.loop",
    "read_metrics": "vaesim.training.metrics",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from vaesim.training.checkpoint import load_checkpoint, read_checkpoint
    from vaesim.training.checkpoint_files import list_checkpoints
    from vaesim.training.config import TrainConfig, checkpoint_steps
    from vaesim.training.images import ImageArray
    from vaesim.training.loop import EpochOrder, TrainingDiverged, TrainingInterrupted, build_objective, train
    from vaesim.training.metrics import read_metrics
