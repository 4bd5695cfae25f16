"""disentanglement_lib's published models (Locatello et al. 2019) as vaesim runs.

disentanglement_lib (dlib) published the 10,800 models of its
``unsupervised_study_v1`` as ``<n>.zip`` (n = 0 ... 10799), each holding::

    <n>/model/tf_checkpoint/model.ckpt-<step>.index, .data-0000K-of-0000N, checkpoint
    <n>/model/results/json/train_config.json      gin bindings as JSON, values as gin text
    <n>/metrics/<mean|sampled>/<metric>/results/aggregate/evaluation.json

The checkpoint is a TensorFlow tensor bundle (read by
:mod:`vaesim.imports.tf_bundle`, no TensorFlow needed) with the model's
variables under ``encoder/`` and ``decoder/`` (``conv_encoder``: ``e1``..``e5``,
``means``, ``log_var``; ``deconv_decoder``: ``dense``, ``dense_1``,
``conv2d_transpose``, ``_1``, ``_2``, ``_3``; the fc architecture:
``encoder/e1``, ``e2``, ``dense``, ``dense_1`` and ``decoder/dense``..``dense_3``)
plus Adam slots (``*/Adam``, ``*/Adam_1``), ``beta1_power``,
``beta2_power``, ``global_step`` and, for FactorVAE, ``discriminator/``:
only the model's variables are imported.

Weights map onto :func:`vaesim.models.build_vae` exactly (:func:`vaesim_weights`):
TensorFlow's kernels are HWIO (conv) and HW-out-in (transposed conv), torch's
OIHW and in-out-HW; dense kernels are (in, out), torch's (out, in). TensorFlow
flattens NHWC feature maps where torch flattens NCHW, so the dense layer after
the encoder's last conv (and the fc encoder's first layer, and the decoder's
dense layer before the reshape to (4, 4, 64), and the fc decoder's output)
have their input or output units permuted from (h, w, c) to (c, h, w) order.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from zlib import error as zlib_error

import numpy as np

from vaesim.imports.runs import (ImportedRun, ImportSummary, imported_run_done, remove_partial_runs,
                                 write_imported_run)
from vaesim.imports.tf_bundle import BundleError, TensorBundle
from vaesim.utils import atomic_write_json, sha256_file

__all__ = ["DATASETS", "DlibError", "DlibImportSummary", "dlib_objective", "dlib_variables", "import_dlib",
           "read_train_config", "vaesim_weights"]

log = logging.getLogger(__name__)

PUBLISHED_AT = "https://storage.googleapis.com/disentanglement_lib/unsupervised_study_v1/<n>.zip"

#: dlib's ``dataset.name`` -> vaesim's dataset name
DATASETS = {
    "dsprites_full": "dsprites",
    "color_dsprites": "color-dsprites",
    "noisy_dsprites": "noisy-dsprites",
    "scream_dsprites": "scream-dsprites",  # not a vaesim dataset: imported, but a study cannot probe it
    "smallnorb": "smallnorb",
    "cars3d": "cars3d",
    "shapes3d": "shapes3d",
    "mpi3d_toy": "mpi3d",
    "mpi3d_realistic": "mpi3d",
    "mpi3d_real": "mpi3d",
}
CHANNELS = {"dsprites_full": 1, "smallnorb": 1, "color_dsprites": 3, "noisy_dsprites": 3, "scream_dsprites": 3,
            "cars3d": 3, "shapes3d": 3, "mpi3d_toy": 3, "mpi3d_realistic": 3, "mpi3d_real": 3}

RUNS_DIR = "runs"
MANIFEST = "import.json"
SCORES_TABLE = "published_scores.parquet"


class DlibError(ValueError):
    """A file that is not a readable dlib model (the message names the file and what was expected)."""


# ---- train_config.json -------------------------------------------------------------------------------------


def _gin_value(text):
    """A gin binding as dlib's JSON holds it (``"'beta_vae'"``, ``"6.0"``, ``"@vae()"``) -> Python value."""
    if not isinstance(text, str):
        return text
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def read_train_config(text: str, where: str) -> dict:
    """The gin bindings of a ``train_config.json`` as Python values; DlibError naming ``where`` otherwise."""
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise DlibError(f"{where}: not JSON ({error}); expected dlib's train_config.json") from None
    if not isinstance(raw, dict):
        raise DlibError(f"{where}: holds a {type(raw).__name__}; expected a JSON object of gin bindings")
    return {key: _gin_value(value) for key, value in raw.items()}


