"""VAE architectures (Locatello et al. 2019) and the six objectives of the study."""

from typing import TYPE_CHECKING

from vaesim._lazy import lazy_exports

# Imported on first use, so the CLI's --help never pays for torch / pandas / matplotlib.
_EXPORTS = {
    "ARCHITECTURES": "vaesim.models.names",  # torch-free: inspection commands read it
    "INITIALISATIONS": "vaesim.models.names",  # torch-free: inspection commands read it
    "DECODER_LAYERS": "vaesim.models.names",  # torch-free: inspection commands read it
    "ENCODER_LAYERS": "vaesim.models.names",  # torch-free: inspection commands read it
    "FC_LAYER_NAMES": "vaesim.models.names",  # torch-free: inspection commands read it
    "LAYER_NAMES": "vaesim.models.names",  # torch-free: inspection commands read it
    "VAE": "vaesim.models.architectures",
    "VAEOutput": "vaesim.models.architectures",
    "build_vae": "vaesim.models.architectures",
    "RECONSTRUCTIONS": "vaesim.models.names",
    "covariance": "vaesim.models.losses",
    "dip_penalty": "vaesim.models.losses",
    "gaussian_log_density": "vaesim.models.losses",
    "kl_per_dimension": "vaesim.models.losses",
    "reconstruction_loss": "vaesim.models.losses",
    "shuffle_codes": "vaesim.models.losses",
    "stratified_log_weights": "vaesim.models.losses",
    "total_correlation": "vaesim.models.losses",
    "OBJECTIVES": "vaesim.models.objectives",
    "Objective": "vaesim.models.objectives",
    "check_objective_params": "vaesim.models.objectives",
    "main_param": "vaesim.models.objectives",
    "make_discriminator": "vaesim.models.objectives",
    "make_objective": "vaesim.models.objectives",
    "objective_params": "vaesim.models.objectives",
    "OBJECTIVE_NAMES": "vaesim.models.names",
    "MAIN_PARAMS": "vaesim.models.names",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from vaesim.models.architectures import (
        ARCHITECTURES,
        INITIALISATIONS,
        DECODER_LAYERS,
        ENCODER_LAYERS,
        FC_LAYER_NAMES,
        LAYER_NAMES,
        VAE,
        VAEOutput,
        build_vae,
    )
    from vaesim.models.losses import (
        RECONSTRUCTIONS,
        covariance,
        dip_penalty,
        gaussian_log_density,
        kl_per_dimension,
        reconstruction_loss,
        shuffle_codes,
        stratified_log_weights,
        total_correlation,
    )
    from vaesim.models.objectives import (
        OBJECTIVES,
        Objective,
        check_objective_params,
        main_param,
        make_discriminator,
        make_objective,
        objective_params,
    )
