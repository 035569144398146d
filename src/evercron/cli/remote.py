"""Client commands: jobs, runs, logs, kill, trigger, add, rm, pause, resume, status, stop,
upgrade, web, notify test. Tables for people, `--json` for scripts."""

from __future__ import annotations

import datetime as dt
import json
import shlex
import sys
import time
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import quote

import click
from rich.console import Console
from rich.table import Table

from evercron.cli.client import Client
from evercron.cli.cluster_status import status_lines
from evercron.cli.errors import CliError
from evercron.model import RunStatus
from evercron.text import printable, text_problem

_UPGRADE_WAIT = 600.0  # the daemon answers within its upgrade_timeout
_FOLLOW_RECONNECTS = 100  # a followed stream ends at each upgrade or restart: resume

Command = Callable[..., None]


def connection_options(command: Command) -> Command:
    """Add --url, --token, --state-dir, --ca-cert and --json, and pass a `Client` as
    `client`."""

    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.option("--url", envvar="EVERCRON_URL", help="Daemon URL (default: found locally).")
    @click.option("--token", envvar="EVERCRON_TOKEN", help="API token (default: found locally).")
    @click.option("--state-dir", help="State dir of a local daemon (to find it).")
    @click.option(
        "--ca-cert",
        envvar="EVERCRON_CA_CERT",
        metavar="FILE",
        help="Trust this CA (PEM) for an HTTPS daemon, e.g. its self-signed certificate "
        "(default: the system's CAs; SSL_CERT_FILE and SSL_CERT_DIR are honoured).",
    )
    @wraps(command)
    def wrapper(
        url: str | None,
        token: str | None,
        state_dir: str | None,
        ca_cert: str | None,
        **kwargs: Any,
    ) -> None:
        _check_text(kwargs)
        command(client=Client(url, token, state_dir, ca_cert=ca_cert), **kwargs)

    return wrapper


def _check_text(values: dict[str, Any]) -> None:
    """Refuse, naming it, an argument with bytes that are not UTF-8 (Python keeps them as
    lone surrogates): neither a URL nor JSON can carry it to the daemon."""
    for param in click.get_current_context().command.params:
        value = values.get(param.name or "")
        for text in value if isinstance(value, tuple) else (value,):
            if isinstance(text, str) and text_problem(text) is not None:
                name = (
                    param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
                )
                raise CliError(f'{name} "{printable(text)}" is not valid UTF-8 text')


def _emit(data: Any, as_json: bool, table: Callable[[Any], Table] | None = None) -> None:
    if as_json or table is None:
        click.echo(json.dumps(data, indent=2 if not as_json else None, default=str))
        return
    Console(soft_wrap=True).print(table(data))


def _jobs_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table("name", "schedule", "next run (local)", "state", "command", box=None)
    for job in jobs:
        state = "paused" if job["paused"] else ("disabled" if not job["enabled"] else "active")
        table.add_row(
            job["name"], job["schedule"], _local(job.get("next_fire_at")), state, job["command"]
        )
    return table


def _runs_table(runs: list[dict[str, Any]]) -> Table:
    table = Table(
        "id", "job", "trigger", "scheduled (local)", "status", "exit", "duration", box=None
    )
    for run in runs:
        exit_text = run["signal"] or ("" if run["exit_code"] is None else str(run["exit_code"]))
        table.add_row(
            str(run["id"]),
            run["job"],
            run["trigger"],
            _local(run["scheduled_at"]),
            run["status"],
            exit_text,
            _duration(run),
        )
    return table


def _local(moment: str | None) -> str:
    """An API time (UTC) as people read it here: local time, to the second."""
    if not moment:
        return "-"
    return dt.datetime.fromisoformat(moment).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _duration(run: dict[str, Any]) -> str:
    if not run.get("started_at") or not run.get("finished_at"):
        return ""
    seconds = (
        dt.datetime.fromisoformat(run["finished_at"]) - dt.datetime.fromisoformat(run["started_at"])
    ).total_seconds()
    return f"{seconds:.2f}s"


@click.command("jobs")
@connection_options
def jobs_command(client: Client, as_json: bool) -> None:
    """List jobs with their next run."""
    _emit(client.request("GET", "/api/v1/jobs"), as_json, _jobs_table)


