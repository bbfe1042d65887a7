"""The local store as the status pages and API read it, and the validation of their query parameters.

Queries are collector/query/'s (the ones ``burnline logs`` and ``burnline traces`` run), on a
read-only connection opened per request in a worker thread: SQLite in WAL mode never makes the
writer wait for a reader, and the event loop never waits on disk.

Every query parameter is checked here, for the HTML pages and the JSON API alike; a bad one raises
:class:`ParamError` naming the parameter, which both answer with 400.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import orjson

from collector.config.types import parse_duration
from collector.normalize.severity import LEVEL_NAMES
from collector.query.filters import LogQuery, TraceQuery
from collector.query.filters import parse_level as _parse_level
from collector.query.logs import format_json, recent, trace_log_rows
from collector.query.spans import recent_traces, span_tree, trace_spans
from collector.query.store import LOGS_SCHEMA_MIN, TRACES_SCHEMA_MIN, QueryError, open_reader
from collector.query.timespec import FORMS, parse_time
from collector.query.traces import format_span_json

MAX_LOGS = 1000
MAX_TRACES = 500
TRACE_LOGS = 500  # log records shown with one trace
TRACE_SPANS = 5000  # spans of one trace (a runaway trace must not make a page of megabytes)
MAX_TEXT = 256  # characters of a text parameter

# What the typed parameters accept, checked here and published in the OpenAPI description.
_DURATION = r"([0-9]{1,9}(\.[0-9]{1,9})?(ns|us|ms|s|m|h|d|w))+"
TIME_PATTERN = (
    r"^(now|today|yesterday|[0-9]{1,12}(\.[0-9]{1,9})?|"
    + _DURATION
    + r"|([01]?[0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?"
    r"|(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])?)?)$"
)
MIN_DURATION_PATTERN = r"^" + _DURATION + r"$"
TRACE_ID_PATTERN = r"^[0-9a-fA-F]{1,32}$"
LEVELS = LEVEL_NAMES  # every name ingest reads (lower case), so `level=crit` means a record's `crit`
BOOLEANS = {"true": True, "false": False}

LOG_PARAMS = ("since", "until", "service", "namespace", "pod", "level", "q", "trace_id", "limit")
_T = TypeVar("_T")
_L = TypeVar("_L", bound=int | None)

TRACE_PARAMS = ("since", "until", "service", "namespace", "pod", "errors", "min_duration", "limit")


class ParamError(ValueError):
    """A query parameter the client must fix (400)."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"query parameter {name!r}: {problem}")
        self.name = name
        self.problem = problem


def text_param(params: Mapping[str, str], name: str) -> str | None:
    """A text filter; empty is no filter."""
    value = params.get(name)
    if value is None or value.strip() == "":
        return None
    return _checked(name, value)


