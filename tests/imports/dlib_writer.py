"""Test helper: write models in disentanglement_lib's published layout (``<n>.zip`` or ``<n>/``).

The inverse weight mapping here (vaesim state dict -> dlib's TensorFlow
variables) is written independently of :mod:`vaesim.imports.dlib`: the
NHWC <-> NCHW reorderings are built from explicit index tables, not from
reshape/transpose chains, so a mistake in either side shows up in a round
trip. Bundles are written by :mod:`tf_bundle_writer` (verified against
TensorFlow 2.21).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from tf_bundle_writer import write_bundle

CONV_LAYERS = [  # (dlib scope, vaesim module, kind)
    ("encoder/e1", "encoder.conv1.0", "conv"), ("encoder/e2", "encoder.conv2.0", "conv"),
    ("encoder/e3", "encoder.conv3.0", "conv"), ("encoder/e4", "encoder.conv4.0", "conv"),
    ("encoder/e5", "encoder.fc.0", "flat_in"), ("encoder/means", "encoder.mean", "dense"),
    ("encoder/log_var", "encoder.logvar", "dense"), ("decoder/dense", "decoder.fc1.0", "dense"),
    ("decoder/dense_1", "decoder.fc2.0", "flat_out"), ("decoder/conv2d_transpose", "decoder.deconv1.0", "deconv"),
    ("decoder/conv2d_transpose_1", "decoder.deconv2.0", "deconv"),
    ("decoder/conv2d_transpose_2", "decoder.deconv3.0", "deconv"),
    ("decoder/conv2d_transpose_3", "decoder.output", "deconv"),
]
FC_LAYERS = [
    ("encoder/e1", "encoder.fc1.0", "flat_in"), ("encoder/e2", "encoder.fc2.0", "dense"),
    ("encoder/dense", "encoder.mean", "dense"), ("encoder/dense_1", "encoder.logvar", "dense"),
    ("decoder/dense", "decoder.fc1.0", "dense"), ("decoder/dense_1", "decoder.fc2.0", "dense"),
    ("decoder/dense_2", "decoder.fc3.0", "dense"), ("decoder/dense_3", "decoder.output", "flat_out"),
]


def nchw_index_of_nhwc(height: int, width: int, channels: int) -> np.ndarray:
    """``table[i]``: the NCHW flat index of the element at NHWC flat index ``i``."""
    table = np.empty(height * width * channels, dtype=np.int64)
    i = 0
    for h in range(height):
        for w in range(width):
            for c in range(channels):
                table[i] = c * height * width + h * width + w
                i += 1
    return table


def tf_variables(state: dict, architecture: str, num_channels: int) -> dict[str, np.ndarray]:
    """vaesim weights (numpy or torch) -> dlib's variable names and TensorFlow layouts (float32)."""
    state = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, dtype=np.float32)
             for k, v in state.items()}
    grid = (4, 4, 64) if architecture == "conv" else (64, 64, num_channels)
    table = nchw_index_of_nhwc(*grid)
    out = {}
    for scope, module, kind in (CONV_LAYERS if architecture == "conv" else FC_LAYERS):
        weight, bias = state[f"{module}.weight"], state[f"{module}.bias"]
        if kind in ("conv", "deconv"):  # torch (a, b, kh, kw) -> TF (kh, kw, b, a)
            kernel = np.einsum("abhw->hwba", weight)
        elif kind == "dense":
            kernel = weight.T
        elif kind == "flat_in":  # TF row i (NHWC) is torch column table[i]
            kernel = weight[:, table].T
        else:  # flat_out: TF column i (NHWC) is torch row table[i]
            kernel = weight[table, :].T
            bias = bias[table]
        out[f"{scope}/kernel"] = np.ascontiguousarray(kernel)
        out[f"{scope}/bias"] = np.ascontiguousarray(bias)
    return out


