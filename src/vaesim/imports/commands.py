"""``vaesim import vae-ld | dlib | checkpoints``: other tools' scores and models as vaesim stores and runs."""

from __future__ import annotations

from pathlib import Path

from vaesim.utils.command_groups import needs_action


def register(subparsers) -> None:
    """Add ``vaesim import`` (subcommands ``vae-ld``, ``dlib``, ``checkpoints``) to the ``vaesim`` parser."""
    parser = subparsers.add_parser("import", help="bring in what other tools made: similarity scores (vae-ld) or "
                                                  "trained models (dlib, checkpoints)")
    sources = parser.add_subparsers(dest="source", metavar="SOURCE")
    vae_ld = sources.add_parser(
        "vae-ld",
        help="the TSV files of VAE_learning_dynamics (Bonheme & Grzes) bin/compute_similarity",
        description=(
            "Read every *.tsv under SRC (one file per model pair or model-vs-labels, as written by "
            "VAE_learning_dynamics' bin/compute_similarity), map their layer names onto vaesim's and write a "
            "results store in DIR that `vaesim report DIR` and `vaesim query DIR SQL` read. Layers that do not "
            "map (Flatten/Reshape duplicates, unknown names) are counted in DIR/import.json."
        ),
    )
    vae_ld.add_argument("src", metavar="SRC", type=Path, help="folder of TSV files (searched recursively) or one file")
    vae_ld.add_argument("--out", required=True, type=Path, metavar="DIR", help="results store to write")
    vae_ld.add_argument("--dataset", default="unknown",
                        help="dataset name when the files are not under their latent_N/<dataset>/ folders")
    vae_ld.add_argument("--n", type=int, default=0, help="number of examples the scores used (0 = unknown)")
    vae_ld.add_argument("--overwrite", action="store_true",
                        help="replace an earlier import of the same SRC in DIR (never a study or other files)")
    vae_ld.set_defaults(func=run_import_vae_ld)
    dlib = sources.add_parser(
        "dlib",
        help="disentanglement_lib's published trained models (TensorFlow checkpoints) as vaesim runs",
        description=(
            "Import disentanglement_lib's published models (Locatello et al. 2019, unsupervised_study_v1: 10,800 "
            "models, 6 objectives x 6 strengths x 50 seeds on dSprites, color-/noisy-/scream-dSprites, smallNORB "
            "and Cars3D, 300,000 steps each) into DIR/runs/, one vaesim run per model, loadable with "
            "vaesim.training.load_checkpoint. They are published as "
            "https://storage.googleapis.com/disentanglement_lib/unsupervised_study_v1/<n>.zip (n = 0 ... 10799; "
            "`for n in $(seq 0 299); do curl -O .../$n.zip; done` fetches the first 300, the dSprites beta-VAE "
            "models; dlib's config/unsupervised_study_v1/sweep.py gives the order). TensorFlow is not needed: "
            "the checkpoint (a TensorFlow tensor bundle) is read directly, every block and tensor checksum is "
            "verified, optimiser slots are skipped, and the weights are mapped exactly onto vaesim's conv (or fc) "
            "VAE (verified against TensorFlow's own forward pass: docs/study.md). Rerunning resumes: models "
            "already imported from the same file are kept. A damaged or foreign model is skipped with one line "
            "and listed in DIR/import.json; the rest import."
        ),
    )
    dlib.add_argument("src", metavar="SRC", type=Path,
                      help="folder of dlib model zips (<n>.zip) or unzipped <n>/ folders, or one zip")
    dlib.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to write runs/ and import.json")
    dlib.add_argument("--as-dataset", default=None, metavar="NAME",
                      help="record every model under this vaesim dataset instead of dlib's (e.g. "
                           "dsprites-procedural, to probe dSprites models with vaesim's renderer)")
    dlib.set_defaults(func=run_import_dlib)
    _register_checkpoints(sources)
    parser.set_defaults(func=needs_action(parser))


