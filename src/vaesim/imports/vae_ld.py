"""Read the similarity TSVs of Bonheme & Grzes's library (VAE_learning_dynamics) into a vaesim store.

Their writer (``bin/compute_similarity``, ``compute_similarity_metric``)
builds ``res[l1][l2] = metric(acts1[l1], acts2[l2])``, turns it into
``pd.DataFrame(res).T`` (so the **rows are the first model's layers** and
the columns the second model's, although the code comment and the axis
names say the opposite: the index is named ``m2``, the column axis ``m1``),
appends the model-info columns and writes it with ``to_csv(sep="\t")``:

* model pairs: ``{metric}_{m1_name}_{p1_value}_seed_{m1_seed}_{epoch_dir}_{m2 likewise}.tsv``
  with columns ``m1_name, p1_name, p1_value, m1_seed, m2_name, p2_name,
  p2_value, m2_seed, m1_epoch, m2_epoch``;
* labels: ``{metric}_{m1_name}_{p1_value}_seed_{m1_seed}_{epoch_dir}_labels.tsv``
  with one layer column ``labels`` and ``m1_name, p1_name, p1_value,
  m1_seed`` (no epoch column: the epoch is read from the file name).

Their hydra output folders are
``.../latent_{d}/{dataset}/{metric}/{m1}/param_{p1}/seed_{s1}/...``; the
dataset is read from there when present (else ``dataset=`` decides).

Layer names of their convolutional VAE (``vae_ld.models.encoders`` /
``decoders``) map onto :data:`vaesim.models.LAYER_NAMES` as in
:data:`LAYER_MAP`; ``encoder/5`` (Flatten of ``encoder/4``),
``decoder/reshape`` (Reshape of ``decoder/2``) and ``decoder/output``
(Reshape of ``decoder/6``) hold the same numbers as a mapped layer and are
not imported; every name that does not map is counted in the manifest.
``labels`` (the ground-truth factors) becomes vaesim's ``factors`` layer
of the ``factors`` comparison. Their ``procrustes`` is ``1 - (|A|^2 +
|B|^2 - 2 ||A^T B||_*)/2 = ||A^T B||_*`` on unit-norm centred matrices:
vaesim's Procrustes similarity, so metric names are kept as they are.

Steps: the authors checkpoint by epoch; ``a_step`` and ``a_epoch`` both hold
that epoch. ``n`` (their number of examples) is not in the files: stored as
the ``n=`` argument (0 = unknown).
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from vaesim.models import LAYER_NAMES

__all__ = ["LAYER_MAP", "ImportSummary", "import_vae_ld", "read_vae_ld_file"]

log = logging.getLogger(__name__)

LAYER_MAP = {
    "input": "input",
    "encoder/1": "encoder.conv1",
    "encoder/2": "encoder.conv2",
    "encoder/3": "encoder.conv3",
    "encoder/4": "encoder.conv4",
    "encoder/6": "encoder.fc",
    "encoder/z_mean": "encoder.mean",
    "encoder/z_log_var": "encoder.logvar",
    "encoder/z_var": "encoder.variance",
    "sampling": "encoder.sample",
    "decoder/1": "decoder.fc1",
    "decoder/2": "decoder.fc2",
    "decoder/3": "decoder.deconv1",
    "decoder/4": "decoder.deconv2",
    "decoder/5": "decoder.deconv3",
    "decoder/6": "decoder.output",
    "labels": "factors",
}
#: their layers that repeat another layer's numbers (Flatten / Reshape)
DUPLICATE_LAYERS = {"encoder/5": "encoder/4", "decoder/reshape": "decoder/2", "decoder/output": "decoder/6"}
M1_INFO = ("m1_name", "p1_name", "p1_value", "m1_seed")
M2_INFO = ("m2_name", "p2_name", "p2_value", "m2_seed")
INFO_COLUMNS = set(M1_INFO + M2_INFO + ("m1_epoch", "m2_epoch"))
_ORDER = {name: i for i, name in enumerate(LAYER_NAMES)}
_EPOCH = re.compile(r"epoch_(\d+)")


def map_layer(name: str) -> str | None:
    """vaesim's name of one of their layers, or None (duplicates and unknown names)."""
    if name in LAYER_MAP:
        return LAYER_MAP[name]
    if re.fullmatch(r"sampling(_\d+)?", name):  # Keras numbers repeated default names
        return "encoder.sample"
    return None


