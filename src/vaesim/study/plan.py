"""Addresses and the task plan of a study (pure: no files are touched).

Every run and every task has a stable address derived from its config: a
readable prefix plus the first 8 hex digits of the SHA-256 of the canonical
JSON of everything that determines its output. Changing a field that matters
gives a new address; changing one that does not (resources, description)
keeps every address.

Stages run in this order, each stage's tasks independent of each other::

    probe    one per dataset: probes/<dataset>.npz and the factors summary
    train    one per run: runs/<run_id>/ (checkpoints, metrics.jsonl, DONE)
    extract  one per (run, checkpoint): summaries/<run_id>/step_{step:08d}.npz
    compare  one per group of model pairs: results/<task>.parquet
    store    one: runs.parquet and training_metrics.parquet
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vaesim.models.plugin_table import architecture_table, is_plugin
from vaesim.study.measures import plugin_metrics, plugin_path
from vaesim.study.spec import StudySpec, param_name

STAGES = ("probe", "train", "extract", "compare", "disentangle", "store")
COMPARISONS = ("within_run", "seeds", "params", "objectives", "factors", "noise_floor")
#: layer pairs of one checkpoint with itself that the findings and figures read under ``comparisons.layer_pairs:
#: matching`` (claim 3's mean against sample, the layer-pairs figure's input against sample)
SAME_CHECKPOINT_PAIRS = (("input", "encoder.sample"), ("encoder.mean", "encoder.sample"))
FACTORS_LAYER = "factors"
DONE_MARKER = "DONE"
# Written by the train task after training: SHA-256 of every checkpoint file.
CHECKPOINT_SUMS = "checkpoint-sums.json"


def stable_hash(obj: Any, length: int = 8) -> str:
    """First ``length`` hex digits of SHA-256 of canonical JSON (sorted keys, floats via repr)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def stable_hash_with_pairs(key: dict, pairs: list[tuple], length: int = 8) -> str:
    """:func:`stable_hash` of ``{**key, "pairs": pairs}`` (the same digits) without encoding each pair through
    :mod:`json`: ``pairs`` of ``(str, int, str, int)`` are joined as text, each run id quoted once. A seeds task
    of 1,000 seeds has 499,500 pairs; this keeps planning linear with a small constant."""
    marker = "\x00vaesim-pairs\x00"
    text = json.dumps({**key, "pairs": marker}, sort_keys=True, separators=(",", ":"), default=str)
    quoted: dict[str, str] = {}

    def q(run_id: str) -> str:
        if run_id not in quoted:
            quoted[run_id] = json.dumps(run_id)
        return quoted[run_id]

    body = "[" + ",".join(f"[{q(a)},{int(s)},{q(b)},{int(t)}]" for a, s, b, t in pairs) + "]"
    text = text.replace(json.dumps(marker), body, 1)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def format_value(value: float) -> str:
    """Readable parameter value for addresses: ``4.0 -> '4'``, ``0.5 -> '0.5'``."""
    return f"{value:g}"


@dataclass(frozen=True)
class RunPlan:
    """One training run of the grid and its address."""

    run_id: str
    dataset: str
    objective: str
    param_name: str
    param: float
    fixed: dict
    seed: int
    config: dict  # everything that determines the run's checkpoints (hashed into run_id)

    @property
    def steps(self) -> list[int]:
        return list(self.config["checkpoint_steps"])

    def params(self) -> dict[str, float]:
        """All objective parameters: the swept one plus the fixed ones."""
        return {self.param_name: self.param, **self.fixed}

    def meta(self) -> dict:
        """Columns that describe this run in the results store."""
        return {
            "run": self.run_id,
            "objective": self.objective,
            "param_name": self.param_name,
            "param": float(self.param),
            "seed": int(self.seed),
        }


@dataclass(frozen=True)
class Task:
    """One unit of work: runs anywhere, writes ``outputs`` (relative to the study dir) atomically.

    Each stage has its own kind (:class:`ProbeTask`, :class:`TrainTask`,
    :class:`ExtractTask`, :class:`CompareTask`, :class:`StoreTask`): a frozen
    dataclass carrying exactly what its stage function reads, picklable so
    it travels to a process pool or a Ray worker.
    """

    stage: ClassVar[str] = ""
    task_id: str
    outputs: tuple[str, ...]
    inputs: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ProbeTask(Task):
    """Draw one dataset's probe set and summarise its ground-truth factors."""

    stage: ClassVar[str] = "probe"
    dataset: str
    n: int
    seed: int
    metrics: tuple[str, ...]
    dataset_root: str | None = None
    device: str = "cpu"