def _register_checkpoints(sources) -> None:
    """``vaesim import checkpoints``: runs trained elsewhere (PyTorch, Lightning, safetensors) as vaesim runs."""
    checkpoints = sources.add_parser(
        "checkpoints",
        help="your own runs' checkpoints (torch.save state dicts, Lightning .ckpt, safetensors) as vaesim runs",
        description=(
            "Import runs trained elsewhere into DIR/runs/, one vaesim run per folder of SRC with all its "
            "checkpoints, loadable with vaesim.training.load_checkpoint; a study adopts them with `imported: DIR`. "
            "Each folder holds *.pt / *.pth / *.bin (torch.save state dicts), *.ckpt (Lightning) or *.safetensors "
            "files. A checkpoint's step is Lightning's global_step, else its file name's (step_1000.pt, "
            "step=1000.ckpt, epoch=3-step=1000.ckpt, 1000.pt); two files with one step and different weights "
            "are refused. A step-0 checkpoint is the run's own initialisation (a study's untrained baseline). "
            "Files are read only with torch.load(weights_only=True): a pickle that would run code or holds a "
            "class outside torch's allow-list is refused (re-save its state_dict, or use safetensors); "
            "Lightning is never imported. After --strip-prefix, the keys must be exactly those of the "
            "architecture's model, with the same shapes. The runs table is checked whole before anything is "
            "written; a run that does not fit is then skipped with one line and listed in DIR/import.json. "
            "Rerunning keeps the runs whose files and rows are unchanged."
        ),
    )
    checkpoints.add_argument("src", metavar="SRC", type=Path,
                             help="folder with one subfolder of checkpoint files per run")
    checkpoints.add_argument("--runs", required=True, type=Path, metavar="TABLE",
                             help="CSV or YAML: one row per folder with folder, objective, strength (the value of "
                                  "the objective's swept parameter), seed, dataset, and optionally other parameters "
                                  "of the objective (docs/study.md)")
    checkpoints.add_argument("--architecture", required=True, metavar="NAME",
                             help="the model the weights fit: conv, fc, or a plug-in module:factory")
    checkpoints.add_argument("--out", required=True, type=Path, metavar="DIR",
                             help="folder to write runs/ and import.json")
    checkpoints.add_argument("--latent-dim", type=int, default=10, metavar="N",
                             help="latent size of the models (default: %(default)s)")
    checkpoints.add_argument("--channels", type=int, default=None, metavar="C",
                             help="image channels of the models (default: each run's dataset's)")
    checkpoints.add_argument("--strip-prefix", default="", metavar="PREFIX",
                             help="keep only the keys starting with PREFIX and remove it (a LightningModule's "
                                  "model attribute: 'model.'; the default, empty, keeps every key)")
    checkpoints.set_defaults(func=run_import_checkpoints)


def run_import_checkpoints(args) -> int:
    from vaesim.imports.checkpoints import CheckpointImportError, import_checkpoints
    from vaesim.utils.command_groups import UserError

    try:
        summary = import_checkpoints(args.src, args.out, args.runs, architecture=args.architecture,
                                     latent_dim=args.latent_dim, num_channels=args.channels,
                                     strip_prefix=args.strip_prefix)
    except CheckpointImportError as error:  # a RunsTableError (every problem of the table) reaches main as it is
        raise UserError(str(error)) from None
    print(f"imported {len(summary.imported)} run(s) into {summary.out_dir / 'runs'}"
          + (f"; {len(summary.already)} already imported" if summary.already else ""))
    if summary.skipped:
        print(f"skipped {len(summary.skipped)} run(s) that could not be imported (listed with the reason in "
              f"{summary.out_dir / 'import.json'}):")
        for folder, reason in summary.skipped.items():
            print(f"  {folder}: {reason}")
    return 1 if summary.skipped and not (summary.imported or summary.already) else 0


def run_import_dlib(args) -> int:
    from vaesim.imports.dlib import DlibError, import_dlib
    from vaesim.utils.command_groups import UserError

    if args.as_dataset is not None:
        from vaesim.data.registry import DATASETS

        if args.as_dataset not in DATASETS:
            raise UserError(f"--as-dataset: unknown dataset {args.as_dataset!r}; allowed values: {', '.join(DATASETS)}")
    try:
        summary = import_dlib(args.src, args.out, dataset=args.as_dataset)
    except DlibError as error:
        raise UserError(str(error)) from None
    print(f"imported {len(summary.imported)} model(s) into {summary.out_dir / 'runs'}"
          + (f"; {len(summary.already)} already imported" if summary.already else ""))
    if summary.skipped:
        print(f"skipped {len(summary.skipped)} model(s) that could not be imported (listed with the reason in "
              f"{summary.out_dir / 'import.json'}):")
        for name, reason in summary.skipped.items():
            print(f"  {name}: {reason}")
    return 1 if summary.skipped and not (summary.imported or summary.already) else 0


def run_import_vae_ld(args) -> int:
    from vaesim.imports import import_vae_ld

    summary = import_vae_ld(args.src, args.out, dataset=args.dataset, n=args.n, overwrite=args.overwrite)
    print(f"imported {summary.files} files, {summary.rows:,} scores into {summary.out_dir}")
    if summary.non_finite:
        print(f"{summary.non_finite:,} score(s) are NaN or infinite in the source files: imported with the note "
              "'not finite in the source file' (find them with `WHERE NOT isfinite(score)`)")
    if summary.duplicates:
        print(f"{summary.duplicates:,} score(s) appear in more than one file with the same value: imported once")
    if summary.unmapped:
        skipped = ", ".join(f"{name} ({count})" for name, count in summary.unmapped.items())
        print(f"not imported (no vaesim layer): {skipped}; see {summary.out_dir / 'import.json'}")
    return 0
