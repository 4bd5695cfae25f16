"""``vaesim study run|plan|show|status|verify`` and ``vaesim query``."""

from __future__ import annotations

import shlex
import sys
import time

from vaesim.utils.command_groups import needs_action


def register(subparsers) -> None:
    """Add ``study run|plan|show|status`` and ``query`` to the ``vaesim`` parser."""
    study = subparsers.add_parser("study", help="run a declared study grid end to end, or show its status")
    study_commands = study.add_subparsers(dest="study_command", metavar="STUDY_COMMAND")
    study.set_defaults(func=needs_action(study))

    run = study_commands.add_parser(
        "run", help="train, extract, compare and store every score of a study (resumes where it stopped)"
    )
    run.add_argument("spec", help="study spec YAML file, or a preset name: evidence, paper, quick, training-length, zoo")
    run.add_argument("--out", required=True, help="study directory (created; rerun to resume)")
    run.add_argument("--executor", choices=("local", "ray"), default="local", help="where tasks run (default local)")
    run.add_argument("--workers", type=int, default=None,
                     help="local executor: number of worker processes (default: one per usable CPU for training "
                          "on the CPU, where each run trains on one thread; the other stages run in this process "
                          "and spread their work over the cores)")
    run.add_argument("--threads", type=int, default=None,
                     help="local executor: torch/BLAS threads per task (default and maximum: "
                          "usable CPUs / workers)")
    run.add_argument("--address", default=None, help="ray executor: cluster address (default: start a local Ray)")
    run.add_argument("--force", action="store_true",
                     help="reuse a directory whose recorded spec differs; recompute what the change affects")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--stop-grace", type=float, default=None, metavar="SECONDS",
                     help="on SIGTERM / SIGINT: seconds the runner waits for running tasks to save (training "
                          "writes interrupted.*) or stop before it kills them and exits 143 / 130 (default 20, "
                          "below Kubernetes' 30 s terminationGracePeriodSeconds; docs/study.md, 'On a cluster')")
    run.set_defaults(func=_run)

    plan = study_commands.add_parser(
        "plan", help="what a study will do before it runs: tasks, disk and time per stage (measured calibration)")
    plan.add_argument("spec", help="study spec YAML file, or a preset name: evidence, paper, quick, training-length, zoo")
    plan.add_argument("--no-calibrate", action="store_true",
                      help="only count the tasks (skip the few-second measurement that estimates disk and time; a "
                           "plug-in architecture is still imported and tried: its layers make the tasks)")
    plan.set_defaults(func=_plan)

    show = study_commands.add_parser("show", help="print a preset's spec, to start your own: "
                                                  "vaesim study show paper > my.yaml")
    show.add_argument("preset", help="preset name: evidence, paper, quick, training-length, zoo")
    show.set_defaults(func=_show)

    status = study_commands.add_parser("status", help="done/pending tasks per stage of a study directory")
    status.add_argument("dir", help="study directory")
    status.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                        help="refresh every SECONDS while a runner is working")
    status.set_defaults(func=_status, inspects=True)

    verify = study_commands.add_parser(
        "verify", help="check every file of a study against its recorded checksum; change nothing",
        description="Hash every checkpoint, training log, probe file, summary, activation file, results file and "
                    "run table of DIR and compare it with its recorded SHA-256. Lists each problem with what a "
                    "rerun of `vaesim study run` will do about it. Exit status 0 when all match, 1 otherwise.")
    verify.add_argument("dir", help="study directory")
    verify.add_argument("--fast", action="store_true",
                        help="trust the digests the runner cached for files whose size, mtime, ctime and inode are "
                             "unchanged (git's rule); read only the others. Without --fast every byte is read")
    verify.set_defaults(func=_verify, inspects=True)

    variant = study_commands.add_parser(
        "variant", help="measure a finished study another way (a second probe set, or a rerun) for the report's "
                        "robustness labels",
        description="Make, or resume, a variant of the finished study in DIR, in DIR/variants/NAME/, and run it. "
                    "--probe-seed K: a second probe set (other images, other eps) recorded on the same trained "
                    "checkpoints (hard-linked, not copied, not retrained); only extract, compare and store run. "
                    "--rerun: the whole study again, training included, in this command's environment (thread "
                    "settings, ATEN_CPU_CAPABILITY, machine), recorded in variant.json. `vaesim report DIR` then "
                    "recomputes every verdict on each finished variant and labels a verdict that changes fragile.")
    variant.add_argument("dir", help="study directory (its runs trained)")
    how = variant.add_mutually_exclusive_group(required=True)
    how.add_argument("--probe-seed", type=int, default=None, metavar="K",
                     help="a second probe set drawn with seed K (other than the study's own)")
    how.add_argument("--rerun", action="store_true", help="rerun the whole study in this environment")
    variant.add_argument("--layer-pairs", choices=("all", "matching"), default=None,
                         help="comparisons.layer_pairs of the variant (default: matching for a probe set, which "
                              "scores only the pairs the verdicts read, 1.5-2.7x less compare time; the study's "
                              "own for a rerun)")
    variant.add_argument("--name", default=None, help="folder name under DIR/variants (default probe-seed-K, rerun)")
    variant.add_argument("--workers", type=int, default=None,
                         help="number of worker processes (default: one per usable CPU for training on the CPU, "
                              "else this process, its work spread over the cores)")
    variant.add_argument("--threads", type=int, default=None, help="torch/BLAS threads per task")
    variant.add_argument("--no-progress", action="store_true", help="no progress bars")
    variant.set_defaults(func=_variant)

    from vaesim.study.store.sql import (
        QUERY_MEMORY_LIMIT,
        QUERY_TEMP_LIMIT,
        QUERY_TIMEOUT_S,
    )

    query = subparsers.add_parser(
        "query", help="run SQL (DuckDB) over the stored scores of one or more studies; views results, runs, "
                                        "training_metrics, latents, disentanglement, layers",
        description="Run one DuckDB SQL query over the stored tables of DIR (several DIRs: each view is their union "
                    "and gains a `study` column holding the directory as given). "
                    "Views: results, runs, training_metrics, latents, disentanglement, layers. results: one row per "
                    "layer pair and metric; layers: each layer's position in network order (ORDER BY position). "
                    "Every file is verified "
                    "against its checksum first; the query can read nothing outside the studies' tables. Limits: "
                    f"the query is stopped after --timeout seconds (default {QUERY_TIMEOUT_S:g}), DuckDB keeps at "
                    f"most --memory-limit in memory (default {QUERY_MEMORY_LIMIT}) and spills the rest into a "
                    f"temporary directory of at most --temp-limit (default {QUERY_TEMP_LIMIT}), removed afterwards; "
                    "Ctrl-C stops a query at once. Plug-in code named by a study is never imported.")
    query.add_argument("dirs", nargs="+", metavar="DIR", help="study directory (give several to query them together)")
    query.add_argument("sql", metavar="SQL", help='e.g. "SELECT comparison, count(*) FROM results GROUP BY 1"')
    query.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    query.add_argument("--timeout", type=_seconds, default=QUERY_TIMEOUT_S, metavar="SECONDS",
                       help=f"stop the query after SECONDS (default {QUERY_TIMEOUT_S:g}; 0 = no limit)")
    query.add_argument("--memory-limit", default=QUERY_MEMORY_LIMIT, metavar="SIZE",
                       help=f"DuckDB's memory limit, e.g. 8GB (default {QUERY_MEMORY_LIMIT})")
    query.add_argument("--temp-limit", default=QUERY_TEMP_LIMIT, metavar="SIZE",
                       help=f"most disk DuckDB may spill to, in a temporary directory (default {QUERY_TEMP_LIMIT})")
    query.set_defaults(func=_query, inspects=True)


