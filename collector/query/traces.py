"""``burnline traces``: the list of recent traces, and one trace as a tree of spans with each span's
events and the trace's log records under the span that wrote them."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson

from collector.core.model import StatusCode
from collector.query.filters import TraceQuery
from collector.query.format import (
    PLAIN,
    clean,
    counted,
    describe_query,
    format_duration,
    iso_time,
    kind_name,
    logfmt_value,
    status_name,
    terminal_style,
)
from collector.query.logs import StoredLog, fields_text, trace_log_rows, trace_logs
from collector.query.spans import (
    StoredSpan,
    TraceSummary,
    TreeSpan,
    recent_traces,
    span_tree,
    trace_spans,
)
from collector.query.store import TRACES_SCHEMA_MIN, run_reader, snapshot, store_args
from collector.query.terminal import Style

TREE_LOG_LIMIT = 200
_TREE_INDENT_MAX = 40  # levels; deeper spans are drawn at this depth (their order still shows nesting)


def format_trace_line(t: TraceSummary, style: Style = PLAIN) -> str:
    """``<start>  <trace id>  <duration>  <spans>  ERROR|-  <root service>  <root name>``."""
    parts = [
        style.paint(iso_time(t.start_time_unix_nano), "dim"),
        t.trace_id,
        f"{format_duration(t.duration_ns):>8}",
        f"{counted(t.span_count, 'span'):>9}",
        style.level("ERROR" if t.error_count else "-"),
        style.paint(style.column("service", clean(t.root_service) or "-"), "cyan"),
        clean(t.root_name) or "-",
    ]
    line = "  ".join(parts)
    return line if t.has_root else line + "  (root span not stored)"


def format_trace_json(t: TraceSummary) -> bytes:
    return orjson.dumps(
        {
            "trace_id": t.trace_id,
            "start": iso_time(t.start_time_unix_nano, digits=9),
            "start_time_unix_nano": t.start_time_unix_nano,
            "end_time_unix_nano": t.end_time_unix_nano,
            "duration_ns": t.duration_ns,
            "span_count": t.span_count,
            "error_count": t.error_count,
            "error": t.error_count > 0,
            "services": t.services,
            "root_name": t.root_name,
            "root_service": t.root_service,
            "root_span_id": t.root_span_id,
            "has_root": t.has_root,
        }
    )


def format_tree_header(spans: list[StoredSpan]) -> str:
    start = min(s.start_time_unix_nano for s in spans)
    end = max(s.end_time_unix_nano for s in spans)
    errors = sum(1 for s in spans if s.is_error)
    services = sorted({s.service for s in spans})
    return "  ".join(
        [
            f"trace {spans[0].trace_id}",
            iso_time(start),
            format_duration(max(0, end - start)),
            counted(len(spans), "span"),
            counted(errors, "error"),
            "services: " + clean(", ".join(s or "-" for s in services)),
        ]
    )


# Log records shown in a span tree; a trace with more points to `burnline logs` for the rest.


def _offset(ns: int) -> str:
    """An offset from the trace's start: ``+250ms``, or ``-30s`` for a log written before it."""
    return ("-" if ns < 0 else "+") + format_duration(abs(ns))


def _indent(depth: int) -> str:
    return "  " * min(depth, _TREE_INDENT_MAX)


def format_tree_line(node: TreeSpan, trace_start_ns: int, style: Style = PLAIN) -> str:
    """``+offset  duration  status  <indent>name  (service, kind)  span_id=...  [status message]``."""
    s = node.span
    offset = max(0, s.start_time_unix_nano - trace_start_ns)
    status = "ERROR" if s.is_error else ("ok" if s.status_code == StatusCode.OK else "-")
    where = ", ".join(p for p in (clean(s.service) or "-", kind_name(s.kind)) if p)
    status_column = style.paint(f"{status:<5}", "red" if s.is_error else "green" if status == "ok" else "")
    line = (
        f"{_offset(offset):>9}  {format_duration(s.duration_ns):>8}  {status_column}  "
        f"{_indent(node.depth)}{style.paint(clean(s.name) or '-', 'bold')}  ({where})  span_id={s.span_id}"
    )
    if s.status_message:
        line += f"  status_message={logfmt_value(s.status_message)}"
    if node.orphan:
        line += f"  (parent {s.parent_span_id} not stored)"
    return line


