"""The ``extract`` stage: every layer of one checkpoint recorded on the probe set, summarised and stored."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vaesim.study import plan as layout
from vaesim.study.measures import builtin_metrics, plugin_metrics
from vaesim.study.plan import ExtractTask
from vaesim.study.stages.checkpoints import checkpoint_file, checkpoint_intact
from vaesim.study.stages.devices import array_device, resolve_device
from vaesim.study.stages.files import write_checksum, write_table
from vaesim.study.stages.probe import load_probe, probe_images
from vaesim.study.stages.progress import TaskProgress
from vaesim.study.stages.summaries import plugin_summary_values, summarise_layers, write_plugin_summaries
from vaesim.utils import atomic_path

logger = logging.getLogger(__name__)


LATENT_LAYERS = ("encoder.mean", "encoder.logvar")  # always recorded: the latent statistics need them


RESAMPLED_SUFFIX = "/resampled"  # the second eps of a noise-floor recording: noise_seed(probe, run + suffix, step)


def extract_stage(root: Path, task: ExtractTask) -> str | None:
    """Record every layer of one checkpoint on the probe set; save their summaries.

    The sampled layer's eps follows ``task.sample_noise``
    (:func:`vaesim.activations.noise_seed`: per (run, step) by default).
    Writes ``summaries/<run_id>/step_{step:08d}.npz`` ({layer: LayerSummary}),
    ``summaries/<run_id>/step_{step:08d}.latents.parquet`` (per-dimension
    statistics of the latent code, :func:`vaesim.activations.latent_statistics`)
    and, for the layers in ``keep_activations``,
    ``activations/<run_id>/step_{step:08d}.npz`` (float32 (n, features) per layer). Returns ``"corrupt_checkpoint"`` when
    the checkpoint cannot be loaded.
    """
    from vaesim.activations import extract_activations, latent_statistics, noise_seed
    from vaesim.similarity import save_summaries
    from vaesim.training import load_checkpoint

    run_id, step = task.run_id, task.step
    if not checkpoint_intact(root, run_id, step):
        logger.warning("checkpoint %s does not match the checksum recorded after training; the run will be repaired",
                       checkpoint_file(root / layout.run_dir(run_id), step))
        return "corrupt_checkpoint"
    # The weights match their checksum: a load failure now (MemoryError, I/O error) is not corruption, so it
    # fails the task (retried, reported) and deletes nothing.
    model, _meta = load_checkpoint(root / layout.run_dir(run_id), step)
    probe = load_probe(root, task.dataset)
    recorded = tuple(dict.fromkeys((*task.layers, *LATENT_LAYERS)))
    meter = TaskProgress(root, task.task_id, f"extract {run_id} step {step}", 1 + len(task.layers), unit="layer")
    code = decoder_code(root, task, model, probe)
    activations = extract_activations(
        model, probe_images(probe), layers=recorded,
        seed=noise_seed(task.probe_seed, run_id, step, task.sample_noise), device=resolve_device(task.device),
        decoder_code=code,
    )
    latents = latent_statistics(activations["encoder.mean"], activations["encoder.logvar"])
    write_table(root / layout.latents_path(run_id, step), latents.assign(run_id=run_id, step=step), checksum=True)
    kept = task.keep_activations
    if kept:
        path = root / layout.activations_path(run_id, step)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **{name: np.asarray(activations[name], dtype=np.float32) for name in kept})
        write_checksum(path)
    device = array_device(task.device)
    meter.update(1)  # recording counts as the first unit
    if not task.writes_summaries:  # spec summaries: cache: the compare tasks recompute them (checkpoint_summaries)
        meter.close()
        return None
    summaries = summarise_layers(activations, task.layers, builtin_metrics(task.metrics), device, meter)
    path = root / layout.summary_path(run_id, step)
    write_plugin_summaries(path, {name: activations[name] for name in task.layers}, task.metrics)
    save_summaries(path, summaries)
    write_checksum(path)
    del activations, summaries  # the noise floor's second recording is not held beside the first
    if task.resample:
        resampled_layers = tuple(layout.noise_layers(task.layers, task.decoder_input))
        again = extract_activations(
            model, probe_images(probe), layers=resampled_layers,
            seed=noise_seed(task.probe_seed, run_id + RESAMPLED_SUFFIX, step), device=resolve_device(task.device),
            decoder_code=code,
        )
        path = root / layout.resampled_path(run_id, step)
        save_summaries(path, summarise_layers(again, resampled_layers, builtin_metrics(task.metrics), device))
        write_checksum(path)
    meter.close()
    return None


def decoder_code(root: Path, task: ExtractTask, model, probe):
    """The code the decoder is recorded on: None (its own sample) or the final checkpoint's mean code (n, d).

    ``task.decoder_input`` ``final_mean``: the mean code of the run's checkpoint at ``task.final_step`` on the
    probe images, the same array at every checkpoint of the run. That checkpoint is verified against the
    sums recorded after training before it is read (RuntimeError when it is damaged: the run is repaired by
    the next ``vaesim study run``).
    """
    from vaesim.activations import mean_code
    from vaesim.training import load_checkpoint

    if task.decoder_input == "sample":
        return None
    if task.step == task.final_step:
        final = model
    else:
        if not checkpoint_intact(root, task.run_id, task.final_step):
            raise RuntimeError(f"cannot record run {task.run_id} step {task.step} on the final mean code: the "
                               f"checkpoint of step {task.final_step} is damaged; rerun `vaesim study run` to "
                               "repair the run")
        final, _meta = load_checkpoint(root / layout.run_dir(task.run_id), task.final_step)
    return mean_code(final, probe_images(probe), device=resolve_device(task.device))


def checkpoint_summaries(root: Path, task: ExtractTask, *, resampled: bool = False,
                         only: tuple[str, ...] | None = None) -> dict:
    """The summaries ``task`` would store, computed in memory (spec ``summaries: cache``): ``{layer: summary}``.

    The same recording (probe set, eps seed) and the same summarising as :func:`extract_stage`, so the
    numbers are those of a stored summary, bit for bit. ``resampled``: the noise-driven layers recorded
    with the second eps (built-in measures only). ``only``: just these layers (a layer's summary does not
    depend on which others are recorded with it). Raises RuntimeError when the checkpoint is damaged.
    """
    from vaesim.activations import extract_activations, noise_seed
    from vaesim.training import load_checkpoint

    run_id, step = task.run_id, task.step
    if not checkpoint_intact(root, run_id, step):
        raise RuntimeError(f"cannot compute the summaries of run {run_id} step {step}: its checkpoint is damaged; "
                           "rerun `vaesim study run` to repair the run")
    model, _meta = load_checkpoint(root / layout.run_dir(run_id), step)
    probe = load_probe(root, task.dataset)
    layers = tuple(layout.noise_layers(task.layers, task.decoder_input)) if resampled else task.layers
    if only is not None:
        layers = tuple(layer for layer in layers if layer in only)
    seed = (noise_seed(task.probe_seed, run_id + RESAMPLED_SUFFIX, step) if resampled
            else noise_seed(task.probe_seed, run_id, step, task.sample_noise))
    activations = extract_activations(model, probe_images(probe), layers=layers, seed=seed,
                                      device=resolve_device(task.device),
                                      decoder_code=decoder_code(root, task, model, probe))
    metrics = builtin_metrics(task.metrics)
    summaries = summarise_layers(activations, layers, metrics, array_device(task.device))
    if resampled or not plugin_metrics(task.metrics):
        return summaries
    from vaesim.similarity import MeasureSummaries

    custom = plugin_summary_values(activations, task.metrics)
    return {name: MeasureSummaries(s.n, s, custom.get(name, {})) for name, s in summaries.items()}
