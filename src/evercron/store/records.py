"""What the store takes and gives back, whatever the backend.

These records are the vocabulary of the `Store` protocol (`evercron.store.api`): the
scheduler, the launcher, the HTTP handlers and the daemon speak only this, never a
backend's rows.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from evercron.model import Job, Run, RunStatus, Trigger


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


@dataclass(frozen=True, slots=True)
class RunMark:
    """A run as a job's status strip shows it: enough to colour, date and link it."""

    id: int
    status: RunStatus
    scheduled_at: dt.datetime
    duration: float | None  # seconds from start to end; None until it has both


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
