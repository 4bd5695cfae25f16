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

import io
import json
import logging
import os
import math
import re
import stat
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
#: the most bytes read from one source file (one compute_similarity table is a few kB)
MAX_FILE_BYTES = 64 * 1024 * 1024
INT64_MAX = 2**63 - 1
#: measures whose scores lie in [0, 1]; a score outside it is refused
UNIT_INTERVAL_METRICS = ("cka", "linear_cka", "procrustes")


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
    non_finite: int = 0  # NaN / inf scores imported (each with a note)
    duplicates: int = 0  # scores found again, with the same value, in another file (imported once)


def run_id(name: str, param_name: str, value: float, seed: int) -> str:
    return f"{name}-{param_name}{value:g}-s{int(seed)}"


def _dataset_from_path(path: Path, default: str) -> str:
    parts = path.parts
    for i, part in enumerate(parts[:-1]):
        if re.fullmatch(r"latent_\d+", part) and i + 1 < len(parts) - 1:
            return parts[i + 1]
    return default


def read_vae_ld_file(path: str | Path) -> tuple[dict, pd.DataFrame]:
    """(info, scores) of one TSV: info = the model columns (+ ``metric``, ``labels``); scores rows x columns.

    Only a regular file of at most :data:`MAX_FILE_BYTES` is read (a FIFO or a device named ``*.tsv`` would
    be read forever); ValueError names the file and what is wrong with it.
    """
    path = Path(path)
    text = _read_regular(path)
    try:
        table = pd.read_csv(io.StringIO(text), sep="\t", index_col=0)
    except Exception as error:
        raise ValueError(f"{path}: not a tab-separated similarity file ({error})") from None
    missing = [c for c in M1_INFO if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: expected the model-info columns {list(M1_INFO)} of VAE_learning_dynamics' "
                         f"compute_similarity, missing {missing}; found columns {list(table.columns)}")
    if table.empty:
        raise ValueError(f"{path}: holds a header but no rows of scores; expected one row per layer of the "
                         "first model, as compute_similarity writes it")
    info = {c: table[c].iloc[0] for c in table.columns if c in INFO_COLUMNS}
    for column in ("m1_seed", "m2_seed", "m1_epoch", "m2_epoch"):
        if column in info:
            info[column] = _count(info[column], column, path)
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
        info["m1_epoch"] = _count(epochs[-1], "the epoch in the file name", path)
    for column in ("p1_value", "p2_value"):
        if column in info:
            try:
                info[column] = float(info[column])
            except (TypeError, ValueError):
                raise ValueError(f"{path}: {column} must be a number; got {info[column]!r}") from None
    scores = table[[c for c in table.columns if c not in INFO_COLUMNS]]
    try:
        scores = scores.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: the scores must be numbers ({error})") from None
    if info["metric"] in UNIT_INTERVAL_METRICS:
        values = scores.to_numpy()
        outside = np.isfinite(values) & ((values < 0) | (values > 1))
        if outside.any():
            raise ValueError(f"{path}: {int(outside.sum())} {info['metric']} score(s) outside [0, 1] (first: "
                             f"{values[outside][0]!r}); a {info['metric']} similarity lies in [0, 1]: this is not a "
                             "file of such scores")
    return info, scores


def _read_regular(path: Path) -> str:
    """The text of ``path`` if it is a regular file of at most :data:`MAX_FILE_BYTES` (ValueError otherwise)."""
    try:
        info = path.stat()
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror or error})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device" if stat.S_ISCHR(info.st_mode) or \
            stat.S_ISBLK(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file"
        raise ValueError(f"{path}: is {kind}; expected a regular TSV file written by compute_similarity")
    if info.st_size > MAX_FILE_BYTES:
        raise ValueError(f"{path}: {info.st_size:,} bytes, over the limit of {MAX_FILE_BYTES:,} bytes per file "
                         "(one compute_similarity file holds one layer-by-layer table of a few kB)")
    with open(path, "rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:  # grew while read
        raise ValueError(f"{path}: more than the limit of {MAX_FILE_BYTES:,} bytes per file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (not UTF-8); expected a TSV written by compute_similarity") \
            from None


def _count(value, column: str, path: Path) -> int:
    """A seed or epoch: an integer in [0, 2**63 - 1] (ValueError naming the file and column otherwise)."""
    try:
        number = float(value) if not isinstance(value, (int, np.integer)) else value
        whole = int(number)
    except (TypeError, ValueError, OverflowError):
        whole, number = None, value
    if whole is None or whole != number or not 0 <= whole <= INT64_MAX:
        raise ValueError(f"{path}: {column} must be a whole number from 0 to {INT64_MAX}; got {value!r}")
    return whole


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
                source=str(path),
            ))
    return out


