"""What the HTTP handlers need from the daemon."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from evercron.daemon.upgrade import Handover
from evercron.scheduler import Scheduler
from evercron.store import SqliteStore
from evercron.store.worker import StoreWorker


@dataclass
class DaemonContext:
    """The running daemon as the API sees it.

    `draining` is set once this process handed over to a successor: every response then
    carries `Connection: close` and live streams end, so clients move to the successor.
    `viewer_token`, when set, reads the API but changes nothing (`evercron.server.access`).
    """

    store: SqliteStore
    db: StoreWorker
    scheduler: Scheduler
    token: str
    state_dir: Path
    started_at: dt.datetime
    request_stop: Callable[[], None]
    upgrade: Callable[[], Awaitable[Handover]]
    owner: str
    generation: int
    draining: bool = False
    viewer_token: str | None = None
