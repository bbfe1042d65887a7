"""``burnline logs`` and ``burnline traces``: query the local store that the ``local`` exporter writes.

The connection is read-only (``mode=ro``) and every query is one short read transaction: in WAL mode
readers see a consistent snapshot, never wait for the writer and never make it wait, so querying or
following a live store is safe. Text output is one line per record (per trace for ``burnline traces``),
oldest to newest of the most recent matches; ``--json`` prints one JSON object a line with every
stored field. ``burnline traces --trace-id ID`` prints one trace as a tree of spans.

Logs and spans correlate by trace id: ``burnline logs --trace-id ID`` and ``burnline traces
--trace-id ID`` each point to the other when the store has both, and the span tree shows each span's
events and the trace's log records under the span that wrote them.

When nothing matches, a line on stderr says so, naming the store, the time range and the filters
(exit status 0: an empty result is an answer, not a failure). Level names are the ones ingest reads
(``collector/normalize/severity.py``), so ``--level crit`` means what a record's ``crit`` means.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson

from collector.config.types import parse_duration
from collector.core.model import Severity, SpanKind, StatusCode, severity_name
from collector.normalize.severity import severity_from_text
from collector.query.terminal import COLOR_CHOICES, Style, is_terminal, use_color
from collector.query.timespec import parse_time
from exporters.local.exporter import DEFAULT_FILE_NAME, SCHEMA_VERSION, schema_problem

# The oldest store schema whose logs table this module reads (raise it when a migration changes logs).
LOGS_SCHEMA_MIN = 1
# The oldest store schema with the spans table (schema 2 added it).
TRACES_SCHEMA_MIN = 2

# Resource attributes that say where a record came from, shown at the end of a text line.
WHERE_KEYS = ("k8s.namespace.name", "k8s.pod.name", "k8s.container.name", "host.name")

FOLLOW_PAGE = 1000
_SQLITE_NOTADB = 26

# C0 controls and DEL are escaped in text output: one record stays one line, and a record cannot
# send escape sequences to the terminal.
_CONTROL = {i: f"\\x{i:02x}" for i in (*range(32), 127) if i != 9} | {10: "\\n", 13: "\\r"}


class QueryError(Exception):
    """A problem the user fixes (no store there, a config without a local exporter); exit status 1."""


# ---------------------------------------------------------------------------------------------------
# Arguments


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


def _limit(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (0 shows every match)")
    return int(text)


def _interval(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("the poll interval must be above 0")
    return seconds


_TIMES = """\
times (--since, --until): a duration ago (15m, 2h, 7d), now, today, yesterday, a clock time today
(19:00), or a date/time (2026-12-04, 2026-12-04 19:00, 2026-12-04T19:00:00Z). A time without a zone
is local time (the TZ variable's zone, else the system's); output times are UTC.
"""

_EXIT = """\
exit status: 0 when the query ran, whether or not records matched (no match is said on stderr,
naming the store, the time range and the filters); 1 when the store cannot be read; 2 for bad
arguments. Colours and aligned columns on a terminal; none when piped, with NO_COLOR set or with
--color never.
"""

_EPILOG = (
    """\
examples:
  burnline logs                                 the last 100 records of the last hour
  burnline logs --service checkout --level warn warnings and errors of one service
  burnline logs --grep timeout --since 15m      records whose body contains "timeout"
  burnline logs --since yesterday --until today every record of yesterday (local time)
  burnline logs --namespace shop --pod 'checkout-*' --since 19:00
                                                one namespace's checkout pods since 19:00 today
  burnline logs --trace-id 5b8efff798038103d269b633813fc60c
                                                the records of one trace (its spans: burnline traces
                                                --trace-id 5b8efff798038103d269b633813fc60c)
  burnline logs -f --level error                follow new errors (Ctrl-C stops)
  burnline logs --json --limit 0 --since 1d     everything of the last day, one JSON a line

"""
    + _TIMES
    + "\n"
    + _EXIT
)

_TRACES_EPILOG = (
    """\
examples:
  burnline traces                               the last 20 traces of the last hour
  burnline traces --service checkout --errors   traces in which a checkout span failed
  burnline traces --min-duration 250ms --since 15m
                                                slow traces of the last 15 minutes
  burnline traces --trace-id 5b8efff798038103d269b633813fc60c
                                                one trace as a tree of spans (its logs: burnline logs
                                                --trace-id 5b8efff798038103d269b633813fc60c)
  burnline traces --json --limit 0 --since 1d   every trace of the last day, one JSON a line

