"""Entry point of the `evercron` command."""

from __future__ import annotations

import sys

import click

from evercron import __version__
from evercron.cli.cluster_commands import (
    apply_command,
    drain_command,
    nodes_command,
    undrain_command,
)
from evercron.cli.errors import CliError
from evercron.cli.migrate_command import migrate_store_command
from evercron.cli.remote import COMMANDS
from evercron.cli.run_command import run_command
from evercron.cli.schedule import check_command, next_command
from evercron.cli.serve_command import serve_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="evercron")
def cli() -> None:
    """evercron: a cron job runner for Linux that never has to stop."""


cli.add_command(next_command)
cli.add_command(check_command)
cli.add_command(run_command)
cli.add_command(serve_command)
cli.add_command(migrate_store_command)
for remote_command in [*COMMANDS, nodes_command, drain_command, undrain_command, apply_command]:
    cli.add_command(remote_command)


def main() -> None:
    """Run the command line; every failure is one line on stderr and a non-zero exit."""
    if not sys.platform.startswith("linux"):
        click.echo("evercron: error: evercron runs on Linux only", err=True)
        sys.exit(1)
    try:
        # Without standalone mode click returns an Exit's code instead of exiting.
        result = cli.main(standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.Abort:
        click.echo("evercron: aborted", err=True)
        sys.exit(130)
    except CliError as error:
        error.show()
        sys.exit(error.exit_code)
    except click.UsageError as error:
        hint = (
            f" (see 'evercron {error.ctx.command_path.split(' ', 1)[-1]} --help')"
            if error.ctx
            else ""
        )
        click.echo(f"evercron: error: {error.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as error:
        click.echo(f"evercron: error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    sys.exit(result if isinstance(result, int) else 0)
