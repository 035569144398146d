"""The one exception the cron engine raises for bad input."""

from __future__ import annotations


class CronSyntaxError(ValueError):
    """An expression that cannot be parsed or can never fire.

    The message is one line that names the field, the offending text and the allowed
    values, e.g. ``hour field "24": 24 is out of range 0-23``.
    """
