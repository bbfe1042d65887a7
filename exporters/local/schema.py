"""The local store's SQLite file: its schema, migrations, and the writer connection's settings.

- WAL journal with ``synchronous=NORMAL``: readers (``burnline logs``) never block the writer and the
  writer never blocks them; a power cut can lose the last commits but never corrupts the file.
- The schema is versioned with ``PRAGMA user_version``: ``MIGRATIONS`` lists the steps, append-only,
  and opening a store brings it up to date. A table per signal (``logs``, ``spans``; metrics would be
  one more) is one migration plus one ``SignalTable`` entry (rows.py).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# PRAGMA application_id of every burnline store ("BNLS"): tells our files from other SQLite files.
APPLICATION_ID = 0x424E4C53


class StoreError(OSError):
    """The store cannot be opened or used (foreign file, newer schema, unwritable path).

    An OSError so that ``burnline run`` reports it as a start failure without a traceback.
    """


# MIGRATIONS[i] takes a store from user_version i to i + 1, in one transaction. Append only: stores in
# the field have run the existing steps.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        f"PRAGMA application_id = {APPLICATION_ID}",
        """
        CREATE TABLE resources (
            id INTEGER PRIMARY KEY,          -- 64-bit hash of the canonical JSON
            attributes TEXT NOT NULL,        -- JSON object
            last_seen INTEGER NOT NULL       -- newest record time (Unix ns) that refers to it
        )
        """,
        """
        CREATE TABLE logs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: `burnline logs -f` follows it
            time_unix_nano INTEGER NOT NULL,       -- record time, else observed time, else insert time
            observed_time_unix_nano INTEGER NOT NULL,
            service TEXT NOT NULL,                 -- resource service.name, '' when unknown
            severity_number INTEGER NOT NULL,
            severity_text TEXT NOT NULL,
            body TEXT,                             -- the string, or JSON when body_is_json
            body_is_json INTEGER NOT NULL,
            attributes TEXT,                       -- JSON object, NULL when empty
            resource_id INTEGER,                   -- resources.id, NULL when empty
            trace_id TEXT,                         -- lower-case hex, NULL when absent
            span_id TEXT,
            scope_name TEXT
        )
        """,
        "CREATE INDEX logs_time ON logs (time_unix_nano)",
        "CREATE INDEX logs_service_time ON logs (service, time_unix_nano)",
        "CREATE INDEX logs_severity_time ON logs (severity_number, time_unix_nano)",
        # Partial: most log records carry no trace id and so cost this index nothing.
        "CREATE INDEX logs_trace ON logs (trace_id) WHERE trace_id IS NOT NULL",
    ),
    (
        """
        CREATE TABLE spans (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            trace_id TEXT NOT NULL,                -- lower-case hex
            span_id TEXT NOT NULL,
            parent_span_id TEXT,                   -- NULL for a root span
            trace_state TEXT,
            name TEXT NOT NULL,
            kind INTEGER NOT NULL,                 -- OTLP SpanKind
            start_time_unix_nano INTEGER NOT NULL, -- start, else end, else insert time
            end_time_unix_nano INTEGER NOT NULL,
            duration_ns INTEGER NOT NULL,
            status_code INTEGER NOT NULL,          -- OTLP StatusCode: 0 unset, 1 ok, 2 error
            status_message TEXT,
            is_error INTEGER NOT NULL,             -- Span.is_error: status ERROR or a server's 5xx
            service TEXT NOT NULL,                 -- resource service.name, '' when unknown
            attributes TEXT,                       -- JSON object, NULL when empty
            events TEXT,                           -- JSON array, NULL when empty
            links TEXT,                            -- JSON array, NULL when empty
            resource_id INTEGER,                   -- resources.id, NULL when empty
            scope_name TEXT,
            scope_version TEXT
        )
        """,
        # Unique: a span sent twice is stored once. Also the index of every lookup by trace id.
        "CREATE UNIQUE INDEX spans_trace_span ON spans (trace_id, span_id)",
        "CREATE INDEX spans_time ON spans (start_time_unix_nano)",
        "CREATE INDEX spans_service_time ON spans (service, start_time_unix_nano)",
        # Partial: few spans fail, so `burnline traces --errors` reads a small index.
        "CREATE INDEX spans_error_time ON spans (start_time_unix_nano) WHERE is_error = 1",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_problem(conn: sqlite3.Connection, path: Path) -> str | None:
    """Why ``conn`` is not a store this burnline can use (None when it is, or when it is empty)."""
    version = _user_version(conn)
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    if app_id not in (0, APPLICATION_ID) or (app_id == 0 and version != 0):
        return f"{path} is an SQLite database that burnline did not create"
    if version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            return f"{path} is an SQLite database that burnline did not create"
    if version > SCHEMA_VERSION:
        return (
            f"{path} was written by a newer burnline (store schema {version}; this version knows up to "
            f"{SCHEMA_VERSION}): upgrade burnline or use another path"
        )
    return None


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Brings the store's schema up to SCHEMA_VERSION; returns the version it had."""
    problem = schema_problem(conn, path)
    if problem:
        raise StoreError(problem)
    start = _user_version(conn)
    while True:
        with transaction(conn):
            # Read again under the write lock: another process may have migrated meanwhile.
            version = _user_version(conn)
            if version >= SCHEMA_VERSION:
                break
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
    return start


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction; BEGIN IMMEDIATE takes the write lock up front, where busy_timeout applies."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def open_writer(path: Path) -> tuple[sqlite3.Connection, int]:
    """The one writer connection (call from the writer thread), its schema brought up to date, and
    the schema version the file had (0: new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE takes the write lock up front).
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 2000")
        problem = schema_problem(conn, path)  # before anything changes someone else's file
        if problem:
            raise StoreError(problem)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            logging.getLogger("burnline.exporter.local").warning(
                "%s: the file system does not support WAL (journal mode %s): queries will block writes",
                path,
                mode,
            )
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA cache_size = -16384")  # KiB: index pages of a few million rows
        conn.execute("PRAGMA journal_size_limit = 67108864")  # WAL shrinks back to 64 MiB after bursts
        previous = migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn, previous
