"""The SQLite store's metric totals: running totals that never go backwards, whichever
daemon process counted them (a hot upgrade's two generations, a restart), and that
retention never prunes.

Each process writes the absolute values of its own series under its owner key; a series
is `sum` (counters, histogram buckets) or `max` (timestamps). The rows of processes that
are gone are merged into the owner `MERGED` in one transaction, so a reader sees the same
totals before and after. Private to `evercron.store.sqlite`; `Store` documents the
promises.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping

from evercron.store.records import MERGED, Total, TotalKind
from evercron.store.sqlite_database import SqliteDatabase

# Combines one series' rows of several owners by its kind.
_COMBINED = "CASE MIN(kind) WHEN 'max' THEN MAX(value) ELSE SUM(value) END"


class SqliteTotals:
    """Metric totals on one `SqliteDatabase` (its thread only)."""

    def __init__(self, database: SqliteDatabase) -> None:
        self._database = database

    def save(self, node: str, owner: str, totals: Mapping[str, Total]) -> None:
        """See `Store.save_metric_totals`."""
        with self._database.step() as db:
            _write(db, node, owner, totals)

    def totals(self, node: str, exclude: Collection[str]) -> dict[str, float]:
        """See `Store.metric_totals`."""
        others = sorted(set(exclude) - {MERGED})
        where = "node = ?"
        if MERGED in exclude:
            # A range on the key ("" sorts first) skips the merged rows without reading
            # them: there are as many as series, the living processes' are few.
            where += " AND owner > ''"
        if others:
            where += f" AND owner NOT IN ({', '.join('?' * len(others))})"
        rows = self._database.connection.execute(
            f"SELECT series, {_COMBINED} FROM metric_totals WHERE {where} GROUP BY series",
            (node, *others),
        ).fetchall()
        return dict(rows)

    def merged(self, node: str) -> dict[str, float]:
        """See `Store.merged_metric_totals`."""
        rows = self._database.connection.execute(
            "SELECT series, value FROM metric_totals WHERE node = ? AND owner = ?",
            (node, MERGED),
        )
        return dict(rows.fetchall())

    def compact(self, node: str, keep: Collection[str]) -> int:
        """See `Store.compact_metric_totals`."""
        with self._database.step() as db:
            gone = [
                row[0]
                for row in db.execute(
                    "SELECT DISTINCT owner FROM metric_totals WHERE node = ? AND owner > ?",
                    (node, MERGED),
                )
                if row[0] not in keep
            ]
            if not gone:
                return 0
            owners = (MERGED, *gone)
            marks = ", ".join("?" * len(owners))
            merged = db.execute(
                f"SELECT series, MIN(kind), {_COMBINED} FROM metric_totals "
                f"WHERE node = ? AND owner IN ({marks}) GROUP BY series",
                (node, *owners),
            ).fetchall()
            db.execute(
                f"DELETE FROM metric_totals WHERE node = ? AND owner IN ({marks})",
                (node, *owners),
            )
            totals = {series: Total(TotalKind(kind), value) for series, kind, value in merged}
            _write(db, node, MERGED, totals)
        return len(gone)


def _write(db: sqlite3.Connection, node: str, owner: str, totals: Mapping[str, Total]) -> None:
    db.executemany(
        "INSERT INTO metric_totals (node, owner, series, kind, value) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (node, owner, series) DO UPDATE SET value = excluded.value",
        [(node, owner, series, str(total.kind), total.value) for series, total in totals.items()],
    )
