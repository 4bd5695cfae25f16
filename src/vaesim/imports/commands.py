"""``vaesim import vae-ld SRC --out DIR``: other tools' scores as a vaesim results store."""

from __future__ import annotations

from pathlib import Path

from vaesim.utils.command_groups import needs_action


def register(subparsers) -> None:
    """Add ``vaesim import`` (subcommand ``vae-ld``) to the ``vaesim`` parser."""
    parser = subparsers.add_parser("import", help="convert another tool's similarity scores into a results store")
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
    parser.set_defaults(func=needs_action(parser))


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
