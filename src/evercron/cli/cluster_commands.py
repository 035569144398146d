"""Client commands for several nodes: nodes, drain, undrain, apply FILE..."""

from __future__ import annotations

import os
from typing import Any

import click
from rich.table import Table

from evercron.cli.client import Client
from evercron.cli.errors import CliError
from evercron.cli.remote import _emit, _local, connection_options
from evercron.config import ConfigError, load_config
from evercron.model import Job


def nodes_table(nodes: list[dict[str, Any]]) -> Table:
    """Nodes as people read them."""
    table = Table("node", "state", "tags", "heartbeat (local)", "version", "pid", "running",
                  box=None)  # fmt: skip
    for node in nodes:
        table.add_row(
            node["name"],
            node["state"],
            ",".join(node["tags"]) or "-",
            _local(node["heartbeat_at"]),
            node["version"],
            str(node["pid"]),
            ", ".join(map(str, node["running"])) or "-",
        )
    return table


@click.command("nodes")
@connection_options
def nodes_command(client: Client, as_json: bool) -> None:
    """List the nodes sharing the store, with their state and running runs."""
    _emit(client.request("GET", "/api/v1/nodes"), as_json, nodes_table)


def _drain_like(action: str, summary: str) -> click.Command:
    @click.command(action)
    @click.argument("node")
    @connection_options
    def command(client: Client, as_json: bool, node: str) -> None:
        data = client.request("POST", f"/api/v1/nodes/{node}/{action}")
        _emit(data, as_json) if as_json else click.echo(f"{action}ed {node} ({data['state']})")

    command.help = summary
    return command


drain_command = _drain_like(
    "drain", "Make NODE stop claiming firings while its running commands finish."
)
undrain_command = _drain_like("undrain", "Let a drained NODE claim firings again.")


@click.command("apply")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@connection_options
def apply_command(client: Client, as_json: bool, files: tuple[str, ...]) -> None:
    """Apply config files (*.toml) and crontabs: the daemon's node defines exactly their
    jobs from now on (give every file of the node). Idempotent; prints what it added,
    changed and removed."""
    jobs = _read_jobs(files)
    body = {"jobs": [{**job.to_mapping(), "source": job.source} for job in jobs]}
    done = client.request("POST", "/api/v1/apply", json=body)
    if as_json:
        _emit(done, True)
        return
    for key in ("added", "changed", "removed"):
        if done[key]:
            click.echo(f"{key}: {', '.join(done[key])}")
    if not any(done[key] for key in ("added", "changed", "removed")):
        click.echo(f"nothing changed ({len(jobs)} jobs)")


def _read_jobs(files: tuple[str, ...]) -> list[Job]:
    """The jobs of `files`, each with its file (absolute) as source; one error line
    for every problem."""
    paths = [os.path.abspath(path) for path in files]
    configs = [path for path in paths if path.endswith(".toml")]
    crontabs = [path for path in paths if not path.endswith(".toml")]
    jobs: list[Job] = []
    problems: list[str] = []
    readings: list[tuple[str | None, list[str]]] = [(config, []) for config in configs]
    if crontabs:
        readings.append((None, crontabs))
    for config, tables in readings:
        try:
            jobs.extend(load_config(config, tables).jobs)
        except ConfigError as error:
            problems.extend(str(problem) for problem in error.problems)
    if problems:
        raise CliError("; ".join(problems), exit_code=2)
    seen: dict[str, str] = {}
    for job in jobs:
        if job.name in seen:
            raise CliError(f'job "{job.name}" is defined in {seen[job.name]} and {job.source}')
        seen[job.name] = job.source
    return jobs
