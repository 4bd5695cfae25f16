"""vaesim: how do variational autoencoders learn? Layerwise representational similarity.

Data flow (each stage reads only what the previous wrote)::

    dataset -> training (checkpoints) -> activations on a probe set
    -> per-layer summaries -> pairwise similarity -> results store
    -> figures / findings / report

Subpackages: :mod:`vaesim.similarity`, :mod:`vaesim.data`, :mod:`vaesim.models`,
:mod:`vaesim.training`, :mod:`vaesim.activations`, :mod:`vaesim.study`,
:mod:`vaesim.report`.
"""

import logging

from vaesim.utils.threads import prefer_passive_waiting

# Before torch / numpy load their thread pools: idle threads sleep instead of
# spinning (a shared CPU otherwise makes every parallel region several times
# slower; see vaesim.utils.threads). Variables the user set are kept.
prefer_passive_waiting()

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
