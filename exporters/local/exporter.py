"""The ``local`` exporter: burnline's embedded store, so ``burnline run`` works with nothing else installed.

Log records and spans go to one SQLite file (stdlib ``sqlite3``) that ``burnline logs`` and
``burnline traces`` query.

- WAL journal with ``synchronous=NORMAL``: readers (``burnline logs``) never block the writer and the
  writer never blocks them; a power cut can lose the last commits but never corrupts the file.
- One writer connection, used only from one dedicated worker thread: SQLite allows one writer at a
  time anyway, and the event loop never waits on disk. Each batch is one transaction (executemany).
- Retention (age and record count) runs in the background every ``retention.check_interval``, deleting
  in chunks of ``retention.delete_chunk`` rows, each its own short transaction, so that exports queued
  meanwhile get the writer between chunks.
- Resources are stored once, in a ``resources`` table keyed by a 64-bit hash of their canonical JSON,
  and log rows refer to them. A Kubernetes resource (pod, namespace, container, node, labels) is
  hundreds of bytes and identical for every record of a pod, so repeating it in each row would make it
  most of the file. A resource row remembers the newest record time that uses it; retention drops the
  resources older than every remaining record. (Two different resources sharing a 64-bit hash is
  astronomically unlikely at the thousands of resources a store sees.)
- The schema is versioned with ``PRAGMA user_version``: ``MIGRATIONS`` lists the steps, append-only,
  and opening a store brings it up to date. A table per signal (``logs``, ``spans``; metrics would be
  one more) is one migration plus one ``_SignalTable`` entry.
- Spans are unique by (trace id, span id): a span sent again (a client retrying after a lost
  acknowledgement, a replayed queue) is counted as delivered and not stored twice. Each span row has
  its error flag (``Span.is_error``: status ERROR, or a 5xx answer of a server span) so that
  ``burnline traces --errors`` reads a small partial index.
- Retention treats each table alike, by record time (a span's start time): ``max_age`` deletes older
  spans and ``max_records`` bounds each table on its own. It deletes spans, not whole traces, so a
  trace that straddles the cutoff loses its oldest spans first.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import Field

from collector.config.types import Duration
from collector.core.component import (
    ComponentConfig,
    ComponentContext,
    Exporter,
    PermanentExportError,
    RetryableExportError,
    register,
)
from collector.core.model import Batch, LogRecord, Signal, Span
from collector.exporterhelper.sender import ExporterConfig
from collector.normalize.values import clean_value

# PRAGMA application_id of every burnline store ("BNLS"): tells our files from other SQLite files.
APPLICATION_ID = 0x424E4C53
DEFAULT_FILE_NAME = "burnline.db"

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class RetentionConfig(ComponentConfig):
    # Records older than this (by record time) are deleted; 0 keeps them regardless of age.
    max_age: Duration = 7 * 86400.0
    # The oldest records beyond this count are deleted, per signal (logs and spans each); 0: no limit.
    max_records: int = Field(default=5_000_000, ge=0)
    check_interval: Duration = Field(default=60.0, gt=0)
    # Rows per delete transaction: small enough that a waiting export is not held up for long.
    delete_chunk: int = Field(default=5000, ge=1)


class LocalConfig(ExporterConfig):
    # The database file; default: burnline.db in the service's data_dir (./data/burnline.db).
    path: str | None = None
    retention: RetentionConfig = RetentionConfig()


def store_path(config: LocalConfig, data_dir: str | Path) -> Path:
    """Where a local exporter with ``config`` keeps its database, in a service with ``data_dir``."""
    return Path(config.path) if config.path else Path(data_dir) / DEFAULT_FILE_NAME


class StoreError(OSError):
    """The store cannot be opened or used (foreign file, newer schema, unwritable path).

    An OSError so that ``burnline run`` reports it as a start failure without a traceback.
    """


# ---------------------------------------------------------------------------------------------------
# Schema

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
        with _transaction(conn):
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
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
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


# ---------------------------------------------------------------------------------------------------
# Records -> rows


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def to_json(value: Any, sort_keys: bool = False) -> str:
    """JSON text for any attribute value; values JSON cannot hold become strings, never an error."""
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_SORT_KEYS if sort_keys else 0)
    try:
        return orjson.dumps(value, default=_json_default, option=option).decode()
    except TypeError:  # orjson.JSONEncodeError: lone surrogates, ints beyond 64 bits, odd keys
        # The model's clean form (collector.normalize.values): every key kept as text (a bytes key
        # must not vanish), no NaN (json.dumps would write the invalid token NaN).
        try:
            cleaned = clean_value(value)
        except RecursionError:
            cleaned = f"<value nested too deeply: {type(value).__name__}>"
        text = json.dumps(cleaned, default=_json_default, sort_keys=sort_keys, ensure_ascii=False)
        # Lone surrogates become "?": "\ud800" escapes would be JSON that strict parsers reject.
        return text.encode("utf-8", "replace").decode("utf-8")


def _resource_key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


@dataclass(slots=True)
class _Rows:
    """One batch converted: rows to insert, resources to upsert, records that cannot be stored."""

    rows: list[tuple[Any, ...]]
    records: list[Any]  # the record of each row
    resources: dict[int, list[Any]]  # id -> [attributes JSON, last_seen]
    rejected: list[tuple[Any, str]]
    # id(resource dict) -> key: each shared resource dict is serialized once per batch
    resource_ids: dict[int, int | None] = field(default_factory=dict)

    def resource_id(self, resource: dict[str, Any], time_ns: int) -> int | None:
        """The resources row of ``resource`` (None when empty), remembering ``time_ns`` as seen."""
        if id(resource) in self.resource_ids:
            rid = self.resource_ids[id(resource)]
        else:
            rid = None
            if resource:
                text = to_json(resource, sort_keys=True)
                rid = _resource_key(text)
                self.resources.setdefault(rid, [text, time_ns])
            self.resource_ids[id(resource)] = rid
        if rid is not None:
            entry = self.resources[rid]
            entry[1] = max(entry[1], time_ns)
        return rid


def _record_time(value: Any) -> int:
    if not isinstance(value, int) or not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"time {value!r} is not Unix nanoseconds")
    return value


def _log_rows(records: Sequence[LogRecord], now_ns: int) -> _Rows:
    out = _Rows([], [], {}, [])
    for rec in records:
        try:
            time_ns = _record_time(rec.time_unix_nano or rec.observed_time_unix_nano or now_ns)
            rid = out.resource_id(rec.resource, time_ns)
            body = rec.body
            if body is None or isinstance(body, str):
                body_is_json = 0
            elif isinstance(body, bytes | bytearray):
                body, body_is_json = bytes(body).decode("utf-8", "replace"), 0
            else:
                body, body_is_json = to_json(body), 1
            out.rows.append(
                (
                    time_ns,
                    int(rec.observed_time_unix_nano or 0),
                    rec.service_name,
                    int(rec.severity_number or 0),
                    str(rec.severity_text or ""),
                    body,
                    body_is_json,
                    to_json(rec.attributes) if rec.attributes else None,
                    rid,
                    rec.trace_id or None,
                    rec.span_id or None,
                    rec.scope_name or None,
                )
            )
            out.records.append(rec)
        except Exception as exc:  # a malformed record from a buggy producer: reject it, keep the rest
            out.rejected.append((rec, f"cannot convert: {type(exc).__name__}: {exc}"))
    return out


def _hex_id(value: Any, digits: int, what: str) -> str:
    """A trace or span id as stored: lower-case hex of its full length, never all zeros."""
    text = value.lower() if isinstance(value, str) else ""
    if len(text) != digits or text.strip("0123456789abcdef") or not text.strip("0"):
        raise ValueError(f"{what} {value!r} is not {digits} hex digits (and not all zeros)")
    return text


def _events_json(span: Span) -> str | None:
    if not span.events:
        return None
    return to_json(
        [
            {"time_unix_nano": e.time_unix_nano, "name": e.name, "attributes": e.attributes}
            | ({"dropped_attributes_count": e.dropped_attributes_count} if e.dropped_attributes_count else {})
            for e in span.events
        ]
    )


def _links_json(span: Span) -> str | None:
    if not span.links:
        return None
    out = []
    for link in span.links:
        entry: dict[str, Any] = {"trace_id": link.trace_id, "span_id": link.span_id}
        if link.trace_state:
            entry["trace_state"] = link.trace_state
        if link.attributes:
            entry["attributes"] = link.attributes
        if link.flags:
            entry["flags"] = link.flags
        out.append(entry)
    return to_json(out)


def _span_rows(spans: Sequence[Span], now_ns: int) -> _Rows:
    out = _Rows([], [], {}, [])
    for span in spans:
        try:
            if not isinstance(span, Span):
                raise TypeError(f"expected a Span, got {type(span).__name__}")
            trace_id = _hex_id(span.trace_id, 32, "trace id")
            span_id = _hex_id(span.span_id, 16, "span id")
            parent = _hex_id(span.parent_span_id, 16, "parent span id") if span.parent_span_id else None
            start = _record_time(span.start_time_unix_nano or span.end_time_unix_nano or now_ns)
            end = _record_time(span.end_time_unix_nano or start)
            rid = out.resource_id(span.resource, start)
            scope = span.scope
            out.rows.append(
                (
                    trace_id,
                    span_id,
                    parent,
                    span.trace_state or None,
                    str(span.name or ""),
                    int(span.kind or 0),
                    start,
                    end,
                    max(0, end - start),
                    int(span.status_code or 0),
                    span.status_message or None,
                    int(span.is_error),
                    span.service_name,
                    to_json(span.attributes) if span.attributes else None,
                    _events_json(span),
                    _links_json(span),
                    rid,
                    (scope.name or None) if scope is not None else None,
                    (scope.version or None) if scope is not None else None,
                )
            )
            out.records.append(span)
        except Exception as exc:  # a malformed span from a buggy producer: reject it, keep the rest
            out.rejected.append((span, f"cannot convert: {type(exc).__name__}: {exc}"))
    return out


def _bindable(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The row with text made valid UTF-8 (lone surrogates replaced); ValueError for other problems."""
    fixed: list[Any] = []
    for value in row:
        if isinstance(value, str):
            fixed.append(value.encode("utf-8", "replace").decode("utf-8"))
            continue
        if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"integer {value} does not fit in 64 bits")
        if value is not None and not isinstance(value, int | float):
            raise ValueError(f"{type(value).__name__} where a number or text is expected")
        fixed.append(value)
    return tuple(fixed)


