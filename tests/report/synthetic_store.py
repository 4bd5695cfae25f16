"""Synthetic results stores whose findings are known by construction (shared by tests/report).

Scores are simple closed-form functions of (layer, step, parameter) so that
each test can state the answer before the code computes it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from vaesim.models import LAYER_NAMES
from vaesim.study.schema import RESULT_SCHEMA
from vaesim.study.stages.files import write_table

RESULT_COLUMNS = [
    "dataset", "comparison", "metric", "a_run", "a_objective", "a_param_name", "a_param", "a_seed", "a_step",
    "a_layer", "b_run", "b_objective", "b_param_name", "b_param", "b_seed", "b_step", "b_layer", "n", "score",
    "note",
]
HEADS = ("encoder.mean", "encoder.logvar", "encoder.variance")
TRUNK = ("encoder.conv1", "encoder.conv2", "encoder.conv3", "encoder.conv4", "encoder.fc")


@dataclass
class Synthetic:
    """Knobs of a synthetic study; ``results()`` and ``runs()`` build its tables."""

    objective: str = "beta_vae"
    param_name: str = "beta"
    params: tuple = (1.0, 2.0, 4.0, 8.0)
    seeds: tuple = (0, 1)
    steps: tuple = (0, 250, 500, 750, 1000)
    encoder_speed: float = 0.3  # a layer's CKA with its final state is 0.5 + 0.5 * min(1, t / (speed * T))
    decoder_speed: float = 1.0
    head_speed: float | None = None  # encoder mean/logvar/variance/sample; None = encoder_speed
    trunk_agreement: float = 0.95
    head_agreement: float = 0.6
    # untrained networks of different seeds (step-0 'seeds' rows): trunk, heads, the rest (noise-driven)
    untrained_trunk: float = 0.7
    untrained_heads: float = 0.5
    trained_seed_trunk: float | None = None  # trunk of trained networks of different seeds; None = trunk_agreement
    untrained_other: float = 0.05
    # added to the untrained trunk's cross-seed score of seeds (a, b): untrained pairs that vary by seed
    untrained_offset: callable = field(default=lambda seed_a, seed_b: 0.0)
    # passive latent dimensions of a run at a fraction f = t / T of training; CKA(mean, sample) from them
    passive: callable = field(default=lambda param, fraction: int(min(10, round(param * fraction))))
    mean_sample: callable = field(default=lambda param, fraction, passive: 0.95 - 0.08 * passive)
    procrustes: callable = field(default=np.sqrt)  # procrustes score as a function of the CKA score
    layers: tuple = LAYER_NAMES
    curves: dict = field(default_factory=dict)  # {layer: {step: CKA(step, final)}} overriding convergence()
    noise_floor: float | None = None  # CKA of sample/decoder layers with themselves under a second eps (final step)
    noise_floor_by_step: dict | None = None  # {step: floor}: the same, measured at these checkpoints
    latent_dim: int = 10
    # latents.parquet also carries sum_w Cov(mu_u, mu_w)^2 per dimension (uncorrelated dimensions: m_u^2)
    covariance: bool = False

    def run_id(self, param, seed) -> str:
        return f"{self.objective}-{self.param_name}{param:g}-s{seed}"

    def run_list(self):
        return [(p, s) for p in self.params for s in self.seeds]

    def convergence(self, layer: str, step: int) -> float:
        if layer in self.curves and step in self.curves[layer]:
            return float(self.curves[layer][step])
        speed = self.encoder_speed if layer.startswith("encoder.") else self.decoder_speed
        heads = ("encoder.mean", "encoder.logvar", "encoder.variance", "encoder.sample")
        if layer in heads and self.head_speed is not None:
            speed = self.head_speed
        if layer == "input":
            return 1.0
        return 0.5 + 0.5 * min(1.0, step / (speed * self.steps[-1]))

    def within(self, i: int, j: int, step: int, param: float) -> float:
        pair = {self.layers[i], self.layers[j]}
        if pair == {"encoder.mean", "encoder.sample"}:
            fraction = step / self.steps[-1]
            return float(self.mean_sample(param, fraction, self.passive(param, fraction)))
        return float(np.exp(-abs(i - j) / 4.0))

    def across(self, i: int, j: int, comparison: str = "params", step: int | None = None) -> float:
        if i != j:
            return float(0.3 * np.exp(-abs(i - j) / 4.0))
        layer = self.layers[i]
        if step == 0:  # untrained networks: runs of one seed share their initial weights
            upstream = layer == "input" or (layer.startswith("encoder.") and layer != "encoder.sample")
            if comparison != "seeds":
                return 1.0 if upstream else self.untrained_other
            if layer == "input":
                return 1.0
            return (self.untrained_heads if layer in HEADS else self.untrained_trunk if upstream
                    else self.untrained_other)
        if layer in HEADS:
            return self.head_agreement
        if comparison == "seeds" and layer in TRUNK and self.trained_seed_trunk is not None:
            return self.trained_seed_trunk
        if layer.startswith("encoder.") and layer != "encoder.sample":
            return self.trunk_agreement
        return 0.85

    def _row(self, comparison, metric, a, b, score):
        (pa, sa, ta, la), (pb, sb, tb, lb) = a, b
        return dict(
            dataset="dsprites-procedural", comparison=comparison, metric=metric,
            a_run=self.run_id(pa, sa), a_objective=self.objective, a_param_name=self.param_name, a_param=pa,
            a_seed=sa, a_step=ta, a_layer=la,
            b_run=self.run_id(pb, sb), b_objective=self.objective, b_param_name=self.param_name, b_param=pb,
            b_seed=sb, b_step=tb, b_layer=lb, n=500, score=score, note="",
        )

    def _both_metrics(self, comparison, a, b, cka):
        return [self._row(comparison, "cka", a, b, cka),
                self._row(comparison, "procrustes", a, b, float(self.procrustes(cka)))]

    def results(self) -> pd.DataFrame:
        rows = []
        final = self.steps[-1]
        n_layers = len(self.layers)
        for param, seed in self.run_list():
            for step in self.steps:
                for i, j in itertools.combinations_with_replacement(range(n_layers), 2):
                    score = 1.0 if i == j else self.within(i, j, step, param)
                    rows += self._both_metrics("within_run", (param, seed, step, self.layers[i]),
                                               (param, seed, step, self.layers[j]), score)
                if step != final:
                    for layer in self.layers:
                        rows += self._both_metrics("within_run", (param, seed, step, layer),
                                                   (param, seed, final, layer), self.convergence(layer, step))
        floors = self.noise_floor_by_step or ({} if self.noise_floor is None else {final: self.noise_floor})
        for step, floor in floors.items():
            for param, seed in self.run_list():
                for layer in self.layers:
                    if layer == "encoder.sample" or layer.startswith("decoder."):
                        rows += self._both_metrics("noise_floor", (param, seed, step, layer),
                                                   (param, seed, step, layer), floor)
        for (pa, sa), (pb, sb) in itertools.combinations(self.run_list(), 2):
            comparison = "params" if sa == sb else "seeds" if pa == pb else None
            if comparison is None:
                continue
            for step in sorted({0, final} & set(self.steps)):
                for i, j in itertools.product(range(n_layers), repeat=2):
                    score = self.across(i, j, comparison, step)
                    if comparison == "seeds" and step == 0 and i == j and self.layers[i] in TRUNK:
                        score += self.untrained_offset(sa, sb)
                    rows += self._both_metrics(comparison, (pa, sa, step, self.layers[i]),
                                               (pb, sb, step, self.layers[j]), score)
        return pd.DataFrame(rows, columns=RESULT_COLUMNS)

    def runs(self) -> pd.DataFrame:
        return pd.DataFrame(
            [dict(run_id=self.run_id(p, s), dataset="dsprites-procedural", objective=self.objective,
                  param_name=self.param_name, param=p, seed=s, steps=self.steps[-1],
                  active_dims=self.latent_dim - self.passive(p, 1.0),
                  cka_mean_sample=float(self.mean_sample(p, 1.0, self.passive(p, 1.0))))
             for p, s in self.run_list()]
        )

    def training_metrics(self) -> pd.DataFrame:
        """Logged steps of every run: loss = 1000 / (1 + step / 100) + param; kl_dim_d = d * step / T."""
        total = self.steps[-1]
        rows = []
        for param, seed in self.run_list():
            for step in range(0, total + 1, 100):
                kl = {f"kl_dim_{d}": d * step / total for d in range(3)}
                rows.append(dict(run_id=self.run_id(param, seed), step=step, loss=1000 / (1 + step / 100) + param,
                                 reconstruction=1000 / (1 + step / 100), kl=sum(kl.values()), **kl,
                                 dataset="dsprites-procedural", objective=self.objective,
                                 param_name=self.param_name, param=param, seed=seed))
        return pd.DataFrame(rows)

    def latents(self) -> pd.DataFrame:
        """latents.parquet: per run, checkpoint and dimension; the first ``passive`` dimensions are passive."""
        rows = []
        for param, seed in self.run_list():
            for step in self.steps:
                passive = self.passive(param, step / self.steps[-1])
                for dim in range(self.latent_dim):
                    mean_variance = self.PASSIVE_MEAN_VARIANCE if dim < passive else 1.0
                    rows.append(dict(run_id=self.run_id(param, seed), step=step, dim=dim,
                                     mean_variance=mean_variance,
                                     posterior_variance=1.0 if dim < passive else 0.05,
                                     kl=0.0 if dim < passive else 2.0,
                                     **({"mean_cov_sq": mean_variance**2} if self.covariance else {})))
        return pd.DataFrame(rows)

    PASSIVE_MEAN_VARIANCE = 0.001

    def expected_mean_sample(self, passive: int) -> float:
        """Noise-only CKA(mean, sample) of a checkpoint of ``latents()`` with ``passive`` passive dimensions."""
        from vaesim.report.collapse import expected_cka_mean_sample

        m = np.where(np.arange(self.latent_dim) < passive, self.PASSIVE_MEAN_VARIANCE, 1.0)
        v = np.where(np.arange(self.latent_dim) < passive, 1.0, 0.05)
        return expected_cka_mean_sample(m, v, 500)

    def write_study(self, study_dir: Path) -> Path:
        """A study directory in the documented layout: spec.yaml, results/*.parquet, runs.parquet,
        training_metrics.parquet, latents.parquet (no checkpoints: the model pictures are skipped)."""
        from vaesim.study.store.tables import planned_result_files

        study_dir.mkdir(parents=True, exist_ok=True)
        spec = dict(name="synthetic", datasets=["dsprites-procedural"],
                    objectives=[{"name": self.objective, "values": list(self.params)}],
                    seeds=list(self.seeds),
                    training={"steps": self.steps[-1], "checkpoints": {"steps": list(self.steps)}},
                    probe={"n": 64, "seed": 0})
        (study_dir / "spec.yaml").write_text(yaml.safe_dump(spec))
        # Readers take only the results files the spec plans: each comparison's rows go to one of them.
        planned = planned_result_files(study_dir)
        results = self.results().assign(a_epoch=0.0, b_epoch=0.0)[list(RESULT_SCHEMA.names)]
        for comparison, part in results.groupby("comparison"):
            target = next((p for p in planned if p.name.startswith(f"{comparison}__")), planned[0])
            planned.remove(target)
            write_table(target, part, RESULT_SCHEMA, checksum=True)
        write_table(study_dir / "runs.parquet", self.runs(), checksum=True)
        write_table(study_dir / "training_metrics.parquet", self.training_metrics(), checksum=True)
        write_table(study_dir / "latents.parquet", self.latents(), checksum=True)
        return study_dir
