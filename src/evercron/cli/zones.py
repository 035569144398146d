"""Time zone lookup for command-line options."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import tzlocal

from evercron.cli.errors import CliError
from evercron.timezones import UnknownZone, load_zone


def resolve_zone(name: str | None) -> dt.tzinfo:
    """The zone named `name`, or the machine's local zone when `name` is None."""
    if name is None:
        try:
            return tzlocal.get_localzone()
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            return dt.UTC
    try:
        return load_zone(name)
    except UnknownZone as error:
        raise CliError(str(error), exit_code=2) from None
