"""Records, spans and a local exporter for the local store's tests."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from collector.core.component import ComponentContext
from collector.core.model import LogRecord, Severity, Span
from collector.core.telemetry import Telemetry
from collector.exporterhelper.deadletter import DeadLetter
from exporters.local.config import LocalConfig
from exporters.local.exporter import LocalExporter

NOW = time.time_ns()
SEC = 1_000_000_000


def pod(name: str, service: str = "checkout") -> dict[str, Any]:
    return {"service.name": service, "k8s.namespace.name": "shop", "k8s.pod.name": name}


def record(i: int, resource: dict[str, Any] | None = None, **kw: Any) -> LogRecord:
    kw.setdefault("time_unix_nano", NOW - (1000 - i) * 1_000_000)
    kw.setdefault("body", f"message {i}")
    kw.setdefault("severity_number", Severity.INFO)
    return LogRecord(resource=pod("checkout-1") if resource is None else resource, **kw)


TRACE = "5b8efff798038103d269b633813fc60c"


def span(i: int, trace_id: str = TRACE, resource: dict[str, Any] | None = None, **kw: Any) -> Span:
    """Span ``i`` of a trace: span id i + 1, the child of span i - 1 (span 0 is the root)."""
    kw.setdefault("start_time_unix_nano", NOW - (1000 - i) * 1_000_000)
    kw.setdefault("end_time_unix_nano", kw["start_time_unix_nano"] + 5_000_000)
    kw.setdefault("parent_span_id", f"{i:016x}" if i else "")
    kw.setdefault("name", f"op {i}")
    return Span(
        trace_id,
        f"{i + 1:016x}",
        resource=pod("checkout-1") if resource is None else resource,
        **kw,
    )


def make_exporter(tmp_path: Path, telemetry: Telemetry | None = None, **config: Any) -> LocalExporter:
    config.setdefault("path", str(tmp_path / "store" / "burnline.db"))
    telemetry = telemetry or Telemetry()
    exporter = LocalExporter(
        LocalConfig.model_validate(config),
        ComponentContext("local", telemetry, str(tmp_path), logging.getLogger("burnline.exporter.local")),
    )
    exporter.dead_letter = DeadLetter("local", tmp_path / "deadletter", telemetry)
    return exporter


def rows(
    path: Path, sql: str = "SELECT body FROM logs ORDER BY id", params: tuple[Any, ...] = ()
) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


async def on_writer(exporter: LocalExporter, sql: str) -> Any:
    """Runs SQL on the exporter's own connection, in its writer thread."""
    return await exporter._run(lambda: exporter.writer.conn.execute(sql).fetchall())
