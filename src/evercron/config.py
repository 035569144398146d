"""evercron.toml and crontab files -> daemon settings and job definitions.

Everything is checked before anything is used: `load_config` either returns a complete
`Config` or raises `ConfigError` listing every problem found (file, line where known,
reason), so a bad file never half-applies.

```toml
[daemon]                      # every key optional
state_dir = "/var/lib/evercron"
listen = "127.0.0.1:8467"
token = "..."                 # else EVERCRON_TOKEN, else generated into the state dir
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
    "state_dir", "listen", "token", "tls_cert", "tls_key", "shutdown_grace",
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
    jobs: list[Job] = []
    if config_path is not None:
        daemon, jobs = _read_toml(config_path, problems)
    daemon.update({k: v for k, v in (overrides or {}).items() if v is not None})
    settings = _settings(daemon, config_path or "command line", problems)
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
                jobs.append(Job.from_mapping(data, source=str(path)))
            except JobError as error:
                problems.append(Problem(str(path), entry.line, str(error)))
    seen: dict[str, Job] = {}
    for job in jobs:
        if job.name in seen:
            problems.append(
                Problem(
                    job.source,
                    None,
                    f'job name "{job.name}" is also defined in {seen[job.name].source}',
                )
            )
        seen[job.name] = job
    if problems:
        raise ConfigError(problems)
    assert settings is not None
    return Config(settings, jobs)


def _read_toml(path: str, problems: list[Problem]) -> tuple[dict[str, Any], list[Job]]:
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        problems.append(Problem(path, None, f"cannot read: {error.strerror or error}"))
        return {}, []
    except tomllib.TOMLDecodeError as error:
        problems.append(Problem(path, None, f"invalid TOML: {error}"))
        return {}, []
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
        label = (
            f'job "{table.get("name")}"'
            if isinstance(table.get("name"), str)
            else (f"job #{index}")
        )
        try:
            jobs.append(Job.from_mapping(table, source=path))
        except JobError as error:
            problems.append(Problem(path, None, f"{label}: {error}"))
    return dict(daemon), jobs


def _settings(data: Mapping[str, Any], where: str, problems: list[Problem]) -> Settings | None:
    before = len(problems)

    def fail(reason: str) -> None:
        problems.append(Problem(where, None, reason))

    unknown = sorted(set(data) - _DAEMON_KEYS)
    if unknown:
        fail(f"[daemon]: unknown key(s): {', '.join(unknown)}")
    host, port = DEFAULT_HOST, DEFAULT_PORT
    if "listen" in data:
        try:
            host, port = parse_listen(str(data["listen"]))
        except ValueError as error:
            fail(str(error))
    durations = {}
    for key, default in (
        ("shutdown_grace", DEFAULT_SHUTDOWN_GRACE),
        ("upgrade_timeout", DEFAULT_UPGRADE_TIMEOUT),
    ):
        try:
            durations[key] = parse_duration(data[key]) if key in data else default
        except (ValueError, TypeError) as error:
            fail(f"{key}: {error}")
    retention_runs = data.get("retention_runs", 1000)
    if (
        not isinstance(retention_runs, int)
        or isinstance(retention_runs, bool)
        or retention_runs < 1
    ):
        fail("retention_runs: expected a whole number >= 1")
    retention_days = data.get("retention_days", 30)
    if (
        not isinstance(retention_days, int | float)
        or isinstance(retention_days, bool)
        or retention_days <= 0
    ):
        fail("retention_days: expected a number of days > 0")
    tls = (data.get("tls_cert"), data.get("tls_key"))
    if (tls[0] is None) != (tls[1] is None):
        fail("tls_cert and tls_key go together")
    if len(problems) > before:
        return None
    return Settings(
        state_dir=Path(data.get("state_dir") or default_state_dir()),
        host=host,
        port=port,
        token=data.get("token") or None,
        tls_cert=tls[0],
        tls_key=tls[1],
        shutdown_grace=durations["shutdown_grace"],
        upgrade_timeout=durations["upgrade_timeout"],
        retention_runs=retention_runs,
        retention_days=float(retention_days),
    )
