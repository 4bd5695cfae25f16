"""Layer activations: a forward-hook recorder for any module, extraction from VAE checkpoints."""

from vaesim.activations.extract import extract_activations, extract_checkpoint
from vaesim.activations.recorder import LayerRecorder

__all__ = ["LayerRecorder", "extract_activations", "extract_checkpoint"]