@dataclass(slots=True)
class TreeNote:
    """A span event or a log record, shown in the tree under the span it belongs to."""

    time_unix_nano: int
    level: str  # the log record's level; "" for an event
    text: str  # already cleaned of control characters


def span_events(span: StoredSpan) -> list[TreeNote]:
    """The span's events as notes: ``event: exception  exception.type=Deadlock``."""
    try:
        events = orjson.loads(span.events) if span.events else []
    except orjson.JSONDecodeError:
        return []
    notes = []
    for event in events if isinstance(events, list) else []:
        if not isinstance(event, dict):
            continue
        attributes = event.get("attributes")
        pairs = (
            [f"{k}={logfmt_value(v)}" for k, v in attributes.items()] if isinstance(attributes, dict) else []
        )
        text = "  ".join(p for p in (f"event: {event.get('name') or '-'}", " ".join(pairs)) if p)
        moment = event.get("time_unix_nano")
        notes.append(
            TreeNote(moment if isinstance(moment, int) else span.start_time_unix_nano, "", clean(text))
        )
    return notes


def log_note(rec: StoredLog) -> TreeNote:
    """A log record as a note: ``log: payment failed  (checkout)  order=17``."""
    body = clean(rec.body) if rec.body is not None else ""
    fields = fields_text(rec, with_trace_id=False)  # the tree is the trace's
    text = f"log: {body}  ({clean(rec.service) or '-'})" + (f"  {fields}" if fields else "")
    return TreeNote(rec.time_unix_nano, rec.level or "-", text)


def format_note_line(note: TreeNote, depth: int, trace_start_ns: int, style: Style = PLAIN) -> str:
    """``+offset            LEVEL  <indent>  log: ...`` (the duration column empty, events no level)."""
    return (
        f"{_offset(note.time_unix_nano - trace_start_ns):>9}  {'':>8}  {style.level(note.level)}  "
        f"{_indent(depth)}{style.paint(note.text, 'dim') if not note.level else note.text}"
    )


def format_span_json(node: TreeSpan) -> bytes:
    """Every stored field of the span, its depth in the tree and whether its parent is missing."""
    s = node.span
    return orjson.dumps(
        {
            "trace_id": s.trace_id,
            "span_id": s.span_id,
            "parent_span_id": s.parent_span_id or "",
            "trace_state": s.trace_state or "",
            "name": s.name,
            "kind": kind_name(s.kind),
            "start": iso_time(s.start_time_unix_nano, digits=9),
            "start_time_unix_nano": s.start_time_unix_nano,
            "end_time_unix_nano": s.end_time_unix_nano,
            "duration_ns": s.duration_ns,
            "status": status_name(s.status_code),
            "status_code": s.status_code,
            "status_message": s.status_message or "",
            "error": bool(s.is_error),
            "service": s.service,
            "attributes": orjson.Fragment(s.attributes or "{}"),
            "events": orjson.Fragment(s.events or "[]"),
            "links": orjson.Fragment(s.links or "[]"),
            "resource": orjson.Fragment(s.resource or "{}"),
            "scope_name": s.scope_name or "",
            "scope_version": s.scope_version or "",
            "depth": node.depth,
            "orphan": node.orphan,
        }
    )


def run_traces(args: argparse.Namespace) -> int:
    """``burnline traces``; returns the exit status."""
    return run_reader("traces", args, TRACES_SCHEMA_MIN, lambda conn, path: _traces(conn, args, path))