def import_vae_ld(src: str | Path, out_dir: str | Path, *, dataset: str = "unknown", n: int = 0,
                  overwrite: bool = False) -> ImportSummary:
    """Convert every ``*.tsv`` under ``src`` into a vaesim results store in ``out_dir``.

    Writes ``spec.yaml`` (name, source, what was imported), one checksummed
    ``results/vae_ld__<k>.parquet`` per source folder, ``runs.parquet`` (one row
    per model) and ``import.json`` (files, rows, unmapped layer names, NaN/inf
    scores, scores found twice).

    ``out_dir`` must be empty, new, or (with ``overwrite``) an earlier import
    of the same ``src``: a study or anything else there is never replaced.
    Only regular files inside ``src`` are read (a symlink leading outside it
    is refused). The same score found in two files is imported once and
    counted; found with two different values, the import is refused.

    Raises:
        FileNotFoundError: ``src`` missing or holding no ``.tsv``.
        ValueError: ``out_dir`` holds something else, a bad file, ``n`` < 0, conflicting scores.
    """
    from vaesim.study.schema import RESULT_SCHEMA
    from vaesim.study.stages.files import write_table
    from vaesim.utils import atomic_write_json, atomic_write_text

    src, out_dir = Path(src), Path(out_dir)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= INT64_MAX:
        raise ValueError(f"vaesim import vae-ld: --n (the number of examples behind the scores) must be a whole "
                         f"number >= 0 (0 = unknown); got {n!r}")
    if not src.exists():
        raise FileNotFoundError(f"vaesim import vae-ld: source {src} does not exist; give the folder of TSV files")
    files = sorted(src.rglob("*.tsv")) if src.is_dir() else [src]
    if not files:
        raise FileNotFoundError(f"vaesim import vae-ld: no .tsv files under {src}; expected the files written by "
                                "VAE_learning_dynamics' bin/compute_similarity")
    if src.is_dir():
        root = Path(os.path.realpath(src))
        outside = [p for p in files if not Path(os.path.realpath(p)).is_relative_to(root)]
        if outside:
            raise ValueError(f"vaesim import vae-ld: {len(outside)} file(s) under {src} are symlinks leading outside "
                             f"it (first: {outside[0]} -> {os.path.realpath(outside[0])}); only files inside SRC are "
                             "read: copy them into SRC")
    previous = _check_out_dir(src, out_dir, overwrite)
    unmapped: Counter = Counter()
    by_folder: dict[Path, list[dict]] = {}
    for path in files:
        info, scores = read_vae_ld_file(path)
        rows = _rows(path, info, scores, _dataset_from_path(path, dataset), n, unmapped)
        by_folder.setdefault(path.parent, []).extend(rows)
    frames, duplicates = _distinct_scores(by_folder)
    total, non_finite = 0, 0
    runs = {}
    written: list[str] = []
    for k, frame in enumerate(frames):
        name = f"results/vae_ld__{k:05d}.parquet"
        write_table(out_dir / name, frame, RESULT_SCHEMA, checksum=True)
        written.append(name)
        total += len(frame)
        non_finite += int((~np.isfinite(frame["score"].to_numpy())).sum())
        for side in ("a", "b"):
            last = frame.groupby(f"{side}_run")[f"{side}_step"].max()
            for r in frame.drop_duplicates(f"{side}_run").itertuples():
                run_id = getattr(r, f"{side}_run")
                earlier = runs.get(run_id, {}).get("steps", 0)
                # steps: the run's last recorded checkpoint, in the authors' unit (epochs), as a study's runs
                # table gives its training length (`a_step = runs.steps` selects final checkpoints either way)
                runs[run_id] = dict(
                    run_id=run_id, dataset=r.dataset, objective=getattr(r, f"{side}_objective"),
                    param_name=getattr(r, f"{side}_param_name"), param=getattr(r, f"{side}_param"),
                    seed=getattr(r, f"{side}_seed"), steps=int(max(earlier, int(last[run_id]))), step_unit="epoch",
                    source="vae-ld")
    if runs:
        write_table(out_dir / "runs.parquet", pd.DataFrame(sorted(runs.values(), key=lambda r: r["run_id"])),
                    checksum=True)
    manifest = {"source": str(src.resolve()), "files": len(files), "rows": total, "results_files": written,
                "non_finite_scores": non_finite, "duplicate_scores": duplicates,
                "unmapped_layers": dict(sorted(unmapped.items())),
                "duplicate_layers": DUPLICATE_LAYERS, "layer_map": LAYER_MAP}
    atomic_write_json(out_dir / "import.json", manifest)
    atomic_write_text(out_dir / "spec.yaml", yaml.safe_dump({
        "name": f"vae-ld import of {src.name}",
        "description": f"scores imported from VAE_learning_dynamics TSV files under {src.resolve()} "
                       f"by `vaesim import vae-ld`; {len(files)} files, {total} rows; not a runnable study spec",
        "imported_from": "vae_ld",
    }, sort_keys=False))
    from vaesim.study.stages.files import discard

    for stale in sorted(set(previous) - set(written)):  # an earlier import's files this one does not hold
        discard(out_dir / stale)
    log.info("imported %d files, %d rows into %s; unmapped layers: %s", len(files), total, out_dir, dict(unmapped))
    return ImportSummary(len(files), total, dict(unmapped), out_dir, non_finite, duplicates)


