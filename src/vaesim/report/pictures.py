"""What the models do: reconstructions and latent traversals from a study's checkpoints.

The maths is in three pure functions of a model and images (no files):
:func:`reconstruct` (decode the posterior mean), :func:`traverse` (decode the
posterior mean of one image with one latent coordinate replaced by each of
``values``, as in disentanglement_lib's ``latent_traversal_1d_multi_dim``) and
:func:`latent_kl` (KL of each latent dimension on the images, which orders the
dimensions: a dimension whose KL is near zero carries no information and its
traversal shows no change). The ``figure_*`` functions read a study directory
(``probes/<dataset>.npz``, ``runs/<run_id>/checkpoints``) and draw them; a
dimension is marked passive by the report's one definition
(:func:`vaesim.report.collapse.passive_dimensions`: Cov_x(E[z_u|x]) <= 0.01
over the whole probe set, read from ``latents.parquet``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt  # the Figure type only: figures are made without pyplot (report.figures.subplots)
import numpy as np
import pandas as pd

from vaesim.report.figures import subplots

TRAVERSAL_VALUES = np.linspace(-2.0, 2.0, 7)  # latent values shown; the prior N(0, 1) puts 95% within +-2
N_IMAGES = 8  # probe images per reconstruction row


class NoCheckpoints(Exception):
    """The study directory lacks the probe set or checkpoints a picture needs; the message says which."""


class RefusedFile(NoCheckpoints):
    """A probe set or checkpoint a picture would be drawn from does not match its recorded SHA-256."""


_refused: set[str] = set()
_verified: dict[tuple, bool] = {}


def file_verified(path: Path) -> bool:
    """:func:`vaesim.study.stages.files.verified`, hashed once per file version (figures read the same probe set often)."""
    from vaesim.study.stages.files import verified

    try:
        info = path.stat()
    except OSError:
        return False
    key = (str(path), info.st_mtime_ns, info.st_size)
    if key not in _verified:
        _verified[key] = verified(path)
    return _verified[key]


def _refuse(path: Path, study_dir: Path, what: str) -> RefusedFile:
    """The error for a file that fails its check, logged once per file as a warning (the CLI shows it)."""
    import shlex

    message = (f"{what} {path} does not match its recorded SHA-256 (or has no record): nothing is drawn from it; "
               f"`vaesim study verify {shlex.quote(str(study_dir))}` lists it and a rerun of `vaesim study run` "
               "recomputes it")
    if str(path) not in _refused:
        _refused.add(str(path))
        import logging

        logging.getLogger(__name__).warning("report: %s", message)
    return RefusedFile(message)


def _torch():
    import torch

    return torch


def reconstruct(model, images: np.ndarray) -> np.ndarray:
    """Decode the posterior mean of each image: float32 (B, C, 64, 64) in [0, 1] -> same shape in [0, 1]."""
    torch = _torch()
    with torch.no_grad():
        mean, _ = model.encode(torch.as_tensor(images, dtype=torch.float32))  # (B, D)
        return torch.sigmoid(model.decoder(mean)).numpy()  # (B, C, 64, 64)


def traverse(model, image: np.ndarray, dims, values=TRAVERSAL_VALUES) -> np.ndarray:
    """Decode ``image``'s posterior mean with coordinate ``d`` set to each of ``values``, for each ``d`` in ``dims``.

    image: (C, 64, 64); returns float32 (len(dims), len(values), C, 64, 64) in [0, 1].
    """
    torch = _torch()
    values = torch.as_tensor(np.asarray(values, dtype=np.float32))
    with torch.no_grad():
        mean, _ = model.encode(torch.as_tensor(image[None], dtype=torch.float32))  # (1, D)
        rows = []
        for dim in dims:
            codes = mean.repeat(len(values), 1)  # (V, D)
            codes[:, dim] = values
            rows.append(torch.sigmoid(model.decoder(codes)))  # (V, C, 64, 64)
        return torch.stack(rows).numpy()


def latent_kl(model, images: np.ndarray) -> np.ndarray:
    """KL(q(z_d | x) || N(0, 1)) of each latent dimension, averaged over ``images`` (B, C, 64, 64): (D,) nats."""
    torch = _torch()
    with torch.no_grad():
        mean, logvar = model.encode(torch.as_tensor(images, dtype=torch.float32))
        return (0.5 * (mean.square() + logvar.exp() - logvar - 1.0)).mean(0).double().numpy()


# ------------------------------------------------------------------ reading a study
def probe_images(study_dir: Path, dataset: str, count: int = N_IMAGES) -> np.ndarray:
    """``count`` probe images spread over the probe set (it is sorted by dataset index): (count, C, 64, 64)."""
    from vaesim.data import ProbeSet

    path = Path(study_dir) / "probes" / f"{dataset}.npz"
    if not path.is_file():
        raise NoCheckpoints(f"no probe set {path}: the study's probe stage has not run")
    if not file_verified(path):
        raise _refuse(path, Path(study_dir), "probe set")
    probe = ProbeSet.load(path)
    picks = np.unique(np.linspace(0, len(probe) - 1, min(count, len(probe))).astype(int))
    return probe.images[picks]


def load_model(study_dir: Path, run_id: str, step: int | None = None):
    """(model in eval mode, step) of a run's checkpoint (default: its last recorded one).

    The checkpoint's weights must match the SHA-256 recorded after training (``checkpoint-sums.json``):
    :class:`RefusedFile` names one that does not, rather than drawing from it or from an older step.
    """
    from vaesim.study.stages.checkpoints import checkpoint_file, checkpoint_intact
    from vaesim.training import load_checkpoint

    study_dir = Path(study_dir)
    run_dir = study_dir / "runs" / run_id
    steps = recorded_steps(study_dir, run_id)
    step = steps[-1] if step is None else step
    try:
        intact = checkpoint_intact(study_dir, run_id, step)
    except (OSError, ValueError):
        intact = False
    if not intact:
        raise _refuse(checkpoint_file(run_dir, step), study_dir, "checkpoint")
    from vaesim.models.plugin_table import is_plugin
    from vaesim.training.checkpoint_files import read_meta

    architecture = str(read_meta(run_dir, step)["model"]["architecture"])
    if is_plugin(architecture):  # the report only reads a study: it runs no plug-in code
        raise NoCheckpoints(f"the models are of the plug-in architecture {architecture!r}, whose code the report "
                            "does not run (it only reads the study); draw them with vaesim.report.pictures in a "
                            "session that imports the plug-in")
    model, meta = load_checkpoint(run_dir, step)
    return model, int(meta["step"])


def recorded_steps(study_dir: Path, run_id: str) -> list[int]:
    """The checkpoint steps recorded after a run's training (``checkpoint-sums.json``), in order."""
    from vaesim.study.plan import checkpoint_sums_path
    from vaesim.study.stages.checkpoints import read_sums

    sums_file = Path(study_dir) / checkpoint_sums_path(run_id)
    if not sums_file.is_file():
        raise NoCheckpoints(f"no checkpoints in {sums_file.parent}: the run has not finished training "
                            f"(no {sums_file.name})")
    try:
        steps = sorted(int(key) for key in read_sums(sums_file) if key.isdigit())
    except (OSError, ValueError) as error:
        raise _refuse(sums_file, Path(study_dir), f"checkpoint record ({error})") from None
    if not steps:
        raise NoCheckpoints(f"no checkpoints recorded in {sums_file}")
    return steps