def _need(config: dict, key: str, where: str):
    if key not in config:
        raise DlibError(f"{where}: no binding {key!r}; expected dlib's train_config.json of a trained model")
    return config[key]


def _number(config: dict, key: str, where: str) -> float:
    value = _need(config, key, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DlibError(f"{where}: {key} = {value!r}; expected a finite number")
    return float(value)


def dlib_objective(config: dict, where: str = "train_config.json") -> tuple[str, str, dict]:
    """(vaesim objective, swept parameter, all parameters) of a dlib model's gin bindings.

    ``vae`` (``beta_vae``): beta; ``annealed_vae``: c_max, gamma,
    iteration_threshold; ``beta_tc_vae``: beta; ``factor_vae``: gamma;
    ``dip_vae`` of type ``i`` / ``ii``: lambda_od and lambda_d =
    lambda_d_factor * lambda_od (dlib's own rule).
    """
    model = str(_need(config, "model.model", where)).strip()
    kind = re.fullmatch(r"@(\w+)\(\)", model)
    kind = kind.group(1) if kind else model
    if kind == "vae":
        return "beta_vae", "beta", {"beta": _number(config, "vae.beta", where)}
    if kind == "annealed_vae":
        return "annealed_vae", "c_max", {"c_max": _number(config, "annealed_vae.c_max", where),
                                         "gamma": _number(config, "annealed_vae.gamma", where),
                                         "iteration_threshold": _number(config, "annealed_vae.iteration_threshold",
                                                                        where)}
    if kind == "beta_tc_vae":
        return "beta_tc_vae", "beta", {"beta": _number(config, "beta_tc_vae.beta", where)}
    if kind == "factor_vae":
        return "factor_vae", "gamma", {"gamma": _number(config, "factor_vae.gamma", where)}
    if kind == "dip_vae":
        dip_type = str(_need(config, "dip_vae.dip_type", where))
        if dip_type not in ("i", "ii"):
            raise DlibError(f"{where}: dip_vae.dip_type = {dip_type!r}; expected 'i' or 'ii'")
        lambda_od = _number(config, "dip_vae.lambda_od", where)
        factor = _number(config, "dip_vae.lambda_d_factor", where)
        return f"dip_vae_{dip_type}", "lambda_od", {"lambda_od": lambda_od, "lambda_d": factor * lambda_od}
    raise DlibError(f"{where}: model.model = {model!r} is not a dlib model vaesim knows; expected one of "
                    "@vae(), @annealed_vae(), @beta_tc_vae(), @factor_vae(), @dip_vae()")


def _architecture(config: dict, where: str) -> str:
    encoder = str(config.get("encoder.encoder_fn", "@conv_encoder"))
    decoder = str(config.get("decoder.decoder_fn", "@deconv_decoder"))
    pairs = {("@conv_encoder", "@deconv_decoder"): "conv", ("@fc_encoder", "@fc_decoder"): "fc"}
    if (encoder, decoder) not in pairs:
        raise DlibError(f"{where}: encoder {encoder!r} with decoder {decoder!r}; vaesim imports "
                        "@conv_encoder + @deconv_decoder (its conv architecture) or @fc_encoder + @fc_decoder (fc)")
    return pairs[(encoder, decoder)]


# ---- the weights -------------------------------------------------------------------------------------------

_CONV_SCOPES = (("encoder/e1", "encoder.conv1.0", "conv"), ("encoder/e2", "encoder.conv2.0", "conv"),
                ("encoder/e3", "encoder.conv3.0", "conv"), ("encoder/e4", "encoder.conv4.0", "conv"),
                ("encoder/e5", "encoder.fc.0", "dense_from_nhwc"), ("encoder/means", "encoder.mean", "dense"),
                ("encoder/log_var", "encoder.logvar", "dense"), ("decoder/dense", "decoder.fc1.0", "dense"),
                ("decoder/dense_1", "decoder.fc2.0", "dense_to_nhwc"),
                ("decoder/conv2d_transpose", "decoder.deconv1.0", "deconv"),
                ("decoder/conv2d_transpose_1", "decoder.deconv2.0", "deconv"),
                ("decoder/conv2d_transpose_2", "decoder.deconv3.0", "deconv"),
                ("decoder/conv2d_transpose_3", "decoder.output", "deconv"))
_FC_SCOPES = (("encoder/e1", "encoder.fc1.0", "dense_from_nhwc"), ("encoder/e2", "encoder.fc2.0", "dense"),
              ("encoder/dense", "encoder.mean", "dense"), ("encoder/dense_1", "encoder.logvar", "dense"),
              ("decoder/dense", "decoder.fc1.0", "dense"), ("decoder/dense_1", "decoder.fc2.0", "dense"),
              ("decoder/dense_2", "decoder.fc3.0", "dense"), ("decoder/dense_3", "decoder.output", "dense_to_nhwc"))
SCOPES = {"conv": _CONV_SCOPES, "fc": _FC_SCOPES}


def dlib_variables(architecture: str, num_channels: int, latent_dim: int) -> dict[str, tuple[int, ...]]:
    """dlib's model variables of ``architecture`` -> their TensorFlow shapes."""
    c, d = num_channels, latent_dim
    if architecture == "conv":
        kernels = {"encoder/e1": (4, 4, c, 32), "encoder/e2": (4, 4, 32, 32), "encoder/e3": (2, 2, 32, 64),
                   "encoder/e4": (2, 2, 64, 64), "encoder/e5": (1024, 256), "encoder/means": (256, d),
                   "encoder/log_var": (256, d), "decoder/dense": (d, 256), "decoder/dense_1": (256, 1024),
                   "decoder/conv2d_transpose": (4, 4, 64, 64), "decoder/conv2d_transpose_1": (4, 4, 32, 64),
                   "decoder/conv2d_transpose_2": (4, 4, 32, 32), "decoder/conv2d_transpose_3": (4, 4, c, 32)}
        out_axis = {"conv": -1, "deconv": -2, "dense": -1}
    elif architecture == "fc":
        kernels = {"encoder/e1": (64 * 64 * c, 1200), "encoder/e2": (1200, 1200), "encoder/dense": (1200, d),
                   "encoder/dense_1": (1200, d), "decoder/dense": (d, 1200), "decoder/dense_1": (1200, 1200),
                   "decoder/dense_2": (1200, 1200), "decoder/dense_3": (1200, 64 * 64 * c)}
        out_axis = {}
    else:
        raise ValueError(f"dlib_variables: architecture {architecture!r}; expected 'conv' or 'fc'")
    shapes = {}
    for scope, kernel in kernels.items():
        kind = next(k for s, _n, k in SCOPES[architecture] if s == scope)
        axis = out_axis.get(kind.split("_")[0], -1)
        shapes[f"{scope}/kernel"] = kernel
        shapes[f"{scope}/bias"] = (kernel[axis],)
    return shapes


def _is_model_variable(name: str) -> bool:
    if not name.startswith(("encoder/", "decoder/")):
        return False
    return not re.search(r"/(Adam|Adam_\d+|Momentum|RMSProp|RMSProp_\d+|ExponentialMovingAverage)$", name)


def vaesim_weights(variables: dict[str, np.ndarray], architecture: str, num_channels: int,
                   latent_dim: int, *, where: str = "checkpoint") -> dict[str, np.ndarray]:
    """dlib's model variables (TensorFlow names and layouts) -> vaesim's state dict (float32 arrays).

    DlibError naming the variable when one is missing, unexpected or of the
    wrong shape for ``architecture`` with ``num_channels`` and ``latent_dim``.
    """
    expected = dlib_variables(architecture, num_channels, latent_dim)
    for name in sorted(variables):
        if name not in expected:
            raise DlibError(f"{where}: variable {name!r} is not part of dlib's {architecture} VAE "
                            f"({num_channels} channel(s), {latent_dim} latents); expected only {sorted(expected)}")
    for name, shape in expected.items():
        if name not in variables:
            raise DlibError(f"{where}: variable {name!r} is missing; dlib's {architecture} VAE has it with shape "
                            f"{list(shape)}")
        if tuple(variables[name].shape) != shape:
            raise DlibError(f"{where}: variable {name!r} has shape {list(variables[name].shape)}; dlib's "
                            f"{architecture} VAE with {num_channels} channel(s) and {latent_dim} latents expects "
                            f"{list(shape)}")
    c = num_channels
    weights: dict[str, np.ndarray] = {}
    for scope, target, kind in SCOPES[architecture]:
        kernel = np.asarray(variables[f"{scope}/kernel"], dtype=np.float32)
        bias = np.asarray(variables[f"{scope}/bias"], dtype=np.float32)
        if kind in ("conv", "deconv"):  # (kh, kw, a, b) -> (b, a, kh, kw): OIHW for conv, (in, out, kh, kw) for deconv
            weight = kernel.transpose(3, 2, 0, 1)
        elif kind == "dense":
            weight = kernel.T
        elif kind == "dense_from_nhwc":  # inputs are a flattened (h, w, c) map: reorder to torch's (c, h, w)
            side, channels = (4, 64) if architecture == "conv" else (64, c)
            weight = kernel.reshape(side, side, channels, -1).transpose(3, 2, 0, 1).reshape(kernel.shape[1], -1)
        else:  # dense_to_nhwc: outputs are reshaped to (h, w, c); torch views them as (c, h, w)
            side, channels = (4, 64) if architecture == "conv" else (64, c)
            weight = kernel.reshape(-1, side, side, channels).transpose(3, 1, 2, 0).reshape(-1, kernel.shape[0])
            bias = bias.reshape(side, side, channels).transpose(2, 0, 1).reshape(-1)
        weights[f"{target}.weight"] = np.ascontiguousarray(weight)
        weights[f"{target}.bias"] = np.ascontiguousarray(bias)
    return weights


# ---- one model ---------------------------------------------------------------------------------------------


@dataclass
class DlibModel:
    """One published model: its number, gin bindings, checkpoint step, model variables and published scores."""

    number: int
    config: dict
    step: int
    variables: dict[str, np.ndarray]
    scores: list[dict] = field(default_factory=list)


_MEMBER = re.compile(r"^(?P<n>\d+)/(?P<rest>.+)$")


def _scores(members: dict[str, bytes], prefix: str, where: str) -> list[dict]:
    """Published scores: one row per (representation, metric, score key) of every aggregate evaluation.json."""
    rows = []
    pattern = re.compile(re.escape(prefix) + r"metrics/(?P<rep>[^/]+)/(?P<metric>[^/]+)/results/aggregate/"
                         r"evaluation\.json$")
    for name, data in sorted(members.items()):
        match = pattern.match(name)
        if not match:
            continue
        try:
            record = json.loads(data)
        except ValueError:
            log.warning("%s: %s is not JSON; its scores are not imported", where, name)
            continue
        for key, value in (record.items() if isinstance(record, dict) else ()):
            if not key.startswith("evaluation_results.") or isinstance(value, bool) \
                    or key.endswith((".elapsed_time", ".uuid")):
                continue
            if isinstance(value, (int, float)) and math.isfinite(value):
                rows.append({"representation": match.group("rep"), "metric_dir": match.group("metric"),
                             "metric": key.removeprefix("evaluation_results."), "value": float(value)})
    return rows


def read_dlib_model(source: Path, scratch: Path) -> DlibModel:
    """Read a model zip (or unzipped ``<n>/`` folder); DlibError naming the file and what was expected."""
    members = _members(source)
    numbers = {m.group("n") for m in map(_MEMBER.match, members) if m}
    if len(numbers) != 1:
        raise DlibError(f"{source}: expected every entry under one folder <n>/ (a dlib model zip); found "
                        f"{sorted(numbers)[:5] or 'no such folder'}")
    number = numbers.pop()
    prefix = f"{number}/"
    config_name = f"{prefix}model/results/json/train_config.json"
    if config_name not in members:
        raise DlibError(f"{source}: no {config_name}; expected a dlib model with its training config")
    config = read_train_config(members[config_name]().decode("utf-8", errors="replace"), f"{source}:{config_name}")
    checkpoint = re.compile(re.escape(prefix) + r"model/tf_checkpoint/(model\.ckpt-(\d+))\.index$")
    indexes = sorted((int(m.group(2)), m.group(1)) for m in map(checkpoint.match, members) if m)
    if not indexes:
        raise DlibError(f"{source}: no {prefix}model/tf_checkpoint/model.ckpt-<step>.index; expected dlib's "
                        "TensorFlow checkpoint")
    step, stem = indexes[-1]
    folder = scratch / f"{number}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, read in members.items():
        if name.startswith(f"{prefix}model/tf_checkpoint/{stem}."):
            (folder / name.rsplit("/", 1)[1]).write_bytes(read())
    try:
        bundle = TensorBundle(folder / stem)
        bundle.verify()  # a damaged optimiser slot still means a damaged download: the whole model is skipped
        variables = {name: bundle.read(name) for name, entry in bundle.entries.items() if _is_model_variable(name)}
        if "global_step" in bundle.entries:
            recorded = int(bundle.read("global_step"))
            if recorded != step:
                raise DlibError(f"{source}: {stem} holds global_step {recorded}; its name says {step}")
    except BundleError as error:
        raise DlibError(f"{source}: {str(error).replace(str(folder) + '/', prefix + 'model/tf_checkpoint/')}") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    scores = _scores({n: r() for n, r in members.items() if n.endswith("evaluation.json")}, prefix, str(source))
    return DlibModel(int(number), config, step, variables, scores)


def _members(source: Path) -> dict:
    """{name inside the model: a function returning its bytes} of a zip or a folder ``<n>/``."""
    if source.is_dir():
        base = source.parent
        return {str(path.relative_to(base)).replace("\\", "/"): path.read_bytes
                for path in source.rglob("*") if path.is_file()}
    try:
        archive = zipfile.ZipFile(source)
    except zipfile.BadZipFile:
        raise DlibError(f"{source}: not a zip file; expected a dlib model <n>.zip") from None
    except OSError as error:
        raise DlibError(f"{source}: cannot be read ({error.strerror or error})") from None

    def reader(info: zipfile.ZipInfo):
        def read() -> bytes:
            try:
                return archive.read(info)
            except (zipfile.BadZipFile, OSError, EOFError, zlib_error) as error:
                raise DlibError(f"{source}: entry {info.filename} cannot be read ({error}); the zip is damaged "
                                "or truncated") from None
        return read

    return {info.filename: reader(info) for info in archive.infolist() if not info.is_dir()}


# ---- the import ----------------------------------------------------------------------------------------------


DlibImportSummary = ImportSummary  # runs imported now, already there, and skipped sources with why


def _sources(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise DlibError(f"{src}: no such file or folder; expected a folder of dlib model zips (<n>.zip) or "
                        "unzipped <n>/ folders")
    found = [p for p in src.iterdir() if (p.is_file() and p.suffix == ".zip") or (p.is_dir() and p.name.isdigit())]
    if not found:
        raise DlibError(f"{src}: no <n>.zip files or <n>/ folders; expected dlib's published models "
                        f"({PUBLISHED_AT})")

    def key(path: Path) -> tuple[int, str]:
        stem = path.name.removesuffix(".zip")
        return (int(stem) if stem.isdigit() else 1 << 62, path.name)

    return sorted(found, key=key)


def run_id_of(model: DlibModel, dataset: str, objective: str, param_name: str, param: float, seed: int) -> str:
    """``dlib-00042_dsprites_beta_vae_beta=4_seed=3``: stable, unique per published model."""
    return f"dlib-{model.number:05d}_{dataset}_{objective}_{param_name}={param:g}_seed={seed}"


def to_imported_run(model: DlibModel, source: Path, source_sha256: str, *, dataset: str | None = None
                    ) -> tuple[ImportedRun, dict[str, np.ndarray]]:
    """The vaesim run and weights of one dlib model; DlibError when its config or variables do not fit."""
    where = f"{source}"
    config = model.config
    objective, param_name, params = dlib_objective(config, f"{where}: train_config.json")
    architecture = _architecture(config, f"{where}: train_config.json")
    dlib_dataset = str(_need(config, "dataset.name", f"{where}: train_config.json"))
    if dlib_dataset not in DATASETS:
        raise DlibError(f"{where}: train_config.json: dataset.name = {dlib_dataset!r}; expected one of "
                        f"{', '.join(DATASETS)}")
    latent_dim = int(_number(config, "encoder.num_latent", f"{where}: train_config.json"))
    seed = int(_number(config, "model.random_seed", f"{where}: train_config.json"))
    first = model.variables.get("encoder/e1/kernel")
    num_channels = CHANNELS[dlib_dataset]
    if first is not None and architecture == "conv" and first.ndim == 4:
        num_channels = int(first.shape[2])
    weights = vaesim_weights(model.variables, architecture, num_channels, latent_dim, where=where)
    vaesim_dataset = dataset or DATASETS[dlib_dataset]
    run = ImportedRun(
        run_id=run_id_of(model, vaesim_dataset, objective, param_name, params[param_name], seed),
        dataset=vaesim_dataset, objective=objective, param_name=param_name, params=params, seed=seed,
        steps=int(model.step), architecture=architecture, num_channels=num_channels, latent_dim=latent_dim,
        source={"kind": "dlib", "model": model.number, "file": source.name, "sha256": source_sha256,
                "dataset": dlib_dataset, "published_at": PUBLISHED_AT.replace("<n>", str(model.number)),
                "train_config": {k: v for k, v in config.items() if isinstance(v, (str, int, float, bool))}},
    )
    return run, weights


def _source_digest(source: Path) -> str:
    if source.is_file():
        return sha256_file(source)
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(source)).encode() + b"\0" + bytes.fromhex(sha256_file(path)))
    return digest.hexdigest()