@dataclass(frozen=True, kw_only=True)
class TrainTask(Task):
    """Train one run of the grid (``run.config`` fixes everything it computes)."""

    stage: ClassVar[str] = "train"
    run: RunPlan
    dataset_root: str | None = None
    device: str = "auto"
    tensorboard: bool = False  # also write TensorBoard scalars (DIR/tensorboard/<run_id>); changes no output
    imported: str | None = None  # the import folder the run is adopted from (spec ``imported``) instead of trained

    @property
    def run_id(self) -> str:
        return self.run.run_id


@dataclass(frozen=True, kw_only=True)
class ExtractTask(Task):
    """Record every layer of one checkpoint on the probe set and summarise it."""

    stage: ClassVar[str] = "extract"
    run_id: str
    dataset: str
    step: int
    layers: tuple[str, ...]
    metrics: tuple[str, ...]
    probe_seed: int
    keep_activations: tuple[str, ...] = ()
    device: str = "cpu"
    sample_noise: str = "independent"  # eps of the sampled layer: per (run, step) or shared by all models
    resample: bool = False  # also record the noise-driven layers with a second eps (the run's noise floor)
    cache_summaries: bool = False  # spec summaries: cache or planned: no summary file among the outputs
    cache_file: bool = False  # spec summaries: planned, a checkpoint within the cap: summaries written as a cache entry
    decoder_input: str = "sample"  # probe.decoder_input: the model's own sample, or the final checkpoint's mean code
    final_step: int = -1  # the run's final step (whose mean code drives the decoder with decoder_input final_mean)

    @property
    def writes_summaries(self) -> bool:
        """Whether this task writes the checkpoint's summary files (as outputs, or as planned cache entries)."""
        return not self.cache_summaries or self.cache_file


@dataclass(frozen=True, kw_only=True)
class CompareTask(Task):
    """Compare one group of model pairs ``(a_run, a_step, b_run, b_step)``.

    ``runs`` holds the plan of every run involved (their columns in the
    store); the extraction fields let a corrupt summary be recomputed on the
    spot (:meth:`extract_task`).
    """

    stage: ClassVar[str] = "compare"
    comparison: str
    dataset: str
    pairs: tuple[tuple[str, int, str, int], ...]
    runs: tuple[RunPlan, ...]
    layers: tuple[str, ...]
    metrics: tuple[str, ...]
    batch_size: int
    probe_seed: int
    keep_activations: tuple[str, ...] = ()
    device: str = "cpu"
    sample_noise: str = "independent"
    resample_steps: tuple[int, ...] = ()  # the checkpoints whose extraction also records a second eps
    cache_summaries: bool = False  # spec summaries: cache or planned: no summary file is an input
    read_cache: bool = False  # spec summaries: planned: a checkpoint's cache entry is read when present and intact
    decoder_input: str = "sample"
    final_step: int = -1
    layer_pairs: str = "all"  # comparisons.layer_pairs: every layer pair, or the matching ones (matching_layer_pairs)

    def run(self, run_id: str) -> RunPlan:
        """The plan of one involved run."""
        for run in self.runs:
            if run.run_id == run_id:
                return run
        raise KeyError(f"run {run_id} is not part of {self.task_id}")

    def extract_task(self, run_id: str, step: int) -> "ExtractTask":
        """The extract task that writes the summaries of ``run_id`` at ``step``."""
        return extract_task(run_id, self.dataset, step, layers=self.layers, metrics=self.metrics,
                            probe_seed=self.probe_seed, keep_activations=self.keep_activations,
                            device=self.device, sample_noise=self.sample_noise,
                            resample=step in self.resample_steps, cache_summaries=self.cache_summaries,
                            decoder_input=self.decoder_input, final_step=self.final_step)


