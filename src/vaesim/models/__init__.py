"""VAE architectures (Locatello et al. 2019) and the six objectives of the study."""

from vaesim.models.architectures import (
    ARCHITECTURES,
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

__all__ = [
    "ARCHITECTURES",
    "DECODER_LAYERS",
    "ENCODER_LAYERS",
    "FC_LAYER_NAMES",
    "LAYER_NAMES",
    "OBJECTIVES",
    "Objective",
    "RECONSTRUCTIONS",
    "VAE",
    "VAEOutput",
    "build_vae",
    "check_objective_params",
    "covariance",
    "dip_penalty",
    "gaussian_log_density",
    "kl_per_dimension",
    "main_param",
    "make_discriminator",
    "make_objective",
    "objective_params",
    "reconstruction_loss",
    "shuffle_codes",
    "stratified_log_weights",
    "total_correlation",
]
