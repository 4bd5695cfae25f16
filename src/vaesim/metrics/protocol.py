"""disentanglement_lib's evaluation protocol for one representation: draw, encode, score.

:func:`evaluate_disentanglement` draws the observational samples
(``num_train = 10000`` and ``num_test = 5000`` uniform factor rows, each
metric with its own draws as in disentanglement_lib, all from one seeded
generator), runs every metric of :mod:`vaesim.metrics.disentanglement` and
:mod:`vaesim.metrics.interventional`, and returns flat ``{metric: value}``.
:func:`model_factor_codes` turns a vaesim dataset and a VAE into the
:class:`~vaesim.metrics.interventional.FactorCodes` every metric needs (the
mean of the encoder: layer ``encoder.mean``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from vaesim.metrics.disentanglement import dci, explicitness, mig, modularity, sap
from vaesim.metrics.interventional import FactorCodes, beta_vae_score, factor_vae_score

__all__ = ["METRIC_NAMES", "Protocol", "evaluate_disentanglement", "model_factor_codes"]

log = logging.getLogger(__name__)

#: names of the values :func:`evaluate_disentanglement` returns, in order
METRIC_NAMES = (
    "beta_vae", "factor_vae", "mig", "sap", "dci_disentanglement", "dci_completeness",
    "dci_informativeness", "modularity", "explicitness",
)


@dataclass(frozen=True)
class Protocol:
    """Sample sizes (disentanglement_lib's ``unsupervised_study_v1`` defaults)."""

    num_train: int = 10000
    num_test: int = 5000
    batch_size: int = 64
    num_variance_estimate: int = 10000

    def scaled(self, fraction: float) -> "Protocol":
        """Every size times ``fraction`` (at least 2 points): for quick studies and tests."""
        if not 0 < fraction <= 1:
            raise ValueError(f"Protocol.scaled: fraction must be in (0, 1], got {fraction}")
        size = lambda v: max(2, int(round(v * fraction)))  # noqa: E731
        return Protocol(size(self.num_train), size(self.num_test), self.batch_size, size(self.num_variance_estimate))


def _sample(truth: FactorCodes, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    factors = truth.sample_factors(n, rng)
    return truth.codes(factors, rng), factors


def evaluate_disentanglement(
    truth: FactorCodes, *, seed: int = 0, protocol: Protocol = Protocol(), metrics=METRIC_NAMES,
    on_metric=None,
) -> dict[str, float]:
    """Every requested metric of one representation (test-set numbers where there are two).

    ``on_metric(names)``: called with the names of the metrics finished so far after each one (progress lines).

    Returns:
        ``{name: value}`` for the names in ``metrics`` (a subset of :data:`METRIC_NAMES`).
    """
    unknown = sorted(set(metrics) - set(METRIC_NAMES))
    if unknown:
        raise ValueError(f"evaluate_disentanglement: unknown metrics {unknown}; expected names from {list(METRIC_NAMES)}")
    wanted = set(metrics)
    out: dict[str, float] = _Reporting(on_metric)
    p = protocol
    if "beta_vae" in wanted:
        out["beta_vae"] = beta_vae_score(truth, seed=seed, batch_size=p.batch_size, num_train=p.num_train,
                                         num_eval=p.num_test)["eval_accuracy"]
    if "factor_vae" in wanted:
        out["factor_vae"] = factor_vae_score(
            truth, seed=seed + 1, batch_size=p.batch_size, num_train=p.num_train, num_eval=p.num_test,
            num_variance_estimate=p.num_variance_estimate)["eval_accuracy"]
    rng = np.random.default_rng([seed, 2])
    if "mig" in wanted:
        out["mig"] = mig(*_sample(truth, p.num_train, rng))
    if "sap" in wanted:
        out["sap"] = sap(*_sample(truth, p.num_train, rng), *_sample(truth, p.num_test, rng))
    if wanted & {"dci_disentanglement", "dci_completeness", "dci_informativeness"}:
        scores = dci(*_sample(truth, p.num_train, rng), *_sample(truth, p.num_test, rng), seed=seed)
        out["dci_disentanglement"] = scores.disentanglement
        out["dci_completeness"] = scores.completeness
        out["dci_informativeness"] = scores.informativeness_test
    if wanted & {"modularity", "explicitness"}:
        train, test = _sample(truth, p.num_train, rng), _sample(truth, p.num_test, rng)
        out["modularity"] = modularity(*train)
        out["explicitness"] = explicitness(*train, *test, seed=seed)[1]
    log.info("disentanglement metrics: %s", {k: round(v, 4) for k, v in out.items()})
    return {name: out[name] for name in METRIC_NAMES if name in out}


#: encoder batch on CPU: the paper's encoder runs ~3x faster per image at 64 than at 512 on a 2-core x86 CPU
#: (0.085-0.099 vs 0.29-0.32 ms/image measured: a 64-image batch's activations stay in cache)
CPU_ENCODE_BATCH = 64
GPU_ENCODE_BATCH = 512


class _Reporting(dict):
    """A dict of finished metrics that tells ``on_metric`` (if any) the names finished after each new one."""

    def __init__(self, on_metric) -> None:
        super().__init__()
        self.on_metric = on_metric

    def __setitem__(self, name, value) -> None:
        super().__setitem__(name, value)
        if self.on_metric is not None:
            self.on_metric(list(self))


def model_factor_codes(dataset, model, *, device="cpu", batch_size: int | None = None,
                       on_encoded=None) -> FactorCodes:
    """:class:`FactorCodes` of a VAE's mean code on a vaesim ground-truth dataset.

    Each dataset item is encoded at most once: factor rows are turned into
    item indices (``dataset.index_of``, which draws among an item's nuisance
    variants with the metric's generator), and the mean code of every item
    is cached (float64 ``(len(dataset), d)``, filled lazily). The mean code
    is a deterministic function of the image, so this is exact; the
    protocol's ~2.9 M draws touch at most ``len(dataset)`` distinct images
    (737,280 for dSprites). ``batch_size``: images per encoder call
    (default :data:`CPU_ENCODE_BATCH` on CPU, :data:`GPU_ENCODE_BATCH` else).
    ``on_encoded(count)``: called with the number of distinct items encoded so far after each encoder call.
    """
    import torch

    model = model.eval().to(device)
    if batch_size is None:
        batch_size = CPU_ENCODE_BATCH if torch.device(device).type == "cpu" else GPU_ENCODE_BATCH
    cache: dict[str, np.ndarray] = {}

    @torch.no_grad()
    def encode(factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        indices = dataset.index_of(factors, rng)  # (B,) item indices
        if "codes" not in cache:
            cache["codes"] = np.full((len(dataset), int(model.latent_dim)), np.nan)
            cache["done"] = np.zeros(len(dataset), dtype=bool)
        codes, done = cache["codes"], cache["done"]
        todo = np.unique(indices[~done[indices]])
        for start in range(0, len(todo), batch_size):
            part = todo[start : start + batch_size]
            batch = torch.from_numpy(dataset.images(part)).to(device)  # (b, C, 64, 64) float32
            codes[part] = model.encode(batch)[0].double().cpu().numpy()
            done[part] = True
            cache["count"] = cache.get("count", 0) + len(part)
            if on_encoded is not None:
                on_encoded(cache["count"])
        return codes[indices]

    return FactorCodes(tuple(int(s) for s in dataset.factor_sizes), encode, sample=dataset.sample_factors, chunk=65536)
