"""Durations and sizes as users write them in config, CLI flags and the API.

Durations: a number of seconds (``90``, ``1.5``) or units run together (``1.5s``, ``2m``,
``1h30m``, ``250ms``, ``1d``). Sizes: a number of bytes or ``512KiB``, ``1MiB`` (1024-based),
``10MB``, ``1kB`` (1000-based). Both raise `ValueError` with a one-line message on bad input,
and both refuse absurd values: past `MAX_DURATION` and `MAX_SIZE`.
"""

from __future__ import annotations

import math
import re

MAX_DURATION = 365 * 86400.0
"""The longest duration taken (a year): longer ones are mistakes (milliseconds given as
seconds) and overflow the time arithmetic that uses them."""
MAX_SIZE = 1024**3
"""The largest size taken (1 GiB): `max_output` bytes of each run are held in memory."""
MAX_RESOURCE_LIMIT = 2**63 - 1
"""The largest resource limit (`limits`) a job may set: what `setrlimit` takes."""

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_duration(value: str | float, at_most: float | None = MAX_DURATION) -> float:
    """Seconds in a duration of at most `at_most` seconds (None: no limit); raise
    `ValueError` naming the text when it is not one."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"invalid duration {_shown(value)}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
    else:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = _parse_duration_units(text)
    if math.isnan(seconds) or seconds < 0 or (at_most is None and math.isinf(seconds)):
        raise ValueError(f"invalid duration {_shown(value)}: must be a finite number >= 0")
    if at_most is not None and seconds > at_most:
        limit = f"{at_most:.15g}s" + (" (a year)" if at_most == MAX_DURATION else "")
        raise ValueError(f"invalid duration {_shown(value)}: at most {limit}")
    return seconds


def _parse_duration_units(text: str) -> float:
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(
            f"invalid duration {text!r}: use seconds or units like 1.5s, 90s, 2m, 1h30m"
        )
    return total


def parse_size(value: str | int, at_most: int = MAX_SIZE) -> int:
    """Bytes in a size of at most `at_most` bytes; raise `ValueError` naming the text
    when it is not one."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"invalid size {_shown(value)}")
    if isinstance(value, int):
        size: float = value
    else:
        match = _SIZE.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"invalid size {value!r}: use bytes or units like 512KiB, 1MiB, 10MB")
        size = float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]
    if size < 0:
        raise ValueError(f"invalid size {_shown(value)}: must be >= 0")
    if size > at_most:  # (also a number too long for a float: infinity)
        limit = f"{at_most} bytes" + (" (1GiB)" if at_most == MAX_SIZE else "")
        raise ValueError(f"invalid size {_shown(value)}: at most {limit}")
    return int(size)


def _shown(value: object) -> str:
    """A value as an error message quotes it: short, whatever was given."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:36]}..."
