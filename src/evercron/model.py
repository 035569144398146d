"""The types every layer shares: jobs, runs, statuses and policies.

Values are validated here, once: a `Job` that exists is a job that can be scheduled.
Durations are seconds (floats), sizes bytes; `evercron.units` reads the user's spellings.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from evercron.cron import CronExpr, CronSyntaxError, parse
from evercron.process.spec import DEFAULT_KILL_GRACE, DEFAULT_MAX_OUTPUT, DEFAULT_SHELL, LIMITS
from evercron.units import parse_duration, parse_size

JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
NODE_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:=-]{0,63}")
"""A node tag (and a node name): letters, digits, "_.:=-", at most 64."""
DEFAULT_MISFIRE_GRACE = 60.0
MAX_CATCH_UP = 100


class RunStatus(enum.StrEnum):
    """Where a run stands. `killed` only when evercron killed it; `lost` when the daemon
    process that owned it died; `skipped` when a policy decided not to start it."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    KILLED = "killed"
    LOST = "lost"
    SKIPPED = "skipped"

    @property
    def finished(self) -> bool:
        """Whether the run has ended (every status but `running`)."""
        return self is not RunStatus.RUNNING


class Trigger(enum.StrEnum):
    """Why a run exists."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    RETRY = "retry"
    CATCH_UP = "catch-up"


class Concurrency(enum.StrEnum):
    """What a firing does while an earlier run of the same job is still running."""

    ALLOW = "allow"
    FORBID = "forbid"
    REPLACE = "replace"


class Misfire(enum.StrEnum):
    """What happens to firings missed (more than `misfire_grace` late), e.g. while stopped."""

    SKIP = "skip"
    RUN_ONCE = "run-once"
    RUN_ALL = "run-all"


class OnLost(enum.StrEnum):
    """What happens when a run is `lost` because its node stopped renewing its lease."""

    FAIL = "fail"
    """Nothing more: the firing ran at most once."""
    RETRY = "retry"
    """Its next attempt runs on another node (counting against `retries`)."""


class JobError(ValueError):
    """A job definition that cannot be used; the message names the field. `problems`
    lists every problem found (one per field), the message joins them."""

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Job:
    """One scheduled command and its policies. Create with `Job.from_mapping` to validate
    user input; the constructor trusts its arguments."""

    name: str
    schedule: CronExpr
    command: str
    timezone: str | None = None
    timeout: float | None = None
    concurrency: Concurrency = Concurrency.FORBID
    misfire: Misfire = Misfire.RUN_ONCE
    misfire_grace: float = DEFAULT_MISFIRE_GRACE
    jitter: float = 0.0
    retries: int = 0
    retry_backoff: float = 10.0
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    user: str | None = None
    group: str | None = None
    shell: str = DEFAULT_SHELL
    umask: int | None = None
    nice: int | None = None
    limits: Mapping[str, int] = field(default_factory=dict)
    kill_grace: float = DEFAULT_KILL_GRACE
    kill_mode: str = "group"
    max_output: int = DEFAULT_MAX_OUTPUT
    log_output: bool = False
    enabled: bool = True
    description: str = ""
    run_on: tuple[str, ...] = ()
    """Node tags: its firings run only on a node that has all of them."""
    on_lost: OnLost = OnLost.FAIL
    source: str = "api"

    @property
    def zone(self) -> dt.tzinfo | None:
        """The job's time zone, or None for the system's."""
        return zoneinfo.ZoneInfo(self.timezone) if self.timezone else None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "api") -> Job:
        """Validate user input (config table or API body); raise `JobError` listing every
        problem, each naming its field."""
        return _JobReader(data, source).read()

    def to_mapping(self) -> dict[str, Any]:
        """A JSON-ready description that `from_mapping` reads back to an equal job."""
        return {
            "name": self.name,
            "schedule": str(self.schedule),
            "command": self.command,
            "timezone": self.timezone,
            "timeout": self.timeout,
            "concurrency": str(self.concurrency),
            "misfire": str(self.misfire),
            "misfire_grace": self.misfire_grace,
            "jitter": self.jitter,
            "retries": self.retries,
            "retry_backoff": self.retry_backoff,
            "env": dict(self.env),
            "cwd": self.cwd,
            "user": self.user,
            "group": self.group,
            "shell": self.shell,
            "umask": None if self.umask is None else f"{self.umask:04o}",
            "nice": self.nice,
            "limits": dict(self.limits),
            "kill_grace": self.kill_grace,
            "kill_mode": self.kill_mode,
            "max_output": self.max_output,
            "log_output": self.log_output,
            "enabled": self.enabled,
            "description": self.description,
            # Left out at their defaults, so that a release that does not know them (a
            # rolling upgrade) still reads every job that does not use them.
            **({"run_on": list(self.run_on)} if self.run_on else {}),
            **({"on_lost": str(self.on_lost)} if self.on_lost is not OnLost.FAIL else {}),
        }


_KNOWN_FIELDS = frozenset(Job.__dataclass_fields__) - {"source"}


class _JobReader:
    """Reads one job from loosely typed input with precise messages."""

    def __init__(self, data: Mapping[str, Any], source: str) -> None:
        self.data = data
        self.source = source

    def read(self) -> Job:
        problems: list[str] = []
        unknown = sorted(set(self.data) - _KNOWN_FIELDS)
        if unknown:
            problems.append(f"unknown field(s): {', '.join(unknown)}")
        fields: dict[str, Any] = {}
        readers: dict[str, Callable[[], Any]] = {
            "name": self._name,
            "schedule": self._schedule,
            "command": lambda: self._text("command", required=True),
            "timezone": self._timezone,
            "timeout": lambda: self._duration("timeout", None, positive=True),
            "concurrency": lambda: self._choice("concurrency", Concurrency, Concurrency.FORBID),
            "misfire": lambda: self._choice("misfire", Misfire, Misfire.RUN_ONCE),
            "misfire_grace": lambda: self._duration("misfire_grace", DEFAULT_MISFIRE_GRACE) or 0.0,
            "jitter": lambda: self._duration("jitter", 0.0) or 0.0,
            "retries": lambda: self._integer("retries", 0, 0, 100),
            "retry_backoff": lambda: self._duration("retry_backoff", 10.0) or 0.0,
            "env": self._env,
            "cwd": lambda: self._optional_text("cwd"),
            "user": lambda: self._optional_text("user"),
            "group": lambda: self._optional_text("group"),
            "shell": lambda: self._text("shell") or DEFAULT_SHELL,
            "umask": self._umask,
            "nice": lambda: self._optional_integer("nice", -20, 19),
            "limits": self._limits,
            "kill_grace": lambda: self._duration("kill_grace", DEFAULT_KILL_GRACE) or 0.0,
            "kill_mode": self._kill_mode,
            "max_output": lambda: self._size("max_output", DEFAULT_MAX_OUTPUT),
            "log_output": lambda: self._boolean("log_output", False),
            "enabled": lambda: self._boolean("enabled", True),
            "description": lambda: self._text("description"),
            "run_on": self._run_on,
            "on_lost": lambda: self._choice("on_lost", OnLost, OnLost.FAIL),
        }
        for key, reader in readers.items():
            try:
                fields[key] = reader()
            except JobError as error:
                problems.extend(error.problems)
        if problems:
            raise JobError(*problems)
        return Job(**fields, source=self.source)

    def _name(self) -> str:
        name = self._text("name", required=True)
        if not JOB_NAME.fullmatch(name):
            raise JobError(
                f'name "{name}": use letters, digits, ".", "_" and "-" (at most 128, '
                "starting with a letter or digit)"
            )
        return name

    def _schedule(self) -> CronExpr:
        try:
            return parse(self._text("schedule", required=True))
        except CronSyntaxError as error:
            raise JobError(f"schedule: {error}") from None

    def _timezone(self) -> str | None:
        timezone = self._optional_text("timezone")
        if timezone is not None:
            try:
                zoneinfo.ZoneInfo(timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise JobError(f'timezone: unknown time zone "{timezone}"') from None
        return timezone

    def _kill_mode(self) -> str:
        kill_mode = self._text("kill_mode") or "group"
        if kill_mode not in ("group", "main"):
            raise JobError(f'kill_mode: "{kill_mode}" is not one of group, main')
        return kill_mode

    def _text(self, key: str, required: bool = False) -> str:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise JobError(f"{key}: required")
            return ""
        if not isinstance(value, str):
            raise JobError(f"{key}: expected a string, got {type(value).__name__}")
        if "\0" in value:
            raise JobError(f"{key}: must not contain a NUL character")
        return value

    def _optional_text(self, key: str) -> str | None:
        return self._text(key) or None

    def _duration(self, key: str, default: float | None, positive: bool = False) -> float | None:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise JobError(f"{key}: expected a duration like 90, 1.5s, 2m, 1h30m")
        try:
            seconds = parse_duration(value)
        except ValueError as error:
            raise JobError(f"{key}: {error}") from None
        if positive and seconds <= 0:
            raise JobError(f"{key}: must be more than 0")
        return seconds

    def _size(self, key: str, default: int) -> int:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise JobError(f"{key}: expected a size like 512KiB, 1MiB, 10MB")
        try:
            return parse_size(value)
        except ValueError as error:
            raise JobError(f"{key}: {error}") from None

    def _integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self._optional_integer(key, low, high)
        return default if value is None else value

    def _optional_integer(self, key: str, low: int, high: int) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise JobError(f"{key}: expected a whole number from {low} to {high}")
        return value

    def _boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise JobError(f"{key}: expected true or false")
        return value

    def _choice(self, key: str, kind: type[enum.StrEnum], default: Any) -> Any:
        value = self.data.get(key)
        if value is None:
            return default
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            raise JobError(f'{key}: "{value}" is not one of {allowed}') from None

    def _env(self) -> dict[str, str]:
        value = self.data.get("env") or {}
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise JobError("env: expected a table of strings")
        for name, text in value.items():
            if not name or "=" in name or "\0" in name:
                raise JobError(f'env: "{name}" is not a variable name (empty, "=" or NUL)')
            if "\0" in text:
                raise JobError(f"env: {name} must not contain a NUL character")
        return dict(value)

    def _run_on(self) -> tuple[str, ...]:
        value = self.data.get("run_on") or []
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise JobError('run_on: expected a list of node tags like ["gpu", "eu"]')
        for tag in value:
            if not isinstance(tag, str) or not NODE_TAG.fullmatch(tag):
                raise JobError(
                    f'run_on: "{tag}" is not a node tag (letters, digits, "_.:=-", at most 64)'
                )
        return tuple(dict.fromkeys(value))

    def _umask(self) -> int | None:
        value = self.data.get("umask")
        if value is None:
            return None
        try:
            umask = int(value, 8) if isinstance(value, str) else int(value)
        except (TypeError, ValueError):
            raise JobError(f'umask: "{value}" is not an octal number like "022"') from None
        if not 0 <= umask <= 0o777:
            raise JobError(f'umask: "{value}" is out of range 000-777')
        return umask

    def _limits(self) -> dict[str, int]:
        value = self.data.get("limits") or {}
        if not isinstance(value, Mapping):
            raise JobError("limits: expected a table like { nofile = 1024 }")
        limits = {}
        for name, limit in value.items():
            if name not in LIMITS:
                raise JobError(f'limits: unknown limit "{name}" (known: {", ".join(LIMITS)})')
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
                raise JobError(f"limits.{name}: expected a whole number >= 0")
            limits[name] = limit
        return limits


@dataclass(frozen=True)
class Run:
    """One run of a job as stored. Times are aware UTC datetimes."""

    id: int
    job: str
    trigger: Trigger
    scheduled_at: dt.datetime
    attempt: int
    status: RunStatus
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    exit_code: int | None = None
    signal: str | None = None
    pid: int | None = None
    cpu_user: float | None = None
    cpu_system: float | None = None
    max_rss_kb: int | None = None
    output_bytes: int = 0
    output_truncated: bool = False
    error: str | None = None
    retry_of: int | None = None
    owner: str | None = None
    node: str | None = None
    """The name of the node that ran it (None: recorded before nodes had names)."""
    fence: int | None = None
    """Increasing number given at its claim: its result is accepted only with it."""