MODEL_FN = {"beta_vae": "@vae()", "annealed_vae": "@annealed_vae()", "beta_tc_vae": "@beta_tc_vae()",
            "factor_vae": "@factor_vae()", "dip_vae_i": "@dip_vae()", "dip_vae_ii": "@dip_vae()"}


def train_config(objective: str, params: dict, *, seed: int, dataset: str = "dsprites_full",
                 architecture: str = "conv", steps: int = 300000, num_latent: int = 10) -> dict:
    """dlib's train_config.json content: gin bindings with values as gin text."""
    config = {
        "model.name": f"'{objective}'", "model.model": MODEL_FN[objective], "model.random_seed": str(seed),
        "model.training_steps": str(steps), "model.batch_size": "64", "dataset.name": f"'{dataset}'",
        "encoder.num_latent": str(num_latent),
        "encoder.encoder_fn": "@conv_encoder" if architecture == "conv" else "@fc_encoder",
        "decoder.decoder_fn": "@deconv_decoder" if architecture == "conv" else "@fc_decoder",
        "vae_optimizer.optimizer_fn": "@AdamOptimizer", "AdamOptimizer.learning_rate": "0.0001",
    }
    if objective == "beta_vae":
        config["vae.beta"] = repr(float(params["beta"]))
    elif objective == "beta_tc_vae":
        config["beta_tc_vae.beta"] = repr(float(params["beta"]))
    elif objective == "factor_vae":
        config["factor_vae.gamma"] = repr(float(params["gamma"]))
    elif objective == "annealed_vae":
        config.update({"annealed_vae.c_max": repr(float(params["c_max"])), "annealed_vae.gamma": "1000",
                       "annealed_vae.iteration_threshold": "100000"})
    else:
        config.update({"dip_vae.lambda_od": repr(float(params["lambda_od"])), "dip_vae.dip_type": f"'{objective[-2:].strip('_')}'",
                       "dip_vae.lambda_d_factor": "10.0" if objective == "dip_vae_i" else "1.0"})
    return config


def write_model(dest: Path, number: int, variables: dict, config: dict, *, step: int = 300000, as_zip: bool = True,
                adam: bool = True, num_shards: int = 1, scores: dict | None = None) -> Path:
    """One model in dlib's layout under ``dest`` (``dest/<n>.zip`` or ``dest/<n>/``); returns its path."""
    tensors = dict(variables)
    if adam:
        for name, value in variables.items():
            tensors[f"{name}/Adam"] = np.zeros_like(value)
            tensors[f"{name}/Adam_1"] = np.full_like(value, 1e-6)
        tensors["beta1_power"] = np.float32(0.9 ** step)
        tensors["beta2_power"] = np.float32(0.999)
    tensors["global_step"] = np.int64(step)
    folder = dest / f".build-{number}" / str(number)
    checkpoint_dir = folder / "model" / "tf_checkpoint"
    checkpoint_dir.mkdir(parents=True)
    write_bundle(checkpoint_dir / f"model.ckpt-{step}", tensors, num_shards=num_shards)
    (checkpoint_dir / "checkpoint").write_text(f'model_checkpoint_path: "model.ckpt-{step}"\n'
                                               f'all_model_checkpoint_paths: "model.ckpt-{step}"\n')
    (folder / "model" / "results" / "json").mkdir(parents=True)
    (folder / "model" / "results" / "json" / "train_config.json").write_text(json.dumps(config, indent=2))
    for (representation, metric), values in (scores or {}).items():
        path = folder / "metrics" / representation / metric / "results" / "aggregate" / "evaluation.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({f"evaluation_results.{k}": v for k, v in values.items()}
                                   | {"evaluation_config.evaluation.name": f"'{metric}'"}))
    if not as_zip:
        target = dest / str(number)
        folder.rename(target)
        (dest / f".build-{number}").rmdir()
        return target
    target = dest / f"{number}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, str(path.relative_to(folder.parent)))
    import shutil

    shutil.rmtree(dest / f".build-{number}")
    return target
