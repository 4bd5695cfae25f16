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
    run.add_argument("spec", help="study spec YAML file, or a preset name: paper, quick")
    run.add_argument("--out", required=True, help="study directory (created; rerun to resume)")
    run.add_argument("--executor", choices=("local", "ray"), default="local", help="where tasks run (default local)")
    run.add_argument("--workers", type=int, default=None,
                     help="local executor: number of worker processes (default: sequential)")
    run.add_argument("--threads", type=int, default=None,
                     help="local executor: torch/BLAS threads per task (default and maximum: "
                          "usable CPUs / workers)")
    run.add_argument("--address", default=None, help="ray executor: cluster address (default: start a local Ray)")
    run.add_argument("--force", action="store_true",
                     help="reuse a directory whose recorded spec differs; recompute what the change affects")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.set_defaults(func=_run)

    plan = study_commands.add_parser(
        "plan", help="what a study will do before it runs: tasks, disk and time per stage (measured calibration)")
    plan.add_argument("spec", help="study spec YAML file, or a preset name: paper, quick")
    plan.add_argument("--no-calibrate", action="store_true",
                      help="only count the tasks (skip the few-second measurement that estimates disk and time)")
    plan.set_defaults(func=_plan)

    show = study_commands.add_parser("show", help="print a preset's spec, to start your own: "
                                                  "vaesim study show paper > my.yaml")
    show.add_argument("preset", help="preset name: paper, quick")
    show.set_defaults(func=_show)

    status = study_commands.add_parser("status", help="done/pending tasks per stage of a study directory")
    status.add_argument("dir", help="study directory")
    status.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                        help="refresh every SECONDS while a runner is working")
    status.set_defaults(func=_status)

    verify = study_commands.add_parser(
        "verify", help="check every file of a study against its recorded checksum; change nothing",
        description="Hash every checkpoint, training log, probe file, summary, activation file, results file and "
                    "run table of DIR and compare it with its recorded SHA-256. Lists each problem with what a "
                    "rerun of `vaesim study run` will do about it. Exit status 0 when all match, 1 otherwise.")
    verify.add_argument("dir", help="study directory")
    verify.set_defaults(func=_verify)

    views = "results, runs, training_metrics, latents, disentanglement, layers (network order: ORDER BY position)"
    query = subparsers.add_parser("query", help=f"run SQL (DuckDB) over a study's tables; views {views}",
                                  description=f"Run SQL (DuckDB) over a study's tables. Views: {views}. The query "
                                              "is sandboxed: it reads only the study's own files.")
    query.add_argument("dir", help="study directory")
    query.add_argument("sql", help='e.g. "SELECT comparison, count(*) FROM results GROUP BY 1"')
    query.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    query.set_defaults(func=_query)


def _run(args) -> int:
    from vaesim.study.runner import StudyFailed, run_study

    try:
        out = run_study(args.spec, args.out, executor=args.executor, workers=args.workers, address=args.address,
                        progress=not args.no_progress, force=args.force, threads=args.threads)
    except StudyFailed as failed:
        print(f"vaesim: {failed}", file=sys.stderr)
        return 1
    print(f"study complete: {out} (results: vaesim query {shlex.quote(str(out))} "
          f"{shlex.quote('SELECT * FROM results LIMIT 5')})")
    return 0


def _plan(args) -> int:
    from vaesim.study.estimate import calibrate, estimate, format_plan
    from vaesim.study.plan import plan_study
    from vaesim.study.runner import load_checked_spec

    try:
        spec = load_checked_spec(args.spec)
    except FileNotFoundError as error:  # missing data files: still plan, and say what to fetch
        from vaesim.study.spec import load_spec

        spec = load_spec(args.spec)
        print(f"note: {error}", file=sys.stderr)
    plan = plan_study(spec)
    if args.no_calibrate:
        print(format_plan(plan, None, None))
        return 0
    print(f"calibrating on this machine (a few training steps, one extraction, one comparison)...", file=sys.stderr)
    calibration = calibrate(plan)
    print(format_plan(plan, estimate(plan, calibration), calibration))
    return 0


def _show(args) -> int:
    from vaesim.study.spec import PRESET_DIR, preset_names

    path = PRESET_DIR / f"{args.preset}.yaml"
    if args.preset not in preset_names():
        raise ValueError(f"preset {args.preset!r} does not exist; presets: {', '.join(preset_names())}")
    sys.stdout.write(path.read_text(encoding="utf-8"))
    return 0


def _status(args) -> int:
    from vaesim.study.runner import study_status

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
    from vaesim.study.verify import verify_study

    report = verify_study(args.dir)
    print(report.format())
    return 0 if report.ok else 1


def _query(args) -> int:
    import pandas as pd

    from vaesim.study.store import query

    frame = query(args.dir, args.sql)
    if args.csv:
        frame.to_csv(sys.stdout, index=False)
    else:
        with pd.option_context("display.max_rows", 200, "display.width", 200, "display.max_columns", 50):
            print(frame.to_string(index=False))
    return 0
