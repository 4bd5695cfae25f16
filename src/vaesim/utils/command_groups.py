"""What every command module shares: the input error the CLI prints as one line, and a command group
(``vaesim study``, ``vaesim data``, ``vaesim import``) run without its action."""

from __future__ import annotations

import argparse


class UserError(Exception):
    """An error caused by input: printed as one clear message, exit code 2 (see :func:`vaesim.cli.main`)."""


def needs_action(parser: argparse.ArgumentParser):
    """``func`` of a command group called without an action: usage and an error naming the actions, exit 2."""

    def func(args) -> int:
        actions = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser.error(f"choose an action: {', '.join(actions.choices)} (see {parser.prog} --help)")
        return 2  # pragma: no cover - parser.error exits

    return func