@dataclass(frozen=True)
class ImportSummary:
    """What an import read and wrote."""

    files: int
    rows: int
    unmapped: dict  # {their layer name: number of scores skipped}
    out_dir: Path


def run_id(name: str, param_name: str, value: float, seed: int) -> str:
    return f"{name}-{param_name}{value:g}-s{int(seed)}"


def _dataset_from_path(path: Path, default: str) -> str:
    parts = path.parts
    for i, part in enumerate(parts[:-1]):
        if re.fullmatch(r"latent_\d+", part) and i + 1 < len(parts) - 1:
            return parts[i + 1]
    return default


def read_vae_ld_file(path: str | Path) -> tuple[dict, pd.DataFrame]:
    """(info, scores) of one TSV: info = the model columns (+ ``metric``, ``labels``); scores rows x columns."""
    path = Path(path)
    try:
        table = pd.read_csv(path, sep="\t", index_col=0)
    except Exception as error:
        raise ValueError(f"{path}: not a tab-separated similarity file ({error})") from None
    missing = [c for c in M1_INFO if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: expected the model-info columns {list(M1_INFO)} of VAE_learning_dynamics' "
                         f"compute_similarity, missing {missing}; found columns {list(table.columns)}")
    info = {c: table[c].iloc[0] for c in table.columns if c in INFO_COLUMNS}
    labels = "m2_name" not in table.columns
    if not labels and any(c not in table.columns for c in M2_INFO + ("m1_epoch", "m2_epoch")):
        raise ValueError(f"{path}: a model-pair file needs {list(M2_INFO) + ['m1_epoch', 'm2_epoch']}")
    stem = path.name.removesuffix(".tsv")
    marker = f"_{info['m1_name']}_"
    if marker not in stem:
        raise ValueError(f"{path}: file name should start with '<metric>{marker}' as compute_similarity writes it")
    info["metric"] = stem.split(marker)[0]
    info["labels"] = labels
    if labels:
        epochs = _EPOCH.findall(stem)
        if not epochs:
            raise ValueError(f"{path}: a labels file name must hold the checkpoint's 'epoch_N'")
        info["m1_epoch"] = int(epochs[-1])
    scores = table[[c for c in table.columns if c not in INFO_COLUMNS]]
    return info, scores.astype(np.float64)


def _rows(path: Path, info: dict, scores: pd.DataFrame, dataset: str, n: int, unmapped: Counter) -> list[dict]:
    a = (str(info["m1_name"]), str(info["p1_name"]), float(info["p1_value"]), int(info["m1_seed"]))
    ta = int(info["m1_epoch"])
    if info["labels"]:
        b, tb, comparison = a, ta, "factors"
    else:
        b = (str(info["m2_name"]), str(info["p2_name"]), float(info["p2_value"]), int(info["m2_seed"]))
        tb = int(info["m2_epoch"])
        if a == b:
            comparison = "within_run"
        elif a[0] == b[0] and a[2] == b[2]:
            comparison = "seeds"
        elif a[0] == b[0] and a[3] == b[3]:
            comparison = "params"
        elif a[0] != b[0] and a[3] == b[3]:
            comparison = "objectives"
        else:
            comparison = "other"
    same_checkpoint = comparison == "within_run" and ta == tb
    out = []
    for row_layer, values in scores.iterrows():  # rows: the first model's layers (see module docstring)
        la = map_layer(str(row_layer))
        for col_layer, score in values.items():
            lb = map_layer(str(col_layer))
            if la is None or lb is None:
                for name, mapped in ((row_layer, la), (col_layer, lb)):
                    if mapped is None:
                        unmapped[str(name)] += 1
                continue
            if same_checkpoint and _ORDER.get(la, 0) > _ORDER.get(lb, 0):
                continue  # a checkpoint with itself: each unordered layer pair once, as vaesim stores it
            out.append(dict(
                dataset=dataset, comparison=comparison, metric=info["metric"],
                a_run=run_id(a[0], a[1], a[2], a[3]), a_objective=a[0], a_param_name=a[1], a_param=a[2],
                a_seed=a[3], a_step=ta, a_epoch=float(ta), a_layer=la,
                b_run=run_id(b[0], b[1], b[2], b[3]), b_objective=b[0], b_param_name=b[1], b_param=b[2],
                b_seed=b[3], b_step=tb, b_epoch=float(tb), b_layer=lb, n=int(n), score=float(score),
                note="" if math.isfinite(float(score)) else "not finite in the source file",
            ))
    return out