A trace line: start time, trace id, duration (first span start to last span end), span count, ERROR
when a span failed (status ERROR, or a 5xx answer of a server span), the root span's service and name.
The tree of one trace shows each span's events and the trace's log records under the span that wrote
them (records without a stored span after the tree).

"""
    + _TIMES
    + "\n"
    + _EXIT.replace("records matched", "traces matched")
)


def _add_store_options(p: argparse.ArgumentParser) -> None:
    where = p.add_argument_group("store")
    where.add_argument(
        "--db",
        metavar="PATH",
        help="the store file (default: the -c config's local exporter, "
        f"else $BURNLINE_DATA_DIR/{DEFAULT_FILE_NAME}, else ./data/{DEFAULT_FILE_NAME})",
    )
    where.add_argument(
        "-c",
        "--config",
        metavar="CONFIG",
        help="take the store path from this config file (only the local exporter's path and "
        "service.data_dir are read, so variables used elsewhere need not be set)",
    )


def _add_selection_options(match: argparse._ArgumentGroup, what: str) -> None:
    match.add_argument(
        "--since",
        default="1h",
        type=parse_since,
        metavar="WHEN",
        help=f"{what} at or after this time (default: 1h, an hour ago); see times below",
    )
    match.add_argument(
        "--until", type=parse_since, metavar="WHEN", help=f"{what} before this time (default: no end)"
    )
    match.add_argument(
        "--namespace", metavar="NS", help="only this Kubernetes namespace (k8s.namespace.name)"
    )
    match.add_argument(
        "--pod",
        metavar="POD",
        help="only this pod (k8s.pod.name); * and ? match any text, as in 'checkout-*'",
    )


def _add_color_option(out: argparse._ArgumentGroup) -> None:
    out.add_argument(
        "--color",
        choices=COLOR_CHOICES,
        default="auto",
        help="colour the text output: auto (on a terminal unless NO_COLOR is set), always, never",
    )


def add_parser(subparsers: Any) -> None:
    """Adds the ``logs`` and ``traces`` subcommands to burnline's command line."""
    _add_logs_parser(subparsers)
    _add_traces_parser(subparsers)


def _add_logs_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "logs",
        help="query recent logs in the local store",
        description="Shows log records from the local store (the `local` exporter's SQLite file).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_store_options(p)
    match = p.add_argument_group("filters")
    match.add_argument("-s", "--service", help="only this service (resource service.name)")
    match.add_argument(
        "-l",
        "--level",
        "--min-level",
        dest="level",
        type=parse_level,
        metavar="LEVEL",
        help="this severity and above: trace, debug, info, warn, error, fatal, or any level name ingest "
        "reads (warning, notice, crit, critical, ...) or a severity number 1-24",
    )
    match.add_argument("-g", "--grep", metavar="TEXT", help="body contains TEXT (case-insensitive)")
    _add_selection_options(match, "records")
    match.add_argument(
        "--trace-id",
        type=parse_trace_id,
        metavar="ID",
        help="only records of this trace (its spans: burnline traces --trace-id ID)",
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "-n",
        "--limit",
        default=100,
        type=_limit,
        metavar="N",
        help="the most recent N matches (default: 100; 0: all)",
    )
    out.add_argument("--json", action="store_true", help="one JSON object a line, with every field")
    out.add_argument(
        "-f", "--follow", action="store_true", help="then keep printing new records (Ctrl-C stops)"
    )
    out.add_argument(
        "--interval",
        default=1.0,
        type=_interval,
        metavar="DURATION",
        help="how often --follow looks for new records (default: 1s)",
    )
    _add_color_option(out)
    p.set_defaults(func=run)


