"""Study specification: one YAML file declares a whole grid.

A spec names the datasets, the objectives with their regularisation values,
the seeds, the training budget and checkpoint schedule, the probe set, the
similarity metrics and which comparisons to make. :func:`load_spec` reads a
file path or a preset name (``evidence``, ``paper``, ``quick``, ``zoo``,
``training-length``) and returns a validated :class:`StudySpec`; every
problem is reported as one ``ValueError`` that names
the field, what was expected, what arrived and how to fix it.

The field reference lives in ``docs/study.md``; ``docs/example-study.yaml`` is
a documented example to copy.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (AliasChoices, BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator,
                      model_validator)

PRESET_DIR = Path(__file__).with_name("presets")
METRICS = ("cka", "cka_debiased", "procrustes")
WITHIN_RUN_MODES = ("all", "final", "self_and_final", "none")


# Integers must be integers (not true/false, not 5.0 or "5"); floats must be finite (no .inf/.nan).
Int = Annotated[int, Strict()]
# Seeds feed numpy and torch generators: 0 <= seed < 2^32.
SEED_LIMIT = 2**32
Seed = Annotated[int, Strict(), Field(ge=0, lt=SEED_LIMIT)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _number_or_text(value: float | str) -> float | str:
    """A number written as text (``"1000"``, ``"1e3"``) is the number: the same run as ``1000``."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


class ObjectiveSpec(_Strict):
    """One objective and the values of its main regularisation parameter.

    ``param`` defaults to the objective's main parameter
    (``vaesim.models.main_param``); ``fixed`` holds the other parameters,
    e.g. ``{gamma: 1000, iteration_threshold: 100000}`` for ``annealed_vae``,
    or a choice by name such as ``{sampling: stratified}`` for ``beta_tc_vae``
    (its total-correlation estimator: ``mws``, the default, or ``stratified``).
    """

    name: str
    param: str | None = None
    values: list[float] = Field(min_length=1)
    fixed: dict[str, float | str] = Field(default_factory=dict)

    @field_validator("values")
    @classmethod
    def _distinct_finite(cls, values: list[float]) -> list[float]:
        if any(not math.isfinite(v) for v in values):
            raise ValueError(f"values must be finite numbers; got {values}")
        if any(v < 0 for v in values):
            raise ValueError(f"values are regularisation strengths and must be >= 0; got {values}")
        if len(set(values)) != len(values):
            raise ValueError(f"values must be distinct; got {values} (remove the repeats)")
        return values

    @field_validator("fixed")
    @classmethod
    def _non_negative(cls, fixed: dict[str, float | str]) -> dict[str, float | str]:
        fixed = {k: _number_or_text(v) for k, v in fixed.items()}
        negative = {k: v for k, v in fixed.items() if not isinstance(v, str) and v < 0}
        if negative:
            raise ValueError(f"fixed parameters are strengths, capacities or step counts and must be >= 0; "
                             f"got {negative}")
        return fixed


class CheckpointSpec(_Strict):
    """Which training steps are saved and compared.

    ``schedule: even`` places ``count`` checkpoints evenly over
    ``[0, steps]`` when ``include_init`` (step 0 is the initialisation; the
    final step is always included), or evenly after training starts
    (``steps/count, 2 steps/count, ..., steps``; the seed paper's protocol)
    when not; ``schedule: log`` spaces them geometrically between
    ``log_first`` and ``steps`` (plus step 0 when ``include_init``), which
    resolves early learning better; ``steps`` lists them explicitly.

    Whatever the schedule, every study also records step 0, the initial
    weights (:meth:`StudySpec.recorded_steps`): it is the baseline of every
    verdict (what the architecture gives without learning) and is never
    counted as a learned state.
    """

    schedule: Literal["even", "log"] = "even"
    count: Int = Field(default=5, ge=2)
    include_init: bool = True
    log_first: Int | None = Field(default=None, ge=1)
    steps: list[Int] | None = None

    @field_validator("steps")
    @classmethod
    def _sorted_steps(cls, steps: list[int] | None) -> list[int] | None:
        if steps is None:
            return steps
        if not steps:
            raise ValueError("steps must list at least one step (or be left out to use the schedule)")
        if any(s < 0 for s in steps) or sorted(set(steps)) != list(steps):
            raise ValueError(f"steps must be distinct, >= 0 and increasing; got {steps}")
        return steps


