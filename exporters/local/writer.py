"""The local store's writer: inserts batches and deletes what retention says must go.

- One writer connection, used only from one dedicated worker thread: SQLite allows one writer at a
  time anyway, and the event loop never waits on disk. Each batch is one transaction (executemany).
- Retention treats each table alike, by record time (a span's start time): ``max_age`` deletes older
  spans and ``max_records`` bounds each table on its own. It deletes spans, not whole traces, so a
  trace that straddles the cutoff loses its oldest spans first.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.core.model import Signal
from exporters.local.config import RetentionConfig
from exporters.local.rows import TABLES, Rows, SignalTable, bindable
from exporters.local.schema import StoreError, open_writer, transaction

_UPSERT_RESOURCE = (
    "INSERT INTO resources (id, attributes, last_seen) VALUES (?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)"
)

# Errors with which a row's values, not the database, are at fault (raised before SQLite runs).
_ROW_ERRORS = (
    OverflowError,
    ValueError,
    TypeError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.IntegrityError,
)


@dataclass(slots=True)
class WriteResult:
    inserted: int  # records delivered: stored now, or stored before (a span sent again)
    rejected: list[tuple[Any, str]]
    duplicates: int = 0  # of ``inserted``, those that were already there


class StoreWriter:
    """The writer connection and everything done with it. Not thread-safe: one thread uses it."""

    def __init__(self, path: Path, retention: RetentionConfig) -> None:
        self.path = path
        self.retention = retention
        self._conn: sqlite3.Connection | None = None
        self.counts: dict[str, int] = {}

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the store is not open")
        return self._conn

    def open(self) -> int:
        """Opens (creating or migrating) the store; returns the schema version it had before."""
        try:
            self._conn, previous = open_writer(self.path)
            self.counts = {
                t.name: int(self._conn.execute(f"SELECT count(*) FROM {t.name}").fetchone()[0])
                for t in TABLES.values()
            }
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(f"{self.path}: cannot open the local store: {exc}") from exc
        return previous

    def close(self) -> None:
        if self._conn is None:
            return
        # No PRAGMA optimize/ANALYZE: statistics taken while the store is small go stale as it grows,
        # and the planner's defaults already pick the right index for every query burnline makes.
        self._conn.close()
        self._conn = None

    def write(self, signal: Signal, items: Sequence[Any]) -> WriteResult:
        """Inserts a batch in one transaction: all of it (less rejected records) or nothing."""
        table = TABLES[signal]
        converted = table.convert(items, time.time_ns())
        conn = self.conn
        rejected = converted.rejected
        inserted = stored = 0
        with transaction(conn):
            if converted.resources:
                conn.executemany(_UPSERT_RESOURCE, ((k, v[0], v[1]) for k, v in converted.resources.items()))
            conn.execute("SAVEPOINT batch_rows")
            try:
                # rowcount sums the rows each execution changed: a conflict that did nothing adds 0.
                stored = max(0, conn.executemany(table.insert, converted.rows).rowcount)
                inserted = len(converted.rows)
            except _ROW_ERRORS:
                # Some row cannot be bound (text that is not UTF-8, a number beyond 64 bits): undo the
                # partial insert and go row by row, so only the bad records are rejected.
                conn.execute("ROLLBACK TO batch_rows")
                inserted, stored = self._insert_one_by_one(table, converted)
            conn.execute("RELEASE batch_rows")
        self.counts[table.name] = self.counts.get(table.name, 0) + stored
        return WriteResult(inserted, rejected, inserted - stored)

    def _insert_one_by_one(self, table: SignalTable, converted: Rows) -> tuple[int, int]:
        """(records delivered, rows stored) of inserting each row on its own."""
        conn = self.conn
        inserted = stored = 0
        for rec, row in zip(converted.records, converted.rows, strict=True):
            try:
                clean = bindable(row)
            except ValueError as exc:
                converted.rejected.append((rec, f"cannot store: {exc}"))
                continue
            try:
                stored += max(0, conn.execute(table.insert, clean).rowcount)
            except sqlite3.IntegrityError as exc:  # this row's values; other errors fail the batch
                converted.rejected.append((rec, f"cannot store: {exc}"))
                continue
            inserted += 1
        return inserted, stored

    def delete_chunk(self, now_ns: int) -> int:
        """Deletes at most one chunk of what retention removes (too old first, then too many)."""
        total = 0
        r = self.retention
        for table in TABLES.values():
            name, column = table.name, table.time_column
            deleted = 0
            if r.max_age > 0:
                cutoff = now_ns - int(r.max_age * 1e9)
                deleted = self._delete(
                    f"DELETE FROM {name} WHERE id IN (SELECT id FROM {name} WHERE {column} < ?"
                    f" ORDER BY {column} LIMIT ?)",
                    (cutoff, r.delete_chunk),
                )
            self.counts[name] = max(0, self.counts.get(name, 0) - deleted)
            excess = self.counts[name] - r.max_records
            if r.max_records and deleted < r.delete_chunk and excess > 0:
                wanted = min(excess, r.delete_chunk - deleted)
                got = self._delete(
                    f"DELETE FROM {name} WHERE id IN (SELECT id FROM {name} ORDER BY {column} LIMIT ?)",
                    (wanted,),
                )
                deleted += got
                self.counts[name] = max(0, self.counts[name] - got)
                if got < wanted:  # fewer rows than counted (another writer?): count again
                    self.counts[name] = int(self.conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0])
            total += deleted
        return total

    def _delete(self, sql: str, params: tuple[Any, ...]) -> int:
        with transaction(self.conn):
            return max(0, self.conn.execute(sql, params).rowcount)

    def delete_unused_resources(self) -> int:
        """Drops resources that no remaining record refers to (older than every record)."""
        conn = self.conn
        with transaction(conn):
            oldest = [
                conn.execute(f"SELECT min({t.time_column}) FROM {t.name}").fetchone()[0]
                for t in TABLES.values()
            ]
            present = [t for t in oldest if t is not None]
            if present:
                deleted = conn.execute("DELETE FROM resources WHERE last_seen < ?", (min(present),)).rowcount
            else:
                deleted = conn.execute("DELETE FROM resources").rowcount
        # Hands WAL pages back to the database now rather than at the next automatic checkpoint.
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return max(0, deleted)
