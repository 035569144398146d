"""`evercron migrate-store --to postgresql://...`: a single node's history into a cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from evercron.cli.errors import CliError
from evercron.config import default_state_dir
from evercron.daemon import state
from evercron.store import StoreError


@click.command("migrate-store")
@click.option("--to", "url", required=True, metavar="URL", help="The PostgreSQL database.")
@click.option("--state-dir", metavar="DIR", help="The node's state dir (its SQLite store).")
@click.option("--merge", is_flag=True, help="Add to a database that holds jobs already.")
def migrate_store_command(url: str, state_dir: str | None, merge: bool) -> None:
    """Copy this node's jobs, runs and output from its SQLite store into a PostgreSQL
    database, to run several nodes on it (`serve --database-url`). Stop the daemon
    first; its SQLite file is left as it is."""
    where = Path(state_dir) if state_dir else default_state_dir()
    path = where / "evercron.db"
    if not path.exists():
        raise CliError(f"no store to move: {path} does not exist")
    lock = state.FileLock(where / "serve.lock")
    if not lock.try_acquire():
        raise CliError(f"a daemon is serving {where}: stop it first (evercron stop)")
    # (imported here: every other command, `serve` on SQLite too, goes without psycopg)
    from evercron.store.transfer import move_history  # noqa: PLC0415

    try:
        done = asyncio.run(move_history(path, url, merge, _show))
    except StoreError as error:
        raise CliError(str(error)) from None
    finally:
        lock.release()
    kept = f" ({done.jobs_kept} kept the database's definition)" if done.jobs_kept else ""
    click.echo(
        f"moved {done.jobs} job(s){kept}, {done.runs} run(s) and {done.chunks} output "
        f"chunk(s) to {done.target}"
    )


def _show(what: str, done: int, total: int) -> None:
    click.echo(f"{what}: {done}/{total}", err=True)