def import_vae_ld(src: str | Path, out_dir: str | Path, *, dataset: str = "unknown", n: int = 0,
                  overwrite: bool = False) -> ImportSummary:
    """Convert every ``*.tsv`` under ``src`` into a vaesim results store in ``out_dir``.

    Writes ``spec.yaml`` (name, source, what was imported), one checksummed
    ``results/vae_ld__<k>.parquet`` per source folder, ``runs.parquet`` (one row
    per model) and ``import.json`` (files, rows, unmapped layer names).

    Raises:
        FileNotFoundError: ``src`` missing or holding no ``.tsv``.
        ValueError: ``out_dir`` already holds results (without ``overwrite``), or a bad file.
    """
    from vaesim.study.store import RESULT_SCHEMA, write_table
    from vaesim.utils import atomic_write_json, atomic_write_text

    src, out_dir = Path(src), Path(out_dir)
    if not src.exists():
        raise FileNotFoundError(f"vaesim import vae-ld: source {src} does not exist; give the folder of TSV files")
    files = sorted(src.rglob("*.tsv")) if src.is_dir() else [src]
    if not files:
        raise FileNotFoundError(f"vaesim import vae-ld: no .tsv files under {src}; expected the files written by "
                                "VAE_learning_dynamics' bin/compute_similarity")
    if (out_dir / "results").exists() and any((out_dir / "results").iterdir()) and not overwrite:
        raise ValueError(f"vaesim import vae-ld: {out_dir}/results already holds results; choose an empty --out "
                         "or pass --overwrite")
    unmapped: Counter = Counter()
    by_folder: dict[Path, list[dict]] = {}
    for path in files:
        info, scores = read_vae_ld_file(path)
        rows = _rows(path, info, scores, _dataset_from_path(path, dataset), n, unmapped)
        by_folder.setdefault(path.parent, []).extend(rows)
    total = 0
    runs = {}
    written: list[str] = []
    for k, (folder, rows) in enumerate(sorted(by_folder.items())):
        if not rows:
            continue
        frame = pd.DataFrame(rows)[list(RESULT_SCHEMA.names)]
        frame = frame.drop_duplicates(["comparison", "metric", "a_run", "a_step", "a_layer", "b_run", "b_step",
                                       "b_layer"])
        write_table(out_dir / "results" / f"vae_ld__{k:05d}.parquet", frame, RESULT_SCHEMA, checksum=True)
        written.append(f"results/vae_ld__{k:05d}.parquet")
        total += len(frame)
        for side in ("a", "b"):
            for r in frame.drop_duplicates(f"{side}_run").itertuples():
                runs[getattr(r, f"{side}_run")] = dict(
                    run_id=getattr(r, f"{side}_run"), dataset=r.dataset, objective=getattr(r, f"{side}_objective"),
                    param_name=getattr(r, f"{side}_param_name"), param=getattr(r, f"{side}_param"),
                    seed=getattr(r, f"{side}_seed"))
    if runs:
        write_table(out_dir / "runs.parquet", pd.DataFrame(sorted(runs.values(), key=lambda r: r["run_id"])),
                    checksum=True)
    manifest = {"source": str(src.resolve()), "files": len(files), "rows": total, "results_files": written,
                "unmapped_layers": dict(sorted(unmapped.items())),
                "duplicate_layers": DUPLICATE_LAYERS, "layer_map": LAYER_MAP}
    atomic_write_json(out_dir / "import.json", manifest)
    atomic_write_text(out_dir / "spec.yaml", yaml.safe_dump({
        "name": f"vae-ld import of {src.name}",
        "description": f"scores imported from VAE_learning_dynamics TSV files under {src.resolve()} "
                       f"by `vaesim import vae-ld`; {len(files)} files, {total} rows; not a runnable study spec",
        "imported_from": "vae_ld",
    }, sort_keys=False))
    log.info("imported %d files, %d rows into %s; unmapped layers: %s", len(files), total, out_dir, dict(unmapped))
    return ImportSummary(len(files), total, dict(unmapped), out_dir)
