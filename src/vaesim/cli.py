"""The ``vaesim`` command: a thin dispatcher, one subcommand per job.

Each job's arguments live beside its code, in ``vaesim.<stage>.commands``,
which defines ``register(subparsers)``; every registered subparser sets
``func`` (called with the parsed namespace, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import select
import sys

from vaesim.utils.command_groups import UserError
from vaesim.utils.threads import DEFAULT_WAIT_POLICY, prefer_passive_waiting, wait_policy

# The command owns its process: before torch / numpy load their thread pools, idle threads sleep instead of
# spinning (a shared CPU otherwise makes every parallel region several times slower; see vaesim.utils.threads).
# Variables the user set are kept. Importing the library alone sets nothing.
try:
    wait_policy()
except ValueError as _error:  # a typo must not stop every command: one line, and the default
    print(f"vaesim: warning: {_error}; using {DEFAULT_WAIT_POLICY}", file=sys.stderr)
prefer_passive_waiting()

from vaesim import __version__  # noqa: E402

# Order is the order shown in --help.
COMMAND_MODULES = (
    "vaesim.demo_command",
    "vaesim.study.commands",
    "vaesim.report.commands",
    "vaesim.training.commands",
    "vaesim.data.commands",
    "vaesim.imports.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaesim",
        description=(
            "How do VAEs learn? Train families of VAEs with checkpoints, record every "
            "layer on a probe set, compare layers with CKA and Procrustes, store every "
            "score, and report the findings."
        ),
    )
    parser.add_argument("--version", action="version", version=f"vaesim {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    _verbose_everywhere(parser)
    return parser


def drop_current_directory_from_path() -> None:
    """Remove the current directory from ``sys.path`` (``python -m`` and ``python -c`` put it first).

    Called by the commands that only inspect a study (``status``, ``verify``, ``query``, ``report``): run
    inside a study directory received from someone else, they must not import a module planted there under
    the name of a library they load later (``duckdb.py``, ``pandas.py``, a spec's ``plugins:``).
    """
    import os

    here = os.path.realpath(os.getcwd())
    kept = [entry for entry in sys.path if os.path.realpath(entry or ".") != here]
    if len(kept) != len(sys.path):
        logging.getLogger(__name__).debug("not importing from the current directory %s (an inspecting command)", here)
        sys.path[:] = kept


def _verbose_everywhere(parser: argparse.ArgumentParser) -> None:
    """``-v`` also after the command (``vaesim study run -v ...``): every subcommand accepts it.

    Its default is suppressed, so a subcommand without it keeps the count given before the command.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                sub.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                                 help="more log output (-vv for debug)")
                _verbose_everywhere(sub)


def _stdout_closed() -> bool:
    """Whether standard output is a pipe or socket whose reader has gone (poll reports an error on it).

    Tells ``vaesim ... | head`` apart from a broken pipe inside the work
    (a worker's connection), which is a real error.
    """
    try:
        descriptor = sys.stdout.fileno()
        poller = select.poll()
    except (AttributeError, OSError, ValueError):
        return False
    poller.register(descriptor, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _silence_stdout() -> None:
    """Point standard output at /dev/null so that the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    if getattr(args, "inspects", False):
        drop_current_directory_from_path()
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed reader (``| head``) shows here, inside the handlers, not at exit
        return code
    except KeyboardInterrupt as error:
        print("\ninterrupted: finished work is kept; rerun the same command to resume.", file=sys.stderr)
        return 128 + int(getattr(error, "signum", 2))  # 130 for Ctrl-C, 143 for SIGTERM
    except (UserError, FileNotFoundError, ValueError, TypeError, ImportError) as error:  # ImportError: an extra
        if args.verbose >= 2:
            raise
        print(f"vaesim: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        if _stdout_closed():  # ``vaesim ... | head``: the reader has what it wanted; stop quietly like a Unix tool
            _silence_stdout()
            return 141  # 128 + SIGPIPE: what a shell shows for a tool stopped by a closed pipe
        if args.verbose >= 2:
            raise
        print("vaesim: error: Broken pipe (a worker or connection closed early; finished work is kept; "
              "rerun)", file=sys.stderr)
        return 1
    except OSError as error:  # read-only file system, permissions, disk full, I/O error: one line, no traceback
        if args.verbose >= 2:
            raise
        where = f": {error.filename}" if getattr(error, "filename", None) else ""
        print(f"vaesim: error: {error.strerror or error}{where} (finished work is kept; fix this and rerun)",
              file=sys.stderr)
        return 1
    except MemoryError as error:
        if args.verbose >= 2:
            raise
        print(f"vaesim: error: out of memory{f' ({error})' if str(error) else ''}; use a smaller probe set or "
              "batch, or a machine with more memory (finished work is kept)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
