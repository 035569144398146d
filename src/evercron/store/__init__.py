"""Persistence behind one async interface: jobs, runs (the claim of each firing), output
and daemon events. Callers hold a `Store`; `open_store` is the one place that knows the
backends."""

from pathlib import Path

from evercron.store.api import Store
from evercron.store.records import (
    BrokenJob,
    Claim,
    Claimed,
    RunEnd,
    RunMark,
    RunningRun,
    RunQuery,
    StoredChunk,
    StoredJob,
    StoreError,
    StoreUnavailable,
)
from evercron.store.retry import RetryPolicy, persist
from evercron.store.sqlite import SqliteStore

__all__ = [
    "BrokenJob",
    "Claim",
    "Claimed",
    "RetryPolicy",
    "RunEnd",
    "RunMark",
    "RunQuery",
    "RunningRun",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredChunk",
    "StoredJob",
    "open_store",
    "persist",
]


def open_store(state_dir: Path) -> Store:
    """The store the daemon is configured for: the SQLite file in its state dir."""
    return SqliteStore(state_dir / "evercron.db")
