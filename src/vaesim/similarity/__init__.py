"""Representational similarity: linear CKA, debiased CKA, Procrustes.

Single pairs: :func:`linear_cka`, :func:`procrustes_similarity`,
:func:`procrustes_distance`. Many layers of many models: :func:`summarise`
each (model, layer) once, optionally :func:`save_summaries` /
:func:`load_summaries`, then :func:`compare`. Probe sets too large for memory:
:class:`StreamingCKA`. SVCCA / PWCCA: :func:`svcca`, :func:`pwcca`, and
``compare(..., metrics=("svcca", "pwcca"))``. Your own measure:
:func:`register_measure` (see :mod:`vaesim.similarity.registry`).
"""

from vaesim.similarity.engine import compare
from vaesim.similarity.pairs import COLUMNS
from vaesim.similarity.registry import Measure, get_measure, measure_names, register_measure, unregister_measure
from vaesim.similarity.cca import pwcca, svcca  # registers "svcca" and "pwcca"
from vaesim.similarity.plugins import MeasureSummaries, plugin_summaries
from vaesim.similarity.measures import linear_cka, procrustes_distance, procrustes_similarity
from vaesim.similarity.models import compare_models  # imports torch only when called
from vaesim.similarity.streaming import StreamingCKA
from vaesim.similarity.summary import METRICS, LayerSummary, load_summaries, save_summaries, summarise

__all__ = [
    "COLUMNS",
    "METRICS",
    "LayerSummary",
    "Measure",
    "MeasureSummaries",
    "StreamingCKA",
    "compare",
    "compare_models",
    "get_measure",
    "measure_names",
    "plugin_summaries",
    "pwcca",
    "register_measure",
    "svcca",
    "unregister_measure",
    "linear_cka",
    "load_summaries",
    "procrustes_distance",
    "procrustes_similarity",
    "save_summaries",
    "summarise",
]
