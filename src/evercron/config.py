"""evercron.toml and crontab files -> daemon settings and job definitions.

Everything is checked before anything is used: `load_config` either returns a complete
`Config` or raises `ConfigError` listing every problem found (file, line where known,
reason), so a bad file never half-applies.

```toml
[daemon]                      # every key optional
state_dir = "/var/lib/evercron"
listen = "127.0.0.1:8467"
token = "..."                 # else EVERCRON_TOKEN, else generated into the state dir
viewer_token = "..."          # read-only; else EVERCRON_VIEWER_TOKEN, else none
tls_cert = "cert.pem"
tls_key = "key.pem"
shutdown_grace = "30s"
retention_runs = 1000         # finished runs kept per job
retention_days = 30

[[job]]
name = "backup"
schedule = "0 3 * * *"
command = "backup --all"
```
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evercron.crontab import read_crontab
from evercron.model import Job, JobError
from evercron.units import parse_duration

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8467
DEFAULT_SHUTDOWN_GRACE = 30.0
DEFAULT_UPGRADE_TIMEOUT = 60.0
_DAEMON_KEYS = {
    "state_dir", "listen", "token", "viewer_token", "tls_cert", "tls_key", "shutdown_grace",
    "upgrade_timeout", "retention_runs", "retention_days",
}  # fmt: skip


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
class Settings:
    """How the daemon runs (defaults per DESIGN.md section 4)."""

    state_dir: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    viewer_token: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    upgrade_timeout: float = DEFAULT_UPGRADE_TIMEOUT
    retention_runs: int = 1000
    retention_days: float = 30.0

    @property
    def listen(self) -> str:
        """host:port as given to --listen."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Config:
    """Settings plus every job defined in config and crontab files."""

    settings: Settings
    jobs: list[Job] = field(default_factory=list)


def default_state_dir() -> Path:
    """/var/lib/evercron for root, else $XDG_STATE_HOME/evercron (~/.local/state)."""
    if os.geteuid() == 0:
        return Path("/var/lib/evercron")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "evercron"


def parse_listen(text: str) -> tuple[str, int]:
    """Split HOST:PORT (IPv6 as [::1]:PORT); raise ValueError with the reason."""
    host, separator, port_text = text.rpartition(":")
    if not separator or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f'listen address "{text}": expected HOST:PORT with a port 0-65535')
    host = host.strip("[]") or DEFAULT_HOST
    return host, int(port_text)


def load_config(
    config_path: str | None = None,
    crontabs: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read the config file (optional) and crontabs; command-line `overrides` (state_dir,
    listen) win over the file. Raises `ConfigError` with every problem."""
    problems: list[Problem] = []
    daemon: dict[str, Any] = {}
    placed: list[tuple[Job, int | None]] = []  # each job with its line
    key_lines: dict[str, int] = {}
    if config_path is not None:
        daemon, placed, key_lines = _read_toml(config_path, problems)
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
    return Config(settings, [job for job, _ in placed])


def _read_toml(
    path: str, problems: list[Problem]
) -> tuple[dict[str, Any], list[tuple[Job, int | None]], dict[str, int]]:
    """The [daemon] table, the jobs with the line of their [[job]] header, and the line
    of each [daemon] key; problems are added to `problems`."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
        data = tomllib.loads(raw.decode())
    except OSError as error:
        problems.append(Problem(path, None, f"cannot read: {error.strerror or error}"))
        return {}, [], {}
    except UnicodeDecodeError:
        problems.append(Problem(path, None, "invalid TOML: not UTF-8 text"))
        return {}, [], {}
    except tomllib.TOMLDecodeError as error:
        problems.append(Problem(path, None, f"invalid TOML: {error}"))
        return {}, [], {}
    job_lines, key_lines = _toml_lines(raw.decode())
    unknown = sorted(set(data) - {"daemon", "job"})
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
    return dict(daemon), jobs, key_lines


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
    before = len(problems)

    def fail(reason: str, key: str | None = None) -> None:
        if key is not None and key in from_command_line:
            problems.append(Problem(f"--{key.replace('_', '-')}", None, reason))
        else:
            problems.append(Problem(where, (lines or {}).get(key or ""), reason))

    unknown = sorted(set(data) - _DAEMON_KEYS)
    if unknown:
        fail(f"[daemon]: unknown key(s): {', '.join(unknown)}", unknown[0])
    host, port = DEFAULT_HOST, DEFAULT_PORT
    if "listen" in data:
        try:
            host, port = parse_listen(str(data["listen"]))
        except ValueError as error:
            fail(str(error), "listen")
    durations = {}
    for key, default in (
        ("shutdown_grace", DEFAULT_SHUTDOWN_GRACE),
        ("upgrade_timeout", DEFAULT_UPGRADE_TIMEOUT),
    ):
        try:
            durations[key] = parse_duration(data[key]) if key in data else default
        except (ValueError, TypeError) as error:
            fail(f"{key}: {error}", key)
    retention_runs = data.get("retention_runs", 1000)
    if (
        not isinstance(retention_runs, int)
        or isinstance(retention_runs, bool)
        or retention_runs < 1
    ):
        fail("retention_runs: expected a whole number >= 1", "retention_runs")
    retention_days = data.get("retention_days", 30)
    if (
        not isinstance(retention_days, int | float)
        or isinstance(retention_days, bool)
        or retention_days <= 0
    ):
        fail("retention_days: expected a number of days > 0", "retention_days")
    viewer_token = data.get("viewer_token")
    if viewer_token is not None and (not isinstance(viewer_token, str) or not viewer_token):
        fail("viewer_token: expected a non-empty string", "viewer_token")
    tls = (data.get("tls_cert"), data.get("tls_key"))
    if (tls[0] is None) != (tls[1] is None):
        fail("tls_cert and tls_key go together", "tls_cert" if tls[0] else "tls_key")
    if len(problems) > before:
        return None
    return Settings(
        state_dir=Path(data.get("state_dir") or default_state_dir()),
        host=host,
        port=port,
        token=data.get("token") or None,
        viewer_token=viewer_token,
        tls_cert=tls[0],
        tls_key=tls[1],
        shutdown_grace=durations["shutdown_grace"],
        upgrade_timeout=durations["upgrade_timeout"],
        retention_runs=retention_runs,
        retention_days=float(retention_days),
    )