@dataclass(frozen=True, kw_only=True)
class DisentangleTask(Task):
    """Disentanglement metrics of one checkpoint (:func:`vaesim.metrics.evaluate_disentanglement`)."""

    stage: ClassVar[str] = "disentangle"
    run: RunPlan
    step: int
    metrics: tuple[str, ...]
    protocol_fraction: float = 1.0
    seed: int = 0
    dataset_root: str | None = None
    device: str = "cpu"


@dataclass(frozen=True, kw_only=True)
class UDRTask(Task):
    """UDR across the seeds of one (dataset, objective, value) at one step (:func:`vaesim.metrics.udr.udr`)."""

    stage: ClassVar[str] = "disentangle"
    runs: tuple[RunPlan, ...]
    step: int
    points: int
    seed: int = 0
    dataset_root: str | None = None
    device: str = "cpu"


@dataclass(frozen=True, kw_only=True)
class StoreTask(Task):
    """Write the run tables (``runs.parquet``, ``training_metrics.parquet``, ``latents.parquet``)."""

    stage: ClassVar[str] = "store"
    runs: tuple[RunPlan, ...]
    steps: tuple[int, ...] = ()  # recorded checkpoints whose latent statistics go into latents.parquet


@dataclass
class StudyPlan:
    """Every run and every task of a spec, by stage."""

    spec: StudySpec
    runs: list[RunPlan]
    tasks: dict[str, list[Task]] = field(default_factory=dict)

    def all_tasks(self) -> list[Task]:
        return [task for stage in STAGES for task in self.tasks.get(stage, [])]

    def run(self, run_id: str) -> RunPlan:
        return self._by_id[run_id]

    def __post_init__(self) -> None:
        self._by_id = {run.run_id: run for run in self.runs}


# -- layout ---------------------------------------------------------------


def probe_path(dataset: str) -> str:
    return f"probes/{dataset}.npz"


def probe_info_path(dataset: str) -> str:
    return f"probes/{dataset}.json"


def factors_summary_path(dataset: str) -> str:
    return f"summaries/{FACTORS_LAYER}/{dataset}.npz"


def run_dir(run_id: str) -> str:
    return f"runs/{run_id}"


def checkpoint_sums_path(run_id: str) -> str:
    return f"{run_dir(run_id)}/{CHECKPOINT_SUMS}"


def summary_path(run_id: str, step: int) -> str:
    return f"summaries/{run_id}/step_{step:08d}.npz"


def resampled_path(run_id: str, step: int) -> str:
    """Summaries of the noise-driven layers recorded again with a second eps (noise floor)."""
    return f"summaries/{run_id}/step_{step:08d}.resampled.npz"


DECODER_INPUTS = ("sample", "final_mean")  # probe.decoder_input


def noise_layers(layers, decoder_input: str = "sample") -> list[str]:
    """The layers computed from the sampled code: ``encoder.sample`` and, unless the decoder is recorded on a
    fixed code (``decoder_input`` ``final_mean``), every ``decoder.*`` layer."""
    return [layer for layer in layers
            if layer == "encoder.sample" or (decoder_input == "sample" and layer.startswith("decoder."))]


def latents_path(run_id: str, step: int) -> str:
    """Per-dimension statistics of the latent code on the probe set (``vaesim.activations.latent_statistics``)."""
    return f"summaries/{run_id}/step_{step:08d}.latents.parquet"


def activations_path(run_id: str, step: int) -> str:
    return f"activations/{run_id}/step_{step:08d}.npz"


def checksum_path(path: str) -> str:
    """Sidecar holding the SHA-256 of ``path``; a file counts as written only with it."""
    return path + ".sha256"


def results_path(task_id: str) -> str:
    return "results/" + task_id.removeprefix("compare/").replace("/", "__") + ".parquet"


RUNS_TABLE = "runs.parquet"
VARIANTS_DIR = "variants"  # DIR/variants/NAME/: the study measured another way (vaesim.study.run.variants)
VARIANT_FILE = "variant.json"  # in a variant's directory: how it was made (vaesim.study.run.variants)
TRAINING_METRICS_TABLE = "training_metrics.parquet"
LATENTS_TABLE = "latents.parquet"


# -- runs -----------------------------------------------------------------


def fixed_params(fixed: dict) -> dict:
    """An objective's fixed parameters as stored in run configs: numbers as floats, choices (``sampling``) as text."""
    return {k: v if isinstance(v, str) else float(v) for k, v in fixed.items()}


