"""What a query selects: the level, time, service, namespace and pod filters of ``burnline logs``
and ``burnline traces``, as command-line arguments and as SQL conditions."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from collector.config.types import parse_duration
from collector.normalize.severity import severity_from_text
from collector.query.timespec import parse_time


def parse_level(text: str) -> int:
    """A level name as ingest reads it ('warn', 'WARNING', 'crit', 'INFO+2') or a SeverityNumber
    (1-24) -> the lowest SeverityNumber to show."""
    value = text.strip()
    if value.isdigit() and 1 <= int(value) <= 24:
        return int(value)
    number, _ = severity_from_text(value)
    if number:
        return number
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a level (trace, debug, info, warn, error, fatal, a log level name such as "
        "warning, notice, crit, critical, or a severity number 1-24)"
    )


def parse_since(text: str, now_ns: int | None = None) -> int:
    """A time as ``collector.query.timespec`` reads it -> Unix ns; a usage error otherwise."""
    try:
        return parse_time(text, now_ns)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_trace_id(text: str) -> str:
    value = text.strip().lower()
    if not value or len(value) > 32 or any(c not in "0123456789abcdef" for c in value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a trace id (up to 32 hex digits)")
    return value


def parse_min_duration(text: str) -> int:
    """'250ms', '1.5s', '800us' -> nanoseconds."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return round(seconds * 1e9)


@dataclass(slots=True)
class LogQuery:
    since_ns: int | None = None
    until_ns: int | None = None  # exclusive
    service: str | None = None
    namespace: str | None = None
    pod: str | None = None  # * and ? are wildcards
    min_severity: int | None = None
    grep: str | None = None
    trace_id: str | None = None
    limit: int = 100  # 0: no limit


@dataclass(slots=True)
class TraceQuery:
    """Which traces to list: those with a span matching every filter set here."""

    since_ns: int | None = None
    until_ns: int | None = None  # exclusive
    service: str | None = None
    namespace: str | None = None
    pod: str | None = None  # * and ? are wildcards
    errors_only: bool = False
    min_duration_ns: int | None = None  # of the whole trace
    limit: int = 20  # 0: no limit


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


GLOB_CHARS = frozenset("*?[")  # a value holding one is a glob pattern (the status API's too)


def resource_filters(
    column: str, namespace: str | None, pod: str | None, where: list[str], params: list[Any]
) -> None:
    """Resource attributes live once per resource: select the resources, then the rows that use them."""
    for key, value in (("k8s.namespace.name", namespace), ("k8s.pod.name", pod)):
        if value is None:
            continue
        op = "GLOB" if key == "k8s.pod.name" and not GLOB_CHARS.isdisjoint(value) else "="
        where.append(
            f"{column} IN (SELECT r.id FROM resources AS r"
            f" WHERE json_extract(r.attributes, '$.\"{key}\"') {op} ?)"
        )
        params.append(value)


def log_filters(q: LogQuery, with_since: bool) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if with_since and q.since_ns is not None:
        where.append("l.time_unix_nano >= ?")
        params.append(q.since_ns)
    if with_since and q.until_ns is not None:
        where.append("l.time_unix_nano < ?")
        params.append(q.until_ns)
    if q.service is not None:
        where.append("l.service = ?")
        params.append(q.service)
    resource_filters("l.resource_id", q.namespace, q.pod, where, params)
    if q.min_severity is not None:
        where.append("l.severity_number >= ?")
        params.append(q.min_severity)
    if q.trace_id is not None:
        where.append("l.trace_id = ?")
        params.append(q.trace_id)
    if q.grep:
        if q.grep.isascii():
            # SQLite's LIKE ignores case for ASCII letters, in C: fast on a full scan.
            where.append("l.body LIKE ? ESCAPE '\\'")
            params.append(_like_pattern(q.grep))
        else:
            where.append("burnline_icontains(l.body, ?)")
            params.append(q.grep.casefold())
    return where, params


def trace_filters(q: TraceQuery) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if q.since_ns is not None:
        where.append("start_time_unix_nano >= ?")
        params.append(q.since_ns)
    if q.until_ns is not None:
        where.append("start_time_unix_nano < ?")
        params.append(q.until_ns)
    if q.service is not None:
        where.append("service = ?")
        params.append(q.service)
    resource_filters("resource_id", q.namespace, q.pod, where, params)
    if q.errors_only:
        where.append("is_error = 1")  # a literal, so that the partial index applies
    return where, params