def _add_traces_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "traces",
        help="query recent traces in the local store",
        description="Lists recent traces from the local store (the `local` exporter's SQLite file), or "
        "shows one trace as a tree of spans.",
        epilog=_TRACES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_store_options(p)
    one = p.add_argument_group("one trace")
    one.add_argument(
        "--trace-id",
        type=parse_trace_id,
        metavar="ID",
        help="show this trace as a tree of spans, with durations and status (list filters do not apply)",
    )
    match = p.add_argument_group(
        "filters", "a trace is listed when one of its spans matches every filter but --min-duration"
    )
    match.add_argument("-s", "--service", help="with a span of this service (resource service.name)")
    _add_selection_options(match, "with a span started")
    match.add_argument(
        "--errors",
        action="store_true",
        help="with a failed span (status ERROR, or a 5xx answer of a server span)",
    )
    match.add_argument(
        "--min-duration",
        type=parse_min_duration,
        metavar="DURATION",
        help="only traces that lasted at least this long (250ms, 1.5s), first span start to last span end",
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "-n",
        "--limit",
        default=20,
        type=_limit,
        metavar="N",
        help="the N most recent traces (default: 20; 0: all)",
    )
    out.add_argument(
        "--json",
        action="store_true",
        help="one JSON object a line: per trace, or per span (every field) with --trace-id",
    )
    _add_color_option(out)
    p.set_defaults(func=run_traces)


# ---------------------------------------------------------------------------------------------------
# The store


def resolve_db(db: str | None, config: str | None, env: Mapping[str, str] | None = None) -> Path:
    """The store to read: --db, else the -c config's local exporter, else the default location."""
    if db:
        return Path(db).expanduser()
    if config:
        return _db_from_config(config)
    data_dir = (os.environ if env is None else env).get("BURNLINE_DATA_DIR") or "./data"
    return Path(data_dir) / DEFAULT_FILE_NAME


def _db_from_config(path: str) -> Path:
    """The store of the config's local exporter. Reads only what locates it (the exporter's ``path``,
    ``service.data_dir``) and substitutes only their variables: a query needs no ES_API_KEY."""
    from collector.config import ConfigError, ServiceConfig, expand_value, read_config_file
    from collector.core.component import type_of

    try:
        data, source = read_config_file(path)
        exporters = data.get("exporters") or {}
        if not isinstance(exporters, dict):
            raise QueryError(f"{source}: exporters: must be a mapping of exporters")
        stores = {str(cid): raw for cid, raw in exporters.items() if type_of(str(cid)) == "local"}
        if not stores:
            raise QueryError(
                f"{source}: no local exporter is configured, so there is no store to read; use --db"
            )
        if len(stores) > 1:
            raise QueryError(
                f"{source}: several local exporters ({', '.join(sorted(stores))}); pick one store with --db"
            )
        [(cid, raw)] = stores.items()
        raw = raw if raw is not None else {}
        if not isinstance(raw, dict):
            raise QueryError(f"{source}: exporters.{cid}: must be a mapping of settings")
        store = expand_value(raw.get("path"), f"exporters.{cid}.path", source)
        if store not in (None, ""):
            return Path(str(store)).expanduser()
        service = data.get("service")
        data_dir = service.get("data_dir") if isinstance(service, dict) else None
        if data_dir is None:
            data_dir = ServiceConfig.model_fields["data_dir"].default
        data_dir = expand_value(data_dir, "service.data_dir", source)
    except ConfigError as exc:
        raise QueryError(str(exc)) from None
    return Path(str(data_dir)).expanduser() / DEFAULT_FILE_NAME


def _icontains(text: Any, needle: str) -> bool:
    return isinstance(text, str) and needle in text.casefold()


def open_reader(path: Path, min_version: int = LOGS_SCHEMA_MIN) -> sqlite3.Connection:
    """A read-only connection to the store at ``path``; QueryError when there is no usable store (or
    its schema is older than ``min_version``, the first to have the tables the caller reads)."""
    if not path.is_file():
        raise QueryError(
            f"no local store at {path} (burnline writes one once `burnline run` has a `local` exporter; "
            "point to it with --db PATH or -c CONFIG)"
        )
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise QueryError(f"cannot open {path}: {exc}") from None
    try:
        # Waits out the writer's brief exclusive moments (WAL recovery, checkpoint restart).
        conn.execute("PRAGMA busy_timeout = 5000")
        problem = schema_problem(conn, path)
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as exc:
        conn.close()
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == _SQLITE_NOTADB:
            raise QueryError(f"{path} is not a burnline store: {exc}") from None
        raise QueryError(f"cannot read {path}: {exc}") from None
    if problem is None and version == 0:
        problem = f"{path} is empty: burnline has not created its tables yet"
    elif problem is None and version < min_version:
        problem = (
            f"{path} has an old store schema ({version}, before this burnline kept "
            f"{'spans' if min_version >= TRACES_SCHEMA_MIN else 'logs'}): start `burnline run` once "
            "to upgrade it"
        )
    if problem:
        conn.close()
        raise QueryError(problem)
    assert version <= SCHEMA_VERSION
    conn.create_function("burnline_icontains", 2, _icontains, deterministic=True)
    return conn


@contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction: every statement inside sees the same committed state."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


# ---------------------------------------------------------------------------------------------------
# Queries


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


_SELECT = (
    "SELECT l.id, l.time_unix_nano, l.observed_time_unix_nano, l.service, l.severity_number,"
    " l.severity_text, l.body, l.body_is_json, l.attributes,"
    # A scalar subquery rather than a join: always one primary-key lookup, whatever the planner thinks.
    " (SELECT r.attributes FROM resources AS r WHERE r.id = l.resource_id),"
    " l.trace_id, l.span_id, l.scope_name FROM logs AS l"
)


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


_GLOB_CHARS = frozenset("*?[")


def _resource_filters(
    column: str, namespace: str | None, pod: str | None, where: list[str], params: list[Any]
) -> None:
    """Resource attributes live once per resource: select the resources, then the rows that use them."""
    for key, value in (("k8s.namespace.name", namespace), ("k8s.pod.name", pod)):
        if value is None:
            continue
        op = "GLOB" if key == "k8s.pod.name" and not _GLOB_CHARS.isdisjoint(value) else "="
        where.append(
            f"{column} IN (SELECT r.id FROM resources AS r"
            f" WHERE json_extract(r.attributes, '$.\"{key}\"') {op} ?)"
        )
        params.append(value)


def _filters(q: LogQuery, with_since: bool) -> tuple[list[str], list[Any]]:
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
    _resource_filters("l.resource_id", q.namespace, q.pod, where, params)
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


def _rows(cursor: sqlite3.Cursor) -> list[StoredLog]:
    return [StoredLog(*row) for row in cursor]


def recent(conn: sqlite3.Connection, q: LogQuery) -> tuple[list[StoredLog], int]:
    """The most recent ``q.limit`` matches, oldest first, and the highest record id in the store then."""
    where, params = _filters(q, with_since=True)
    with _snapshot(conn):
        newest_id = int(conn.execute("SELECT coalesce(max(id), 0) FROM logs").fetchone()[0])
        sql = _SELECT
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY l.time_unix_nano DESC, l.id DESC LIMIT ?"
        rows = _rows(conn.execute(sql, [*params, q.limit or -1]))
    rows.reverse()
    return rows, newest_id


def newer(
    conn: sqlite3.Connection, q: LogQuery, after_id: int, page: int = FOLLOW_PAGE
) -> tuple[list[StoredLog], int, bool]:
    """Matches stored after record ``after_id``, in arrival order, at most ``page`` of them.

    Returns the rows, the id to continue after, and whether more may be waiting. Ids only grow
    (AUTOINCREMENT), so records that arrive late with old timestamps are still shown.
    """
    where, params = _filters(q, with_since=False)
    with _snapshot(conn):
        newest_id = int(conn.execute("SELECT coalesce(max(id), 0) FROM logs").fetchone()[0])
        if newest_id <= after_id:
            return [], after_id, False
        sql = _SELECT + " WHERE l.id > ? AND l.id <= ?"
        if where:
            sql += " AND " + " AND ".join(where)
        sql += " ORDER BY l.id LIMIT ?"
        rows = _rows(conn.execute(sql, [after_id, newest_id, *params, page]))
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


# ---------------------------------------------------------------------------------------------------
# Output


def iso_time(ns: int, digits: int = 3) -> str:
    """Unix ns -> '2026-11-29T22:56:48.123Z' (``digits`` of the fraction, 0-9)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    try:
        text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return str(ns)
    if digits:
        text += "." + f"{frac:09d}"[:digits]
    return text + "Z"


def _clean(text: str) -> str:
    return text.translate(_CONTROL)


def _logfmt_value(value: Any) -> str:
    if isinstance(value, str):
        if value and not any(c in value for c in ' "=') and value.isprintable():
            return value
        return orjson.dumps(value).decode()
    return _clean(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode())


def _load_object(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


_PLAIN = Style()


def _fields_text(rec: StoredLog, with_trace_id: bool = True) -> str:
    """The record's attributes, where it came from and its trace id, as logfmt ``key=value`` pairs."""
    fields = [f"{k}={_logfmt_value(v)}" for k, v in _load_object(rec.attributes).items()]
    resource = _load_object(rec.resource)
    fields += [f"{k}={_logfmt_value(resource[k])}" for k in WHERE_KEYS if k in resource]
    if rec.trace_id and with_trace_id:
        fields.append(f"trace_id={rec.trace_id}")
    return _clean(" ".join(fields))


