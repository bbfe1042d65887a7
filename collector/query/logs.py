"""Log records in the store: the most recent matches, the newer ones ``--follow`` prints, the
records of one trace; their text and JSON lines; the ``burnline logs`` command."""

from __future__ import annotations

import argparse
import sqlite3
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson

from collector.core.model import severity_name
from collector.normalize.severity import range_start_name
from collector.query.filters import LogQuery, log_filters
from collector.query.format import (
    PLAIN,
    clean,
    counted,
    describe_query,
    iso_time,
    load_object,
    logfmt_value,
    terminal_style,
)
from collector.query.spans import trace_span_count
from collector.query.store import LOGS_SCHEMA_MIN, run_reader, snapshot, store_args
from collector.query.terminal import Style

# Resource attributes that say where a record came from, shown at the end of a text line.
WHERE_KEYS = ("k8s.namespace.name", "k8s.pod.name", "k8s.container.name", "host.name")

FOLLOW_PAGE = 1000


@dataclass(slots=True)
class StoredLog:
    """One row of the logs table; JSON columns stay JSON text until printed."""

    id: int
    time_unix_nano: int
    observed_time_unix_nano: int
    service: str
    severity_number: int
    severity_text: str
    body: str | None
    body_is_json: bool
    attributes: str | None
    resource: str | None
    trace_id: str | None
    span_id: str | None
    scope_name: str | None

    @property
    def level(self) -> str:
        if self.severity_number > 0:
            return severity_name(self.severity_number)
        return self.severity_text.upper()


SELECT_LOGS = (
    "SELECT l.id, l.time_unix_nano, l.observed_time_unix_nano, l.service, l.severity_number,"
    " l.severity_text, l.body, l.body_is_json, l.attributes,"
    # A scalar subquery rather than a join: always one primary-key lookup, whatever the planner thinks.
    " (SELECT r.attributes FROM resources AS r WHERE r.id = l.resource_id),"
    " l.trace_id, l.span_id, l.scope_name FROM logs AS l"
)


def log_rows(cursor: sqlite3.Cursor) -> list[StoredLog]:
    return [StoredLog(*row) for row in cursor]


def recent(conn: sqlite3.Connection, q: LogQuery) -> tuple[list[StoredLog], int]:
    """The most recent ``q.limit`` matches, oldest first, and the highest record id in the store then."""
    where, params = log_filters(q, with_since=True)
    with snapshot(conn):
        newest_id = int(conn.execute("SELECT coalesce(max(id), 0) FROM logs").fetchone()[0])
        sql = SELECT_LOGS
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY l.time_unix_nano DESC, l.id DESC LIMIT ?"
        rows = log_rows(conn.execute(sql, [*params, q.limit or -1]))
    rows.reverse()
    return rows, newest_id


def newer(
    conn: sqlite3.Connection, q: LogQuery, after_id: int, page: int = FOLLOW_PAGE
) -> tuple[list[StoredLog], int, bool]:
    """Matches stored after record ``after_id``, in arrival order, at most ``page`` of them.

    Returns the rows, the id to continue after, and whether more may be waiting. Ids only grow
    (AUTOINCREMENT), so records that arrive late with old timestamps are still shown.
    """
    where, params = log_filters(q, with_since=False)
    with snapshot(conn):
        newest_id = int(conn.execute("SELECT coalesce(max(id), 0) FROM logs").fetchone()[0])
        if newest_id <= after_id:
            return [], after_id, False
        sql = SELECT_LOGS + " WHERE l.id > ? AND l.id <= ?"
        if where:
            sql += " AND " + " AND ".join(where)
        sql += " ORDER BY l.id LIMIT ?"
        rows = log_rows(conn.execute(sql, [after_id, newest_id, *params, page]))
    if len(rows) == page:
        return rows, rows[-1].id, True
    # Fewer than a page: every match up to newest_id is here, so non-matches are not scanned again.
    return rows, newest_id, False


def follow(
    conn: sqlite3.Connection,
    q: LogQuery,
    after_id: int,
    emit: Callable[[list[StoredLog]], None],
    interval: float,
    *,
    stop: threading.Event | None = None,
) -> int:
    """Polls for new matches every ``interval`` s and hands them to ``emit``, until ``stop`` is set
    (or Ctrl-C). Returns the last id seen."""
    stop = stop or threading.Event()
    while not stop.wait(interval):
        more = True
        while more:
            rows, after_id, more = newer(conn, q, after_id)
            if rows:
                emit(rows)
    return after_id


def trace_logs(conn: sqlite3.Connection, trace_id: str) -> tuple[int, int | None]:
    """How many log records of the trace the store has and the time of the first (the logs_trace
    index answers)."""
    count, first = conn.execute(
        "SELECT count(*), min(time_unix_nano) FROM logs WHERE trace_id = ?", (trace_id,)
    ).fetchone()
    return int(count), first


def trace_log_rows(conn: sqlite3.Connection, trace_id: str, limit: int) -> list[StoredLog]:
    """The trace's first ``limit`` log records by time (the logs_trace index answers)."""
    with snapshot(conn):
        return log_rows(
            conn.execute(
                SELECT_LOGS + " WHERE l.trace_id = ? ORDER BY l.time_unix_nano, l.id LIMIT ?",
                (trace_id, limit),
            )
        )


