"""Layer activations: a forward-hook recorder for any module, extraction from VAE checkpoints."""

from vaesim.activations.extract import SAMPLE_NOISE, extract_activations, extract_checkpoint, noise_seed
from vaesim.activations.latents import LATENT_COLUMNS, latent_statistics
from vaesim.activations.recorder import LayerRecorder

__all__ = ["LATENT_COLUMNS", "SAMPLE_NOISE", "latent_statistics", "LayerRecorder", "extract_activations", "extract_checkpoint", "noise_seed"]