def _traces(conn: sqlite3.Connection, args: argparse.Namespace, path: Path) -> int:
    if args.trace_id is not None:
        return _show_trace(conn, args, path)
    if args.until is not None and args.until <= args.since:
        print(
            f"burnline traces: --until ({iso_time(args.until)}) is not after --since "
            f"({iso_time(args.since)})",
            file=sys.stderr,
        )
        return 2
    query = TraceQuery(
        since_ns=args.since,
        until_ns=args.until,
        service=args.service,
        namespace=args.namespace,
        pod=args.pod,
        errors_only=args.errors,
        min_duration_ns=args.min_duration,
        limit=args.limit,
    )
    traces = recent_traces(conn, query)
    if args.json:
        sys.stdout.write("".join(format_trace_json(t).decode() + "\n" for t in traces))
    else:
        style = terminal_style(args, sys.stdout)
        style.widen("service", [clean(t.root_service) or "-" for t in traces])
        sys.stdout.write("".join(format_trace_line(t, style) + "\n" for t in traces))
    sys.stdout.flush()
    if not traces:
        asked = describe_query(
            path,
            args,
            {"service": args.service, "namespace": args.namespace, "pod": args.pod,
             "errors": "yes" if args.errors else None,
             "min_duration": format_duration(args.min_duration) if args.min_duration is not None else None},
        )  # fmt: skip
        print(f"burnline traces: no traces match ({asked})", file=sys.stderr)
    return 0


def _logs_command(trace_id: str, since_ns: int, args: argparse.Namespace) -> str:
    # A minute's margin: a service's clock, or logging before the span starts, may lead the trace.
    since = iso_time(since_ns - 60 * 1_000_000_000)
    return f"burnline logs --trace-id {trace_id} --since {since} -n 0{store_args(args)}"


def _show_trace(conn: sqlite3.Connection, args: argparse.Namespace, path: Path) -> int:
    trace_id = args.trace_id
    spans = trace_spans(conn, trace_id)
    with snapshot(conn):
        logs, first_log = trace_logs(conn, trace_id)
    if not spans:
        hint = ""
        if logs and first_log is not None:
            hint = f"; it has {counted(logs, 'log record')}: {_logs_command(trace_id, first_log, args)}"
        print(f"burnline traces: no spans of trace {trace_id} in {path}{hint}", file=sys.stderr)
        return 1
    tree = span_tree(spans)
    if args.json:
        sys.stdout.write("".join(format_span_json(node).decode() + "\n" for node in tree))
        sys.stdout.flush()
        return 0
    start = min(s.start_time_unix_nano for s in spans)
    style = terminal_style(args, sys.stdout)
    # Each span's events and log records go right under it, by time; records whose span is not
    # stored (or that name none) follow the tree.
    notes: dict[str, list[TreeNote]] = {}
    loose: list[TreeNote] = []
    span_ids = {s.span_id for s in spans}
    shown_logs = trace_log_rows(conn, trace_id, TREE_LOG_LIMIT) if logs else []
    for rec in shown_logs:
        if rec.span_id and rec.span_id in span_ids:
            notes.setdefault(rec.span_id, []).append(log_note(rec))
        else:
            loose.append(log_note(rec))
    lines = [format_tree_header(spans)]
    for node in tree:
        lines.append(format_tree_line(node, start, style))
        under = sorted(
            span_events(node.span) + notes.pop(node.span.span_id, []), key=lambda n: n.time_unix_nano
        )
        lines += [format_note_line(note, node.depth + 1, start, style) for note in under]
    if loose:
        lines.append("log records of this trace without a stored span:")
        lines += [format_note_line(note, 0, start, style) for note in loose]
    if logs and first_log is not None:
        command = _logs_command(trace_id, min(start, first_log), args)
        shown = f" (the first {len(shown_logs)} shown)" if len(shown_logs) < logs else ""
        lines.append(f"{counted(logs, 'log record')} of this trace{shown}: {command}")
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()
    return 0
