"""Spans in the store: the most recent traces with a matching span, the spans of one trace, and
their tree."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import orjson

from collector.query.filters import TraceQuery, trace_filters
from collector.query.store import TRACES_SCHEMA_MIN, snapshot


@dataclass(slots=True)
class TraceSummary:
    """One trace of the list: its extent, counts and root span."""

    trace_id: str
    start_time_unix_nano: int  # the earliest span start
    end_time_unix_nano: int  # the latest span end
    span_count: int
    error_count: int
    services: list[str]
    root_name: str
    root_service: str
    root_span_id: str
    has_root: bool  # False: no span without a parent is stored; the root_* are the earliest span's

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_time_unix_nano - self.start_time_unix_nano)


@dataclass(slots=True)
class StoredSpan:
    """One row of the spans table; JSON columns stay JSON text until printed."""

    id: int
    trace_id: str
    span_id: str
    parent_span_id: str | None
    trace_state: str | None
    name: str
    kind: int
    start_time_unix_nano: int
    end_time_unix_nano: int
    duration_ns: int
    status_code: int
    status_message: str | None
    is_error: bool
    service: str
    attributes: str | None
    events: str | None
    links: str | None
    resource: str | None
    scope_name: str | None
    scope_version: str | None


@dataclass(slots=True)
class TreeSpan:
    """A span placed in its trace's tree."""

    span: StoredSpan
    depth: int
    orphan: bool  # its parent is not in the store (not received yet, or deleted by retention)


def recent_traces(conn: sqlite3.Connection, q: TraceQuery) -> list[TraceSummary]:
    """The ``q.limit`` most recently started traces with a matching span, oldest first.

    Each is summed up over all of its stored spans, not only the matching ones.
    """
    where, params = trace_filters(q)
    having = ""
    if q.min_duration_ns is not None:
        having = " HAVING max(s.end_time_unix_nano) - min(s.start_time_unix_nano) >= ?"
        params.append(q.min_duration_ns)
    sql = (
        "WITH matched AS (SELECT DISTINCT trace_id FROM spans"
        + (" WHERE " + " AND ".join(where) if where else "")
        + "), summary AS ("
        " SELECT s.trace_id AS trace_id, min(s.start_time_unix_nano) AS start,"
        " max(s.end_time_unix_nano) AS end, count(*) AS spans, sum(s.is_error) AS errors,"
        " json_group_array(DISTINCT s.service) AS services"
        " FROM spans AS s JOIN matched USING (trace_id) GROUP BY s.trace_id"
        + having
        + " ORDER BY start DESC, trace_id LIMIT ?)"
        # The root: a span without a parent, else (the root is not stored) the earliest span.
        " SELECT summary.trace_id, summary.start, summary.end, summary.spans, summary.errors,"
        " summary.services, root.name, root.service, root.span_id, root.parent_span_id IS NULL"
        " FROM summary JOIN spans AS root ON root.id = (SELECT r.id FROM spans AS r"
        " WHERE r.trace_id = summary.trace_id"
        " ORDER BY r.parent_span_id IS NOT NULL, r.start_time_unix_nano, r.id LIMIT 1)"
        " ORDER BY summary.start, summary.trace_id"
    )
    with snapshot(conn):
        rows = conn.execute(sql, [*params, q.limit or -1]).fetchall()
    out = []
    for trace_id, start, end, spans, errors, services, name, service, span_id, has_root in rows:
        names = orjson.loads(services)
        out.append(
            TraceSummary(
                trace_id, start, end, spans, errors, sorted(names), name, service, span_id, bool(has_root)
            )
        )
    return out


_SELECT_SPANS = (
    "SELECT s.id, s.trace_id, s.span_id, s.parent_span_id, s.trace_state, s.name, s.kind,"
    " s.start_time_unix_nano, s.end_time_unix_nano, s.duration_ns, s.status_code, s.status_message,"
    " s.is_error, s.service, s.attributes, s.events, s.links,"
    " (SELECT r.attributes FROM resources AS r WHERE r.id = s.resource_id),"
    " s.scope_name, s.scope_version FROM spans AS s"
)


def trace_spans(conn: sqlite3.Connection, trace_id: str) -> list[StoredSpan]:
    """Every stored span of one trace, by start time."""
    with snapshot(conn):
        rows = conn.execute(
            _SELECT_SPANS + " WHERE s.trace_id = ? ORDER BY s.start_time_unix_nano, s.id", (trace_id,)
        ).fetchall()
    return [StoredSpan(*row) for row in rows]


def span_tree(spans: list[StoredSpan]) -> list[TreeSpan]:
    """The spans in tree order (each parent before its children, siblings by start time).

    Spans whose parent is not stored are roots too, marked as orphans. Malformed input (a span that
    is its own ancestor) cannot loop: every span is placed exactly once.
    """
    ids = {s.span_id for s in spans}
    children: dict[str, list[StoredSpan]] = {}
    roots: list[StoredSpan] = []
    for span in spans:  # already by start time, so every list below is too
        parent = span.parent_span_id
        if parent and parent in ids and parent != span.span_id:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)
    out: list[TreeSpan] = []
    placed: set[int] = set()

    def walk(top: StoredSpan) -> None:
        # Iterative: a trace thousands of spans deep must not hit the recursion limit.
        stack = [(top, 0)]
        while stack:
            span, depth = stack.pop()
            if span.id in placed:
                continue
            placed.add(span.id)
            orphan = depth == 0 and bool(span.parent_span_id)
            out.append(TreeSpan(span, depth, orphan))
            stack.extend((child, depth + 1) for child in reversed(children.get(span.span_id, [])))

    for root in roots:
        walk(root)
    for span in spans:  # spans in a parent cycle: reachable from no root
        if span.id not in placed:
            walk(span)
    return out


def trace_span_count(conn: sqlite3.Connection, trace_id: str) -> int:
    """How many spans of the trace the store has (0 when the store predates spans)."""
    if int(conn.execute("PRAGMA user_version").fetchone()[0]) < TRACES_SCHEMA_MIN:
        return 0
    return int(conn.execute("SELECT count(*) FROM spans WHERE trace_id = ?", (trace_id,)).fetchone()[0])
