"""Extract every named layer of a VAE (or a checkpoint) on a probe set."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vaesim.activations.recorder import LayerRecorder
from vaesim.models.architectures import VAE


SAMPLE_NOISE = ("independent", "shared")


def noise_seed(probe_seed: int, run_id: str, step: int, mode: str = "independent") -> int:
    """Seed of the sampled layer's eps for one checkpoint of one run.

    ``independent`` (default; what the seed paper's library does, drawing
    fresh noise for every model): a 63-bit seed from SHA-256 of
    (probe seed, run id, step), so every (run, checkpoint) draws its own eps,
    deterministically. ``shared``: ``probe_seed`` for every run and
    checkpoint, so all models see the same eps (their ``encoder.sample`` and
    decoder layers then share a noise component that inflates their
    similarity; kept for reproducing older studies).
    """
    if mode == "shared":
        return int(probe_seed)
    if mode != "independent":
        raise ValueError(f"noise_seed: mode={mode!r} is unknown; expected one of {list(SAMPLE_NOISE)}")
    digest = hashlib.sha256(f"{int(probe_seed)}/{run_id}/{int(step)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _as_float_images(images) -> torch.Tensor:
    array = images.detach().cpu() if torch.is_tensor(images) else torch.from_numpy(np.asarray(images))
    if array.ndim != 4:
        raise ValueError(f"extract_activations: images must be shaped (n, C, 64, 64), got {tuple(array.shape)}")
    if array.dtype == torch.uint8:
        return array.float() * (1.0 / 255.0)
    if not torch.is_floating_point(array):
        raise TypeError(f"extract_activations: images must be uint8 or float, got {array.dtype}")
    return array.float()


@torch.no_grad()
def extract_activations(
    model: VAE,
    images,
    *,
    layers: Sequence[str] | None = None,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device = "cpu",
    decoder_code=None,
) -> dict[str, np.ndarray]:
    """Activations of ``layers`` on ``images`` -> {name: float32 (n, features)}.

    images: (n, C, 64, 64) float in [0, 1], or uint8 0..255 (read as value / 255).
    layers: default every comparable layer of the model (``model.layer_names``,
    i.e. ``LAYER_NAMES`` for the conv VAE), input to output. ``decoder.output``
    is the logits; ``encoder.sample`` uses eps drawn once for all n images
    from ``torch.Generator().manual_seed(seed)``, so the result does not depend
    on ``batch_size`` or on the global RNG.

    decoder_code: None (default: the decoder's layers see the model's own
    sample ``mean + sigma * eps``, as in training and the seed paper), or an
    array (n, latent_dim) fed to the decoder instead, e.g. the final
    checkpoint's mean code (:func:`mean_code`) at every checkpoint of a run: the
    decoder's layers then change between checkpoints only through the decoder's
    own weights, not through a drifting or resampled input. The encoder's layers
    (``encoder.sample`` included) are recorded from the images either way.
    """
    if not isinstance(model, VAE) and not hasattr(model, "layer_modules"):
        raise TypeError(
            f"extract_activations: expected a vaesim VAE (built-in or plug-in), got {type(model).__name__}; "
            "for another model use vaesim.activations.LayerRecorder or vaesim.compare_models"
        )
    if batch_size < 1:
        raise ValueError(f"extract_activations: batch_size must be >= 1, got {batch_size}")
    names = list(model.layer_names if layers is None else layers)
    unknown = [name for name in names if name not in model.layer_names]
    if unknown:
        raise ValueError(f"extract_activations: unknown layers {unknown}; valid layers: {list(model.layer_names)}")
    pixels = _as_float_images(images)
    code = None if decoder_code is None else _as_code(decoder_code, pixels.shape[0], model.latent_dim)
    noise = torch.randn(pixels.shape[0], model.latent_dim, generator=torch.Generator().manual_seed(seed))
    driven = [name for name in names if name.startswith("decoder.")] if code is not None else []
    own = [name for name in names if name not in driven]
    modules = model.layer_modules  # layer name -> the module its hook goes on
    # a plug-in's next module may work in place (ReLU(inplace=True)) on a recorded output: record copies
    copy = not isinstance(model, VAE)
    was_training = model.training
    model.eval().to(device)
    try:
        arrays: dict[str, np.ndarray] = {}
        if own:
            with LayerRecorder(model, [modules[name] for name in own], copy=copy) as recorder:
                for start in range(0, pixels.shape[0], batch_size):
                    stop = start + batch_size
                    model(pixels[start:stop].to(device), noise=noise[start:stop].to(device))
                arrays.update(zip(own, recorder.arrays().values()))
        if driven:
            with LayerRecorder(model, [modules[name] for name in driven], copy=copy) as recorder:
                for start in range(0, code.shape[0], batch_size):
                    model.decode(code[start:start + batch_size].to(device))
                arrays.update(zip(driven, recorder.arrays().values()))
        return {name: arrays[name] for name in names}
    finally:
        model.train(was_training)


def _as_code(code, n: int, latent_dim: int) -> torch.Tensor:
    array = torch.as_tensor(np.asarray(code, dtype=np.float32))
    if array.shape != (n, latent_dim):
        raise ValueError(f"extract_activations: decoder_code must be shaped ({n}, {latent_dim}) (one code per "
                         f"image), got {tuple(array.shape)}")
    if not torch.isfinite(array).all():
        raise ValueError("extract_activations: decoder_code has NaN or infinite values")
    return array


@torch.no_grad()
def mean_code(model: VAE, images, *, batch_size: int = 256, device: str | torch.device = "cpu") -> np.ndarray:
    """The encoder's mean code of ``images`` -> float32 (n, latent_dim); images as in :func:`extract_activations`."""
    pixels = _as_float_images(images)
    was_training = model.training
    model.eval().to(device)
    try:
        parts = [model.encode(pixels[start:start + batch_size].to(device))[0].cpu()
                 for start in range(0, pixels.shape[0], batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts).numpy() if parts else np.zeros((0, model.latent_dim), np.float32)


def extract_checkpoint(run_dir: str | Path, step: int, images, **options) -> dict[str, np.ndarray]:
    """:func:`extract_activations` of the model saved at ``step`` in ``run_dir``."""
    from vaesim.training.checkpoint import load_checkpoint

    model, _ = load_checkpoint(run_dir, step)
    return extract_activations(model, images, **options)
