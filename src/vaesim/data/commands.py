"""``vaesim data list``, ``vaesim data download NAME`` and ``vaesim data info NAME``."""

from __future__ import annotations

import argparse

from vaesim.utils.command_groups import needs_action


def register(subparsers) -> None:
    """Add ``vaesim data ...`` to the ``vaesim`` parser."""
    from vaesim.data.registry import DATASETS

    data = subparsers.add_parser("data", help="datasets: download files, show factors and where files go")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    names = list(DATASETS)

    listing = sub.add_parser("list", help="every dataset: ready, missing or built in, size on disk, folder")
    _data_root_option(listing)
    listing.set_defaults(func=_list)

    download = sub.add_parser("download", help="fetch a dataset's public files (resumable, SHA-256 verified)")
    download.add_argument("name", choices=names, metavar="NAME", help=f"one of: {', '.join(names)}")
    _data_root_option(download)
    download.add_argument("--variant", default=None, help="mpi3d only: real (default), realistic or toy")
    download.add_argument("--url", default=None, help="download from this URL instead (a mirror)")
    download.add_argument("--sha256", default=None, help="expected SHA-256 of the file (hex)")
    download.add_argument("--timeout", type=float, default=10.0, help="network timeout in seconds (default 10)")
    download.set_defaults(func=_download)

    info = sub.add_parser("info", help="factors, sizes, expected file locations and whether they are present")
    info.add_argument("name", choices=names, metavar="NAME", help=f"one of: {', '.join(names)}")
    _data_root_option(info)
    info.set_defaults(func=_info)

    data.set_defaults(func=needs_action(data))


DATA_ROOT_HELP = ("data root holding each dataset's folder (default: $VAESIM_DATA, else "
                  "$XDG_CACHE_HOME/vaesim/data, else ~/.cache/vaesim/data)")


def _data_root_option(parser) -> None:
    """``--data-root`` (the one name every command uses); ``--root``, its former name, still works unlisted."""
    parser.add_argument("--data-root", dest="data_root", default=None, metavar="DIR", help=DATA_ROOT_HELP)
    parser.add_argument("--root", dest="data_root", default=None, help=argparse.SUPPRESS)


def dataset_rows(root=None) -> list[dict]:
    """One row per dataset: name, status (ready / missing / built in), bytes on disk, folder, description."""
    from vaesim.data.registry import DATASETS, dataset_dir, expected_files

    rows = []
    for name, spec in DATASETS.items():
        if spec.folder is None:
            rows.append({"name": name, "status": "built in", "bytes": 0, "folder": "-", "description": spec.description})
            continue
        found = expected_files(name, root)
        ready = all(paths and len(paths) >= spec.min_count for _, paths in found)
        size = sum(path.stat().st_size for _, paths in found for path in paths)
        rows.append({"name": name, "status": "ready" if ready else "missing", "bytes": size,
                     "folder": str(dataset_dir(name, root)), "description": spec.description})
    return rows


def _human_bytes(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError  # pragma: no cover


def _list(args: argparse.Namespace) -> int:
    rows = dataset_rows(args.data_root)
    width = max(len(row["name"]) for row in rows)
    print(f"{'dataset':<{width}}  {'status':<8}  {'on disk':>8}  folder")
    for row in rows:
        size = _human_bytes(row["bytes"]) if row["bytes"] else "-"
        print(f"{row['name']:<{width}}  {row['status']:<8}  {size:>8}  {row['folder']}")
    missing = [row["name"] for row in rows if row["status"] == "missing"]
    if missing:
        print(f"\nmissing: fetch with `vaesim data download NAME` ({', '.join(missing)}); "
              "`vaesim data info NAME` lists the files")
    return 0


def _download(args: argparse.Namespace) -> int:
    from vaesim.utils.command_groups import UserError
    from vaesim.data.download import DownloadError, download_dataset

    if args.sha256 is not None and (len(args.sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in args.sha256)):
        raise UserError(f"--sha256: expected 64 hexadecimal characters, got {args.sha256!r}")
    try:
        paths = download_dataset(
            args.name, args.data_root, variant=args.variant, sha256=args.sha256, url=args.url, timeout=args.timeout
        )
    except DownloadError as error:
        raise UserError(str(error)) from None
    if not paths:
        print(f"{args.name}: nothing to download (built in)")
    for path in paths:
        print(f"ok {path}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from vaesim.data.download import sources
    from vaesim.data.registry import dataset_dir, expected_files, get_spec

    spec = get_spec(args.name)
    print(f"{spec.name}: {spec.description}")
    print(f"  channels: {spec.num_channels}")
    total = 1
    for name, size in zip(spec.factor_names, spec.factor_sizes):
        print(f"  factor {name}: {size}")
        total *= size
    print(f"  factor combinations: {total}")
    if spec.folder is None:
        print("  files: none needed (procedural or shipped with a package)")
        return 0
    print(f"  folder: {dataset_dir(args.name, args.data_root)}")
    all_found = True
    for pattern, found in expected_files(args.name, args.data_root):
        if any(ch in pattern for ch in "*?["):
            count = f"{len(found)} found"
        else:
            count = ("found" + (f" as {found[0].name}" if found[0].name != pattern else "")) if found else "MISSING"
        if not found or len(found) < spec.min_count:
            all_found = False
            count += f" (expected {spec.min_count})" if spec.min_count > 1 else ""
        print(f"  {pattern}: {count}")
    for remote in sources(args.name):
        checksum = remote.sha256 or "unknown (size check only; pass --sha256 to pin one)"
        print(f"  source {remote.url}\n    sha256 {checksum}")
    print("  status: " + ("ready" if all_found else f"missing files: run `vaesim data download {args.name}`"))
    return 0
