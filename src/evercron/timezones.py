"""Time zone names as users write them (config, crontabs, the API, `--tz`).

`load_zone` is the one place a name becomes a zone. Every way a name can fail to be one
- unknown, a folder of the zone database ("America", "Etc"), a data file that is no zone
("zone.tab"), too long for a file name, a path, a NUL - is the same `UnknownZone`.
"""

from __future__ import annotations

import zoneinfo

from evercron.text import printable


class UnknownZone(ValueError):
    """A name that is not a time zone; the message quotes it."""

    def __init__(self, name: str) -> None:
        super().__init__(f'unknown time zone "{printable(name)}"')
        self.name = name


def load_zone(name: str) -> zoneinfo.ZoneInfo:
    """The zone called `name` (an IANA name such as "Europe/Berlin" or "UTC"); raise
    `UnknownZone` for anything else."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: a path, NUL or lone surrogate, or a file that is no zone;
        # OSError: a directory of the database, or a name too long for the file system.
        raise UnknownZone(name) from None