class TrainingSpec(_Strict):
    """Training budget, optimiser (Adam) and architecture of every run."""

    steps: Int = Field(ge=1)
    batch_size: Int = Field(default=64, ge=1)
    lr: float = Field(default=1e-4, gt=0)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = Field(default=1e-8, gt=0)
    latent_dim: Int = Field(default=10, ge=1)
    architecture: str = "conv"
    reconstruction: str = "bernoulli"
    checkpoints: CheckpointSpec = Field(default_factory=CheckpointSpec)
    log_every: Int = Field(default=100, ge=1)
    monitor_every: Int = Field(default=0, ge=0)
    init: Literal["glorot", "pytorch"] = "glorot"
    validation_split: float = Field(default=0.0, ge=0.0, lt=1.0)
    #: "32" or "bf16-mixed" (Lightning's names): the forward pass in bfloat16 under torch.autocast; part of the
    #: run id when not "32"; refused at training where the CPU or GPU has no bfloat16 support
    precision: Literal["32", "bf16-mixed"] = "32"

    @field_validator("adam_betas")
    @classmethod
    def _betas(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Adam's betas must each lie in [0, 1); got {list(betas)}")
        return betas

    @model_validator(mode="after")
    def _checkpoints_fit(self) -> "TrainingSpec":
        # checked before any list of steps is built: a count of 10^9 must not hang planning
        most = self.steps + 1
        if self.checkpoints.steps is None and self.checkpoints.count > most:
            raise ValueError(f"checkpoints.count: {self.checkpoints.count:,} asked for, but a run of {self.steps:,} "
                             f"steps has at most {most:,} distinct checkpoints; use a count of at most {most:,}")
        return self


class ProbeSpec(_Strict):
    """The fixed probe set every checkpoint is recorded on: ``n`` unique examples drawn with ``seed``.

    ``sample_noise``: the eps of the sampled layer. ``independent`` (default,
    as the seed paper's library): every (run, checkpoint) draws its own eps,
    seeded by (probe seed, run id, step). ``shared``: every model sees the
    same eps, which makes the sampled and decoder layers of unrelated models
    look similar (see docs/study.md).

    ``decoder_input``: what the decoder's layers are recorded on. ``sample``
    (default, as the seed paper): the model's own sample ``mean + sigma * eps``
    at each checkpoint. ``final_mean``: at every checkpoint of a run, the mean
    code of the run's final checkpoint on the probe set, so a decoder layer
    changes between checkpoints only through the decoder's own weights, not
    through the encoder's drifting code or a fresh eps (what claim 1 needs to
    time the decoder's own learning; docs/study.md, "Findings").
    """

    n: Int = Field(ge=2)
    seed: Seed = 0
    sample_noise: Literal["independent", "shared"] = "independent"
    decoder_input: Literal["sample", "final_mean"] = "sample"


class DisentanglementSpec(_Strict):
    """Disentanglement metrics and UDR per checkpoint (:mod:`vaesim.metrics`).

    ``checkpoints``: ``final`` (each run's last checkpoint) or ``all``.
    ``metrics``: names from :data:`vaesim.metrics.METRIC_NAMES` (default all).
    ``protocol_fraction``: scale of disentanglement_lib's sample sizes
    (1.0 = the protocol: 10,000 train / 5,000 test points, batches of 64).
    ``udr``: UDR (Lasso and Spearman) across the seeds of each (dataset,
    objective, value) on ``udr_points`` images. ``seed``: every draw.
    """

    checkpoints: Literal["final", "all"] = "final"
    metrics: list[str] | None = None
    protocol_fraction: float = Field(default=1.0, gt=0.0, le=1.0)
    udr: bool = True
    udr_points: int = Field(default=10000, ge=10)
    seed: int = Field(default=0, ge=0)

    @field_validator("metrics")
    @classmethod
    def _known(cls, metrics: list[str] | None) -> list[str] | None:
        from vaesim.metrics.protocol import METRIC_NAMES

        if metrics is not None:
            unknown = [m for m in metrics if m not in METRIC_NAMES]
            if unknown or not metrics:
                raise ValueError(f"unknown disentanglement metrics {unknown}; known: {list(METRIC_NAMES)}")
        return metrics


class ComparisonsSpec(_Strict):
    """Which comparisons to make (see docs/study.md for the exact pairs).

    ``within_run``: ``all`` = every checkpoint of a run against every other
    (and itself), ``final`` = every checkpoint against the final one,
    ``self_and_final`` = each checkpoint against itself (layer x layer at
    that step) and against the final one, ``none``.
    ``seeds`` / ``params`` / ``objectives``: across seeds, regularisation
    values, objectives, at the same step; ``across_steps`` says at which
    steps (``all`` checkpoints or only the ``final`` one). ``factors``: each
    checkpoint against the probe set's ground-truth factors, treated as a
    layer named ``factors``. ``noise_floor`` (with independent sampling
    noise): a checkpoint is recorded a second time with another eps, and its
    noise-driven layers (``encoder.sample``, and the decoder's unless
    ``probe.decoder_input`` is ``final_mean``) are compared with the first
    recording: the similarity that sampling noise alone leaves, below which no
    within-run curve of those layers can rise. ``true`` / ``final``: each
    run's final checkpoint; ``every``: every checkpoint after step 0 (the
    posterior variance early in training is many times its final value, so a
    floor measured at the end understates the noise at the start).
    ``layer_pairs``: ``all`` = every layer of one side against every layer of
    the other (the paper's layer x layer heatmaps); ``matching`` = only what
    the findings read: two different checkpoints (another step, seed,
    strength or objective) on the same layer, and one checkpoint with itself on
    the pairs of :data:`vaesim.study.plan.SAME_CHECKPOINT_PAIRS` (mean against
    sample, input against sample). Every score it keeps is the score ``all``
    stores; the heatmaps and the layer x layer views have no data.
    """

    within_run: Literal["all", "final", "self_and_final", "none"] = "all"
    layer_pairs: Literal["all", "matching"] = "all"
    across_steps: Literal["all", "final"] = "all"
    seeds: bool = True
    params: bool = True
    objectives: bool = True
    factors: bool = True
    noise_floor: bool | Literal["final", "every"] = True


class TaskResources(_Strict):
    """Resources one task requests from the Ray executor (fractional GPUs allowed)."""

    num_cpus: float = Field(default=1, gt=0)
    num_gpus: float = Field(default=0, ge=0)


class ResourcesSpec(_Strict):
    """Per-stage resource requests and retries (they do not change any result)."""

    train: TaskResources = Field(default_factory=lambda: TaskResources(num_cpus=1, num_gpus=0))
    extract: TaskResources = Field(default_factory=TaskResources)
    compare: TaskResources = Field(default_factory=TaskResources)
    max_retries: Int = Field(default=1, ge=0)


class StudySpec(_Strict):
    """A whole study: the grid, the training budget, the probe set and the comparisons."""

    name: str = Field(min_length=1)
    description: str = ""
    datasets: list[str] = Field(min_length=1)
    # the folder holding the dataset files: `data_root`, as the CLI's --data-root (`dataset_root` still reads)
    data_root: str | None = Field(default=None, validation_alias=AliasChoices("data_root", "dataset_root"))
    objectives: list[ObjectiveSpec] = Field(min_length=1)
    seeds: list[Seed] = Field(min_length=1)
    training: TrainingSpec
    probe: ProbeSpec
    plugins: list[str] = Field(default_factory=list)
    metrics: list[str] = Field(default_factory=lambda: ["cka", "procrustes"], min_length=1)
    layers: list[str] | None = None
    comparisons: ComparisonsSpec = Field(default_factory=ComparisonsSpec)
    keep_activations: bool | list[str] = False
    #: ``keep``: each checkpoint's layer summaries are stored (summaries/; reused by every comparison and by
    #: resumes); ``cache``: they are never stored, each compare task recomputes the summaries of its checkpoints
    #: from the checkpoints (same numbers, bit for bit; the paper's summaries would take 9-10 TB);
    #: ``planned``: computed once by extraction and kept on disk only while a compare task still needs them
    #: (removed after the last one), up to ``summaries_cap_gb`` (the checkpoints beyond the cap are recomputed
    #: by each compare task, as ``cache``); same numbers, bit for bit (vaesim.study.summary_cache)
    summaries: Literal["keep", "cache", "planned"] = "keep"
    #: disk cap of the ``planned`` summary cache, in GB (1e9 bytes)
    summaries_cap_gb: float = Field(default=50.0, gt=0)
    disentanglement: DisentanglementSpec | None = None
    device: str = "auto"
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    # TensorBoard event files of every run's training under DIR/tensorboard/<run_id> (needs vaesim[tensorboard])
    tensorboard: bool = False
    #: a folder written by ``vaesim import dlib`` (or another model importer): the study's runs are the imported
    #: runs its grid selects (dataset, objective, value, seed), adopted instead of trained; step 0 is vaesim's
    #: initialisation at the run's seed (the untrained baseline), the other checkpoint steps must be the
    #: imported ones. A relative path is read from the spec file's folder.
    imported: str | None = None

    @field_validator("datasets", "seeds", "metrics")
    @classmethod
    def _distinct(cls, values: list) -> list:
        if len(set(values)) != len(values):
            raise ValueError(f"entries must be distinct; got {values} (remove the repeats)")
        return values

    @field_validator("plugins")
    @classmethod
    def _importable(cls, plugins: list[str], info) -> list[str]:
        # plug-in measures (vaesim.similarity.register_measure) are registered by the `plugins` modules, found on
        # the Python path or beside the spec file (vaesim.study.measures); an inspecting command (status,
        # verify, query, report) never runs a study's plug-in code
        from vaesim.study.measures import import_plugins

        if (info.context or {}).get("import_plugins", True):
            import_plugins(plugins, where="")
        return plugins

    @field_validator("metrics")
    @classmethod
    def _known_measures(cls, metrics: list[str], info) -> list[str]:
        from vaesim.similarity.registry import measure_names
        from vaesim.study.measures import load_entry_point_measures

        if "plugins" not in info.data:  # a plug-in module failed: that error says why, not this field
            return metrics
        if not (info.context or {}).get("import_plugins", True) and info.data["plugins"]:
            # an inspecting command never runs plug-in code: the names it does not know are taken as the
            # plug-ins' measures when the spec names plug-in modules
            return metrics
        unknown = [m for m in metrics if m not in measure_names()]
        if unknown:
            load_entry_point_measures(unknown)  # installed plug-ins (entry points "vaesim.measures")
            unknown = [m for m in metrics if m not in measure_names()]
        if unknown:
            raise ValueError(f"unknown similarity measures {unknown}; known: {list(measure_names())} "
                             "(a plug-in measure needs its registering module under `plugins:`, beside the spec "
                             "or on the Python path, or an installed entry point in the group vaesim.measures)")
        return metrics

    @field_validator("seeds")
    @classmethod
    def _non_negative(cls, seeds: list[int]) -> list[int]:
        if any(s < 0 for s in seeds):
            raise ValueError(f"seeds must be >= 0; got {seeds}")
        return seeds

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if device != "auto" and device != "cpu" and not device.startswith("cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]'; got {device!r}")
        return device

    @model_validator(mode="after")
    def _objectives_and_schedule(self) -> "StudySpec":
        names = [objective.name for objective in self.objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"objectives: each objective may appear once; got {names} (merge their values)")
        steps = self.training.checkpoints.steps
        if steps is not None and steps[-1] > self.training.steps:
            raise ValueError(
                f"training.checkpoints.steps: the last checkpoint {steps[-1]} is beyond "
                f"training.steps={self.training.steps}"
            )
        return self

    # -- derived values -------------------------------------------------

    def checkpoint_steps(self) -> list[int]:
        """The checkpoint steps of the schedule, increasing, final step included."""
        return checkpoint_steps(self.training.checkpoints, self.training.steps)

    def recorded_steps(self) -> list[int]:
        """Steps saved, recorded and compared: the schedule plus step 0 (the initial-state baseline)."""
        return sorted({0, *self.checkpoint_steps()})

    def layer_names(self) -> list[str]:
        """Layers recorded and compared (by default every layer of the architecture: ``vaesim.models.LAYER_NAMES``
        for ``conv``, ``FC_LAYER_NAMES`` for ``fc``, a plug-in's layer table)."""
        if self.layers is not None:
            return list(self.layers)
        return self.architecture_layers()

    def architecture_layers(self) -> list[str]:
        """Every layer name of the spec's architecture, input to output (torch-free: status, verify, query and
        plan read specs; a plug-in's come from its checked table, see :mod:`vaesim.models.plugin_table`)."""
        from vaesim.models.names import FC_LAYER_NAMES, LAYER_NAMES
        from vaesim.models.plugin_table import architecture_table, is_plugin

        architecture = self.training.architecture
        if is_plugin(architecture):
            return architecture_table(architecture).layer_names()
        return list(FC_LAYER_NAMES if architecture == "fc" else LAYER_NAMES)

    def kept_layers(self) -> list[str]:
        """Layers whose float32 activations are saved (``keep_activations``: true = all, a list = those)."""
        if self.keep_activations is True:
            return self.layer_names()
        return list(self.keep_activations or [])

    def to_yaml(self) -> str:
        """The spec as YAML text (round-trips through :func:`parse_spec`)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def checkpoint_steps(checkpoints: CheckpointSpec, steps: int) -> list[int]:
    """Checkpoint steps for a run of ``steps`` steps (sorted, distinct, ends at ``steps``).

    ``even``: ``round(linspace(0, steps, count))`` (or ``linspace`` from the
    first step when ``include_init`` is false). ``log``: step 0 (if
    ``include_init``) then ``round(geomspace(log_first, steps, count - 1))``
    with ``log_first`` defaulting to ``max(1, steps // 100)``. Rounding
    collisions are merged, so short runs may get fewer checkpoints.
    """
    if checkpoints.steps is not None:
        chosen = list(checkpoints.steps)
        if chosen[-1] != steps:
            chosen.append(steps)
        return chosen
    count = checkpoints.count
    if checkpoints.schedule == "even":
        start = 0 if checkpoints.include_init else steps / count
        span = count - 1
        chosen = [round(start + (steps - start) * i / span) for i in range(count)]
    else:
        first = checkpoints.log_first or max(1, steps // 100)
        first = min(first, steps)
        k = count - 1 if checkpoints.include_init else count
        if k <= 1:
            grid = [steps]
        else:
            ratio = (steps / first) ** (1.0 / (k - 1))
            grid = [round(first * ratio**i) for i in range(k)]
        chosen = ([0] if checkpoints.include_init else []) + grid
    chosen[-1] = steps
    return sorted(set(int(s) for s in chosen))


# -- loading ------------------------------------------------------------


def preset_names() -> list[str]:
    """Names of the presets shipped with the package."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_spec(path_or_preset: str | os.PathLike | StudySpec, *, import_plugins: bool = True,
              import_architecture: bool | None = None) -> StudySpec:
    """Read a spec from a YAML file or a preset name (``evidence``, ``paper``, ``quick``, ``training-length``, ``zoo``).

    ``import_plugins=False`` reads it without importing its ``plugins:``
    modules (what every command that only inspects a study does: a study
    directory received from someone else runs no code when inspected); the
    metric names it does not know are then taken as the plug-ins' measures.
    ``import_architecture`` (default: as ``import_plugins``): import and try a
    plug-in architecture (``training.architecture: module:factory``); when
    False its layers are read from the ``architecture.json`` a study
    directory records beside its spec.

    Raises FileNotFoundError when neither a file nor a preset of that name
    exists, and ValueError (naming every bad field) when the spec is invalid.
    """
    if isinstance(path_or_preset, StudySpec):
        return path_or_preset
    text_name = str(path_or_preset)
    path = Path(path_or_preset)
    if not path.is_file():
        preset = PRESET_DIR / f"{text_name}.yaml"
        if preset.is_file() and os.sep not in text_name:
            path = preset
        else:
            raise FileNotFoundError(
                f"study spec {text_name!r}: no such file and no preset of that name; "
                f"give a YAML file path or one of the presets {preset_names()}"
            )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"study spec {path}: not a text file (not UTF-8); expected a YAML study spec") from None
    except OSError as error:
        raise ValueError(f"study spec {path}: cannot be read ({error.strerror or error})") from None
    try:
        stream = io.StringIO(text)
        stream.name = str(path)  # YAML's error marks name the file, not "<unicode string>"
        data = yaml.load(stream, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        raise ValueError(f"study spec {path}: not valid YAML ({error}); fix the syntax") from None
    from vaesim.study.measures import searching, spec_search_dirs

    with searching(spec_search_dirs(path)):  # plug-in modules beside the spec file are found
        spec = parse_spec(data, source=str(path), import_plugins=import_plugins,
                          import_architecture=import_architecture)
    if spec.imported is not None and not Path(spec.imported).is_absolute():
        base = Path.cwd() if path.parent == PRESET_DIR else path.parent
        spec = spec.model_copy(update={"imported": str((base / spec.imported).resolve())})
    return spec


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the last one silently)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (each field may appear once)", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def parse_spec(data: Any, *, source: str = "spec", import_plugins: bool = True,
               import_architecture: bool | None = None) -> StudySpec:
    """Validate a mapping (parsed YAML) into a :class:`StudySpec` (``import_plugins``: see :func:`load_spec`)."""
    if not isinstance(data, dict):
        raise ValueError(
            f"study spec {source}: expected a mapping of fields (name, datasets, objectives, ...); "
            f"got {type(data).__name__}"
        )
    try:
        spec = StudySpec.model_validate(data, context={"import_plugins": import_plugins})
    except ValidationError as error:
        # every problem at once: the field errors and the unknown names among what did parse
        names = "".join(f"\n  - {p}" for p in _raw_name_problems(data))
        raise ValueError(f"study spec {source} is invalid:\n" + _format_errors(error) + names) from None
    architecture = import_plugins if import_architecture is None else import_architecture
    problems = (_architecture_name_problems(spec) or _architecture_problems(spec, source, architecture)
                or _semantic_problems(spec))
    if problems:
        raise ValueError(f"study spec {source} is invalid:\n" + "\n".join(f"  - {p}" for p in problems))
    return spec


