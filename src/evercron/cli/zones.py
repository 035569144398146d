"""Time zone lookup for command-line options."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import tzlocal

from evercron.cli.errors import CliError


def resolve_zone(name: str | None) -> dt.tzinfo:
    """The zone named `name`, or the machine's local zone when `name` is None."""
    if name is None:
        try:
            return tzlocal.get_localzone()
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            return dt.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        raise CliError(f'unknown time zone "{name}"', exit_code=2) from error