def plan_runs(spec: StudySpec) -> list[RunPlan]:
    """Every (dataset, objective, value, seed) of the grid, in a stable order."""
    training = spec.training.model_dump(mode="json")
    training.pop("checkpoints")
    if training.get("precision") == "32":  # the default is left out: run ids as before the option existed
        training.pop("precision")
    training["sample_noise"] = spec.probe.sample_noise  # the training monitor follows the probe's noise rule
    if spec.imported is not None:  # adopted, not trained: only what the imported run must match is its config
        training = {"source": "imported", "steps": spec.training.steps, "architecture": spec.training.architecture,
                    "latent_dim": spec.training.latent_dim, "init": spec.training.init}
    if is_plugin(spec.training.architecture):  # the plug-in's code is part of what a run is: changed code, new runs
        training["architecture_sha256"] = architecture_table(spec.training.architecture).source_sha256
    steps = spec.recorded_steps()
    runs = []
    for dataset in spec.datasets:
        for objective in spec.objectives:
            name = param_name(objective)
            for value in objective.values:
                for seed in spec.seeds:
                    config = {
                        "dataset": dataset,
                        "objective": objective.name,
                        "params": {name: float(value), **fixed_params(objective.fixed)},
                        "seed": int(seed),
                        "checkpoint_steps": steps,
                        **training,
                    }
                    prefix = f"{dataset}_{objective.name}_{name}={format_value(value)}_seed={seed}"
                    runs.append(
                        RunPlan(
                            run_id=f"{prefix}_{stable_hash(config)}",
                            dataset=dataset,
                            objective=objective.name,
                            param_name=name,
                            param=float(value),
                            fixed=fixed_params(objective.fixed),
                            seed=int(seed),
                            config=config,
                        )
                    )
    return runs


# -- comparisons ----------------------------------------------------------


def comparison_groups(spec: StudySpec, runs: list[RunPlan]) -> list[tuple[str, str, list[tuple]]]:
    """Model pairs to compare, grouped into tasks: ``[(comparison, label, pairs)]``.

    A pair is ``(a_run, a_step, b_run, b_step)``; for ``factors`` ``b_run`` is
    the same run and the b side is the ground-truth factors. Groups keep each
    task's memory bounded (it loads each model's summaries once):

    - ``within_run``: one task per run; pairs ``s_i <= s_j`` over its
      checkpoints (``all``), ``(s, final)`` for every ``s`` (``final``), or
      ``(s, s)`` and ``(s, final)`` (``self_and_final``).
    Cross-model types use every checkpoint step, or only the initial (step
    0, the untrained baseline) and the final one when ``across_steps: final``.
    Steps are the spec's recorded steps: the schedule plus step 0.

    - ``seeds``: one task per (dataset, objective, value, step); every
      unordered pair of distinct seeds.
    - ``params``: one task per (dataset, objective, seed, step); every
      unordered pair of distinct values.
    - ``objectives``: one task per (dataset, seed, step); every pair of runs
      with different objectives (all their values), same seed.
    - ``factors``: one task per run; every checkpoint against the factors.
    - ``noise_floor``: one task per run; the noise-driven layers of its final
      checkpoint (``comparisons.noise_floor: every``: of every checkpoint after
      step 0) against the same checkpoint recorded with a second eps.
    """
    comps = spec.comparisons
    steps = spec.recorded_steps()
    # ``final``: the final step, plus step 0 (the untrained baseline of every cross-model comparison)
    across = steps if comps.across_steps == "all" else sorted({steps[0], steps[-1]})
    groups: list[tuple[str, str, list[tuple]]] = []
    if comps.within_run != "none":
        for run in runs:
            if comps.within_run == "all":
                chosen = list(itertools.combinations_with_replacement(steps, 2))
            elif comps.within_run == "final":
                chosen = [(s, steps[-1]) for s in steps]
            else:  # self_and_final
                chosen = [(s, s) for s in steps] + [(s, steps[-1]) for s in steps[:-1]]
            pairs = [(run.run_id, a, run.run_id, b) for a, b in chosen]
            groups.append(("within_run", run.run_id, pairs))

    def grouped(key_fn):
        buckets: dict[tuple, list[RunPlan]] = {}
        for run in runs:
            buckets.setdefault(key_fn(run), []).append(run)
        return buckets

    if comps.seeds:
        for key, members in grouped(lambda r: (r.dataset, r.objective, r.param_name, r.param)).items():
            dataset, objective, name, value = key
            for step in across:
                pairs = [(a.run_id, step, b.run_id, step) for a, b in itertools.combinations(members, 2)]
                if pairs:
                    label = f"{dataset}_{objective}_{name}={format_value(value)}_step={step}"
                    groups.append(("seeds", label, pairs))
    if comps.params:
        for key, members in grouped(lambda r: (r.dataset, r.objective, r.seed)).items():
            dataset, objective, seed = key
            for step in across:
                pairs = [(a.run_id, step, b.run_id, step) for a, b in itertools.combinations(members, 2)]
                if pairs:
                    groups.append(("params", f"{dataset}_{objective}_seed={seed}_step={step}", pairs))
    if comps.objectives:
        for key, members in grouped(lambda r: (r.dataset, r.seed)).items():
            dataset, seed = key
            for step in across:
                pairs = [
                    (a.run_id, step, b.run_id, step)
                    for a, b in itertools.combinations(members, 2)
                    if a.objective != b.objective
                ]
                if pairs:
                    groups.append(("objectives", f"{dataset}_seed={seed}_step={step}", pairs))
    if comps.factors:
        for run in runs:
            groups.append(("factors", run.run_id, [(run.run_id, s, run.run_id, s) for s in steps]))
    floor_steps = noise_floor_steps(spec)
    if floor_steps:
        for run in runs:
            groups.append(("noise_floor", run.run_id, [(run.run_id, s, run.run_id, s) for s in floor_steps]))
    return groups


