"""What the HTTP handlers get from the daemon: narrow faces, nothing more.

The daemon builds the app and serves it (`evercron.daemon` imports `evercron.server`,
never the other way): it hands the app an `ApiContext` whose parts are protocols the
daemon's objects satisfy - the store, the scheduler's `JobControl`, the live output,
`DaemonControl` for status, stop and upgrade, `MetricsText` for /metrics and
`NotifyControl` for test notifications.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from fastapi import Request

from evercron.scheduler import KillOutcome, LiveOutput
from evercron.store import Store


class JobControl(Protocol):
    """The scheduler as requests use it."""

    @property
    def next_fires(self) -> dict[str, dt.datetime]:
        """Each planned job's next fire time."""
        ...

    async def reload(self, name: str) -> None:
        """Take a change of job `name` in the store into account now."""
        ...

    async def trigger(self, name: str) -> int:
        """Start a manual run; its id (see `Scheduler.trigger` for the errors)."""
        ...

    async def kill(self, run_id: int) -> KillOutcome:
        """End a running run wherever it runs."""
        ...

    def running_runs(self) -> list[int]:
        """Ids of the runs this daemon process is running."""
        ...


@dataclass(frozen=True)
class GenerationInfo:
    """One daemon process sharing the state dir: serving, starting, or draining."""

    pid: int
    generation: int
    role: str
    version: str
    started_at: dt.datetime
    running_runs: list[int]


@dataclass(frozen=True)
class UpgradeDone:
    """A completed hot upgrade: the new process serves; this one drains and exits."""

    pid: int
    generation: int
    seconds: float


class UpgradeRefused(RuntimeError):
    """The upgrade did not happen; `busy` when another one is under way (or this process
    is stopping), else the new process failed and this one keeps serving."""

    def __init__(self, message: str, busy: bool) -> None:
        super().__init__(message)
        self.busy = busy


class DaemonControl(Protocol):
    """The daemon process as requests use it."""

    @property
    def draining(self) -> bool:
        """Whether this process handed over and is draining (responses close)."""
        ...

    def request_stop(self) -> None:
        """Begin a graceful shutdown."""
        ...

    def readiness(self) -> str | None:
        """Why this daemon should not be sent work now, or None when it is ready."""
        ...

    async def upgrade(self) -> UpgradeDone:
        """Hot-upgrade; raises `UpgradeRefused`."""
        ...

    async def generations(self) -> list[GenerationInfo]:
        """Every daemon process of this state dir, this one first."""
        ...


class MetricsText(Protocol):
    """What /metrics serves."""

    async def text(self) -> str:
        """The whole exposition text (Prometheus text format)."""
        ...


class SendOutcome(Protocol):
    """How sending one notification went."""

    @property
    def ok(self) -> bool:
        """Whether the receiver took it."""
        ...

    @property
    def detail(self) -> str:
        """The receiver's answer (an HTTP status, an SMTP reply) or why it failed."""
        ...


class NotifyControl(Protocol):
    """The notification channels as requests use them."""

    async def trial(self, name: str) -> SendOutcome:
        """Send a test notification through channel `name` now; raises `KeyError` when
        no channel has that name."""
        ...


@dataclass(frozen=True)
class ApiContext:
    """Everything a request handler may use. `viewer_token`, when set, reads the API but
    changes nothing (`evercron.server.access`)."""

    store: Store
    jobs: JobControl
    live: LiveOutput
    daemon: DaemonControl
    token: str
    started_at: dt.datetime
    state_dir: str
    viewer_token: str | None = None
    metrics: MetricsText | None = None
    """None: this process serves no /metrics (503)."""
    notify: NotifyControl | None = None
    """None: no notification channel is configured."""
    node: str = ""
    """This node's name."""


def context_of(request: Request) -> ApiContext:
    """The context of the app serving `request`."""
    context: ApiContext = request.app.state.context
    return context
