"""`evercron next` and `evercron check`: look at schedules without a daemon."""

from __future__ import annotations

import datetime as dt
import json

import click

from evercron.cli.errors import CliError
from evercron.cli.zones import resolve_zone
from evercron.cron import CronSyntaxError, parse
from evercron.crontab import read_crontab

_MAX_COUNT = 100_000


@click.command("next")
@click.argument("expression", nargs=-1, required=True)
@click.option(
    "-n",
    "count",
    type=click.IntRange(1, _MAX_COUNT),
    default=5,
    show_default=True,
    help="How many fire times to print.",
)
@click.option(
    "--after",
    "after_text",
    metavar="ISO",
    help="Start after this time (ISO 8601; naive times are read in --tz). Default: now.",
)
@click.option("--tz", "zone_name", metavar="ZONE", help="Time zone (default: the local zone).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead.")
def next_command(
    expression: tuple[str, ...],
    count: int,
    after_text: str | None,
    zone_name: str | None,
    as_json: bool,
) -> None:
    """Print the next fire times of EXPRESSION, one ISO 8601 time per line.

    The explanation and any warning go to stderr. Quote the expression, or pass its fields
    as separate arguments: evercron next '*/5 * * * *' -n 3
    """
    text = " ".join(expression)
    try:
        schedule = parse(text)
    except CronSyntaxError as error:
        raise CliError(str(error), exit_code=2) from None
    zone = resolve_zone(zone_name)
    after = _parse_after(after_text, zone)
    times = schedule.next_n(after, count)
    for warning in schedule.warnings:
        click.echo(f"evercron: warning: {warning}", err=True)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "expression": str(schedule),
                    "explanation": schedule.explain(),
                    "timezone": str(zone),
                    "after": after.isoformat(),
                    "times": [t.isoformat() for t in times],
                }
            )
        )
        return
    click.echo(schedule.explain(), err=True)
    if schedule.is_reboot:
        click.echo("(@reboot has no fire times: it runs once when the machine boots)", err=True)
    for moment in times:
        click.echo(moment.isoformat())


def _parse_after(text: str | None, zone: dt.tzinfo) -> dt.datetime:
    if text is None:
        return dt.datetime.now(zone).replace(microsecond=0)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f'--after "{text}" is not an ISO 8601 time', exit_code=2) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=zone)
    return moment.astimezone(zone)


@click.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "-n",
    "count",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="How many fire times to show per job.",
)
def check_command(files: tuple[str, ...], count: int) -> None:
    """Validate crontab FILES and show each job's schedule and next fire times.

    Exits 2 listing every problem (file:line: reason) when any file is invalid.
    """
    problems, entries = [], []
    for path in files:
        parsed = read_crontab(path)
        problems.extend(parsed.problems)
        entries.extend(parsed.entries)
    if problems:
        for problem in problems:
            click.echo(f"evercron: error: {problem}", err=True)
        raise click.exceptions.Exit(2)
    for entry in entries:
        zone = resolve_zone(entry.timezone)
        click.echo(f"{entry.name}  [{entry.schedule}]  {entry.command}")
        click.echo(f"    {entry.schedule.explain()} ({zone})")
        now = dt.datetime.now(zone).replace(microsecond=0)
        for moment in entry.schedule.next_n(now, count):
            click.echo(f"    next: {moment.isoformat()}")
