"""Names without importing torch (for the CLI's help and the spec check of `vaesim study status`):
objectives and their swept parameter, architectures, layer names, likelihoods.

:data:`vaesim.models.objectives.OBJECTIVES` is the source of truth; a test
keeps this table equal to it.
"""

from __future__ import annotations

# objective name -> the parameter a study sweeps (``--param`` of ``vaesim train``)
MAIN_PARAMS: dict[str, str] = {
    "beta_vae": "beta",
    "annealed_vae": "c_max",
    "beta_tc_vae": "beta",
    "dip_vae_i": "lambda_od",
    "dip_vae_ii": "lambda_od",
    "factor_vae": "gamma",
}
OBJECTIVE_NAMES: tuple[str, ...] = tuple(MAIN_PARAMS)
# objective name -> every parameter it accepts (the arguments of its class)
OBJECTIVE_PARAMS: dict[str, tuple[str, ...]] = {
    "beta_vae": ("beta",),
    "annealed_vae": ("c_max", "gamma", "iteration_threshold"),
    "beta_tc_vae": ("beta", "sampling", "dataset_size"),
    "dip_vae_i": ("lambda_od", "lambda_d"),
    "dip_vae_ii": ("lambda_od", "lambda_d"),
    "factor_vae": ("gamma", "latent_dim", "discriminator_lr", "discriminator_betas"),
}


def check_objective_params(name: str, params: dict) -> None:
    """ValueError listing the valid objectives / parameters when ``name`` or a key of ``params`` is unknown."""
    if name not in OBJECTIVE_PARAMS:
        raise ValueError(f"objective {name!r} is unknown; valid objectives: {', '.join(OBJECTIVE_PARAMS)}")
    valid = OBJECTIVE_PARAMS[name]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"objective {name!r} has no parameter {', '.join(map(repr, unknown))}; valid parameters: {', '.join(valid)}"
        )
# objective name -> {parameter chosen by name: its allowed values (the first is the default)}; every other
# parameter is a number
CHOICE_PARAMS: dict[str, dict[str, tuple[str, ...]]] = {
    "beta_tc_vae": {"sampling": ("mws", "stratified")},
}

LAYER_NAMES: tuple[str, ...] = (
    "input",
    "encoder.conv1",
    "encoder.conv2",
    "encoder.conv3",
    "encoder.conv4",
    "encoder.fc",
    "encoder.mean",
    "encoder.logvar",
    "encoder.variance",
    "encoder.sample",
    "decoder.fc1",
    "decoder.fc2",
    "decoder.deconv1",
    "decoder.deconv2",
    "decoder.deconv3",
    "decoder.output",
)
ENCODER_LAYERS: tuple[str, ...] = tuple(name for name in LAYER_NAMES if name.startswith("encoder."))
DECODER_LAYERS: tuple[str, ...] = tuple(name for name in LAYER_NAMES if name.startswith("decoder."))

FC_LAYER_NAMES: tuple[str, ...] = (
    "input",
    "encoder.fc1",
    "encoder.fc2",
    "encoder.mean",
    "encoder.logvar",
    "encoder.variance",
    "encoder.sample",
    "decoder.fc1",
    "decoder.fc2",
    "decoder.fc3",
    "decoder.output",
)

ARCHITECTURES = ("conv", "fc")
# Weight initialisation schemes: ``glorot`` is what disentanglement_lib and the seed paper's
# library get from Keras/TF defaults (Glorot-uniform kernels, zero biases); ``pytorch`` is
# torch's own default (Kaiming-uniform with a = sqrt(5), uniform non-zero biases).
INITIALISATIONS = ("glorot", "pytorch")

#: reconstruction likelihoods (vaesim.models.losses.reconstruction_loss)
RECONSTRUCTIONS = ("bernoulli", "gaussian")

#: every layer name of both architectures in network order (input to output; conv and fc interleave consistently),
#: the ``layers`` view of ``vaesim query`` (``ORDER BY position``)
NETWORK_ORDER: tuple[str, ...] = (
    "input", "encoder.conv1", "encoder.conv2", "encoder.conv3", "encoder.conv4", "encoder.fc", "encoder.fc1",
    "encoder.fc2", "encoder.mean", "encoder.logvar", "encoder.variance", "encoder.sample", "decoder.fc1",
    "decoder.fc2", "decoder.fc3", "decoder.deconv1", "decoder.deconv2", "decoder.deconv3", "decoder.output",
)