def model_pair_count(spec: StudySpec) -> int:
    """How many model pairs :func:`comparison_groups` makes for ``spec``, counted from the grid's sizes alone
    (no run or pair is built: a grid too large to plan is refused before planning)."""
    from math import comb

    comps = spec.comparisons
    schedule = spec.training.checkpoints
    if schedule.steps is None and schedule.count > 100_000:  # an upper bound: the list itself would not fit
        steps = schedule.count + 1
    else:
        steps = len(spec.recorded_steps())
    across = steps if comps.across_steps == "all" else min(steps, 2)
    seeds, datasets = len(set(spec.seeds)), len(spec.datasets)
    values = [len(objective.values) for objective in spec.objectives]
    runs = datasets * sum(values) * seeds
    total = 0
    if comps.within_run != "none":
        per_run = {"all": comb(steps + 1, 2), "final": steps, "self_and_final": 2 * steps - 1}[comps.within_run]
        total += runs * per_run
    if comps.seeds:
        total += datasets * sum(values) * across * comb(seeds, 2)
    if comps.params:
        total += datasets * seeds * across * sum(comb(v, 2) for v in values)
    if comps.objectives:
        total += datasets * seeds * across * (comb(sum(values), 2) - sum(comb(v, 2) for v in values))
    if comps.factors:
        total += runs * steps
    setting = comps.noise_floor
    if (setting is not False and spec.probe.sample_noise == "independent"
            and noise_layers(spec.layer_names(), spec.probe.decoder_input)):  # as noise_floor_steps, without steps
        total += runs * ((steps - 1) if setting == "every" else 1)
    return total


#: the comparisons that ``comparisons.layer_pairs: matching`` narrows (factors and noise floors are one layer
#: against one other already)
MATCHABLE = ("within_run", "seeds", "params", "objectives")


def matching_layer_pairs(same_checkpoint: bool, a_layers: list[str], b_layers: list[str]) -> list[tuple[str, str]]:
    """The layer pairs ``comparisons.layer_pairs: matching`` scores for one model pair, in ``a_layers`` order.

    ``same_checkpoint`` (a checkpoint with itself): the :data:`SAME_CHECKPOINT_PAIRS` both of whose layers are
    recorded; else each layer of ``a_layers`` that ``b_layers`` has, with itself.
    """
    if same_checkpoint:
        return [(a, b) for a, b in SAME_CHECKPOINT_PAIRS if a in a_layers and b in b_layers]
    return [(name, name) for name in a_layers if name in b_layers]


