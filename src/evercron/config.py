"""evercron.toml and crontab files -> daemon settings and job definitions.

Everything is checked before anything is used: `load_config` either returns a complete
`Config` or raises `ConfigError` listing every problem found (file, line where known,
reason), so a bad file never half-applies.

Every key, its type, default and an example: docs/CONFIGURATION.md.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evercron.crontab import read_crontab
from evercron.model import Job, JobError
from evercron.notify.channels import Channel, Smtp, read_channels
from evercron.settings import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    Settings,
    default_state_dir,
    parse_listen,
    read_settings,
)

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "Config",
    "ConfigError",
    "Problem",
    "Settings",
    "default_state_dir",
    "load_config",
    "parse_listen",
]


@dataclass(frozen=True)
class Problem:
    """One reason a configuration cannot be used."""

    path: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.reason}"


class ConfigError(ValueError):
    """The configuration is invalid; `problems` lists every reason."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Config:
    """Settings plus every job defined in config and crontab files, and the notification
    channels (with the SMTP server mail channels use)."""

    settings: Settings
    jobs: list[Job] = field(default_factory=list)
    channels: list[Channel] = field(default_factory=list)
    smtp: Smtp | None = None


def load_config(
    config_path: str | None = None,
    crontabs: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read the config file (optional) and crontabs; command-line `overrides` (state_dir,
    listen, log_format) win over the file. Raises `ConfigError` with every problem."""
    problems: list[Problem] = []
    daemon: dict[str, Any] = {}
    placed: list[tuple[Job, int | None]] = []  # each job with its line
    key_lines: dict[str, int] = {}
    channels: tuple[list[Channel], Smtp | None] = ([], None)
    if config_path is not None:
        daemon, placed, key_lines, channels = _read_toml(config_path, problems)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    daemon.update(given)
    key_lines = {k: line for k, line in key_lines.items() if k not in given}
    settings = _settings(daemon, config_path or "command line", problems, key_lines, set(given))
    for path in crontabs:
        parsed = read_crontab(path)
        problems.extend(Problem(p.path, p.line or None, p.reason) for p in parsed.problems)
        for entry in parsed.entries:
            data: dict[str, Any] = {
                "name": entry.name,
                "schedule": str(entry.schedule),
                "command": entry.command,
                "timezone": entry.timezone,
                "env": entry.env,
            }
            if "SHELL" in entry.env:
                data["shell"] = entry.env["SHELL"]
            try:
                job = Job.from_mapping(data, source=str(path))
            except JobError as error:
                problems.extend(Problem(str(path), entry.line, p) for p in error.problems)
                continue
            placed.append((job, entry.line))
    seen: dict[str, Job] = {}
    for job, line in placed:
        if job.name in seen:
            problems.append(
                Problem(
                    job.source,
                    line,
                    f'job name "{job.name}" is also defined in {seen[job.name].source}',
                )
            )
        seen[job.name] = job
    if problems:
        raise ConfigError(problems)
    assert settings is not None
    return Config(settings, [job for job, _ in placed], *channels)


_Channels = tuple[list[Channel], Smtp | None]


def _read_toml(
    path: str, problems: list[Problem]
) -> tuple[dict[str, Any], list[tuple[Job, int | None]], dict[str, int], _Channels]:
    """The [daemon] table, the jobs with the line of their [[job]] header, the line of
    each [daemon] key, and the notification channels; problems are added to `problems`."""
    nothing: _Channels = ([], None)
    try:
        with open(path, "rb") as file:
            raw = file.read()
        data = tomllib.loads(raw.decode())
    except OSError as error:
        problems.append(Problem(path, None, f"cannot read: {error.strerror or error}"))
        return {}, [], {}, nothing
    except UnicodeDecodeError:
        problems.append(Problem(path, None, "invalid TOML: not UTF-8 text"))
        return {}, [], {}, nothing
    except tomllib.TOMLDecodeError as error:
        problems.append(Problem(path, None, f"invalid TOML: {error}"))
        return {}, [], {}, nothing
    job_lines, key_lines = _toml_lines(raw.decode())
    unknown = sorted(set(data) - {"daemon", "job", "notify", "smtp"})
    if unknown:
        problems.append(Problem(path, None, f"unknown section(s): {', '.join(unknown)}"))
    daemon = data.get("daemon", {})
    if not isinstance(daemon, dict):
        problems.append(Problem(path, None, "[daemon] must be a table"))
        daemon = {}
    tables = data.get("job", [])
    if not isinstance(tables, list):
        problems.append(Problem(path, None, "jobs are [[job]] tables"))
        tables = []
    jobs = []
    for index, table in enumerate(tables, start=1):
        line = job_lines[index - 1] if index <= len(job_lines) else None
        label = (
            f'job "{table.get("name")}"'
            if isinstance(table.get("name"), str)
            else (f"job #{index}")
        )
        try:
            jobs.append((Job.from_mapping(table, source=path), line))
        except JobError as error:
            problems.extend(Problem(path, line, f"{label}: {p}") for p in error.problems)
    return dict(daemon), jobs, key_lines, _read_notify(path, raw.decode(), data, problems)


def _read_notify(path: str, text: str, data: dict[str, Any], problems: list[Problem]) -> _Channels:
    """The [[notify]] channels and the [smtp] table; problems are added to `problems`."""
    tables = data.get("notify", [])
    if not isinstance(tables, list):
        problems.append(Problem(path, None, "notification channels are [[notify]] tables"))
        tables = []
    smtp_line = next(iter(_header_lines(text, "smtp")), None)
    channels, smtp, found = read_channels(
        tables, data.get("smtp"), _header_lines(text, "notify"), smtp_line
    )
    problems.extend(Problem(path, line, reason) for line, reason in found)
    return channels, smtp


def _header_lines(text: str, section: str) -> list[int]:
    """The lines of the `[section]` or `[[section]]` headers, in order (as `_toml_lines`)."""
    return [
        number
        for number, line in enumerate(text.splitlines(), start=1)
        if (header := _TABLE_HEADER.match(line)) and header.group(1) == section
    ]


_TABLE_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def _toml_lines(text: str) -> tuple[list[int], dict[str, int]]:
    """Where things are in a config file (tomllib tells values, not lines): the line of
    each [[job]] header in order, and of each key of [daemon]. Read line by line, so a
    header-like line inside a multi-line string could mislead it; only messages use it."""
    job_lines: list[int] = []
    key_lines: dict[str, int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TABLE_HEADER.match(line)
        if header:
            section = header.group(1)
            if section == "job" and line.strip().startswith("[["):
                job_lines.append(number)
            continue
        key = _KEY.match(line)
        if key and section == "daemon":
            key_lines.setdefault(key.group(1), number)
    return job_lines, key_lines


def _settings(
    data: Mapping[str, Any],
    where: str,
    problems: list[Problem],
    lines: Mapping[str, int] | None = None,
    from_command_line: frozenset[str] | set[str] = frozenset(),
) -> Settings | None:
    def fail(reason: str, key: str) -> None:
        if key in from_command_line:
            problems.append(Problem(f"--{key.replace('_', '-')}", None, reason))
        else:
            problems.append(Problem(where, (lines or {}).get(key), reason))

    return read_settings(data, fail)