def _architecture_name_problems(spec: StudySpec) -> list[str]:
    """An architecture that is neither built in, nor ``module:factory``, nor an installed entry point."""
    from vaesim.models.names import ARCHITECTURES
    from vaesim.models.plugin_table import ENTRY_POINT_GROUP, is_plugin

    architecture = spec.training.architecture
    if not is_plugin(architecture) or ":" in architecture.strip(":"):
        return []
    from importlib.metadata import entry_points

    if any(p.name == architecture for p in entry_points(group=ENTRY_POINT_GROUP)):
        return []
    return [f"training.architecture: unknown architecture {architecture!r}; allowed values: "
            f"{', '.join(ARCHITECTURES)}, a plug-in 'module:factory' (docs/own-model.md) or an entry point of "
            f"group {ENTRY_POINT_GROUP}"]


def _architecture_problems(spec: StudySpec, source: str, import_plugins: bool) -> list[str]:
    """A plug-in architecture (``training.architecture: module:factory``): imported and tried on every channel
    count of the spec's datasets when plug-ins may be imported, else its layer table is read from
    ``architecture.json`` beside the spec (a study directory's record); one line per problem."""
    from vaesim.models.plugin_table import ARCHITECTURE_FILE, is_plugin, read_table

    architecture = spec.training.architecture
    if not is_plugin(architecture):
        return []
    if not import_plugins:
        folder = Path(source).parent
        try:
            table = read_table(folder, architecture) if Path(source).is_file() else None
        except ValueError as error:
            return [f"training.architecture: {error}"]
        if table is None and spec.layers is None:
            return [f"training.architecture: plug-in {architecture!r} and no {ARCHITECTURE_FILE} beside the spec "
                    "records its layers (this command runs no plug-in code); run `vaesim study run` on it first"]
        return []
    from vaesim.data import DATASETS
    from vaesim.models.plugins import ArchitectureError, check_architecture

    channels = sorted({DATASETS[name].num_channels for name in spec.datasets if name in DATASETS}) or [1]
    for count in channels:
        try:
            check_architecture(architecture, count, spec.training.latent_dim)
        except ArchitectureError as error:
            return [f"training.{line}" for line in str(error).splitlines()]
    return []