def _check_out_dir(src: Path, out_dir: Path, overwrite: bool) -> list[str]:
    """Refuse an ``out_dir`` that holds anything but an earlier import of ``src``; that import's results files."""
    if not out_dir.exists():
        return []
    if not out_dir.is_dir():
        raise ValueError(f"vaesim import vae-ld: --out {out_dir} is a file, not a directory; choose a new directory")
    entries = sorted(p.name for p in out_dir.iterdir())
    if not entries:
        return []
    manifest = {}
    try:
        manifest = json.loads((out_dir / "import.json").read_text(encoding="utf-8"))
        recorded = yaml.safe_load((out_dir / "spec.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        recorded = None
    earlier = (isinstance(recorded, dict) and recorded.get("imported_from") == "vae_ld"
               and isinstance(manifest, dict) and isinstance(manifest.get("results_files"), list))
    if not earlier:
        what = "a vaesim study (spec.yaml)" if "spec.yaml" in entries else "other files"
        listing = ", ".join(entries[:6]) + (" ..." if len(entries) > 6 else "")
        raise ValueError(f"vaesim import vae-ld: --out {out_dir} already holds {what}: {listing}; an import writes "
                         "only into a new or empty directory (or over an earlier import of the same SRC): choose "
                         "another --out")
    if manifest.get("source") != str(src.resolve()):
        raise ValueError(f"vaesim import vae-ld: --out {out_dir} holds an import of {manifest.get('source')!r}, not "
                         f"of {str(src.resolve())!r}; choose another --out")
    if not overwrite:
        raise ValueError(f"vaesim import vae-ld: {out_dir} already holds results (an earlier import of {src}); "
                         "choose an empty --out or pass --overwrite to import it again")
    return [name for name in manifest["results_files"] if isinstance(name, str) and name.startswith("results/")
            and "/" not in name.removeprefix("results/")]


def _distinct_scores(by_folder: dict[Path, list[dict]]) -> tuple[list[pd.DataFrame], int]:
    """One frame per source folder, each score once across all of them; (frames, scores found twice).

    A key found twice with the same value (NaN equal to NaN) is kept once, in the first folder; found with
    two different values, ValueError names the key and both files.
    """
    from vaesim.study.schema import RESULT_KEY, RESULT_SCHEMA

    folders = [(folder, pd.DataFrame(rows)) for folder, rows in sorted(by_folder.items()) if rows]
    if not folders:
        return [], 0
    every = pd.concat([frame.assign(_folder=k) for k, (_, frame) in enumerate(folders)], ignore_index=True)
    repeated = every[every.duplicated(list(RESULT_KEY), keep=False)]
    if not repeated.empty:
        for _, group in repeated.groupby(list(RESULT_KEY), sort=False):
            values = group["score"].to_numpy()
            same = np.all((values == values[0]) | (np.isnan(values) & np.isnan(values[0])))
            if not same:
                first, second = group.iloc[0], group.iloc[1:][values[1:] != values[0]].iloc[0] \
                    if (values[1:] != values[0]).any() else group.iloc[1]
                key = ", ".join(f"{name}={first[name]}" for name in RESULT_KEY)
                raise ValueError(f"vaesim import vae-ld: the score of ({key}) is {first['score']!r} in "
                                 f"{first['source']} and {second['score']!r} in {second['source']}; remove the file "
                                 "that is wrong (or import them into separate stores)")
    kept = every.drop_duplicates(list(RESULT_KEY), keep="first")
    duplicates = len(every) - len(kept)
    frames = [part[list(RESULT_SCHEMA.names)].reset_index(drop=True) for _, part in kept.groupby("_folder", sort=True)]
    return frames, duplicates
