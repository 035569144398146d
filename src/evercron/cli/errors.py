"""How the command line reports failure: one line on stderr and a non-zero exit."""

from __future__ import annotations

import click


class CliError(Exception):
    """A failure to show the user as one line, exiting with `exit_code` (default 1)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def show(self) -> None:
        """Print the one-line message on stderr."""
        click.echo(f"evercron: error: {self.message}", err=True)