@dataclass(frozen=True, slots=True)
class _SignalTable:
    """How one signal is stored: its table, its record-time column and how items become rows."""

    name: str
    time_column: str
    insert: str
    convert: Callable[[Sequence[Any], int], _Rows]


_TABLES: dict[Signal, _SignalTable] = {
    Signal.LOGS: _SignalTable(
        "logs",
        "time_unix_nano",
        "INSERT INTO logs (time_unix_nano, observed_time_unix_nano, service, severity_number, severity_text,"
        " body, body_is_json, attributes, resource_id, trace_id, span_id, scope_name)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        _log_rows,
    ),
    Signal.TRACES: _SignalTable(
        "spans",
        "start_time_unix_nano",
        "INSERT INTO spans (trace_id, span_id, parent_span_id, trace_state, name, kind, start_time_unix_nano,"
        " end_time_unix_nano, duration_ns, status_code, status_message, is_error, service, attributes,"
        " events, links, resource_id, scope_name, scope_version)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        # A span already stored (sent again after a lost acknowledgement) is delivered, not duplicated.
        " ON CONFLICT (trace_id, span_id) DO NOTHING",
        _span_rows,
    ),
}

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


# ---------------------------------------------------------------------------------------------------
# The writer (runs only in the writer thread)


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
                for t in _TABLES.values()
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
        table = _TABLES[signal]
        converted = table.convert(items, time.time_ns())
        conn = self.conn
        rejected = converted.rejected
        inserted = stored = 0
        with _transaction(conn):
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

    def _insert_one_by_one(self, table: _SignalTable, converted: _Rows) -> tuple[int, int]:
        """(records delivered, rows stored) of inserting each row on its own."""
        conn = self.conn
        inserted = stored = 0
        for rec, row in zip(converted.records, converted.rows, strict=True):
            try:
                clean = _bindable(row)
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
        for table in _TABLES.values():
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
        with _transaction(self.conn):
            return max(0, self.conn.execute(sql, params).rowcount)

    def delete_unused_resources(self) -> int:
        """Drops resources that no remaining record refers to (older than every record)."""
        conn = self.conn
        with _transaction(conn):
            oldest = [
                conn.execute(f"SELECT min({t.time_column}) FROM {t.name}").fetchone()[0]
                for t in _TABLES.values()
            ]
            present = [t for t in oldest if t is not None]
            if present:
                deleted = conn.execute("DELETE FROM resources WHERE last_seen < ?", (min(present),)).rowcount
            else:
                deleted = conn.execute("DELETE FROM resources").rowcount
        # Hands WAL pages back to the database now rather than at the next automatic checkpoint.
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return max(0, deleted)