def task_layer_pairs(task: "CompareTask", pair: tuple[str, int, str, int],
                     layers: list[str] | None = None) -> list[tuple[str, str]]:
    """The layer pairs ``task`` scores for one model pair (what its stage asks of ``compare``; for estimates).

    ``layers``: the recorded layers (default ``task.layers``). Factors: each layer against the ``factors``
    layer; a noise floor: each noise-driven layer against its second recording; a checkpoint with itself: each
    unordered pair once (``matching``: :data:`SAME_CHECKPOINT_PAIRS`); two checkpoints: every ``(a, b)``
    (``matching``: the same layer).
    """
    layers = list(task.layers if layers is None else layers)
    a_run, a_step, b_run, b_step = pair
    if task.comparison == "factors":
        return [(name, FACTORS_LAYER) for name in layers]
    if task.comparison == "noise_floor":
        return [(name, name) for name in noise_layers(layers, task.decoder_input)]
    same = (a_run, a_step) == (b_run, b_step)
    if task.layer_pairs == "matching":
        return matching_layer_pairs(same, layers, layers)
    if same:
        return [(la, lb) for i, la in enumerate(layers) for lb in layers[i:]]
    return [(la, lb) for la in layers for lb in layers]


def noise_floor_steps(spec: StudySpec) -> tuple[int, ...]:
    """The steps recorded twice for the noise floor: the final one, every one after step 0 (``every``), or none.

    None when the spec has no floor: ``comparisons.noise_floor`` false, shared eps (every model sees the
    same noise, so there is no second draw to compare with), or no noise-driven layer recorded.
    """
    setting = spec.comparisons.noise_floor
    wanted = (setting is not False and spec.probe.sample_noise == "independent"
              and bool(noise_layers(spec.layer_names(), spec.probe.decoder_input)))
    if not wanted:
        return ()
    steps = spec.recorded_steps()
    return tuple(s for s in steps if s > 0) if setting == "every" else (steps[-1],)


def extract_task(run_id: str, dataset: str, step: int, *, layers: tuple[str, ...], metrics: tuple[str, ...],
                 probe_seed: int, keep_activations: tuple[str, ...] = (), device: str = "cpu",
                 sample_noise: str = "independent", resample: bool = False,
                 cache_summaries: bool = False, decoder_input: str = "sample", final_step: int = -1) -> ExtractTask:
    """The extract task of one checkpoint, with its outputs and inputs (one definition for every caller).

    ``cache_summaries``: no summary files among the outputs (the compare tasks recompute them).
    ``decoder_input`` ``final_mean``: the decoder is recorded on the mean code of the run's checkpoint at
    ``final_step`` (its checksum file is an input already: the run's checkpoint sums).
    """
    if decoder_input not in DECODER_INPUTS:
        raise ValueError(f"extract_task: decoder_input={decoder_input!r} is unknown; expected one of "
                         f"{list(DECODER_INPUTS)}")
    if decoder_input == "final_mean" and final_step < 0:
        raise ValueError("extract_task: decoder_input 'final_mean' needs the run's final_step")
    outputs = [latents_path(run_id, step), checksum_path(latents_path(run_id, step))]
    if not cache_summaries:
        outputs = [summary_path(run_id, step), checksum_path(summary_path(run_id, step))] + outputs
        if resample:
            outputs += [resampled_path(run_id, step), checksum_path(resampled_path(run_id, step))]
    if keep_activations:
        outputs += [activations_path(run_id, step), checksum_path(activations_path(run_id, step))]
    if plugin_metrics(metrics) and not cache_summaries:  # plug-in measures' summaries (vaesim.study.measures)
        outputs += [plugin_path(summary_path(run_id, step)), checksum_path(plugin_path(summary_path(run_id, step)))]
    return ExtractTask(
        task_id=f"extract/{run_id}/step_{step:08d}",
        outputs=tuple(outputs),
        inputs=(checkpoint_sums_path(run_id), probe_path(dataset)),
        run_id=run_id, dataset=dataset, step=int(step), layers=tuple(layers), metrics=tuple(metrics),
        probe_seed=int(probe_seed), keep_activations=tuple(keep_activations), device=device,
        sample_noise=sample_noise, resample=resample, cache_summaries=cache_summaries,
        decoder_input=decoder_input, final_step=int(final_step) if decoder_input == "final_mean" else -1,
    )


