"""The API's JSON shapes (they are also the OpenAPI document's)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator

from evercron.model import JOB_NAME


def _number_or_text(what: str, whole: bool) -> Callable[[object], float | str]:
    """A validator that takes a string, or a number (an integer when `whole`) that is
    finite and no boolean; anything else is refused as "expected `what`"."""

    def validate(value: object) -> float | str:
        if isinstance(value, str):
            return value
        kinds = int if whole else int | float
        if isinstance(value, kinds) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"expected {what}, not {value}")
            return value
        raise ValueError(f"expected {what}")

    return validate


Duration = Annotated[
    float | str,
    PlainValidator(
        _number_or_text("a duration: seconds or a string like 1.5s, 2m, 1h30m", whole=False),
        json_schema_input_type=float | str,
    ),
]
Size = Annotated[
    int | str,
    PlainValidator(
        _number_or_text("a size: bytes or a string like 512KiB, 1MiB, 10MB", whole=True),
        json_schema_input_type=int | str,
    ),
]


def _iso_text(value: object) -> object:
    """Refuse what pydantic would read as a Unix time (a number, or text that is one):
    an API time is ISO 8601."""
    if not isinstance(value, str | dt.datetime) or _is_number(value):
        raise ValueError("expected an ISO 8601 time like 2024-05-01T12:00:00Z")
    return value


def _is_number(value: object) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True


IsoTime = Annotated[dt.datetime, BeforeValidator(_iso_text)]
"""A time as ISO 8601 text (without an offset: UTC), never a number of seconds."""


class _JobSettings(BaseModel):
    """The optional fields of a job, shared by creation and change. Strict: JSON types
    are never converted (`true` is no duration, `"yes"` no boolean, `1.0` no count)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    timezone: str | None = None
    timeout: Duration | None = None
    warn_after: Duration | None = Field(
        default=None, description="A run still running this long makes an `overdue` event"
    )
    concurrency: Literal["allow", "forbid", "replace"] | None = None
    misfire: Literal["skip", "run-once", "run-all"] | None = None
    misfire_grace: Duration | None = None
    jitter: Duration | None = None
    retries: int | None = Field(default=None, ge=0, le=100)
    retry_backoff: Duration | None = None
    env: dict[str, str] | None = None
    cwd: str | None = None
    user: str | None = Field(default=None, description="Refused: config files only")
    group: str | None = Field(default=None, description="Refused: config files only")
    shell: str | None = None
    umask: str | None = None
    nice: int | None = Field(default=None, ge=-20, le=19)
    limits: dict[str, int] | None = None
    kill_grace: Duration | None = None
    kill_mode: Literal["group", "main"] | None = None
    max_output: Size | None = None
    max_processes: int | None = Field(
        default=None, description="Processes (and threads) a run may have at once; 4096"
    )
    max_memory: Size | None = Field(
        default=None, description="Memory of a run, swap included, e.g. 512MiB; no cap"
    )
    log_output: bool | None = None
    enabled: bool | None = None
    description: str | None = Field(default=None, max_length=10_000)
    run_on: list[str] | None = Field(
        default=None, description="Node tags: firings run only on a node with all of them"
    )
    on_lost: Literal["fail", "retry"] | None = Field(
        default=None, description="When its node dies mid-run: fail, or retry on another"
    )


class JobSpec(_JobSettings):
    """A job as clients send it (POST); durations as seconds or `1.5s`, `2m`, `1h30m`."""

    name: str = Field(
        min_length=1,
        max_length=128,
        examples=["nightly-backup"],
        # Documented here, checked (with a clearer message) where every job is read.
        json_schema_extra={"pattern": f"^{JOB_NAME.pattern}$"},
    )
    schedule: str = Field(min_length=1, max_length=1000, examples=["0 3 * * *"])
    command: str = Field(min_length=1, max_length=100_000, examples=["backup --all"])


class JobPatch(_JobSettings):
    """Fields to change on an existing job (PATCH); absent fields stay as they are."""

    schedule: str | None = Field(default=None, min_length=1, max_length=1000)
    command: str | None = Field(default=None, min_length=1, max_length=100_000)