@click.command("runs")
@click.option("--job", help="Only this job's runs.")
@click.option(
    "--status",
    type=click.Choice([str(status) for status in RunStatus]),
    help="Only runs with this status.",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@connection_options
def runs_command(
    client: Client, as_json: bool, job: str | None, status: str | None, limit: int
) -> None:
    """List runs, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if job:
        params["job"] = job
    if status:
        params["status"] = status
    _emit(client.request("GET", "/api/v1/runs", params=params), as_json, _runs_table)


@click.command("logs")
@click.argument("run_id", type=int)
@click.option("-f", "--follow", is_flag=True, help="Stream new output until the run ends.")
@connection_options
def logs_command(client: Client, as_json: bool, run_id: int, follow: bool) -> None:
    """Print a run's output (with -f, follow it live)."""
    if not follow:
        data = client.raw("GET", f"/api/v1/runs/{run_id}/output")
        run = client.request("GET", f"/api/v1/runs/{run_id}")
        dropped = max(0, run["output_bytes"] - len(data)) if run["output_truncated"] else 0
        if as_json:
            text = data.decode("utf-8", "replace")
            click.echo(json.dumps({"run": run_id, "output": text, "bytes_not_kept": dropped}))
            return
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        if dropped:
            click.echo(
                f"[run {run_id}: {dropped} bytes in the middle of its output were not kept "
                "(max_output)]",
                err=True,
            )
        return
    _follow_output(client, run_id, as_json)


def _follow_output(client: Client, run_id: int, as_json: bool) -> None:
    """Print a run's output as it comes until the run ends, resuming after a hot upgrade
    or a restart: stdout gets exactly the bytes `evercron logs` prints for the run."""
    last_id: str | None = None
    for _ in range(_FOLLOW_RECONNECTS):
        event, data = "", ""
        headers = {"Last-Event-ID": last_id} if last_id is not None else None
        for line in client.stream_lines(f"/api/v1/runs/{run_id}/output?follow=1", headers):
            if line.startswith("id: "):
                last_id = line[4:]
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif not line and event:
                if _show_event(run_id, event, json.loads(data), as_json):
                    return
                event, data = "", ""
        time.sleep(0.1)  # the daemon handed over or restarted: resume where we were
    raise CliError(f"lost the output stream of run {run_id} too often; giving up")


def _show_event(run_id: int, event: str, data: dict[str, Any], as_json: bool) -> bool:
    """Print one server-sent event (its data decoded); True for the final `end`."""
    if as_json:
        click.echo(json.dumps({"event": event, **data}))
    elif event in ("stdout", "stderr"):
        # Both streams, interleaved as stored: the bytes `evercron logs` prints.
        sys.stdout.buffer.write(data["text"].encode("utf-8", "surrogateescape"))
        sys.stdout.flush()
    elif event == "truncated":
        click.echo(f"\n[... {data['dropped']} bytes not kept ...]", err=True)
    elif event == "end":
        click.echo(f"[run {run_id} {data['status']}]", err=True)
    return event == "end"


@click.command("kill")
@click.argument("run_id", type=int)
@connection_options
def kill_command(client: Client, as_json: bool, run_id: int) -> None:
    """Kill a running run and every process it started."""
    run = client.request("POST", f"/api/v1/runs/{run_id}/kill")
    _emit(run, as_json) if as_json else click.echo(f"killing run {run_id} of {run['job']}")


@click.command("trigger")
@click.argument("job")
@connection_options
def trigger_command(client: Client, as_json: bool, job: str) -> None:
    """Run a job now."""
    run = client.request("POST", f"/api/v1/jobs/{job}/trigger")
    _emit(run, as_json) if as_json else click.echo(f"started run {run['id']} of {job}")


@click.command("add", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("schedule")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--timeout", help="Kill the run after this long (90, 1.5s, 2m, 1h30m).")
@click.option("--timezone", help="Time zone of the schedule (default: the system's).")
@click.option("--concurrency", type=click.Choice(["allow", "forbid", "replace"]))
@connection_options
def add_command(
    client: Client,
    as_json: bool,
    name: str,
    schedule: str,
    command: tuple[str, ...],
    timeout: str | None,
    timezone: str | None,
    concurrency: str | None,
) -> None:
    """Add a job: evercron add NAME SCHEDULE -- COMMAND...

    Several arguments after -- run exactly as given, each one word (evercron quotes them
    for the shell). A single argument is a shell command line, as in a crontab:

    \b
      evercron add greet @daily -- printf '%s\\n' 'hello world'
      evercron add backup '0 3 * * *' -- 'backup --all > /var/log/backup.log 2>&1'
    """
    line = command[0] if len(command) == 1 else shlex.join(command)
    body: dict[str, Any] = {"name": name, "schedule": schedule, "command": line}
    for key, value in (("timeout", timeout), ("timezone", timezone), ("concurrency", concurrency)):
        if value is not None:
            body[key] = value
    job = client.request("POST", "/api/v1/jobs", json=body)
    _emit(job, as_json) if as_json else click.echo(
        f"added {name}: {job['explanation']}; next run {job['next_fire_at']}"
    )


@click.command("rm")
@click.argument("job")
@connection_options
def rm_command(client: Client, as_json: bool, job: str) -> None:
    """Delete a job (its run history stays)."""
    client.request("DELETE", f"/api/v1/jobs/{job}")
    _emit({"deleted": job}, as_json) if as_json else click.echo(f"deleted {job}")


def _pause_like(action: str) -> click.Command:
    @click.command(action)
    @click.argument("job")
    @connection_options
    def command(client: Client, as_json: bool, job: str) -> None:
        data = client.request("POST", f"/api/v1/jobs/{job}/{action}")
        _emit(data, as_json) if as_json else click.echo(f"{action}d {job}")

    command.help = f"{action.capitalize()} a job."
    return command


pause_command = _pause_like("pause")
resume_command = _pause_like("resume")


@click.command("status")
@connection_options
def status_command(client: Client, as_json: bool) -> None:
    """Show the daemon's state."""
    data = client.request("GET", "/api/v1/status")
    if as_json:
        _emit(data, True)
        return
    click.echo(
        f"evercron {data['version']} pid {data['pid']}, up {data['uptime_seconds']:.0f}s, "
        f"{data['jobs']} jobs ({data['paused_jobs']} paused), "
        f"{len(data['running_runs'])} running"
    )
    for generation in data["generations"]:
        running = ", ".join(map(str, generation["running_runs"])) or "none"
        click.echo(
            f"  {generation['role']}: generation {generation['generation']}, pid "
            f"{generation['pid']}, version {generation['version']}, since "
            f"{generation['started_at']}, running runs: {running}"
        )
    for setting, how in data.get("limits", {}).items():
        click.echo(f"  limit {setting}: {how}")
    for line in status_lines(data):
        click.echo(line)


@click.command("stop")
@connection_options
def stop_command(client: Client, as_json: bool) -> None:
    """Stop the daemon gracefully (running jobs may finish)."""
    data = client.request("POST", "/api/v1/stop")
    _emit(data, as_json) if as_json else click.echo("stopping")


@click.command("upgrade")
@connection_options
def upgrade_command(client: Client, as_json: bool) -> None:
    """Hand over to a new daemon process (code and config as on disk now) without
    downtime; waits for the outcome. Running jobs finish in the old process."""
    data = client.request("POST", "/api/v1/upgrade", timeout=_UPGRADE_WAIT)
    if as_json:
        _emit(data, True)
        return
    click.echo(
        f"upgraded: pid {data['pid']} (generation {data['generation']}) serves after "
        f"{data['handover_seconds']:.2f}s; pid {data['previous_pid']} finishes its "
        "running jobs and exits"
    )


@click.command("web")
@connection_options
def web_command(client: Client, as_json: bool) -> None:
    """Print a link to the daemon's web page that signs you in (the token travels in the
    link's #fragment, which browsers never send to a server: keep the link private)."""
    client.request("GET", "/api/v1/status")  # the daemon answers and takes this token
    link = f"{client.url}/"
    if client.token:
        link += f"#token={quote(client.token, safe='')}"
    _emit({"url": link}, True) if as_json else click.echo(link)


@click.group("notify")
def notify_group() -> None:
    """Notification channels ([[notify]] in evercron.toml)."""


@notify_group.command("test")
@click.argument("channel")
@connection_options
def notify_test_command(client: Client, as_json: bool, channel: str) -> None:
    """Send a test notification through CHANNEL and print the outcome (HTTP status or
    SMTP reply); exit 1 when it was not delivered."""
    data = client.request("POST", "/api/v1/notifications/test", json={"channel": channel})
    if as_json:
        _emit(data, True)
    elif data["ok"]:
        click.echo(f"{channel}: delivered ({data['outcome']})")
    else:
        click.echo(f"evercron: error: {channel}: not delivered: {data['outcome']}", err=True)
    if not data["ok"]:
        raise click.exceptions.Exit(1)


COMMANDS = [
    jobs_command,
    runs_command,
    logs_command,
    kill_command,
    trigger_command,
    add_command,
    rm_command,
    pause_command,
    resume_command,
    status_command,
    stop_command,
    upgrade_command,
    web_command,
    notify_group,
]


__all__ = ["COMMANDS", "CliError"]
