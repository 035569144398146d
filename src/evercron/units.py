"""Durations and sizes as users write them in config, CLI flags and the API.

Durations: a number of seconds (``90``, ``1.5``) or units run together (``1.5s``, ``2m``,
``1h30m``, ``250ms``, ``1d``). Sizes: a number of bytes or ``512KiB``, ``1MiB`` (1024-based),
``10MB``, ``1kB`` (1000-based). Both raise `ValueError` with a one-line message on bad input.
"""

from __future__ import annotations

import math
import re

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


def parse_duration(value: str | float) -> float:
    """Seconds in a duration; raise `ValueError` naming the text when it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = _parse_duration_units(text)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must be a finite number >= 0")
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


def parse_size(value: str | int) -> int:
    """Bytes in a size; raise `ValueError` naming the text when it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"invalid size {value!r}: use bytes or units like 512KiB, 1MiB, 10MB")
        size = int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])
    if size < 0:
        raise ValueError(f"invalid size {value!r}: must be >= 0")
    return size