def _format_errors(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"]) or "(top level)"
        kind = item["type"]
        if kind == "extra_forbidden":
            parent, field = item["loc"][:-1], item["loc"][-1]
            allowed = _allowed_fields(parent)
            where = ".".join(str(p) for p in parent) or "the top level"
            lines.append(f"  - unknown field {field!r} in {where}; allowed fields: {', '.join(allowed)}")
        elif kind == "missing":
            lines.append(f"  - {loc}: required field is missing; add it")
        else:
            got = item.get("input")
            got_text = repr(got) if not isinstance(got, dict) else "a mapping"
            message = item["msg"].removeprefix("Value error, ")
            # our validators already say what arrived ("...; got [0, 0]"): do not repeat it
            lines.append(f"  - {loc}: {message}" + ("" if "got " in message else f"; got {got_text}"))
    return "\n".join(lines)


def _allowed_fields(loc: tuple) -> list[str]:
    model: type[BaseModel] = StudySpec
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        for candidate in candidates:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
            for inner in getattr(candidate, "__args__", ()):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    model = inner
                    break
    return list(model.model_fields)


def _raw_name_problems(data: dict) -> list[str]:
    """Unknown dataset and objective names in a spec mapping that failed validation elsewhere."""
    from vaesim.data import DATASETS
    from vaesim.models.names import OBJECTIVE_NAMES

    problems = []
    datasets = data.get("datasets")
    for name in datasets if isinstance(datasets, list) else []:
        if isinstance(name, str) and name not in DATASETS:
            problems.append(f"datasets: unknown dataset {name!r}; allowed values: {', '.join(DATASETS)}")
    objectives = data.get("objectives")
    for i, objective in enumerate(objectives if isinstance(objectives, list) else []):
        name = objective.get("name") if isinstance(objective, dict) else None
        if isinstance(name, str) and name not in OBJECTIVE_NAMES:
            problems.append(f"objectives.{i}.name: unknown objective {name!r}; "
                            f"allowed values: {', '.join(OBJECTIVE_NAMES)}")
    return problems


def _semantic_problems(spec: StudySpec) -> list[str]:
    """Names checked against the registries of the other modules."""
    from vaesim.data import DATASETS
    # torch-free tables: `vaesim study status/verify` and `vaesim query` check the spec without loading torch
    from vaesim.models.names import (CHOICE_PARAMS, MAIN_PARAMS, OBJECTIVE_NAMES,
                                     RECONSTRUCTIONS)

    problems = []
    if spec.training.reconstruction not in RECONSTRUCTIONS:
        problems.append(f"training.reconstruction: unknown likelihood {spec.training.reconstruction!r}; "
                        f"allowed values: {', '.join(RECONSTRUCTIONS)}")
    for name in spec.datasets:
        if name not in DATASETS:
            problems.append(f"datasets: unknown dataset {name!r}; allowed values: {', '.join(DATASETS)}")
    for i, objective in enumerate(spec.objectives):
        if objective.name not in OBJECTIVE_NAMES:
            problems.append(
                f"objectives.{i}.name: unknown objective {objective.name!r}; "
                f"allowed values: {', '.join(OBJECTIVE_NAMES)}"
            )
            continue
        expected = MAIN_PARAMS[objective.name]
        if objective.param is not None and objective.param != expected:
            problems.append(
                f"objectives.{i}.param: {objective.name} is swept over {expected!r}; got "
                f"{objective.param!r} (leave param out or write {expected!r})"
            )
        if expected in objective.fixed:
            problems.append(
                f"objectives.{i}.fixed: {expected!r} is the swept parameter; list it under values only"
            )
        choices = CHOICE_PARAMS.get(objective.name, {})
        for key, value in objective.fixed.items():
            if key in choices and value not in choices[key]:
                problems.append(f"objectives.{i}.fixed.{key}: expected one of {', '.join(choices[key])}; got {value!r}")
            elif key not in choices and isinstance(value, str):
                problems.append(f"objectives.{i}.fixed.{key}: expected a number; got {value!r}")
    if isinstance(spec.keep_activations, list):
        allowed = spec.layer_names()
        unknown = [layer for layer in spec.keep_activations if layer not in allowed]
        if unknown:
            problems.append(f"keep_activations: unknown or uncompared layers {unknown}; allowed values: "
                            f"true, false, or a list of {', '.join(allowed)}")
    if spec.layers is not None and not problems:
        try:
            names = spec.architecture_layers()
        except ValueError:
            names = None  # a plug-in read without its table: its layers are checked when it is imported
        unknown = [layer for layer in spec.layers if names is not None and layer not in names]
        if unknown or not spec.layers:
            problems.append(
                f"layers: unknown layer names {unknown or '(empty list)'}; allowed values: {', '.join(names or [])}"
            )
    return problems


def param_name(objective: ObjectiveSpec) -> str:
    """The swept parameter's name of ``objective`` (its ``param`` or the objective's main one)."""
    if objective.param is not None:
        return objective.param
    from vaesim.models.names import MAIN_PARAMS

    return MAIN_PARAMS[objective.name]
