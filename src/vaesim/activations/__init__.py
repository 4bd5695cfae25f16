"""Layer activations: a forward-hook recorder for any module, extraction from VAE checkpoints."""

from typing import TYPE_CHECKING

from vaesim._lazy import lazy_exports

# Imported on first use, so the CLI's --help never pays for torch / pandas / matplotlib.
_EXPORTS = {
    "SAMPLE_NOISE": "vaesim.activations.extract",
    "extract_activations": "vaesim.activations.extract",
    "extract_checkpoint": "vaesim.activations.extract",
    "noise_seed": "vaesim.activations.extract",
    "mean_code": "vaesim.activations.extract",
    "LATENT_COLUMNS": "vaesim.activations.latents",
    "latent_statistics": "vaesim.activations.latents",
    "LayerRecorder": "vaesim.activations.recorder",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from vaesim.activations.extract import SAMPLE_NOISE, extract_activations, extract_checkpoint, mean_code, noise_seed
    from vaesim.activations.latents import LATENT_COLUMNS, latent_statistics
    from vaesim.activations.recorder import LayerRecorder
