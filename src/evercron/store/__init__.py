"""Persistence: jobs, runs (the claim of each firing), output and daemon events."""

from evercron.store.sqlite import SqliteStore, StoredChunk, StoredJob, StoreError

__all__ = ["SqliteStore", "StoreError", "StoredChunk", "StoredJob"]