# -- the whole plan -------------------------------------------------------


def plan_study(spec: StudySpec) -> StudyPlan:
    """Runs and tasks of ``spec``; a pure function of the spec."""
    runs = plan_runs(spec)
    steps = spec.recorded_steps()
    resample_steps = noise_floor_steps(spec)
    layers = spec.layer_names()
    probe = spec.probe.model_dump()
    if probe["decoder_input"] == "sample":  # the default: task ids of studies planned before it existed stay
        del probe["decoder_input"]
    decoder = {"decoder_input": spec.probe.decoder_input, "final_step": steps[-1]}
    cache = spec.summaries in ("cache", "planned")  # planned: the cache entries are not outputs (summary_cache)
    plan = StudyPlan(spec=spec, runs=runs)
    by_id = {run.run_id: run for run in runs}

    plan.tasks["probe"] = [
        ProbeTask(
            task_id=f"probe/{dataset}",
            outputs=(
                probe_path(dataset),
                checksum_path(probe_path(dataset)),
                probe_info_path(dataset),
                factors_summary_path(dataset),
                checksum_path(factors_summary_path(dataset)),
                checksum_path(probe_info_path(dataset)),
            ) + ((plugin_path(factors_summary_path(dataset)), checksum_path(plugin_path(factors_summary_path(dataset))))
                 if plugin_metrics(spec.metrics) else ()),
            dataset=dataset, n=spec.probe.n, seed=spec.probe.seed, metrics=tuple(spec.metrics),
            dataset_root=spec.data_root, device=spec.device,
        )
        for dataset in spec.datasets
    ]
    plan.tasks["train"] = [
        TrainTask(
            task_id=f"train/{run.run_id}",
            outputs=(checkpoint_sums_path(run.run_id),),
            run=run, dataset_root=spec.data_root, device=spec.device, tensorboard=spec.tensorboard,
            imported=spec.imported,
        )
        for run in runs
    ]
    plan.tasks["extract"] = [
        extract_task(run.run_id, run.dataset, step, layers=tuple(layers), metrics=tuple(spec.metrics),
                     probe_seed=spec.probe.seed, keep_activations=tuple(spec.kept_layers()), device=spec.device,
                     sample_noise=spec.probe.sample_noise, resample=step in resample_steps,
                     cache_summaries=cache, **decoder)
        for run in runs
        for step in steps
    ]

    compare = []
    for comparison, label, pairs in comparison_groups(spec, runs):
        involved = sorted({p[0] for p in pairs} | {p[2] for p in pairs})
        key = {"comparison": comparison, "metrics": spec.metrics, "layers": layers, "probe": probe}
        scope = spec.comparisons.layer_pairs if comparison in MATCHABLE else "all"
        if scope != "all":  # the default: task ids of studies planned before layer_pairs existed stay
            key["layer_pairs"] = scope
        task_id = f"compare/{comparison}/{label}_{stable_hash_with_pairs(key, pairs)}"
        dataset = by_id[pairs[0][0]].dataset
        a_sides = {(p[0], p[1]) for p in pairs}
        if comparison == "factors":
            inputs = sorted(summary_path(run_id, step) for run_id, step in a_sides) + [factors_summary_path(dataset)]
        else:
            inputs = sorted(summary_path(run_id, step) for run_id, step in a_sides | {(p[2], p[3]) for p in pairs})
        if comparison == "noise_floor":
            inputs = inputs + [resampled_path(p[0], p[1]) for p in pairs]
        if cache:  # the summaries are recomputed from the checkpoints on the probe set
            inputs = sorted({checkpoint_sums_path(run_id) for run_id in involved} | {probe_path(dataset)}) + (
                [factors_summary_path(dataset)] if comparison == "factors" else [])
        compare.append(
            CompareTask(
                task_id=task_id,
                outputs=(results_path(task_id), checksum_path(results_path(task_id))),
                inputs=tuple(inputs),
                comparison=comparison,
                dataset=dataset,
                pairs=tuple(pairs),  # (run, int step, run, int step): the steps are the spec's ints
                runs=tuple(by_id[run_id] for run_id in involved),
                layers=tuple(layers),
                metrics=tuple(spec.metrics),
                batch_size=spec.training.batch_size,
                probe_seed=spec.probe.seed,
                keep_activations=tuple(spec.kept_layers()),
                device=spec.device,
                sample_noise=spec.probe.sample_noise,
                resample_steps=resample_steps,
                cache_summaries=cache,
                read_cache=spec.summaries == "planned",
                **decoder,
                layer_pairs=scope,
            )
        )
    plan.tasks["compare"] = compare
    plan.tasks["disentangle"] = disentangle_tasks(spec, runs)
    plan.tasks["store"] = [
        StoreTask(
            task_id="store/runs",
            outputs=(TRAINING_METRICS_TABLE, checksum_path(TRAINING_METRICS_TABLE), LATENTS_TABLE,
                     checksum_path(LATENTS_TABLE), RUNS_TABLE, checksum_path(RUNS_TABLE)),
            runs=tuple(runs),  # no inputs: the tables hold the finished runs even when some failed
            steps=tuple(steps),
        )
    ]
    return plan


