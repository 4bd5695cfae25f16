"""Representational similarity: linear CKA, debiased CKA, Procrustes.

Single pairs: :func:`linear_cka`, :func:`procrustes_similarity`,
:func:`procrustes_distance`. Many layers of many models: :func:`summarise`
each (model, layer) once, optionally :func:`save_summaries` /
:func:`load_summaries`, then :func:`compare`. Probe sets too large for memory:
:class:`StreamingCKA`.
"""

from vaesim.similarity.engine import COLUMNS, compare
from vaesim.similarity.measures import linear_cka, procrustes_distance, procrustes_similarity
from vaesim.similarity.streaming import StreamingCKA
from vaesim.similarity.summary import METRICS, LayerSummary, load_summaries, save_summaries, summarise

__all__ = [
    "COLUMNS",
    "METRICS",
    "LayerSummary",
    "StreamingCKA",
    "compare",
    "linear_cka",
    "load_summaries",
    "procrustes_distance",
    "procrustes_similarity",
    "save_summaries",
    "summarise",
]
