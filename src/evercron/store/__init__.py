"""Persistence behind one async interface: jobs, runs (the claim of each firing), output,
daemon events, the notification outbox and metric totals. Callers hold a `Store`;
`open_store` is the one place that knows the backends."""

from pathlib import Path

from evercron.store.api import Store
from evercron.store.records import (
    MERGED,
    BrokenJob,
    ChannelQuota,
    Claim,
    Claimed,
    Delivery,
    DeliveryState,
    Disagreement,
    EventPolicy,
    FanOut,
    JobSchedule,
    LostRun,
    MadeDelivery,
    Node,
    NodeInfo,
    NodeState,
    OutboxEvent,
    RunEnd,
    RunFacts,
    RunMark,
    RunningRun,
    RunQuery,
    StoredChunk,
    StoredJob,
    StoreError,
    StoreUnavailable,
    Total,
    TotalKind,
    TriggerRequest,
)
from evercron.store.retry import RetryPolicy, persist
from evercron.store.sqlite import SqliteStore

__all__ = [
    "MERGED",
    "BrokenJob",
    "ChannelQuota",
    "Claim",
    "Claimed",
    "Delivery",
    "DeliveryState",
    "Disagreement",
    "EventPolicy",
    "FanOut",
    "JobSchedule",
    "LostRun",
    "MadeDelivery",
    "Node",
    "NodeInfo",
    "NodeState",
    "OutboxEvent",
    "RetryPolicy",
    "RunEnd",
    "RunFacts",
    "RunMark",
    "RunQuery",
    "RunningRun",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredChunk",
    "StoredJob",
    "Total",
    "TotalKind",
    "TriggerRequest",
    "open_store",
    "persist",
]


def open_store(state_dir: Path, database_url: str | None = None, node: str | None = None) -> Store:
    """The store the daemon is configured for: the PostgreSQL database at
    `database_url` (several nodes), else the SQLite file in its state dir; opened for the
    node called `node`."""
    if database_url:
        # Imported only here: psycopg costs a single node on SQLite start-up time and
        # memory for nothing.
        from evercron.store.postgres import PostgresStore  # noqa: PLC0415

        return PostgresStore(database_url, node)
    return SqliteStore(state_dir / "evercron.db", node)