def _seconds(text: str) -> float:
    """A finite, non-negative number of seconds (argparse type)."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0 (0 = no limit); got {text!r}")
    return value


def _run(args) -> int:
    from vaesim.study.run.runner import StudyFailed, run_study

    try:
        out = run_study(args.spec, args.out, executor=args.executor, workers=args.workers, address=args.address,
                        progress=not args.no_progress, force=args.force, threads=args.threads,
                        stop_grace=args.stop_grace)
    except StudyFailed as failed:
        print(f"vaesim: {failed}", file=sys.stderr)
        return 1
    print(f"study complete: {out} (results: vaesim query {shlex.quote(str(out))} "
          f"{shlex.quote('SELECT * FROM results LIMIT 5')})")
    return 0


def _variant(args) -> int:
    from vaesim.study.run.runner import StudyFailed
    from vaesim.study.run.variants import make_variant

    kind = "rerun" if args.rerun else "probe"
    try:
        out = make_variant(args.dir, kind, name=args.name, probe_seed=args.probe_seed, workers=args.workers,
                           threads=args.threads, progress=not args.no_progress, layer_pairs=args.layer_pairs)
    except StudyFailed as failed:
        print(f"vaesim: {failed}", file=sys.stderr)
        return 1
    print(f"variant complete: {out} (`vaesim report {shlex.quote(args.dir)}` now checks every verdict on it)")
    return 0


def _plan(args) -> int:
    from vaesim.study.estimate import calibrate, estimate, format_plan
    from vaesim.study.plan import plan_study
    from vaesim.study.run.runner import load_checked_spec

    measuring = not args.no_calibrate  # only the calibration runs the measures, plug-ins included
    try:
        # a plug-in architecture's layers are known only from its module: planning imports it (not its measures)
        spec = load_checked_spec(args.spec, import_plugins=measuring, build_objectives=measuring,
                                 import_architecture=True)
    except FileNotFoundError as error:  # missing data files: still plan, and say what to fetch
        from vaesim.study.spec import load_spec

        spec = load_spec(args.spec, import_plugins=measuring, import_architecture=True)
        print(f"note: {error}", file=sys.stderr)
    from vaesim.study.budget import check_plan_size

    check_plan_size(spec)  # a grid too large to plan is refused in a line, not after minutes of planning
    plan = plan_study(spec)
    if args.no_calibrate:
        print(format_plan(plan, None, None))
        return 0
    from vaesim.study.budget import check_memory

    check_memory(spec)  # before calibration trains a step of this size
    print("calibrating on this machine (a few training steps, one extraction, one comparison)...", file=sys.stderr)
    calibration = calibrate(plan)
    from vaesim.data.registry import get_spec
    from vaesim.study.budget import available_memory, layer_widths
    from vaesim.study.estimate import task_memory

    widths = layer_widths(spec, get_spec(spec.datasets[0]).num_channels)
    print(format_plan(plan, estimate(plan, calibration, widths), calibration, task_memory(plan, widths),
                      available_memory()))
    return 0


def _show(args) -> int:
    from vaesim.study.spec import PRESET_DIR, preset_names

    path = PRESET_DIR / f"{args.preset}.yaml"
    if args.preset not in preset_names():
        raise ValueError(f"preset {args.preset!r} does not exist; presets: {', '.join(preset_names())}")
    sys.stdout.write(path.read_text(encoding="utf-8"))
    return 0


def _imported_store(directory: str):
    """The verify report of a store made by ``vaesim import`` (None for a study directory)."""
    from pathlib import Path

    from vaesim.study.store.verify import verify_imported_store

    return verify_imported_store(Path(directory)) if (Path(directory) / "spec.yaml").is_file() else None


def _status(args) -> int:
    import math

    from vaesim.study.run.runner import study_status

    if args.watch is not None and not (math.isfinite(args.watch) and 0 < args.watch <= 86400):
        raise ValueError(f"--watch: expected a number of seconds between refreshes, above 0 and at most 86400 "
                         f"(a day); got {args.watch!r}")
    imported = _imported_store(args.dir)
    if imported is not None:  # no plan and no runner: what is there, and whether it is intact
        state = "all files match their checksums" if imported.ok else f"{len(imported.problems)} problem(s): " \
            f"run `vaesim study verify {shlex.quote(args.dir)}`"
        print(f"study {args.dir}: a store made by `vaesim import` ({imported.checked} file(s): results files and "
              f"runs table); nothing to run; {state}")
        return 0

    while True:
        status = study_status(args.dir)
        text = status.format()
        if args.watch and sys.stdout.isatty():
            print("\033[2J\033[H" + text, flush=True)
        else:
            print(text, flush=True)
        if not args.watch or status.running is None:
            return 0
        time.sleep(args.watch)


def _verify(args) -> int:
    from vaesim.study.store.hashcache import HashCache
    from vaesim.study.store.verify import verify_study

    cache = HashCache.load(args.dir) if args.fast else None
    report = _imported_store(args.dir) or verify_study(args.dir, cache=cache)
    print(report.format())
    if cache is not None:
        print(f"  (--fast: {cache.hits} digest(s) taken from the cache of unchanged files, {cache.misses} file(s) "
              "read; without --fast every byte is read)")
    return 0 if report.ok else 1


def _query(args) -> int:
    import pandas as pd

    from vaesim.study.store.sql import query

    dirs = args.dirs if len(args.dirs) > 1 else args.dirs[0]
    frame = query(dirs, args.sql, timeout=args.timeout, memory_limit=args.memory_limit, temp_limit=args.temp_limit)
    if args.csv:
        frame.to_csv(sys.stdout, index=False)
    else:
        with pd.option_context("display.max_rows", 200, "display.width", 200, "display.max_columns", 50):
            print(frame.to_string(index=False))
    return 0