def format_text(rec: StoredLog, style: Style = _PLAIN) -> str:
    """``2026-11-29T22:56:48.123Z  ERROR  checkout  payment failed  k8s.pod.name=checkout-7d9f``.

    With a ``style`` for a terminal: the service column aligned and the columns coloured. Everything
    from the record is cleaned of control characters before our own escapes are added.
    """
    parts = [
        style.paint(iso_time(rec.time_unix_nano), "dim"),
        style.level(rec.level or "-"),
        style.paint(style.column("service", _clean(rec.service) or "-"), "cyan"),
        _clean(rec.body) if rec.body is not None else "",
    ]
    fields = _fields_text(rec)
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


def writer(stream: TextIO, as_json: bool, style: Style = _PLAIN) -> Callable[[list[StoredLog]], None]:
    """A function that prints a list of records to ``stream``, one a line, and flushes."""

    def emit(rows: list[StoredLog]) -> None:
        if as_json:
            stream.write("".join(format_json(r).decode() + "\n" for r in rows))
        else:
            style.widen("service", [_clean(r.service) or "-" for r in rows])
            stream.write("".join(format_text(r, style) + "\n" for r in rows))
        stream.flush()

    return emit


def terminal_style(args: argparse.Namespace, stream: TextIO) -> Style:
    """Colours per ``--color`` (and NO_COLOR); aligned columns when ``stream`` is a terminal."""
    return Style(color=use_color(args.color, stream), align=is_terminal(stream))


def _describe_query(path: Path, args: argparse.Namespace, filters: dict[str, Any]) -> str:
    """``store data/burnline.db, since 2026-12-05T07:00:00.000Z, service=cart``: what was asked."""
    parts = [f"store {path}", f"since {iso_time(args.since)}"]
    if args.until is not None:
        parts.append(f"until {iso_time(args.until)}")
    parts += [f"{name}={_logfmt_value(value)}" for name, value in filters.items() if value is not None]
    return _clean(", ".join(parts))


def _level_filter(number: int | None) -> str | None:
    """``ERROR`` for a range's first number, else the number (``crit`` is 18, inside ERROR's range)."""
    if number is None:
        return None
    return severity_name(number) if number in _RANGE_STARTS else str(number)


_RANGE_STARTS = frozenset(int(level) for level in Severity if level)


# ---------------------------------------------------------------------------------------------------
# The command