# ---------------------------------------------------------------------------------------------------
# The exporter

# Primary SQLite result codes (sqlite3 exceptions carry the extended code; the low byte is primary).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_FULL, _SQLITE_CORRUPT, _SQLITE_NOTADB = 5, 6, 13, 11, 26


@register
class LocalExporter(Exporter):
    """Writes batches into the embedded SQLite store that ``burnline logs`` and ``burnline traces`` read."""

    type_name = "local"
    config_model = LocalConfig
    signals = frozenset(_TABLES)

    def __init__(self, config: LocalConfig, ctx: ComponentContext) -> None:
        super().__init__(config, ctx)
        self.config: LocalConfig = config
        self.path = store_path(config, ctx.data_dir)
        self.writer = StoreWriter(self.path, config.retention)
        self._executor: ThreadPoolExecutor | None = None
        self._retention_task: asyncio.Task[None] | None = None
        self._retention_now = asyncio.Event()
        self._failing: str | None = None  # the reason of the last failed export, to log changes once
        self.retention_passes = 0  # completed background passes (tests wait on it)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._executor is None:
            raise StoreError(f"{self.path}: the local store is not started")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"burnline-{self.id}")
        try:
            previous = await self._run(self.writer.open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        if previous != SCHEMA_VERSION:
            how = "created" if previous == 0 else f"migrated from schema {previous}"
            self.log.info("local store %s %s (schema %d)", self.path, how, SCHEMA_VERSION)
        r = self.config.retention
        if r.max_age > 0 or r.max_records > 0:
            self._retention_task = asyncio.create_task(self._retention_loop(), name=f"{self.id}-retention")

    async def stop(self) -> None:
        if self._retention_task is not None:
            self._retention_task.cancel()
            await asyncio.gather(self._retention_task, return_exceptions=True)
            self._retention_task = None
        if self._executor is not None:
            # Runs after any write still in the thread: the single worker takes jobs in order.
            await self._run(self.writer.close)
            self._executor.shutdown(wait=False)
            self._executor = None

    async def export(self, batch: Batch) -> int:
        if batch.signal not in _TABLES:
            raise PermanentExportError(f"the local store does not keep {batch.signal.value}")
        if not batch.items:
            return 0
        try:
            result: WriteResult = await self._run(self.writer.write, batch.signal, batch.items)
        except sqlite3.Error as exc:
            raise self._export_error(exc, len(batch)) from exc
        if self._failing is not None:
            self.log.info("local store %s writable again", self.path)
            self._failing = None
        if result.rejected:
            await self._dead_letter(batch.signal, result.rejected)
        return result.inserted

    async def _dead_letter(self, signal: Signal, rejected: list[tuple[Any, str]]) -> None:
        by_reason: dict[str, list[Any]] = {}
        for rec, reason in rejected:
            by_reason.setdefault(reason, []).append(self.dead_letter_view(rec))
        for reason, views in by_reason.items():
            try:
                await asyncio.to_thread(self.dead_letter.write, signal, views, "invalid_record", reason)
            except Exception:
                # The rest of the batch is committed: raising would make the sender write it again.
                self.log.exception("%d rejected record(s) could not be dead-lettered; dropped", len(views))
                self.ctx.telemetry.dropped.labels(self.id, signal.value, "dead_letter_failed").inc(len(views))

    def dead_letter_view(self, item: Any) -> Any:
        """The record as JSON that cannot fail to encode: a record is rejected for odd values."""
        view = {f.name: getattr(item, f.name) for f in fields(item)} if is_dataclass(item) else item
        return orjson.Fragment(to_json(view))

    def _export_error(self, exc: sqlite3.Error, records: int) -> Exception:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        name = getattr(exc, "sqlite_errorname", "") or type(exc).__name__
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return RetryableExportError("locked", retry_after=0.5)
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            self._log_failure(
                "corrupt",
                "local store %s is damaged (%s): %d record(s) go to the dead-letter file; "
                "move the file away and restart to start a new store",
                self.path,
                exc,
                records,
            )
            return PermanentExportError(f"corrupt store: {exc}")
        if code == _SQLITE_FULL:
            self._log_failure(
                "disk_full",
                "local store %s: disk full; %d record(s) stay queued and are retried; free "
                "space or lower exporters.%s.retention (max_age, max_records)",
                self.path,
                records,
                self.id,
            )
            self._retention_now.set()
            return RetryableExportError("disk_full", retry_after=10.0)
        self._log_failure(name, "local store %s: write failed (%s); will retry", self.path, exc)
        return RetryableExportError(f"sqlite_{name.removeprefix('SQLITE_').lower()}", retry_after=2.0)

    def _log_failure(self, reason: str, msg: str, *args: Any) -> None:
        # Once per kind of failure: the sender already logs each retry.
        if self._failing != reason:
            self.log.error(msg, *args)
            self._failing = reason

    async def enforce_retention(self) -> int:
        """Deletes what retention says must go, chunk by chunk; returns how many records."""
        deleted = 0
        chunk = self.config.retention.delete_chunk
        while True:
            # Each chunk is its own job: an export submitted meanwhile runs before the next chunk.
            n: int = await self._run(self.writer.delete_chunk, time.time_ns())
            deleted += n
            if n < chunk:
                break
        await self._run(self.writer.delete_unused_resources)
        if deleted:
            self.log.info("retention: deleted %d record(s) from %s", deleted, self.path)
        return deleted

    async def _retention_loop(self) -> None:
        interval = self.config.retention.check_interval
        while True:
            try:
                await self.enforce_retention()
            except sqlite3.Error as exc:
                self.log.warning("retention on %s failed (%s); next try in %.0fs", self.path, exc, interval)
            except StoreError:
                return
            except Exception:  # a bug here must not end retention for the life of the process
                self.log.exception("retention on %s failed; next try in %.0fs", self.path, interval)
            self.retention_passes += 1
            try:
                await asyncio.wait_for(self._retention_now.wait(), interval)
            except TimeoutError:
                pass
            self._retention_now.clear()
