"""vaesim: how do variational autoencoders learn? Layerwise representational similarity.

Data flow (each stage reads only what the previous wrote)::

    dataset -> training (checkpoints) -> activations on a probe set
    -> per-layer summaries -> pairwise similarity -> results store
    -> figures / findings / report

Subpackages: :mod:`vaesim.similarity`, :mod:`vaesim.data`, :mod:`vaesim.models`,
:mod:`vaesim.training`, :mod:`vaesim.activations`, :mod:`vaesim.study`,
:mod:`vaesim.report`.

Importing vaesim changes nothing outside it (no environment variables): the
thread wait policy of :mod:`vaesim.utils.threads` is applied by the ``vaesim``
command and vaesim's own worker processes, or in a notebook by calling
``vaesim.utils.threads.prefer_passive_waiting()`` before importing torch.
"""

import logging

from vaesim._lazy import lazy_exports

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# Imported on first use, so `import vaesim` and the CLI's --help never pay for torch / pandas / matplotlib.
_EXPORTS = {
    "compare_models": "vaesim.similarity.models",
    "plot_layer_heatmap": "vaesim.report.plots",
    "plot_score_by_step": "vaesim.report.plots",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