def _run_reader(
    command: str, args: argparse.Namespace, min_version: int, body: Callable[[sqlite3.Connection, Path], int]
) -> int:
    """Opens the store read-only and runs ``body``; what every query command answers on the way out:
    1 for an unreadable store, 130 for Ctrl-C, 0 when the reader of a pipe went away."""
    try:
        path = resolve_db(args.db, args.config)
        conn = open_reader(path, min_version)
    except QueryError as exc:
        print(f"burnline {command}: {exc}", file=sys.stderr)
        return 1
    try:
        return body(conn, path)
    except sqlite3.Error as exc:
        print(f"burnline {command}: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `burnline logs | head`: the reader is gone. Point stdout at /dev/null so that the
        # interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        conn.close()


def run(args: argparse.Namespace) -> int:
    """``burnline logs``; returns the exit status."""
    return _run_reader("logs", args, LOGS_SCHEMA_MIN, lambda conn, path: _logs(conn, args, path))


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
        asked = _describe_query(
            path,
            args,
            {"service": args.service, "namespace": args.namespace, "pod": args.pod,
             "min_level": _level_filter(args.level), "grep": args.grep, "trace_id": args.trace_id},
        )  # fmt: skip
        with _snapshot(conn):
            hint = _no_logs_hint(conn, query)
        waiting = "; waiting for new ones (Ctrl-C stops)" if args.follow else ""
        print(f"burnline logs: no records match ({asked}){hint}{waiting}", file=sys.stderr)
    if args.trace_id is not None and not args.json:
        # Logs and spans correlate by trace id: point to the trace's spans (on stderr: the output
        # stays one record a line).
        spans = trace_span_count(conn, args.trace_id)
        if spans:
            print(
                f"{_count(spans, 'span')} of this trace: burnline traces --trace-id {args.trace_id}"
                f"{_store_args(args)}",
                file=sys.stderr,
            )
    if args.follow:
        try:
            follow(conn, query, newest_id, emit, args.interval)
        except KeyboardInterrupt:  # the way to end --follow
            return 0
    return 0


# ---------------------------------------------------------------------------------------------------
# Traces: queries


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


def _trace_filters(q: TraceQuery) -> tuple[list[str], list[Any]]:
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
    _resource_filters("resource_id", q.namespace, q.pod, where, params)
    if q.errors_only:
        where.append("is_error = 1")  # a literal, so that the partial index applies
    return where, params


def recent_traces(conn: sqlite3.Connection, q: TraceQuery) -> list[TraceSummary]:
    """The ``q.limit`` most recently started traces with a matching span, oldest first.

    Each is summed up over all of its stored spans, not only the matching ones.
    """
    where, params = _trace_filters(q)
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
    with _snapshot(conn):
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
    with _snapshot(conn):
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


def trace_logs(conn: sqlite3.Connection, trace_id: str) -> tuple[int, int | None]:
    """How many log records of the trace the store has and the time of the first (the logs_trace
    index answers)."""
    count, first = conn.execute(
        "SELECT count(*), min(time_unix_nano) FROM logs WHERE trace_id = ?", (trace_id,)
    ).fetchone()
    return int(count), first


def trace_span_count(conn: sqlite3.Connection, trace_id: str) -> int:
    """How many spans of the trace the store has (0 when the store predates spans)."""
    if int(conn.execute("PRAGMA user_version").fetchone()[0]) < TRACES_SCHEMA_MIN:
        return 0
    return int(conn.execute("SELECT count(*) FROM spans WHERE trace_id = ?", (trace_id,)).fetchone()[0])


# ---------------------------------------------------------------------------------------------------
# Traces: output


def format_duration(ns: int) -> str:
    """Nanoseconds -> '0s', '850ns', '12.5µs', '250ms', '1.23s', '2m05s', '1h02m'."""
    if ns <= 0:
        return "0s"
    if ns < 1_000:
        return f"{ns}ns"
    # Each unit while the rounded value stays below the next unit (999.97µs is "1ms", not "1000µs").
    for unit, size, decimals, below in (("µs", 1e3, 1, 1000), ("ms", 1e6, 1, 1000), ("s", 1e9, 2, 60)):
        value = round(ns / size, decimals)
        if value < below:
            return _trim(f"{value:.{decimals}f}") + unit
    whole = round(ns / 1e9)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _trim(number: str) -> str:
    return number.rstrip("0").rstrip(".") if "." in number else number


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _kind_name(kind: int) -> str:
    try:
        return SpanKind(kind).name.lower() if kind else ""
    except ValueError:
        return str(kind)


def _status_name(code: int) -> str:
    try:
        return StatusCode(code).name.lower()
    except ValueError:
        return str(code)


def format_trace_line(t: TraceSummary, style: Style = _PLAIN) -> str:
    """``<start>  <trace id>  <duration>  <spans>  ERROR|-  <root service>  <root name>``."""
    parts = [
        style.paint(iso_time(t.start_time_unix_nano), "dim"),
        t.trace_id,
        f"{format_duration(t.duration_ns):>8}",
        f"{_count(t.span_count, 'span'):>9}",
        style.level("ERROR" if t.error_count else "-"),
        style.paint(style.column("service", _clean(t.root_service) or "-"), "cyan"),
        _clean(t.root_name) or "-",
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
            _count(len(spans), "span"),
            _count(errors, "error"),
            "services: " + _clean(", ".join(s or "-" for s in services)),
        ]
    )


# Log records shown in a span tree; a trace with more points to `burnline logs` for the rest.
TREE_LOG_LIMIT = 200
_TREE_INDENT_MAX = 40  # levels; deeper spans are drawn at this depth (their order still shows nesting)


def _offset(ns: int) -> str:
    """An offset from the trace's start: ``+250ms``, or ``-30s`` for a log written before it."""
    return ("-" if ns < 0 else "+") + format_duration(abs(ns))


def _indent(depth: int) -> str:
    return "  " * min(depth, _TREE_INDENT_MAX)


