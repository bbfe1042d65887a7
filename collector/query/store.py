"""Opening the local store read-only, and what every query command answers when it cannot.

The connection is read-only (``mode=ro``) and every query is one short read transaction: in WAL mode
readers see a consistent snapshot, never wait for the writer and never make it wait, so querying or
following a live store is safe.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sqlite3
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from exporters.local.exporter import DEFAULT_FILE_NAME, SCHEMA_VERSION, schema_problem

# The oldest store schema whose logs table this module reads (raise it when a migration changes logs).
LOGS_SCHEMA_MIN = 1
# The oldest store schema with the spans table (schema 2 added it).
TRACES_SCHEMA_MIN = 2
_SQLITE_NOTADB = 26


class QueryError(Exception):
    """A problem the user fixes (no store there, a config without a local exporter); exit status 1."""


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
def snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction: every statement inside sees the same committed state."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def run_reader(
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


def store_args(args: argparse.Namespace) -> str:
    """The store options of this command line, to repeat in a suggested command."""
    if args.db:
        return " --db " + shlex.quote(args.db)
    if args.config:
        return " -c " + shlex.quote(args.config)
    return ""
