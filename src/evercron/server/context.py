"""What the HTTP handlers need from the daemon."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evercron.scheduler import Scheduler
from evercron.store import SqliteStore
from evercron.store.worker import StoreWorker


@dataclass
class DaemonContext:
    """The running daemon as the API sees it."""

    store: SqliteStore
    db: StoreWorker
    scheduler: Scheduler
    token: str
    state_dir: Path
    started_at: dt.datetime
    request_stop: Callable[[], None]
