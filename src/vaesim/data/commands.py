"""Subcommands of this stage (filled in by the issue that builds the stage)."""


def register(subparsers) -> None:
    """Add this stage's subcommands to the ``vaesim`` parser."""
