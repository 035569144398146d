"""The store's schema, as numbered migrations.

Rule for changes (a hot upgrade runs the old and the new version on one store at once):
expand first, contract later.

- An *expand* migration only adds: tables, nullable columns or columns with a default,
  indexes. Every older release keeps working on the expanded schema, so the successor of
  an upgrade applies expand migrations before it reports ready, and an older release may
  still open the store afterwards (a rollback).
- Removing or renaming something takes two releases: release A stops using it, release B
  drops it in a *contract* migration whose `oldest_reader` is A's schema version. A
  contract migration is applied only when no older daemon generation is alive (after an
  upgrade, once the draining process has exited); releases older than `oldest_reader`
  then refuse the store with a clear error.

`tests/store/test_schema_rule.py` holds every migration to this rule.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    """One schema step. `oldest_reader` is 0 for an expand migration; for a contract
    migration, the oldest schema version whose code still works after it."""

    sql: str
    oldest_reader: int = 0

    @property
    def is_contract(self) -> bool:
        """Whether older releases may break once this is applied."""
        return self.oldest_reader > 0

    def statements(self) -> list[str]:
        """The SQL statements, in order."""
        return [part.strip() for part in self.sql.split(";") if part.strip()]


MIGRATIONS: list[Migration] = [
    # 1: jobs, runs with the claim key, output chunks, daemon events.
    Migration("""
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
    """),
    # 2: kill requests for runs owned by another process (a draining generation).
    Migration("ALTER TABLE runs ADD COLUMN kill_requested_at TEXT"),
    # 3: the boot time first seen for each boot id (@reboot jobs; btime moves with the clock).
    Migration("CREATE TABLE boots (boot_id TEXT PRIMARY KEY, booted_at TEXT NOT NULL)"),
    # 4: concurrency=forbid held by the store itself: at most one running exclusive run
    # per job, whichever process claims it; running runs of a job found by index.
    Migration("""
    ALTER TABLE runs ADD COLUMN exclusive INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX runs_running ON runs (job) WHERE status = 'running';
    CREATE UNIQUE INDEX runs_exclusive ON runs (job) WHERE status = 'running' AND exclusive = 1
    """),
    # 5: the cgroup directories of each run (one per line), for ending a lost run's tree.
    Migration("ALTER TABLE runs ADD COLUMN cgroups TEXT"),
    # 6: the notification outbox (events written with the fact they report, one delivery
    # per event and channel, claimed with an expiry) and metric totals that retention
    # never prunes (one row per node, daemon process and series; gone processes merged).
    Migration("""
    CREATE TABLE notify_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        job TEXT NOT NULL,
        run_id INTEGER,
        repeat INTEGER NOT NULL DEFAULT 0,
        facts TEXT NOT NULL,
        node TEXT,
        created_at TEXT NOT NULL,
        dispatched INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX notify_events_undispatched ON notify_events (id) WHERE dispatched = 0;
    CREATE UNIQUE INDEX notify_events_once_per_run ON notify_events (run_id, kind)
        WHERE kind IN ('started', 'overdue');
    CREATE TABLE notify_deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id INTEGER NOT NULL,
        channel TEXT NOT NULL,
        summary INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        hour TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at TEXT NOT NULL,
        claimed_by TEXT,
        claimed_until TEXT,
        last_error TEXT,
        outcome TEXT,
        created_at TEXT NOT NULL,
        sent_at TEXT
    );
    CREATE UNIQUE INDEX notify_deliveries_once ON notify_deliveries (event_id, channel);
    CREATE INDEX notify_deliveries_due ON notify_deliveries (next_at) WHERE state = 'pending';
    CREATE INDEX notify_deliveries_hour ON notify_deliveries (channel, hour);
    CREATE TABLE metric_totals (
        node TEXT NOT NULL,
        owner TEXT NOT NULL,
        series TEXT NOT NULL,
        kind TEXT NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (node, owner, series)
    )
    """),
    # 7: the node that ran each run (several nodes share a PostgreSQL store; one node
    # names itself here too).
    Migration("ALTER TABLE runs ADD COLUMN node TEXT"),
    # 8: manual runs asked for through a node that cannot run the job, for one that can.
    Migration("""
    CREATE TABLE trigger_requests (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        by_node TEXT,
        run_id INTEGER
    )
    """),
]
