"""Objective names and their swept parameter, without importing torch (for the CLI's help).

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
