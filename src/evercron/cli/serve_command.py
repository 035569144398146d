"""`evercron serve`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from evercron.cli.errors import CliError
from evercron.config import ConfigError, load_config
from evercron.daemon import init, logs
from evercron.daemon.serve import Daemon, ServeError, ServeOptions, command_arguments
from evercron.daemon.upgrade import Predecessor, UpgradeError
from evercron.settings import LOG_FORMATS, LogFormat


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
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    help="text (default) or json: one object per line with time, level, logger, message "
    "and job, run, node where they apply.",
)
@click.option(
    "--database-url",
    envvar="EVERCRON_DATABASE_URL",
    metavar="URL",
    help="PostgreSQL database shared by several nodes (also EVERCRON_DATABASE_URL; "
    "default: SQLite in the state dir).",
)
@click.option("--node-name", metavar="NAME", help="This node's name (default: the host name).")
@click.option(
    "--node-tag", "node_tags", multiple=True, metavar="TAG", help="A tag of this node (repeatable)."
)
def serve_command(
    config_path: str | None,
    crontabs: tuple[str, ...],
    state_dir: str | None,
    listen: str | None,
    pid_file: str | None,
    database_url: str | None,
    node_name: str | None,
    node_tags: tuple[str, ...],
    log_format: LogFormat | None,
) -> None:
    """Run the daemon: schedule jobs and serve the API until stopped.

    SIGHUP (or `evercron upgrade`) hands over to a new process started from the code and
    config on disk, without dropping a connection or a firing.
    """
    if init.should_supervise():  # PID 1: stay a stable parent, run the daemon below
        raise click.exceptions.Exit(init.supervise(list(command_arguments())))
    try:
        predecessor = Predecessor.from_environ()
    except UpgradeError as error:
        raise CliError(str(error)) from None
    try:
        config = load_config(
            config_path,
            crontabs,
            overrides={
                "state_dir": state_dir,
                "listen": listen,
                "log_format": log_format,
                "database_url": database_url,
                "node_name": node_name,
                "node_tags": list(node_tags) or None,
            },
        )
    except ConfigError as error:
        for problem in error.problems:
            click.echo(f"evercron: error: {problem}", err=True)
        if predecessor is not None:
            predecessor.fail("invalid configuration: " + "; ".join(map(str, error.problems)))
        raise click.exceptions.Exit(2) from None
    logs.configure(sys.stderr, config.settings.log_format, config.settings.node_name)
    options = ServeOptions(config, Path(pid_file) if pid_file else None, command_arguments())
    try:
        asyncio.run(Daemon(options, predecessor).run())
    except ServeError as error:
        if predecessor is not None:
            predecessor.fail(str(error))
        raise CliError(str(error)) from None
    except BaseException as error:
        if predecessor is not None:
            predecessor.fail(f"{type(error).__name__}: {error}")
        raise
    finally:
        logs.flush_all()  # the last batch, whatever happens at exit