def disentanglement_path(run_id: str, step: int) -> str:
    return f"disentanglement/{run_id}/step_{step:08d}.parquet"


def udr_path(label: str, step: int) -> str:
    return f"disentanglement/udr/{label}_step_{step:08d}.parquet"


def disentangle_tasks(spec: StudySpec, runs: list[RunPlan]) -> list[Task]:
    """Metric tasks (one per run and chosen checkpoint) and UDR tasks (one per seed group and step)."""
    options = spec.disentanglement
    if options is None:
        return []
    from vaesim.metrics.protocol import METRIC_NAMES

    metrics = tuple(options.metrics or METRIC_NAMES)
    tasks: list[Task] = []
    for run in runs:
        steps = run.steps if options.checkpoints == "all" else run.steps[-1:]
        for step in steps:
            path = disentanglement_path(run.run_id, step)
            tasks.append(DisentangleTask(
                task_id=f"disentangle/{run.run_id}/step_{step:08d}", outputs=(path, checksum_path(path)),
                inputs=(checkpoint_sums_path(run.run_id),), run=run, step=int(step), metrics=metrics,
                protocol_fraction=options.protocol_fraction, seed=options.seed, dataset_root=spec.data_root,
                device=spec.device))
    if options.udr:
        groups: dict[tuple, list[RunPlan]] = {}
        for run in runs:
            groups.setdefault((run.dataset, run.objective, run.param_name, run.param,
                               stable_hash(run.fixed)), []).append(run)
        for (dataset, objective, param_name, param, _), members in groups.items():
            if len(members) < 2:
                continue
            label = f"{dataset}__{objective}-{param_name}{format_value(param)}_{stable_hash([r.run_id for r in members])}"
            steps = members[0].steps if options.checkpoints == "all" else members[0].steps[-1:]
            for step in steps:
                path = udr_path(label, step)
                tasks.append(UDRTask(
                    task_id=f"udr/{label}/step_{step:08d}", outputs=(path, checksum_path(path)),
                    inputs=tuple(checkpoint_sums_path(r.run_id) for r in members), runs=tuple(members),
                    step=int(step), points=options.udr_points, seed=options.seed, dataset_root=spec.data_root,
                    device=spec.device))
    return tasks


# -- spec differences -----------------------------------------------------

# Fields that change no output: who runs it and how, not what is computed.
NEUTRAL_FIELDS = ("name", "description", "data_root", "device", "resources", "tensorboard", "summaries_cap_gb")


def output_fields(spec: StudySpec) -> dict[str, Any]:
    """Flattened ``{dotted.field: value}`` of every field that changes some output."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            flat[prefix] = value

    data = spec.model_dump(mode="json")
    for name in NEUTRAL_FIELDS:
        data.pop(name, None)
    walk("", data)
    return flat


def spec_differences(old: StudySpec, new: StudySpec) -> list[str]:
    """Human-readable ``field: old -> new`` lines for fields that change outputs."""
    a, b = output_fields(old), output_fields(new)
    lines = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "(absent)") != b.get(key, "(absent)"):
            lines.append(f"{key}: {a.get(key, '(absent)')!r} -> {b.get(key, '(absent)')!r}")
    return lines
