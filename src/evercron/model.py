"""The types every layer shares: jobs, runs, statuses and policies.

Values are validated here, once: a `Job` that exists is a job that can be scheduled.
Durations are seconds (floats), sizes bytes; `evercron.units` reads the user's spellings.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from evercron.cron import CronExpr, CronSyntaxError, parse
from evercron.process.spec import (
    DEFAULT_KILL_GRACE,
    DEFAULT_MAX_OUTPUT,
    DEFAULT_MAX_PROCESSES,
    DEFAULT_SHELL,
    LIMITS,
    MAX_MEMORY_LIMIT,
    MAX_PROCESSES_LIMIT,
)
from evercron.text import printable, text_problem
from evercron.timezones import UnknownZone, load_zone
from evercron.units import MAX_RESOURCE_LIMIT, parse_duration, parse_size

JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
NODE_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:=-]{0,63}")
"""A node tag (and a node name): letters, digits, "_.:=-", at most 64."""
DEFAULT_MISFIRE_GRACE = 60.0
MAX_CATCH_UP = 100
MIN_MAX_MEMORY = 1024 * 1024  # below a MiB not even the shell that starts a command fits


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


@dataclass(frozen=True, slots=True)
class Job:
    """One scheduled command and its policies. Create with `Job.from_mapping` to validate
    user input; the constructor trusts its arguments.

    `max_processes` (processes and threads at once) and `max_memory` (bytes, swap
    included; None: no cap) limit each run through cgroups where the machine has the
    controllers (`evercron.process.controllers`)."""

    name: str
    schedule: CronExpr
    command: str
    timezone: str | None = None
    timeout: float | None = None
    warn_after: float | None = None
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
    max_processes: int = DEFAULT_MAX_PROCESSES
    max_memory: int | None = None
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
        return load_zone(self.timezone) if self.timezone else None

    def to_stored(self) -> dict[str, Any]:
        """What the store keeps: `to_mapping()` without the settings added since the
        store's first release where they are at their default (`from_mapping` reads
        either back to an equal job)."""
        return {
            key: value
            for key, value in self.to_mapping().items()
            if key not in _ADDED_SETTINGS or value != _ADDED_SETTINGS[key]
        }

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
            "warn_after": self.warn_after,
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
            "max_processes": self.max_processes,
            "max_memory": self.max_memory,
            "log_output": self.log_output,
            "enabled": self.enabled,
            "description": self.description,
            # Left out at their defaults, so that a release that does not know them (a
            # rolling upgrade) still reads every job that does not use them.
            **({"run_on": list(self.run_on)} if self.run_on else {}),
            **({"on_lost": str(self.on_lost)} if self.on_lost is not OnLost.FAIL else {}),
        }


_KNOWN_FIELDS = frozenset(Job.__dataclass_fields__) - {"source"}
_ADDED_SETTINGS: Mapping[str, Any] = {"max_processes": DEFAULT_MAX_PROCESSES, "max_memory": None}
"""Settings added after the store's first release, with their defaults: a job stores them
only when it changes them, so an older release (after a rollback) still reads every job
that leaves them alone - its reader refuses fields it does not know."""


class _JobReader:
    """Reads one job from loosely typed input with precise messages.

    Every text value (names of env variables too) must be UTF-8 encodable and free of
    NUL: the store, a process's arguments and environment and every JSON answer need
    that. Text is checked before any message quotes it."""

    def __init__(self, data: Mapping[str, Any], source: str) -> None:
        self.data = data
        self.source = source

    def read(self) -> Job:
        problems: list[str] = []
        unknown = sorted(set(self.data) - _KNOWN_FIELDS)
        if unknown:
            problems.append(f"unknown field(s): {printable(', '.join(map(str, unknown)))}")
        fields: dict[str, Any] = {}
        readers: dict[str, Callable[[], Any]] = {
            "name": self._name,
            "schedule": self._schedule,
            "command": lambda: self._text("command", required=True),
            "timezone": self._timezone,
            "timeout": lambda: self._duration("timeout", None, positive=True),
            "warn_after": lambda: self._duration("warn_after", None, positive=True),
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
            "max_processes": lambda: self._integer(
                "max_processes", DEFAULT_MAX_PROCESSES, 1, MAX_PROCESSES_LIMIT
            ),
            "max_memory": self._max_memory,
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
                load_zone(timezone)
            except UnknownZone as error:
                raise JobError(f"timezone: {error}") from None
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
        problem = text_problem(value)
        if problem is not None:
            raise JobError(f"{key}: {problem}")
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

    def _size(self, key: str, default: int, at_most: int | None = None) -> int:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise JobError(f"{key}: expected a size like 512KiB, 1MiB, 10MB")
        try:
            return parse_size(value) if at_most is None else parse_size(value, at_most)
        except ValueError as error:
            raise JobError(f"{key}: {error}") from None

    def _max_memory(self) -> int | None:
        if self.data.get("max_memory") is None:
            return None
        # A memory limit may well be above the 1 GiB that bounds other sizes.
        size = self._size("max_memory", 0, at_most=MAX_MEMORY_LIMIT)
        if size < MIN_MAX_MEMORY:
            raise JobError(f"max_memory: must be at least 1MiB, got {size} bytes")
        return size

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
            raise JobError(f'{key}: "{printable(str(value))}" is not one of {allowed}') from None

    def _env(self) -> dict[str, str]:
        value = self.data.get("env") or {}
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise JobError("env: expected a table of strings")
        for name, text in value.items():
            if not name or "=" in name or text_problem(name) is not None:
                raise JobError(
                    f'env: "{printable(name)}" is not a variable name (empty, "=", NUL or '
                    "not valid Unicode)"
                )
            problem = text_problem(text)
            if problem is not None:
                raise JobError(f"env: {name} {problem}")
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
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise TypeError(value)
            umask = int(value, 8) if isinstance(value, str) else value
        except (TypeError, ValueError):
            shown = printable(str(value))
            raise JobError(f'umask: "{shown}" is not an octal number like "022"') from None
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
                known = ", ".join(LIMITS)
                raise JobError(f'limits: unknown limit "{printable(str(name))}" (known: {known})')
            if (
                not isinstance(limit, int)
                or isinstance(limit, bool)
                or not 0 <= limit <= MAX_RESOURCE_LIMIT
            ):
                raise JobError(
                    f"limits.{name}: expected a whole number from 0 to {MAX_RESOURCE_LIMIT}"
                )
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


class NotifyEvent(enum.StrEnum):
    """What a notification reports about a run."""

    FAILED = "failed"
    """It ended failed, timed_out or killed."""
    RECOVERED = "recovered"
    """It succeeded and the job's previous outcome was a failure."""
    SUCCEEDED = "succeeded"
    STARTED = "started"
    LOST = "lost"
    """The daemon process that ran it died."""
    MISSED = "missed"
    """A firing was recorded skipped (missed, overlap refused, the daemon stopping)."""
    OVERDUE = "overdue"
    """It is still running past its job's `warn_after` (once per run)."""


