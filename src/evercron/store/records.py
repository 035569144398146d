"""What the store takes and gives back, whatever the backend.

These records are the vocabulary of the `Store` protocol (`evercron.store.api`): the
scheduler, the launcher, the HTTP handlers and the daemon speak only this, never a
backend's rows.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from evercron.model import Job, NotifyEvent, Run, RunStatus, Trigger


class StoreError(RuntimeError):
    """The store cannot be used as asked (unreadable file, schema newer than this
    version, a definition that does not fit): retrying will not help."""


class StoreUnavailable(StoreError):
    """The store refused a call for a passing reason (disk full, locked by another
    process, connection lost): the same call may succeed later (`evercron.store.retry`)."""


@dataclass(frozen=True)
class StoredJob:
    """A job as the store keeps it."""

    job: Job
    paused: bool
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class BrokenJob:
    """A stored job row that no longer reads as a valid job (written by an older
    release, or by hand): listed with the reason instead of breaking every listing."""

    name: str
    error: str


@dataclass(frozen=True)
class Disagreement:
    """A live node whose files define a job otherwise than the definition in force
    (the one applied last), or define one that is not stored."""

    job: str
    node: str
    applied_by: str | None
    """Whose definition is in force (None: the job is not stored, or nobody's)."""


@dataclass(frozen=True)
class StoredChunk:
    """One stored piece of a run's output, `offset` bytes into it."""

    offset: int
    stream: str
    at: float
    data: bytes


@dataclass(frozen=True)
class Claim:
    """A firing to own: the run row keyed by (job, scheduled_at, attempt) is inserted
    unless it exists (manual runs are never keyed: each is a new row).

    - `exclusive` (concurrency `forbid`): while another run of the job is running the
      firing is recorded `skipped` instead, naming that run - whichever process holds it.
    - `replace` (concurrency `replace`): every other running run of the job is asked to
      end (its owner kills it), in the same transaction.
    - `skip_reason`: record the firing as `skipped` with this reason (a missed firing, a
      paused job's retry): nothing runs, nothing is silent.
    - `token`: see below.
    - `request`: the trigger request (`TriggerRequest`) this manual claim answers: it is
      made only while nobody answered the request (else nothing is written and the
      outcome is `Claimed(None)`), and the request then names its run.
    """

    job: str
    scheduled_at: dt.datetime
    trigger: Trigger
    attempt: int = 1
    retry_of: int | None = None
    exclusive: bool = False
    replace: bool = False
    skip_reason: str | None = None
    token: str | None = None
    """Names this claim (not the firing): a store whose answer can be lost after its
    commit (a network between) finds the row a retry of the same claim wrote, instead of
    taking it for another process's - or, for a manual run, writing a second one."""
    request: int | None = None


@dataclass(frozen=True)
class Claimed:
    """What became of a `Claim`.

    `run_id` None: another process owns that firing already (nothing was written).
    Else the run row exists: `status` is `running` (the caller owns the firing and must
    bring it to a final status) or `skipped` (recorded finished with `error`).
    `replaced` lists the runs asked to end for a `replace` claim.
    """

    run_id: int | None
    status: RunStatus = RunStatus.RUNNING
    error: str | None = None
    replaced: tuple[int, ...] = ()
    fence: int | None = None
    """The run's fence number (see `Store.finish`)."""

    @property
    def owned(self) -> bool:
        """Whether the caller now owns a running run it must start."""
        return self.run_id is not None and self.status is RunStatus.RUNNING


@dataclass(frozen=True)
class RunEnd:
    """How a run ended. `started_at`, when given, replaces the start recorded at spawn
    (a held command starts when it is released)."""

    status: RunStatus
    finished_at: dt.datetime
    started_at: dt.datetime | None = None
    exit_code: int | None = None
    signal: str | None = None
    cpu_user: float | None = None
    cpu_system: float | None = None
    max_rss_kb: int | None = None
    output_bytes: int = 0
    output_truncated: bool = False
    error: str | None = None


@dataclass(frozen=True)
class RunningRun:
    """A run still marked running, with what identifies its process for good."""

    run: Run
    pid_start_ticks: int | None
    cgroups: tuple[str, ...] = ()
    """The cgroup directories recorded by `Store.mark_started`."""


@dataclass(frozen=True)
class RunQuery:
    """Which runs to list: newest first, `before` an id (for paging), optionally of one
    job and one status, scheduled from `since` (inclusive) to `until` (exclusive), the
    retries of `retry_of`, at most `limit`."""

    job: str | None = None
    status: RunStatus | None = None
    limit: int = 100
    before: int | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    retry_of: int | None = None

    def conditions(self) -> list[tuple[str, object]]:
        """The filters that are set, as (column and comparison, value) pairs that every
        backend turns into its SQL (times stay aware datetimes)."""
        status = None if self.status is None else str(self.status)
        tests = (
            ("job =", self.job),
            ("status =", status),
            ("id <", self.before),
            ("scheduled_at >=", self.since),
            ("scheduled_at <", self.until),
            ("retry_of =", self.retry_of),
        )
        return [(test, value) for test, value in tests if value is not None]


@dataclass(frozen=True)
class TriggerRequest:
    """A manual run asked for through a node that cannot run the job (it lacks a tag of
    the job's `run_on`), for a node that can: the first one to claim it answers it."""

    id: int
    job: str
    requested_at: dt.datetime
    by_node: str | None
    run_id: int | None
    """The run that answered it (started, or recorded skipped); None until then."""


@dataclass(frozen=True, slots=True)
class RunMark:
    """A run as a job's status strip shows it: enough to colour, date and link it."""

    id: int
    status: RunStatus
    scheduled_at: dt.datetime
    duration: float | None  # seconds from start to end; None until it has both


# -- the notification outbox ---------------------------------------------------------


@dataclass(frozen=True)
class EventPolicy:
    """Which notification events the store writes, in the transaction of the fact they
    report (see `Store.want_events`): those of `events`, naming `node` as the daemon
    that wrote them; with `repeats` False, no event for an outcome that repeats the
    job's previous one (no channel sends every run's events)."""

    events: frozenset[NotifyEvent] = frozenset()
    node: str | None = None
    repeats: bool = True


@dataclass(frozen=True)
class RunFacts:
    """A run as it was when an event about it was written."""

    id: int
    status: RunStatus
    trigger: Trigger
    scheduled_at: dt.datetime
    attempt: int
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    exit_code: int | None = None
    signal: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class OutboxEvent:
    """One event: what happened (`kind`) to which job, with the run's facts. `repeat`:
    the outcome is the same as the job's previous one (state-change channels leave it
    out). `node` names the daemon that wrote it."""

    id: int
    kind: NotifyEvent
    job: str
    run: RunFacts
    repeat: bool
    node: str | None
    created_at: dt.datetime


class DeliveryState(enum.StrEnum):
    """Where a delivery of an event to one channel stands."""

    PENDING = "pending"
    """Waiting to be sent, or to be retried after a failed attempt."""
    SENT = "sent"
    FAILED = "failed"
    """Given up on."""
    SUPPRESSED = "suppressed"
    """Not sent: the channel's hourly limit was used up."""


@dataclass(frozen=True)
class ChannelQuota:
    """A channel an event goes to, and how many deliveries it takes per hour."""

    name: str
    max_per_hour: int


@dataclass(frozen=True)
class FanOut:
    """One event and the channels that want it (none: it is only marked dispatched)."""

    event_id: int
    channels: tuple[ChannelQuota, ...]


@dataclass(frozen=True)
class MadeDelivery:
    """A delivery `Store.dispatch_events` made."""

    event_id: int
    channel: str
    state: DeliveryState


@dataclass(frozen=True)
class Delivery:
    """One event for one channel. A `summary` delivery stands for every event beyond the
    channel's hourly limit: it is sent instead of the first of them."""

    id: int
    event: OutboxEvent
    channel: str
    summary: bool
    state: DeliveryState
    attempts: int
    created_at: dt.datetime
    next_at: dt.datetime
    sent_at: dt.datetime | None
    last_error: str | None
    outcome: str | None


# -- metrics ------------------------------------------------------------------------


class TotalKind(enum.StrEnum):
    """How the values of one series from several daemon processes combine."""

    SUM = "sum"
    """Counters (and histogram buckets): added up."""
    MAX = "max"
    """Timestamps: the latest."""


@dataclass(frozen=True)
class Total:
    """A daemon process's absolute value of one series."""

    kind: TotalKind
    value: float


MERGED = ""
"""The owner of merged metric totals: those of daemon processes that are gone."""


@dataclass(frozen=True)
class JobSchedule:
    """What metrics need of a job, without its whole definition."""

    name: str
    schedule: str
    timezone: str | None
    paused: bool


class NodeState(enum.StrEnum):
    """Where a node stands, judged on the database's clock."""

    ALIVE = "alive"
    DRAINING = "draining"
    """Alive, but asked not to claim firings (`evercron drain`)."""
    EXPIRED = "expired"
    """It stopped renewing its lease: its running runs are (or will be) `lost`."""
    LEFT = "left"
    """It stopped gracefully, after its runs ended."""


@dataclass(frozen=True)
class NodeInfo:
    """What a node says about itself when it joins."""

    name: str
    home: str
    """Where it runs (its machine and state dir): a node of the same name elsewhere is
    refused while this one is alive."""
    owner: str
    """The daemon process that joined (the serving generation)."""
    tags: tuple[str, ...]
    version: str
    pid: int
    lease: float
    """Seconds without a renewal after which others take the node for dead."""
    max_running: int | None = None


@dataclass(frozen=True)
class Node:
    """A node as the store knows it."""

    name: str
    tags: tuple[str, ...]
    state: NodeState
    heartbeat_at: dt.datetime
    version: str
    pid: int
    running: tuple[int, ...]
    """Its runs still marked running, by id."""
    lease: float
    max_running: int | None = None


@dataclass(frozen=True)
class LostRun:
    """A run marked `lost` because its node's lease expired, with the next attempt the
    reaper claimed for itself (`on_lost = "retry"`), if any."""

    run: Run
    retry: Claimed | None = None