class JobOut(BaseModel):
    """A job as the daemon has it."""

    name: str
    schedule: str
    command: str
    timezone: str | None
    timeout: float | None
    warn_after: float | None
    concurrency: str
    misfire: str
    misfire_grace: float
    jitter: float
    retries: int
    retry_backoff: float
    env: dict[str, str]
    cwd: str | None
    user: str | None
    group: str | None
    shell: str
    umask: str | None
    nice: int | None
    limits: dict[str, int]
    kill_grace: float
    kill_mode: str
    max_output: int
    max_processes: int
    max_memory: int | None = Field(description="Bytes; null: no cap")
    log_output: bool
    enabled: bool
    description: str
    run_on: list[str] = Field(default_factory=list)
    on_lost: str = "fail"
    paused: bool
    source: str
    explanation: str
    next_fire_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class RunOut(BaseModel):
    """One run. Times are ISO 8601 UTC; `signal` is a name like SIGKILL."""

    id: int = Field(description="Never reused")
    job: str
    trigger: Literal["schedule", "manual", "retry", "catch-up"] = Field(
        description="catch-up: a firing missed while no daemon ran (misfire policy)"
    )
    scheduled_at: dt.datetime = Field(description="The firing's time (a manual run's request)")
    started_at: dt.datetime | None = Field(description="When the command was released")
    finished_at: dt.datetime | None
    status: Literal["running", "succeeded", "failed", "timed_out", "killed", "lost", "skipped"]
    exit_code: int | None = Field(description="Null when a signal ended the main process")
    signal: str | None = Field(description="Name of the signal that ended it, e.g. SIGKILL")
    attempt: int = Field(description="1, then 2, 3... for retries")
    pid: int | None = Field(description="The main process")
    cpu_user: float | None = Field(description="Seconds, the whole process tree")
    cpu_system: float | None = Field(description="Seconds, the whole process tree")
    max_rss_kb: int | None = Field(
        description="Peak resident memory of the largest process, KiB (Linux ru_maxrss). "
        "Linux carries the starting process's peak across exec, so small commands show "
        "at least the daemon's own peak at the time they were started"
    )
    output_bytes: int = Field(description="Everything the command wrote, kept or not")
    output_truncated: bool = Field(description="Whether the middle of the output was dropped")
    error: str | None = Field(
        description="Why it failed to start, was skipped or was lost (and what was done "
        "with its leftovers), or what its limits did: processes killed for exceeding "
        "max_memory, forks refused at max_processes"
    )
    retry_of: int | None = Field(description="The original run of a retry")
    node: str | None = Field(default=None, description="The node that ran it")
    fence: int | None = Field(
        default=None, description="Increasing number given at its claim (EVERCRON_FENCE)"
    )


class Generation(BaseModel):
    """One daemon process: the serving one, one draining after an upgrade, or one
    starting as an upgrade's new process."""

    pid: int
    generation: int
    role: Literal["serving", "draining", "starting"]
    version: str
    started_at: dt.datetime
    running_runs: list[int]


class UpgradeOut(BaseModel):
    """A completed hot upgrade: the new process serves; this one drains and exits."""

    status: Literal["upgraded"]
    pid: int
    generation: int
    previous_pid: int
    handover_seconds: float


class LimitsOut(BaseModel):
    """How this machine enforces each job limit: "cgroup v2 pids", "cgroup v1 pids",
    "cgroup v2 memory", "cgroup v1 memory", or "unavailable: <why>" (jobs then run
    without it, and the log says so once per job that sets it)."""

    max_processes: str
    max_memory: str


class NodeOut(BaseModel):
    """One node sharing the store (with SQLite: this one)."""

    name: str
    tags: list[str]
    state: Literal["alive", "draining", "expired", "left"]
    heartbeat_at: dt.datetime = Field(description="Its last lease renewal (database clock)")
    version: str
    pid: int
    running: list[int] = Field(description="Its runs still running, by id")
    lease: float = Field(description="Seconds without renewal after which it counts as dead")
    max_running: int | None


