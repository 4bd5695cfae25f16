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
from vaesim.study.store import RESULT_SCHEMA, write_table

RESULT_COLUMNS = [
    "dataset", "comparison", "metric", "a_run", "a_objective", "a_param_name", "a_param", "a_seed", "a_step",
    "a_layer", "b_run", "b_objective", "b_param_name", "b_param", "b_seed", "b_step", "b_layer", "n", "score",
    "note",
]
HEADS = ("encoder.mean", "encoder.logvar", "encoder.variance")


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
    mean_sample: callable = field(default=lambda param: 0.95 - 0.05 * param)
    procrustes: callable = field(default=np.sqrt)  # procrustes score as a function of the CKA score
    layers: tuple = LAYER_NAMES

    def run_id(self, param, seed) -> str:
        return f"{self.objective}-{self.param_name}{param:g}-s{seed}"

    def run_list(self):
        return [(p, s) for p in self.params for s in self.seeds]

    def convergence(self, layer: str, step: int) -> float:
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
            return float(self.mean_sample(param)) * (0.5 + 0.5 * step / self.steps[-1])
        return float(np.exp(-abs(i - j) / 4.0))

    def across(self, i: int, j: int) -> float:
        if i != j:
            return float(0.3 * np.exp(-abs(i - j) / 4.0))
        layer = self.layers[i]
        if layer in HEADS:
            return self.head_agreement
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
        for (pa, sa), (pb, sb) in itertools.combinations(self.run_list(), 2):
            comparison = "params" if sa == sb else "seeds" if pa == pb else None
            if comparison is None:
                continue
            for i, j in itertools.product(range(n_layers), repeat=2):
                rows += self._both_metrics(comparison, (pa, sa, final, self.layers[i]),
                                           (pb, sb, final, self.layers[j]), self.across(i, j))
        return pd.DataFrame(rows, columns=RESULT_COLUMNS)

    def runs(self) -> pd.DataFrame:
        return pd.DataFrame(
            [dict(run_id=self.run_id(p, s), dataset="dsprites-procedural", objective=self.objective,
                  param_name=self.param_name, param=p, seed=s, steps=self.steps[-1],
                  active_dims=int(max(0, 10 - p)), cka_mean_sample=float(self.mean_sample(p)))
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

    def write_study(self, study_dir: Path) -> Path:
        """A study directory in the documented layout: spec.yaml, results/*.parquet, runs.parquet,
        training_metrics.parquet (no checkpoints: the model pictures are skipped)."""
        study_dir.mkdir(parents=True, exist_ok=True)
        spec = dict(name="synthetic", datasets=["dsprites-procedural"],
                    objectives={self.objective: {self.param_name: list(self.params)}},
                    seeds=list(self.seeds), steps=self.steps[-1])
        (study_dir / "spec.yaml").write_text(yaml.safe_dump(spec))
        results = self.results().assign(a_epoch=0.0, b_epoch=0.0)[list(RESULT_SCHEMA.names)]
        for comparison, part in results.groupby("comparison"):
            for index, (run, task) in enumerate(part.groupby("a_run")):
                write_table(study_dir / "results" / f"{comparison}__{index:03d}.parquet", task, RESULT_SCHEMA,
                            checksum=True)
        write_table(study_dir / "runs.parquet", self.runs())
        write_table(study_dir / "training_metrics.parquet", self.training_metrics())
        return study_dir
