"""Plain-English descriptions of parsed expressions."""

from __future__ import annotations

from cron_descriptor import CasingTypeEnum, Options, get_description


def describe_fields(seconds_first_fields: list[str]) -> str:
    """Describe a 7-field (`sec min hour dom month dow year`) expression in English.

    cron-descriptor reads the same grammar; should it not understand a form, the answer is
    the expression itself rather than an error, since a description is never essential.
    """
    options = Options()
    options.use_24hour_time_format = True
    options.casing_type = CasingTypeEnum.Sentence
    text = " ".join(seconds_first_fields)
    try:
        return str(get_description(text, options))
    except Exception:
        return f"cron schedule {text}"


def describe_every(seconds: int) -> str:
    """Describe an `@every` schedule."""
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'s' if count > 1 else ''}")
    return "Every " + " ".join(parts) + ", aligned to the Unix epoch"