def fields_text(rec: StoredLog, with_trace_id: bool = True) -> str:
    """The record's attributes, where it came from and its trace id, as logfmt ``key=value`` pairs."""
    fields = [f"{k}={logfmt_value(v)}" for k, v in load_object(rec.attributes).items()]
    resource = load_object(rec.resource)
    fields += [f"{k}={logfmt_value(resource[k])}" for k in WHERE_KEYS if k in resource]
    if rec.trace_id and with_trace_id:
        fields.append(f"trace_id={rec.trace_id}")
    return clean(" ".join(fields))


def format_text(rec: StoredLog, style: Style = PLAIN) -> str:
    """``2026-11-29T22:56:48.123Z  ERROR  checkout  payment failed  k8s.pod.name=checkout-7d9f``.

    With a ``style`` for a terminal: the service column aligned and the columns coloured. Everything
    from the record is cleaned of control characters before our own escapes are added.
    """
    parts = [
        style.paint(iso_time(rec.time_unix_nano), "dim"),
        style.level(rec.level or "-"),
        style.paint(style.column("service", clean(rec.service) or "-"), "cyan"),
        clean(rec.body) if rec.body is not None else "",
    ]
    fields = fields_text(rec)
    if fields:
        parts.append(style.paint(fields, "dim"))
    return "  ".join(parts)


def format_json(rec: StoredLog) -> bytes:
    """Every stored field of the record, as one JSON object (no newline)."""
    body: Any = rec.body
    if rec.body_is_json and rec.body is not None:
        body = orjson.Fragment(rec.body)
    return orjson.dumps(
        {
            "time": iso_time(rec.time_unix_nano, digits=9),
            "time_unix_nano": rec.time_unix_nano,
            "observed_time_unix_nano": rec.observed_time_unix_nano,
            "service": rec.service,
            "level": rec.level,
            "severity_number": rec.severity_number,
            "severity_text": rec.severity_text,
            "body": body,
            "attributes": orjson.Fragment(rec.attributes or "{}"),
            "resource": orjson.Fragment(rec.resource or "{}"),
            "trace_id": rec.trace_id or "",
            "span_id": rec.span_id or "",
            "scope_name": rec.scope_name or "",
        }
    )


def writer(stream: TextIO, as_json: bool, style: Style = PLAIN) -> Callable[[list[StoredLog]], None]:
    """A function that prints a list of records to ``stream``, one a line, and flushes."""

    def emit(rows: list[StoredLog]) -> None:
        if as_json:
            stream.write("".join(format_json(r).decode() + "\n" for r in rows))
        else:
            style.widen("service", [clean(r.service) or "-" for r in rows])
            stream.write("".join(format_text(r, style) + "\n" for r in rows))
        stream.flush()

    return emit


def _level_filter(number: int | None) -> str | None:
    """``ERROR`` for a range's first number, else the number (``crit`` is 18, inside ERROR's range)."""
    if number is None:
        return None
    return range_start_name(number) or str(number)


def run(args: argparse.Namespace) -> int:
    """``burnline logs``; returns the exit status."""
    return run_reader("logs", args, LOGS_SCHEMA_MIN, lambda conn, path: _logs(conn, args, path))


def _no_logs_hint(conn: sqlite3.Connection, q: LogQuery) -> str:
    """Why nothing matched, when the store can say cheaply (each answer is one index lookup)."""
    newest = conn.execute("SELECT max(time_unix_nano) FROM logs").fetchone()[0]
    if newest is None:
        return "; the store has no log records yet"
    if (
        q.service is not None
        and conn.execute("SELECT 1 FROM logs WHERE service = ? LIMIT 1", (q.service,)).fetchone() is None
    ):
        return f"; no record of service {q.service!r} at all"
    if q.since_ns is not None and newest < q.since_ns:
        return f"; the newest record is from {iso_time(newest)} (try an earlier --since)"
    return ""


def _logs(conn: sqlite3.Connection, args: argparse.Namespace, path: Path) -> int:
    if args.until is not None and args.until <= args.since:
        print(
            f"burnline logs: --until ({iso_time(args.until)}) is not after --since ({iso_time(args.since)})",
            file=sys.stderr,
        )
        return 2
    if args.until is not None and args.follow:
        print("burnline logs: --follow shows new records, so it does not go with --until", file=sys.stderr)
        return 2
    query = LogQuery(
        since_ns=args.since,
        until_ns=args.until,
        service=args.service,
        namespace=args.namespace,
        pod=args.pod,
        min_severity=args.level,
        grep=args.grep,
        trace_id=args.trace_id,
        limit=args.limit,
    )
    emit = writer(sys.stdout, args.json, terminal_style(args, sys.stdout))
    rows, newest_id = recent(conn, query)
    if rows:
        emit(rows)
    else:
        asked = describe_query(
            path,
            args,
            {"service": args.service, "namespace": args.namespace, "pod": args.pod,
             "min_level": _level_filter(args.level), "grep": args.grep, "trace_id": args.trace_id},
        )  # fmt: skip
        with snapshot(conn):
            hint = _no_logs_hint(conn, query)
        waiting = "; waiting for new ones (Ctrl-C stops)" if args.follow else ""
        print(f"burnline logs: no records match ({asked}){hint}{waiting}", file=sys.stderr)
    if args.trace_id is not None and not args.json:
        # Logs and spans correlate by trace id: point to the trace's spans (on stderr: the output
        # stays one record a line).
        spans = trace_span_count(conn, args.trace_id)
        if spans:
            print(
                f"{counted(spans, 'span')} of this trace: burnline traces --trace-id {args.trace_id}"
                f"{store_args(args)}",
                file=sys.stderr,
            )
    if args.follow:
        try:
            follow(conn, query, newest_id, emit, args.interval)
        except KeyboardInterrupt:  # the way to end --follow
            return 0
    return 0