class DisagreementOut(BaseModel):
    """A live node whose config files define a job otherwise than the definition in force
    (the one applied last wins)."""

    job: str
    node: str
    applied_by: str | None = Field(description="The node whose definition is in force")


class ApplyIn(BaseModel):
    """Every job of this node's config and crontab files, as `evercron apply` reads them:
    they replace the jobs this node's files defined before."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[dict[str, object]] = Field(
        description="Job definitions (the fields of a job), each with its `source` file"
    )


class ApplyOut(BaseModel):
    """What applying files changed."""

    added: list[str]
    changed: list[str]
    removed: list[str]


class StatusOut(BaseModel):
    """The daemon's state."""

    version: str
    pid: int
    started_at: dt.datetime
    uptime_seconds: float
    jobs: int
    paused_jobs: int
    running_runs: list[int]
    state_dir: str
    generations: list[Generation]
    timezone: str = Field(description="The daemon's zone: jobs without a timezone use it")
    access: Literal["full", "read-only"] = Field(
        description="What this request's token may do: read-only for the viewer token"
    )
    limits: LimitsOut
    node: str = Field(default="", description="This node's name")
    store: str = Field(default="", description="Where the data lives (never a password)")
    nodes: list[NodeOut] = Field(default_factory=list)
    disagreements: list[DisagreementOut] = Field(default_factory=list)


class ErrorOut(BaseModel):
    """Every error response: one clear sentence."""

    error: str


class FireTime(BaseModel):
    """One fire time of a schedule preview."""

    at: dt.datetime = Field(description="The instant, UTC")
    local: str = Field(description="The same instant in the schedule's zone, ISO 8601")
    zone: str = Field(description="The zone's abbreviation then, e.g. CET or CEST")
    dst_change: bool = Field(
        description="The zone's UTC offset differs from the previous fire time's (for the "
        "first one: from the offset at the preview's start): a daylight saving change lies "
        "between them"
    )


class PreviewOut(BaseModel):
    """What a cron expression means and when it fires next."""

    expression: str
    timezone: str = Field(description="The zone it is read in (the daemon's when not given)")
    explanation: str
    fire_times: list[FireTime]


class RunBrief(BaseModel):
    """A run in a job's status strip: enough to colour, date and link it."""

    id: int
    status: Literal["running", "succeeded", "failed", "timed_out", "killed", "lost", "skipped"]
    scheduled_at: dt.datetime
    duration: float | None = Field(description="Seconds from start to end (null until ended)")


class JobRuns(BaseModel):
    """The newest runs of one job, newest first."""

    job: str
    runs: list[RunBrief]


class NotificationOut(BaseModel):
    """One delivery of a notification event to one channel."""

    id: int
    event: str = Field(description="failed, recovered, succeeded, started, lost, missed or overdue")
    channel: str
    job: str
    run: int = Field(description="The run the event is about")
    state: Literal["pending", "sent", "failed", "suppressed"] = Field(
        description="pending: to be sent or retried; failed: given up; suppressed: over "
        "the channel's max_per_hour"
    )
    summary: bool = Field(
        description="Sent as the summary of the channel's hour (its max_per_hour reached)"
    )
    attempts: int
    last_error: str | None = Field(description="Why the latest failed attempt failed")
    outcome: str | None = Field(description="The receiver's answer: HTTP status or SMTP reply")
    created_at: dt.datetime
    next_attempt_at: dt.datetime | None = Field(description="When a pending one is tried next")
    sent_at: dt.datetime | None


class NotifyTestIn(BaseModel):
    """Which channel to send a test notification through."""

    model_config = ConfigDict(extra="forbid")

    channel: str = Field(max_length=128)


class NotifyTestOut(BaseModel):
    """How the test notification went."""

    channel: str
    ok: bool
    outcome: str = Field(description="The HTTP status or SMTP reply, or why it failed")