def format_tree_line(node: TreeSpan, trace_start_ns: int, style: Style = _PLAIN) -> str:
    """``+offset  duration  status  <indent>name  (service, kind)  span_id=...  [status message]``."""
    s = node.span
    offset = max(0, s.start_time_unix_nano - trace_start_ns)
    status = "ERROR" if s.is_error else ("ok" if s.status_code == StatusCode.OK else "-")
    where = ", ".join(p for p in (_clean(s.service) or "-", _kind_name(s.kind)) if p)
    status_column = style.paint(f"{status:<5}", "red" if s.is_error else "green" if status == "ok" else "")
    line = (
        f"{_offset(offset):>9}  {format_duration(s.duration_ns):>8}  {status_column}  "
        f"{_indent(node.depth)}{style.paint(_clean(s.name) or '-', 'bold')}  ({where})  span_id={s.span_id}"
    )
    if s.status_message:
        line += f"  status_message={_logfmt_value(s.status_message)}"
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
            [f"{k}={_logfmt_value(v)}" for k, v in attributes.items()] if isinstance(attributes, dict) else []
        )
        text = "  ".join(p for p in (f"event: {event.get('name') or '-'}", " ".join(pairs)) if p)
        moment = event.get("time_unix_nano")
        notes.append(
            TreeNote(moment if isinstance(moment, int) else span.start_time_unix_nano, "", _clean(text))
        )
    return notes


def log_note(rec: StoredLog) -> TreeNote:
    """A log record as a note: ``log: payment failed  (checkout)  order=17``."""
    body = _clean(rec.body) if rec.body is not None else ""
    fields = _fields_text(rec, with_trace_id=False)  # the tree is the trace's
    text = f"log: {body}  ({_clean(rec.service) or '-'})" + (f"  {fields}" if fields else "")
    return TreeNote(rec.time_unix_nano, rec.level or "-", text)


def format_note_line(note: TreeNote, depth: int, trace_start_ns: int, style: Style = _PLAIN) -> str:
    """``+offset            LEVEL  <indent>  log: ...`` (the duration column empty, events no level)."""
    return (
        f"{_offset(note.time_unix_nano - trace_start_ns):>9}  {'':>8}  {style.level(note.level)}  "
        f"{_indent(depth)}{style.paint(note.text, 'dim') if not note.level else note.text}"
    )


def trace_log_rows(conn: sqlite3.Connection, trace_id: str, limit: int) -> list[StoredLog]:
    """The trace's first ``limit`` log records by time (the logs_trace index answers)."""
    with _snapshot(conn):
        return _rows(
            conn.execute(
                _SELECT + " WHERE l.trace_id = ? ORDER BY l.time_unix_nano, l.id LIMIT ?", (trace_id, limit)
            )
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
            "kind": _kind_name(s.kind),
            "start": iso_time(s.start_time_unix_nano, digits=9),
            "start_time_unix_nano": s.start_time_unix_nano,
            "end_time_unix_nano": s.end_time_unix_nano,
            "duration_ns": s.duration_ns,
            "status": _status_name(s.status_code),
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


def _store_args(args: argparse.Namespace) -> str:
    """The store options of this command line, to repeat in a suggested command."""
    if args.db:
        return " --db " + shlex.quote(args.db)
    if args.config:
        return " -c " + shlex.quote(args.config)
    return ""


# ---------------------------------------------------------------------------------------------------
# Traces: the command


def run_traces(args: argparse.Namespace) -> int:
    """``burnline traces``; returns the exit status."""
    return _run_reader("traces", args, TRACES_SCHEMA_MIN, lambda conn, path: _traces(conn, args, path))


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
        style.widen("service", [_clean(t.root_service) or "-" for t in traces])
        sys.stdout.write("".join(format_trace_line(t, style) + "\n" for t in traces))
    sys.stdout.flush()
    if not traces:
        asked = _describe_query(
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
    return f"burnline logs --trace-id {trace_id} --since {since} -n 0{_store_args(args)}"


def _show_trace(conn: sqlite3.Connection, args: argparse.Namespace, path: Path) -> int:
    trace_id = args.trace_id
    spans = trace_spans(conn, trace_id)
    with _snapshot(conn):
        logs, first_log = trace_logs(conn, trace_id)
    if not spans:
        hint = ""
        if logs and first_log is not None:
            hint = f"; it has {_count(logs, 'log record')}: {_logs_command(trace_id, first_log, args)}"
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
        lines.append(f"{_count(logs, 'log record')} of this trace{shown}: {command}")
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()
    return 0
