"""Start-up failures said in words: which component, which setting, which variable to change.

An ``OSError`` from a bind or an ``sqlite3`` error from opening a file names neither the component
nor the config key behind it (``[Errno 98] … address already in use``, ``unable to open database
file``). The service catches those where it starts each component and raises ``StartupError`` with a
line like ``receivers.forward: 127.0.0.1:24224 is in use (receivers.forward.endpoint,
BURNLINE_FORWARD_ENDPOINT)``. The variable is read from the config file's own ``${VAR}`` values (the
built-in default's included), so that the map of keys to variables lives in the YAML only.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from collector.config import Config, ConfigError, read_config_file
from collector.config.loader import ADMIN_ENDPOINT_VARIABLE
from collector.config.types import split_endpoint

BUILT_IN_SOURCE = "<built-in default>"

# The variable of a ``${VAR}``, ``${VAR:-default}`` or ``${env:VAR}`` inside a value.
_VARIABLE = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")
# How asyncio and the socket module quote an address in their messages: ('127.0.0.1', 24224).
_QUOTED_ADDRESS = re.compile(r"\('([^']*)', (\d+)")


class StartupError(Exception):
    """burnline cannot start; ``str()`` is one line naming the component, the setting and the problem."""


def variables_by_key(config: Config, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Key path (``receivers.forward.endpoint``) -> the variable its value comes from, read from the
    config's file (the built-in default's YAML for the built-in config); empty when not readable."""
    path = None if config.source == BUILT_IN_SOURCE else config.source
    try:
        data, _ = read_config_file(path)
    except ConfigError:
        return {}
    found: dict[str, str] = {}
    for key, value in _leaves(data, ""):
        match = _VARIABLE.search(value)
        if match:
            found[key] = match.group(1)
    service = data.get("service")
    environment = os.environ if env is None else env
    if isinstance(service, dict) and "admin" not in service and environment.get(ADMIN_ENDPOINT_VARIABLE):
        found["service.admin.endpoint"] = ADMIN_ENDPOINT_VARIABLE  # the loader applies it to any file
    return found


