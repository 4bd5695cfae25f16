"""``vaesim report DIR``: findings, figures and a self-contained HTML report of a study."""

from __future__ import annotations

import sys
import time
from pathlib import Path


def register(subparsers) -> None:
    """Add ``vaesim report`` to the ``vaesim`` parser."""
    parser = subparsers.add_parser(
        "report",
        help="findings, figures and a self-contained HTML report of a study directory",
        description=(
            "Read a study directory's results store and write DIR/report.html (one self-contained file, "
            "figures embedded), DIR/figures/*.png and *.svg and DIR/findings.csv, and the same for every other "
            "metric in the store (report-M.html, ...), so every link between them resolves; print the findings."
        ),
    )
    parser.add_argument("study_dir", metavar="DIR", type=Path, help="a study directory (vaesim study run / demo)")
    parser.add_argument("--metric", default=None,
                        help="write only this metric's report and print its findings (default: every metric in "
                             "the store, CKA's printed; cka -> report.html, another metric M -> report-M.html, "
                             "figures-M/ and findings-M.csv)")
    parser.set_defaults(func=run_report, inspects=True)


class ReportProgress:
    """Progress of a report being written, printed to stderr: one line as each part starts (after the first
    ``quiet`` seconds) and at least one line every ``every`` seconds, with counters that move (the part, and the
    figure files written so far)."""

    def __init__(self, figures_dir: Path | list[Path], *, every: float = 60.0, quiet: float = 10.0, stream=None,
                 reports: int = 1) -> None:
        import sys
        import threading

        from vaesim.report.report import REPORT_PARTS

        self.parts = REPORT_PARTS
        self.total = len(REPORT_PARTS) * reports  # parts of every report written, counted in one sequence
        self.done = 0
        self.figures_dirs = [Path(d) for d in (figures_dir if isinstance(figures_dir, list) else [figures_dir])]
        self.every, self.quiet = every, quiet
        self.stream = stream or sys.stderr
        self.part = ""
        self.started = time.monotonic()
        self._wall_start = time.time()
        self._last_line = self.started
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="vaesim-report-progress", daemon=True)

    def __enter__(self) -> "ReportProgress":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def __call__(self, part: str) -> None:
        """The part of the report now being written (``write_report``'s ``progress`` callback)."""
        self.part = part
        self.done += 1
        if time.monotonic() - self.started >= self.quiet:  # a quick report stays quiet
            self._say()

    def figures_written(self) -> int:
        """Figure files written since the report started."""
        return sum(1 for folder in self.figures_dirs if folder.is_dir() for p in folder.iterdir()
                   if p.suffix in (".png", ".svg") and p.stat().st_mtime >= self._wall_start - 1)

    def line(self) -> str:
        index = min(self.done, self.total)
        elapsed = int(time.monotonic() - self.started)
        return (f"report: part {index}/{self.total} ({self.part or 'reading the store'}), "
                f"{self.figures_written()} figure files written, {elapsed // 60}m{elapsed % 60:02d}s")

    def _say(self) -> None:
        with self._lock:
            self._last_line = time.monotonic()
            print(self.line(), file=self.stream, flush=True)

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.every)):
            if time.monotonic() - self._last_line >= self.every:
                self._say()


def report_and_print(study_dir: Path, *, metric: str | None = None, progress_every: float = 60.0,
                     notes=()) -> Path:
    """Write the reports of ``study_dir``, print the findings table and the path; return the main report's path.

    ``metric``: None writes the report of every metric in the store (so each report's links to the others
    resolve) and prints CKA's findings; a metric writes and prints only that one. While they are written, a
    progress line goes to stderr at least every ``progress_every`` seconds. ``notes``: lines for the top of
    the page.
    """
    import vaesim.report as report_package
    from vaesim.report import format_findings, load_findings
    from vaesim.report.report import DEFAULT_METRIC, FindingsCache, metric_order, read_store, report_paths

    started = time.perf_counter()
    warning = unfinished_warning(study_dir)
    if warning:
        print(f"vaesim: warning: {warning}", file=sys.stderr, flush=True)
    main_metric = metric or DEFAULT_METRIC
    if metric is None:
        _, results, _ = read_store(study_dir)
        metrics = metric_order(results, main_metric)
    else:
        metrics = [metric]
    cache = FindingsCache()
    folders = [report_paths(study_dir, m)[2] for m in metrics]
    with ReportProgress(folders, every=progress_every, reports=len(metrics)) as progress:
        paths = [report_package.write_report(study_dir, metric=m, progress=progress,
                                             notes=[*notes, *([warning] if warning else [])], cache=cache,
                                             link_reports=True if metric is None else None)
                 for m in metrics]
    print(format_findings(load_findings(study_dir, main_metric)))
    print(f"\nreport: {paths[0].resolve()}  ({time.perf_counter() - started:.1f} s)")
    if len(paths) > 1:
        print("also: " + ", ".join(str(path.resolve()) for path in paths[1:]))
    if warning:  # again below the long findings table, where the eye ends
        print(f"vaesim: warning: {warning}", file=sys.stderr, flush=True)
    return paths[0]


def unfinished_warning(study_dir: Path) -> str | None:
    """Why a report of ``study_dir`` shows only part of the study (a live runner, pending tasks), or None.

    None also when the directory is no study the planner can read (a store written by other means):
    the report itself says what is missing then.
    """
    import logging

    from vaesim.study.run.runner import study_status

    try:
        status = study_status(study_dir)
    except (OSError, ValueError, TypeError) as error:
        logging.getLogger(__name__).debug("no study status for %s: %s", study_dir, error)
        return None
    pending = ", ".join(f"{stage} {done}/{total}" for stage, (done, total) in status.stages.items() if done < total)
    if status.running:
        from vaesim.study.run.lock import describe

        return (f"a runner is working on {study_dir} now ({describe(status.running)}): this report shows only what "
                f"was stored when it was written" + (f" (tasks done: {pending})" if pending else "")
                + f"; rerun `vaesim report {study_dir}` when the study has finished")
    if not status.complete:
        command = status.resume_command or f"vaesim study run {study_dir / 'spec.yaml'} --out {study_dir}"
        return (f"the study in {study_dir} is not finished (tasks done: {pending or 'some outputs are corrupt'}): "
                f"this report shows only what is stored; finish it with `{command}`, then rerun `vaesim report`")
    return None


def run_report(args) -> int:
    report_and_print(args.study_dir, metric=args.metric)
    return 0
