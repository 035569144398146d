"""The store's schema, as numbered migrations.

Rule for changes (hot upgrades run two versions side by side): expand first, contract
later. A migration may add tables, columns with defaults and indexes; it may not drop or
rename anything the previous release reads. Removing something takes two releases: stop
using it, then drop it.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: jobs, runs with the claim key, output chunks, daemon events.
    """
    CREATE TABLE jobs (
        name TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        source TEXT NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job TEXT NOT NULL,
        trigger TEXT NOT NULL,
        scheduled_at TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 1,
        status TEXT NOT NULL,
        owner TEXT,
        started_at TEXT,
        finished_at TEXT,
        exit_code INTEGER,
        signal TEXT,
        pid INTEGER,
        pid_start_ticks INTEGER,
        cpu_user REAL,
        cpu_system REAL,
        max_rss_kb INTEGER,
        output_bytes INTEGER NOT NULL DEFAULT 0,
        output_truncated INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        retry_of INTEGER
    );
    CREATE UNIQUE INDEX runs_claim ON runs (job, scheduled_at, attempt)
        WHERE trigger != 'manual';
    CREATE INDEX runs_job ON runs (job, id);
    CREATE INDEX runs_status ON runs (status);
    CREATE TABLE output (
        run_id INTEGER NOT NULL,
        offset INTEGER NOT NULL,
        stream TEXT NOT NULL,
        at REAL NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (run_id, offset)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    """,
]