def _checked(name: str, value: str) -> str:
    if len(value) > MAX_TEXT:
        raise ParamError(name, f"longer than {MAX_TEXT} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ParamError(name, "not valid UTF-8 text") from None
    return value


def _typed(params: Mapping[str, str], name: str, pattern: str, what: str) -> str | None:
    """A typed parameter's value when given (None when absent); present but not matching: 400."""
    value = params.get(name)
    if value is None:
        return None
    if not re.fullmatch(pattern, _checked(name, value)):
        raise ParamError(name, f"{value[:40]!r} is not {what}")
    return value


def _time(params: Mapping[str, str], name: str, now_ns: int, default: str | None) -> int | None:
    value = _typed(params, name, TIME_PATTERN, f"a time ({FORMS})") or default
    if value is None:
        return None
    try:
        ns = parse_time(value, now_ns)
    except (ValueError, OverflowError) as exc:
        raise ParamError(name, str(exc)) from None
    # SQLite integers are 64-bit; and nothing was stored before 1970, so earlier means everything.
    return min(max(ns, 0), 2**63 - 1)


def limit_param(params: Mapping[str, str], default: _L, maximum: int) -> int | _L:
    value = params.get("limit")
    if value is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", value) or not 1 <= int(value) <= maximum:
        raise ParamError("limit", f"{value!r} is not a count from 1 to {maximum}")
    return int(value)


def parse_trace_id(value: str, name: str = "trace_id") -> str:
    if not re.fullmatch(TRACE_ID_PATTERN, value):
        raise ParamError(name, f"{value[:40]!r} is not a trace id (1 to 32 hex digits)")
    return value.lower()


def reject_unknown(params: Mapping[str, str], known: tuple[str, ...]) -> None:
    for name in params:
        if name not in known:
            raise ParamError(name, f"unknown parameter (known: {', '.join(known)})")


def log_query(params: Mapping[str, str], now_ns: int) -> LogQuery:
    reject_unknown(params, LOG_PARAMS)
    level = params.get("level")
    min_severity = None
    if level is not None:
        if level not in LEVELS:
            raise ParamError("level", f"{level[:40]!r} is not a level ({', '.join(LEVELS)})")
        min_severity = _parse_level(level)
    trace_id = params.get("trace_id")
    return LogQuery(
        since_ns=_time(params, "since", now_ns, "1h"),
        until_ns=_time(params, "until", now_ns, None),
        service=text_param(params, "service"),
        namespace=text_param(params, "namespace"),
        pod=text_param(params, "pod"),
        min_severity=min_severity,
        grep=text_param(params, "q"),
        trace_id=None if trace_id is None else parse_trace_id(trace_id),
        limit=limit_param(params, 100, MAX_LOGS),
    )


def trace_query(params: Mapping[str, str], now_ns: int) -> TraceQuery:
    reject_unknown(params, TRACE_PARAMS)
    errors = params.get("errors", "false")
    if errors not in BOOLEANS:
        raise ParamError("errors", f"{errors[:20]!r} is not true or false")
    min_duration = _typed(params, "min_duration", MIN_DURATION_PATTERN, "a duration (250ms, 1.5s)")
    min_ns = None
    if min_duration is not None:
        # Capped at 2^63 ns (292 years), the largest duration SQLite's integers hold.
        min_ns = min(round(parse_duration(min_duration) * 1e9), 2**63 - 1)
    return TraceQuery(
        since_ns=_time(params, "since", now_ns, "1h"),
        until_ns=_time(params, "until", now_ns, None),
        service=text_param(params, "service"),
        namespace=text_param(params, "namespace"),
        pod=text_param(params, "pod"),
        errors_only=BOOLEANS[errors],
        min_duration_ns=min_ns,
        limit=limit_param(params, 20, MAX_TRACES),
    )


class StoreUnavailable(Exception):
    """There is no store to read (no local exporter, or it has not written yet); the message says why."""


class LocalStore:
    """Read access to the local exporter's SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _open(self, min_version: int = LOGS_SCHEMA_MIN) -> Any:
        try:
            return open_reader(self.path, min_version)
        except QueryError as exc:
            raise StoreUnavailable(str(exc)) from None

    def _logs(self, q: LogQuery) -> list[dict[str, Any]]:
        conn = self._open()
        try:
            rows, _ = recent(conn, q)
        finally:
            conn.close()
        rows.reverse()  # newest first, as a page reads
        return [orjson.loads(format_json(row)) for row in rows]

    def _traces(self, q: TraceQuery) -> list[dict[str, Any]]:
        conn = self._open(TRACES_SCHEMA_MIN)
        try:
            summaries = recent_traces(conn, q)
        finally:
            conn.close()
        summaries.reverse()
        return [
            {
                "trace_id": t.trace_id,
                "start_time_unix_nano": t.start_time_unix_nano,
                "end_time_unix_nano": t.end_time_unix_nano,
                "duration_ns": t.duration_ns,
                "span_count": t.span_count,
                "error_count": t.error_count,
                "services": t.services,
                "root_name": t.root_name,
                "root_service": t.root_service,
                "root_span_id": t.root_span_id,
                "has_root": t.has_root,
            }
            for t in summaries
        ]

    def _trace(self, trace_id: str) -> dict[str, Any] | None:
        conn = self._open(TRACES_SCHEMA_MIN)
        try:
            spans = trace_spans(conn, trace_id)
            logs = trace_log_rows(conn, trace_id, TRACE_LOGS)
        finally:
            conn.close()
        if not spans and not logs:
            return None
        tree = span_tree(spans)
        return {
            "trace_id": trace_id,
            "span_count": len(tree),
            "truncated": len(tree) > TRACE_SPANS,
            "spans": [orjson.loads(format_span_json(node)) for node in tree[:TRACE_SPANS]],
            "logs": [orjson.loads(format_json(row)) for row in logs],
        }

    async def _in_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return await asyncio.to_thread(fn, *args)
        except sqlite3.Error as exc:  # busy beyond the timeout, a damaged file: say so, never a 500
            raise StoreUnavailable(f"{self.path}: cannot read the local store: {exc}") from None

    async def logs(self, q: LogQuery) -> list[dict[str, Any]]:
        """The newest ``q.limit`` matching records, newest first."""
        return await self._in_thread(self._logs, q)

    async def traces(self, q: TraceQuery) -> list[dict[str, Any]]:
        """The most recently started matching traces, newest first."""
        return await self._in_thread(self._traces, q)

    async def trace(self, trace_id: str) -> dict[str, Any] | None:
        """One trace's spans in tree order and its first log records; None when the store has neither."""
        return await self._in_thread(self._trace, trace_id)
