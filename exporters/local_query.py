"""``burnline logs``: query the local store that the ``local`` exporter writes.

The connection is read-only (``mode=ro``) and every query is one short read transaction: in WAL mode
readers see a consistent snapshot, never wait for the writer and never make it wait, so querying or
following a live store is safe. Text output is one line per record, oldest to newest of the most
recent matches; ``--json`` prints one JSON object a line with every stored field.
"""

from __future__ import annotations

import argparse
import os
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
from collector.model import severity_name
from exporters.local import DEFAULT_FILE_NAME, SCHEMA_VERSION, LocalConfig, schema_problem, store_path

# The oldest store schema whose logs table this module reads (raise it when a migration changes logs).
LOGS_SCHEMA_MIN = 1

LEVELS = {
    "trace": 1, "debug": 5, "info": 9, "warn": 13, "warning": 13, "error": 17, "err": 17,
    "fatal": 21, "critical": 21, "crit": 21,
}  # fmt: skip

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
    """'warn', 'ERROR' or a SeverityNumber (1-24) -> the lowest SeverityNumber to show."""
    value = text.strip().lower()
    if value in LEVELS:
        return LEVELS[value]
    if value.isdigit() and 1 <= int(value) <= 24:
        return int(value)
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a level (trace, debug, info, warn, error, fatal or a severity number 1-24)"
    )


def parse_since(text: str, now_ns: int | None = None) -> int:
    """'15m', '2h' (that long ago) or an RFC 3339 time -> the earliest record time, Unix ns."""
    now = datetime.now(UTC).timestamp() if now_ns is None else now_ns / 1e9
    value = text.strip()
    try:
        seconds = float(value) if value.replace(".", "", 1).isdigit() else parse_duration(value)
        return int((now - seconds) * 1e9)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration (15m, 2h, 7d) nor a time (2026-11-29T22:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


def parse_trace_id(text: str) -> str:
    value = text.strip().lower()
    if not value or len(value) > 32 or any(c not in "0123456789abcdef" for c in value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a trace id (up to 32 hex digits)")
    return value


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


_EPILOG = """\
examples:
  burnline logs                                 the last 100 records of the last hour
  burnline logs --service checkout --level warn warnings and errors of one service
  burnline logs --grep timeout --since 15m      records whose body contains "timeout"
  burnline logs --trace-id 5b8efff798038103d269b633813fc60c
  burnline logs -f --level error                follow new errors (Ctrl-C stops)
  burnline logs --json --limit 0 --since 1d     everything of the last day, one JSON a line
"""


def add_parser(subparsers: Any) -> None:
    """Adds the ``logs`` subcommand to burnline's command line."""
    p = subparsers.add_parser(
        "logs",
        help="query recent logs in the local store",
        description="Shows log records from the local store (the `local` exporter's SQLite file).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = p.add_argument_group("store")
    where.add_argument(
        "--db",
        metavar="PATH",
        help="the store file (default: the -c config's local exporter, "
        f"else $BURNLINE_DATA_DIR/{DEFAULT_FILE_NAME}, else ./data/{DEFAULT_FILE_NAME})",
    )
    where.add_argument("-c", "--config", metavar="CONFIG", help="take the store path from this config file")
    match = p.add_argument_group("filters")
    match.add_argument("-s", "--service", help="only this service (resource service.name)")
    match.add_argument(
        "-l",
        "--level",
        "--min-level",
        dest="level",
        type=parse_level,
        metavar="LEVEL",
        help="this severity and above: trace, debug, info, warn, error, fatal",
    )
    match.add_argument("-g", "--grep", metavar="TEXT", help="body contains TEXT (case-insensitive)")
    match.add_argument(
        "--since",
        default="1h",
        type=parse_since,
        metavar="WHEN",
        help="records newer than a duration ago (15m, 2h, 7d) or a time (default: 1h)",
    )
    match.add_argument("--trace-id", type=parse_trace_id, metavar="ID", help="only records of this trace")
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
    p.set_defaults(func=run)


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
    from collector.component import type_of
    from collector.config import ConfigError, load_config

    try:
        config = load_config(path)
    except ConfigError as exc:
        raise QueryError(str(exc)) from None
    stores = {cid: cfg for cid, cfg in config.exporters.items() if type_of(cid) == "local"}
    if not stores:
        raise QueryError(f"{path}: no local exporter is configured, so there is no store to read; use --db")
    if len(stores) > 1:
        raise QueryError(
            f"{path}: several local exporters ({', '.join(sorted(stores))}); pick one store with --db"
        )
    cfg = next(iter(stores.values()))
    assert isinstance(cfg, LocalConfig)
    return store_path(cfg, config.service.data_dir)


def _icontains(text: Any, needle: str) -> bool:
    return isinstance(text, str) and needle in text.casefold()


def open_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection to the store at ``path``; QueryError when there is no usable store."""
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
    elif problem is None and version < LOGS_SCHEMA_MIN:
        problem = f"{path} has an old store schema ({version}): start `burnline run` once to upgrade it"
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
    service: str | None = None
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


def _filters(q: LogQuery, with_since: bool) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if with_since and q.since_ns is not None:
        where.append("l.time_unix_nano >= ?")
        params.append(q.since_ns)
    if q.service is not None:
        where.append("l.service = ?")
        params.append(q.service)
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


def format_text(rec: StoredLog) -> str:
    """``2026-11-29T22:56:48.123Z  ERROR  checkout  payment failed  k8s.pod.name=checkout-7d9f``."""
    parts = [iso_time(rec.time_unix_nano), f"{rec.level or '-':<5}", _clean(rec.service) or "-"]
    parts.append(_clean(rec.body) if rec.body is not None else "")
    fields = [f"{k}={_logfmt_value(v)}" for k, v in _load_object(rec.attributes).items()]
    resource = _load_object(rec.resource)
    fields += [f"{k}={_logfmt_value(resource[k])}" for k in WHERE_KEYS if k in resource]
    if rec.trace_id:
        fields.append(f"trace_id={rec.trace_id}")
    if fields:
        parts.append(_clean(" ".join(fields)))
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


def writer(stream: TextIO, as_json: bool) -> Callable[[list[StoredLog]], None]:
    """A function that prints a list of records to ``stream``, one a line, and flushes."""

    def emit(rows: list[StoredLog]) -> None:
        if as_json:
            stream.write("".join(format_json(r).decode() + "\n" for r in rows))
        else:
            stream.write("".join(format_text(r) + "\n" for r in rows))
        stream.flush()

    return emit


# ---------------------------------------------------------------------------------------------------
# The command


def run(args: argparse.Namespace) -> int:
    """``burnline logs``; returns the exit status."""
    path: Path | None = None
    try:
        path = resolve_db(args.db, args.config)
        conn = open_reader(path)
    except QueryError as exc:
        print(f"burnline logs: {exc}", file=sys.stderr)
        return 1
    query = LogQuery(
        since_ns=args.since,
        service=args.service,
        min_severity=args.level,
        grep=args.grep,
        trace_id=args.trace_id,
        limit=args.limit,
    )
    emit = writer(sys.stdout, args.json)
    try:
        rows, newest_id = recent(conn, query)
        if rows:
            emit(rows)
        if args.follow:
            try:
                follow(conn, query, newest_id, emit, args.interval)
            except KeyboardInterrupt:  # the way to end --follow
                return 0
        return 0
    except sqlite3.Error as exc:
        print(f"burnline logs: cannot read {path}: {exc}", file=sys.stderr)
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