def _leaves(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _leaves(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _leaves(child, f"{path}[{i}]")


def setting(key: str, variables: Mapping[str, str]) -> str:
    """``receivers.forward.endpoint, BURNLINE_FORWARD_ENDPOINT`` (the key alone without a variable)."""
    variable = variables.get(key)
    return f"{key}, {variable}" if variable else key


def _endpoints(settings: Any, path: str) -> Iterator[tuple[str, str]]:
    """(key path, value) of every ``endpoint`` setting in a component's config (OTLP has two)."""
    data = settings.model_dump() if isinstance(settings, BaseModel) else settings
    if isinstance(data, dict):
        for key, value in data.items():
            child = f"{path}.{key}"
            if key == "endpoint" and isinstance(value, str):
                yield child, value
            else:
                yield from _endpoints(value, child)


def _port_taken(endpoint: str) -> bool:
    """Whether something else listens on ``endpoint`` now (a bind as a server's fails)."""
    try:
        host, port = split_endpoint(endpoint)
    except ValueError:
        return False
    if port == 0:
        return False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _culprit_endpoint(exc: BaseException, endpoints: list[tuple[str, str]]) -> tuple[str, str] | None:
    """The endpoint setting a bind error is about: the one its message quotes, else the one in use."""
    text = str(exc)
    quoted = _QUOTED_ADDRESS.search(text)
    for key, value in endpoints:
        if value in text:
            return key, value
        if quoted is not None:
            try:
                if split_endpoint(value)[1] == int(quoted.group(2)):
                    return key, value
            except ValueError:
                continue
    for key, value in endpoints:
        if _port_taken(value):
            return key, value
    return endpoints[0] if len(endpoints) == 1 else None


def _bind_problem(exc: BaseException, endpoint: str) -> str:
    code = exc.errno if isinstance(exc, OSError) else None
    text = str(exc).lower()
    if code == errno.EADDRINUSE or "address already in use" in text or _port_taken(endpoint):
        return f"{endpoint} is in use"
    if code == errno.EADDRNOTAVAIL or "cannot assign requested address" in text:
        return f"{endpoint}: the host is not an address of this machine"
    if code == errno.EACCES:
        return f"{endpoint}: no permission to listen there (ports below 1024 need privileges)"
    return f"cannot listen on {endpoint}: {_reason(exc)}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def _sqlite_cause(exc: BaseException) -> sqlite3.Error | None:
    """The SQLite error behind ``exc`` (a store may wrap "unable to open database file" in its own)."""
    seen: BaseException | None = exc
    for _ in range(5):  # a short chain: the store's error, the driver's
        if seen is None:
            return None
        if isinstance(seen, sqlite3.Error):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def path_problem(path: Path) -> str | None:
    """Why a file cannot be created at ``path``, in words: the first ancestor that exists is not a
    directory, or cannot be written. None when nothing on the way is wrong."""
    for ancestor in [path.parent, *path.parent.parents]:
        if not ancestor.exists():
            continue
        if not ancestor.is_dir():
            return f"{ancestor} is not a directory"
        if not os.access(ancestor, os.W_OK | os.X_OK):
            return f"no permission to write {ancestor}"
        return None
    return None


def check_data_dir(data_dir: Path, variables: Mapping[str, str]) -> None:
    """Creates the data directory if needed and proves it writable; StartupError in words if not."""
    where = setting("service.data_dir", variables)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        if data_dir.exists():
            raise StartupError(f"data_dir {data_dir} is not a directory ({where})") from None
        blocker = path_problem(data_dir) or "a parent is not a directory"
        raise StartupError(f"data_dir {data_dir} cannot be created: {blocker} ({where})") from None
    except PermissionError as exc:
        raise StartupError(f"data_dir {data_dir}: no permission to write {exc.filename} ({where})") from None
    except OSError as exc:
        raise StartupError(f"data_dir {data_dir}: {_reason(exc)} ({where})") from None
    try:  # os.access is not the truth (root, ACLs, read-only mounts): a real file is
        with tempfile.TemporaryFile(dir=data_dir):
            pass
    except PermissionError:
        raise StartupError(f"data_dir {data_dir}: no permission to write {data_dir} ({where})") from None
    except OSError as exc:
        raise StartupError(f"data_dir {data_dir}: cannot write there: {_reason(exc)} ({where})") from None


def explain(
    component: str,
    settings: Any,
    exc: BaseException,
    variables: Mapping[str, str],
    *,
    files: Mapping[str, Path] | None = None,
) -> StartupError:
    """The StartupError for a component (``receivers.forward``, ``service.admin``) that failed to start.

    ``settings`` is its config (searched for ``endpoint`` keys); ``files`` maps the keys of the files it
    opens (``exporters.local.path``, ``service.data_dir``) to their paths, for file errors.
    """
    endpoints = list(_endpoints(settings, component))
    database_error = _sqlite_cause(exc)
    is_file_error = database_error is not None or (isinstance(exc, OSError) and exc.filename is not None)
    if endpoints and not is_file_error:
        culprit = _culprit_endpoint(exc, endpoints)
        if culprit is not None:
            key, value = culprit
            return StartupError(f"{component}: {_bind_problem(exc, value)} ({setting(key, variables)})")
    if is_file_error:
        for key, path in (files or {}).items():
            problem = path_problem(path)
            if problem is not None:
                return StartupError(f"{component}: {problem} ({setting(key, variables)})")
        if database_error is not None and files:
            key, path = next(iter(files.items()))
            said = f"cannot open {path}: {database_error}"
            return StartupError(f"{component}: {said} ({setting(key, variables)})")
    return StartupError(f"{component}: cannot start: {_reason(exc)}")
