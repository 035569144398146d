"""Crontab files (supercronic-compatible) -> job entries.

Understands comments, blank lines, `KEY=value` environment lines, `CRON_TZ=Zone` (applies
to the lines after it), expressions of 5, 6 or 7 fields or a macro, and `# name: X`, which
names the job on the next line. Unnamed jobs are called `<file stem>-<8 hex of
sha1(schedule + command)>`. Every problem is reported with its file and line; nothing is
half-read.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from evercron.cron import CronExpr, CronSyntaxError, parse
from evercron.timezones import UnknownZone, load_zone

_ENV_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")
_NAME_COMMENT = re.compile(r"#\s*name:\s*(\S+)\s*$")
_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class CrontabEntry:
    """One job line: its name, schedule, command and the environment in force for it."""

    name: str
    schedule: CronExpr
    command: str
    timezone: str | None
    env: dict[str, str]
    path: str
    line: int


@dataclass
class CrontabProblem:
    """One reason a crontab cannot be used, located by file and line."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class CrontabFile:
    """A parsed crontab: its entries, or the problems that make it unusable."""

    entries: list[CrontabEntry] = field(default_factory=list)
    problems: list[CrontabProblem] = field(default_factory=list)


def read_crontab(path: str | Path) -> CrontabFile:
    """Read and parse a crontab file; an unreadable file is reported as a problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return CrontabFile(problems=[CrontabProblem(str(path), 0, f"cannot read: {error}")])
    return parse_crontab(text, str(path))


def parse_crontab(text: str, path: str = "crontab") -> CrontabFile:
    """Parse crontab text; `path` is used for naming unnamed jobs and in messages."""
    result = CrontabFile()
    env: dict[str, str] = {}
    timezone: str | None = None
    pending_name: str | None = None
    stem = Path(path).stem or "crontab"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            named = _NAME_COMMENT.match(line)
            if named:
                pending_name = named.group(1)
                if not _JOB_NAME.fullmatch(pending_name):
                    result.problems.append(
                        CrontabProblem(path, number, f'invalid job name "{pending_name}"')
                    )
            continue
        assignment = _ENV_LINE.fullmatch(line)
        if assignment and not line.startswith("@"):
            key, value = assignment.group(1), _unquote(assignment.group(2).strip())
            if key == "CRON_TZ":
                timezone = _check_zone(value, path, number, result)
            else:
                env[key] = value
            continue
        entry = _parse_job_line(line, path, number, result)
        if entry is not None:
            schedule, command = entry
            name = pending_name or f"{stem}-{_short_hash(str(schedule) + command)}"
            result.entries.append(
                CrontabEntry(name, schedule, command, timezone, dict(env), path, number)
            )
        pending_name = None
    _check_unique_names(result)
    return result


def _parse_job_line(
    line: str, path: str, number: int, result: CrontabFile
) -> tuple[CronExpr, str] | None:
    parts = line.split()
    if parts[0].startswith("@"):
        field_counts = [2 if parts[0].lower() == "@every" else 1]
    else:
        field_counts = [7, 6, 5]  # the longest expression that parses, as supercronic does
    error: CronSyntaxError | None = None
    for count in field_counts:
        if len(parts) <= count:
            continue
        try:
            schedule = parse(" ".join(parts[:count]))
        except CronSyntaxError as problem:
            error = problem  # the 5-field reading, tried last, is the likeliest intent
            continue
        return schedule, line.split(None, count)[count]
    reason = str(error) if error else "expected a schedule followed by a command"
    result.problems.append(CrontabProblem(path, number, reason))
    return None


def _check_zone(value: str, path: str, number: int, result: CrontabFile) -> str | None:
    try:
        load_zone(value)
    except UnknownZone as error:
        result.problems.append(CrontabProblem(path, number, str(error)))
        return None
    return value


def _check_unique_names(result: CrontabFile) -> None:
    seen: dict[str, CrontabEntry] = {}
    for entry in result.entries:
        if entry.name in seen:
            first = seen[entry.name]
            result.problems.append(
                CrontabProblem(
                    entry.path,
                    entry.line,
                    f'job name "{entry.name}" already used on line {first.line}',
                )
            )
        seen[entry.name] = entry


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:8]
