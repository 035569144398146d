"""`evercron serve`."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click

from evercron.cli.errors import CliError
from evercron.config import ConfigError, load_config
from evercron.daemon.serve import Daemon, ServeError, ServeOptions


@click.command("serve")
@click.option("--config", "config_path", metavar="FILE", help="evercron.toml to read.")
@click.option(
    "--crontab",
    "crontabs",
    multiple=True,
    metavar="FILE",
    help="Crontab file(s) to schedule (repeatable).",
)
@click.option("--state-dir", metavar="DIR", help="Where the store, token and locks live.")
@click.option("--listen", metavar="HOST:PORT", help="API address (default 127.0.0.1:8467).")
@click.option("--pid-file", metavar="PATH", help="Write the daemon's pid here.")
def serve_command(
    config_path: str | None,
    crontabs: tuple[str, ...],
    state_dir: str | None,
    listen: str | None,
    pid_file: str | None,
) -> None:
    """Run the daemon: schedule jobs and serve the API until stopped."""
    try:
        config = load_config(
            config_path, crontabs, overrides={"state_dir": state_dir, "listen": listen}
        )
    except ConfigError as error:
        for problem in error.problems:
            click.echo(f"evercron: error: {problem}", err=True)
        raise click.exceptions.Exit(2) from None
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    options = ServeOptions(config, Path(pid_file) if pid_file else None)
    try:
        asyncio.run(Daemon(options).run())
    except ServeError as error:
        raise CliError(str(error)) from None