def import_dlib(src: str | Path, out_dir: str | Path, *, dataset: str | None = None, progress: bool = True
                ) -> DlibImportSummary:
    """Import every dlib model under ``src`` into ``out_dir/runs/`` (resumable; see module docstring).

    Models are read one at a time (memory: one model). A model already
    imported from the same file (same SHA-256) is kept as it is; a damaged
    or foreign one is counted in ``import.json`` with the reason, and the
    rest import. ``dataset``: record every model under this vaesim dataset
    instead of dlib's (e.g. ``dsprites-procedural`` to probe dSprites models
    with vaesim's renderer when the official file is not at hand).
    """
    src, out_dir = Path(src), Path(out_dir)
    sources = _sources(src)
    runs_dir = out_dir / RUNS_DIR
    runs_dir.mkdir(parents=True, exist_ok=True)
    removed = remove_partial_runs(runs_dir)
    for stale in out_dir.glob(".dlib-*"):  # the scratch folder of a killed import
        shutil.rmtree(stale, ignore_errors=True)
    if removed:
        log.warning("removed %d half-written run folder(s) of an interrupted import", removed)
    manifest_path = out_dir / MANIFEST
    manifest = _read_manifest(manifest_path, src)
    summary = DlibImportSummary(out_dir)
    scratch = Path(tempfile.mkdtemp(prefix=".dlib-", dir=out_dir))
    try:
        iterator: Iterator[Path] = iter(sources)
        if progress:
            from tqdm import tqdm

            iterator = tqdm(sources, desc="import dlib", unit="model", leave=False)
        for source in iterator:
            key = source.name
            digest = _source_digest(source)
            previous = manifest["models"].get(key)
            if previous and previous.get("sha256") == digest and previous.get("status") == "imported" \
                    and imported_run_done(runs_dir / previous["run_id"], digest, check=True):
                summary.already.append(previous["run_id"])
                continue
            try:
                model = read_dlib_model(source, scratch)
                run, weights = to_imported_run(model, source, digest, dataset=dataset)
                write_imported_run(runs_dir, run, {run.steps: weights})
                _write_scores(runs_dir / run.run_id, run, model.scores)
            except DlibError as error:
                log.warning("%s", error)
                summary.skipped[key] = str(error)
                manifest["models"][key] = {"status": "skipped", "sha256": digest, "reason": str(error)}
            else:
                summary.imported.append(run.run_id)
                manifest["models"][key] = {"status": "imported", "sha256": digest, "run_id": run.run_id,
                                           "model": model.number}
            _write_manifest(manifest_path, manifest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _write_manifest(manifest_path, manifest)
    return summary


def _write_scores(run_dir: Path, run: ImportedRun, scores: list[dict]) -> None:
    """The published scores of one run, ``published_scores.json`` beside its record (collected by the study)."""
    rows = [{"dataset": run.dataset, "run": run.run_id, "objective": run.objective, "param_name": run.param_name,
             "param": run.param, "seed": run.seed, "step": run.steps, "source": "dlib", **row} for row in scores]
    atomic_write_json(run_dir / "published_scores.json", rows)


def _read_manifest(path: Path, src: Path) -> dict:
    if path.is_file():
        try:
            manifest = json.loads(path.read_text())
            if isinstance(manifest, dict) and isinstance(manifest.get("models"), dict):
                return manifest
        except ValueError:
            pass
        log.warning("%s is not an import manifest; it is written again from the runs present", path)
    return {"source": "dlib", "src": str(src.resolve()), "models": {}}


def _write_manifest(path: Path, manifest: dict) -> None:
    models = manifest["models"]
    manifest["counts"] = {"imported": sum(m.get("status") == "imported" for m in models.values()),
                          "skipped": sum(m.get("status") == "skipped" for m in models.values())}
    atomic_write_json(path, manifest)
