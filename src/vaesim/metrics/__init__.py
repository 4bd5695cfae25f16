"""Disentanglement metrics and unsupervised model selection (UDR).

* :mod:`vaesim.metrics.disentanglement`: MIG, SAP, DCI, modularity and
  explicitness of a sample of codes ``(n, d)`` against factors ``(n, F)``.
* :mod:`vaesim.metrics.interventional`: BetaVAE and FactorVAE scores from a
  :class:`FactorCodes` (factor sampler + encoder).
* :mod:`vaesim.metrics.protocol`: disentanglement_lib's sample sizes, all
  metrics of one model in one call.
* :mod:`vaesim.metrics.udr`: UDR (Duan et al. 2020) from the representations
  of several runs.
"""

from vaesim.metrics.disentanglement import DCIScores, dci, dci_from_importance, explicitness, mig, modularity, sap
from vaesim.metrics.discrete import NUM_BINS, histogram_discretize, mutual_information
from vaesim.metrics.interventional import FactorCodes, beta_vae_score, factor_vae_score
from vaesim.metrics.protocol import METRIC_NAMES, Protocol, evaluate_disentanglement, model_factor_codes

__all__ = [
    "DCIScores", "FactorCodes", "METRIC_NAMES", "NUM_BINS", "Protocol", "beta_vae_score", "dci",
    "dci_from_importance", "evaluate_disentanglement", "explicitness", "factor_vae_score",
    "histogram_discretize", "mig", "model_factor_codes", "modularity", "mutual_information", "sap",
]