def representative_runs(runs: pd.DataFrame, limit: int = 24) -> pd.DataFrame:
    """One run per (dataset, objective, param), its lowest seed, in study order; at most ``limit``."""
    ordered = runs.sort_values(["dataset", "objective", "param", "seed"])
    return ordered.drop_duplicates(["dataset", "objective", "param"]).head(limit).reset_index(drop=True)


def run_label(row) -> str:
    return f"{row['objective']} {row['param_name']}={float(row['param']):g} seed {int(row['seed'])}"


# ------------------------------------------------------------------ drawing
def _show(ax, image: np.ndarray) -> None:
    """One (C, 64, 64) image in [0, 1] on ``ax``, without ticks."""
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(np.clip(image.transpose(1, 2, 0), 0, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#bbbbbb")


def figure_reconstructions(study_dir: Path, runs: pd.DataFrame, dataset: str) -> plt.Figure:
    """Top row: probe images; then one row per model (lowest seed): its reconstruction at the final step."""
    images = probe_images(study_dir, dataset)
    chosen = representative_runs(runs[runs["dataset"] == dataset])
    rows = [("probe images", images)]
    for _, run in chosen.iterrows():
        model, step = load_model(study_dir, run["run_id"])
        rows.append((f"{run_label(run)}\nstep {step}", reconstruct(model, images)))
    fig, axes = subplots(len(rows), len(images), figsize=(1.05 * len(images) + 2.3, 1.1 * len(rows)),
                             squeeze=False)
    for r, (label, batch) in enumerate(rows):
        for c, image in enumerate(batch):
            _show(axes[r, c], image)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"Reconstructions of probe images ({dataset}): decoded posterior mean at the final step",
                 fontsize=10)
    fig.tight_layout()
    return fig


def _traversal_rows(axes, model, image: np.ndarray, dims, kl: np.ndarray, *, column: int = 0) -> None:
    """Draw the traversal of each dim in ``dims`` as row r of ``axes`` from ``column`` on."""
    grid = traverse(model, image, dims)  # (len(dims), V, C, 64, 64)
    for r in range(len(dims)):
        for c in range(grid.shape[1]):
            _show(axes[r, column + c], grid[r, c])


def passive_set(study_dir: Path, run_id: str, step: int) -> set[int] | None:
    """Passive dimensions of one checkpoint by the report's one definition, from ``latents.parquet``; None
    when the study has no latent statistics for it."""
    from vaesim.report.collapse import PASSIVE_VARIANCE

    try:
        from vaesim.study import load_latents

        latents = load_latents(study_dir)
    except (FileNotFoundError, OSError, ValueError):
        return None
    rows = latents[(latents["run_id"] == run_id) & (latents["step"] == step)]
    if rows.empty:
        return None
    return {int(d) for d in rows.loc[rows["mean_variance"] <= PASSIVE_VARIANCE, "dim"]}


def _dim_label(dim: int, kl: np.ndarray, passive: set[int] | None) -> tuple[str, str]:
    """(label, colour) of a latent dimension: index and KL; grey when passive (None: not known)."""
    inactive = passive is not None and dim in passive
    return f"z{dim}  KL {kl[dim]:.2f}" + (" (passive)" if inactive else ""), "#999999" if inactive else "black"


def figure_traversals(study_dir: Path, run: pd.Series) -> plt.Figure:
    """Latent traversals of one run at its final step: one row per latent dimension, most informative first."""
    images = probe_images(study_dir, run["dataset"])
    model, step = load_model(study_dir, run["run_id"])
    n_dims = int(model.latent_dim)
    values = TRAVERSAL_VALUES
    fig, axes = subplots(n_dims, len(values), figsize=(0.78 * len(values) + 1.2, 0.8 * n_dims + 0.7),
                             squeeze=False)
    kl = latent_kl(model, images)
    dims = [int(d) for d in np.argsort(-kl)]
    _traversal_rows(axes, model, images[len(images) // 2], dims, kl)
    passive = passive_set(Path(study_dir), run["run_id"], step)
    for r, dim in enumerate(dims):
        label, colour = _dim_label(dim, kl, passive)
        axes[r, 0].set_ylabel(label.replace("  ", "\n", 1), rotation=0, ha="right", va="center", fontsize=7.5,
                              color=colour)
    for c, value in enumerate(values):
        axes[0, c].set_title(f"z={value:+.1f}", fontsize=7.5)
    fig.suptitle(f"{run_label(run)}, step {step}", fontsize=9)
    fig.tight_layout()
    return fig


def figure_traversals_over_training(study_dir: Path, run: pd.Series, n_recon: int = 4) -> plt.Figure:
    """One run through training: per checkpoint, reconstructions and the traversal of its most informative latent."""
    images = probe_images(study_dir, run["dataset"])
    shown = images[np.unique(np.linspace(0, len(images) - 1, n_recon).astype(int))]
    steps = recorded_steps(Path(study_dir), run["run_id"])
    if len(steps) < 2:
        raise NoCheckpoints(f"run {run['run_id']} has {len(steps)} checkpoint(s); needs >= 2")
    values = TRAVERSAL_VALUES
    n_cols = len(shown) + 1 + len(values)
    widths = [1.0] * len(shown) + [1.6] + [1.0] * len(values)
    fig, axes = subplots(len(steps), n_cols, figsize=(0.8 * sum(widths) + 1.0, 0.9 * len(steps) + 1.0),
                             squeeze=False, gridspec_kw={"width_ratios": widths})
    for r, step in enumerate(steps):
        model, _ = load_model(study_dir, run["run_id"], step)
        for c, image in enumerate(reconstruct(model, shown)):
            _show(axes[r, c], image)
        kl = latent_kl(model, images)
        top = int(np.argmax(kl))
        _traversal_rows(axes[r:r + 1], model, images[len(images) // 2], [top], kl, column=len(shown) + 1)
        label, colour = _dim_label(top, kl, passive_set(Path(study_dir), run["run_id"], step))
        gap = axes[r, len(shown)]
        gap.axis("off")
        gap.text(0.98, 0.5, label.replace("  ", "\n", 1), ha="right", va="center", fontsize=7, color=colour,
                 transform=gap.transAxes)
        axes[r, 0].set_ylabel(f"step {step}", rotation=0, ha="right", va="center", fontsize=8)
    axes[0, len(shown) // 2].set_title("reconstructions", fontsize=8, loc="left")
    for c, value in enumerate(values):
        axes[0, len(shown) + 1 + c].set_title(f"z={value:+.1f}", fontsize=7.5)
    fig.suptitle(f"{run_label(run)} through training\nleft: reconstructions; right: traversal of the latent "
                 f"with the largest KL (nats) at that step", fontsize=9)
    fig.tight_layout()
    return fig