FAILURES = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.KILLED})
OUTCOMES = FAILURES | {RunStatus.SUCCEEDED}
"""The statuses that set a job's state for notifications (`lost` and `skipped` do not:
the daemon, not the command, decided those)."""


@dataclass(frozen=True)
class EventFact:
    """One event a run's result makes. `repeat` says the outcome is the same as the job's
    previous one: channels that notify on state changes (the default) leave it out."""

    event: NotifyEvent
    repeat: bool = False


@functools.cache
def possible_events(status: RunStatus) -> frozenset[NotifyEvent]:
    """Every event `result_events` can make for a run that ended with `status`, whatever
    ended before it: when none of them is wanted, a result needs no look at the past."""
    return frozenset(
        fact.event for previous in (None, *RunStatus) for fact in result_events(status, previous)
    )


def result_events(status: RunStatus, previous: RunStatus | None) -> list[EventFact]:
    """The events of a run that ended with `status`, given the status of the job's latest
    earlier run that ended with one of `OUTCOMES` (None when there is none).

    A failure after a failure is a repeat `failed`; a success after a failure is
    `succeeded` and `recovered`; a success after a success is a repeat `succeeded`.
    `lost` and `skipped` (-> `missed`) are never repeats. `running` makes no event.
    """
    if status is RunStatus.SUCCEEDED:
        facts = [EventFact(NotifyEvent.SUCCEEDED, repeat=previous is RunStatus.SUCCEEDED)]
        if previous in FAILURES:
            facts.append(EventFact(NotifyEvent.RECOVERED))
        return facts
    if status in FAILURES:
        return [EventFact(NotifyEvent.FAILED, repeat=previous in FAILURES)]
    if status is RunStatus.LOST:
        return [EventFact(NotifyEvent.LOST)]
    if status is RunStatus.SKIPPED:
        return [EventFact(NotifyEvent.MISSED)]
    return []
