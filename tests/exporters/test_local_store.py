"""The local exporter's store: schema versioning and migration, retention, concurrency."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.core.model import Batch, Signal
from collector.query.store import TRACES_SCHEMA_MIN
from exporters.local.exporter import LocalExporter
from exporters.local.schema import APPLICATION_ID, SCHEMA_VERSION, StoreError
from tests.exporters.local_support import NOW, SEC, TRACE, make_exporter, on_writer, pod, record, rows, span
from tests.support import wait_until


@pytest.fixture
async def exporter(tmp_path: Path) -> Any:
    ex = make_exporter(tmp_path)
    await ex.start()
    yield ex
    await ex.stop()


# ---------------------------------------------------------------------------------------------------
# Schema


async def test_new_store_has_schema_version_and_wal(exporter: LocalExporter) -> None:
    assert rows(exporter.path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(exporter.path, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert rows(exporter.path, "PRAGMA journal_mode") == [("wal",)]
    assert await on_writer(exporter, "PRAGMA synchronous") == [(1,)]  # NORMAL
    indexes = {r[0] for r in rows(exporter.path, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"logs_time", "logs_service_time", "logs_severity_time", "logs_trace"} <= indexes
    assert {"spans_trace_span", "spans_time", "spans_service_time", "spans_error_time"} <= indexes
    assert SCHEMA_VERSION == TRACES_SCHEMA_MIN == 2


def _plan(path: Path, sql: str, params: tuple[Any, ...]) -> str:
    return " ".join(row[-1] for row in rows(path, "EXPLAIN QUERY PLAN " + sql, params))


async def test_span_queries_use_their_indexes(exporter: LocalExporter) -> None:
    assert "spans_trace_span" in _plan(exporter.path, "SELECT * FROM spans WHERE trace_id = ?", (TRACE,))
    assert "spans_service_time" in _plan(
        exporter.path, "SELECT * FROM spans WHERE service = ? AND start_time_unix_nano >= ?", ("a", 0)
    )
    assert "spans_error_time" in _plan(
        exporter.path, "SELECT * FROM spans WHERE is_error = 1 AND start_time_unix_nano >= ?", (0,)
    )


async def test_reopening_keeps_data_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ex = make_exporter(tmp_path)
    with caplog.at_level(logging.INFO, logger="burnline.exporter.local"):
        await ex.start()
        await ex.export(Batch(Signal.LOGS, [record(i) for i in range(7)]))
        await ex.stop()
        assert sum("created" in r.getMessage() for r in caplog.records) == 1
        again = make_exporter(tmp_path)
        await again.start()
        try:
            assert again.writer.counts == {"logs": 7, "spans": 0}
            assert await again.export(Batch(Signal.LOGS, [record(7)])) == 1
        finally:
            await again.stop()
        assert sum("created" in r.getMessage() for r in caplog.records) == 1
    assert len(rows(ex.path)) == 8


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    ex = make_exporter(tmp_path)
    await ex.start()
    await ex.stop()
    conn = sqlite3.connect(ex.path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    again = make_exporter(tmp_path)
    with pytest.raises(StoreError, match="newer burnline"):
        await again.start()


# What schema 1 (burnline before traces) created, frozen here: MIGRATIONS may only be appended to.
_SCHEMA_1 = (
    f"PRAGMA application_id = {APPLICATION_ID}",
    "CREATE TABLE resources (id INTEGER PRIMARY KEY, attributes TEXT NOT NULL, last_seen INTEGER NOT NULL)",
    "CREATE TABLE logs (id INTEGER PRIMARY KEY AUTOINCREMENT, time_unix_nano INTEGER NOT NULL,"
    " observed_time_unix_nano INTEGER NOT NULL, service TEXT NOT NULL, severity_number INTEGER NOT NULL,"
    " severity_text TEXT NOT NULL, body TEXT, body_is_json INTEGER NOT NULL, attributes TEXT,"
    " resource_id INTEGER, trace_id TEXT, span_id TEXT, scope_name TEXT)",
    "CREATE INDEX logs_time ON logs (time_unix_nano)",
    "CREATE INDEX logs_service_time ON logs (service, time_unix_nano)",
    "CREATE INDEX logs_severity_time ON logs (severity_number, time_unix_nano)",
    "CREATE INDEX logs_trace ON logs (trace_id) WHERE trace_id IS NOT NULL",
    "PRAGMA user_version = 1",
)


# Schema 1 keyed a resource by the 64-bit BLAKE2b of its sorted-key JSON, as today.
OLD_POD_JSON = orjson.dumps(pod("old-pod"), option=orjson.OPT_SORT_KEYS).decode()
OLD_POD_ID = int.from_bytes(
    hashlib.blake2b(OLD_POD_JSON.encode(), digest_size=8).digest(), "big", signed=True
)


def make_schema_1_store(path: Path) -> None:
    """A store as burnline with schema 1 left it: WAL, its tables, one resource and two log records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA_1:
            conn.execute(statement)
        conn.execute("INSERT INTO resources VALUES (?, ?, ?)", (OLD_POD_ID, OLD_POD_JSON, NOW))
        for i in range(2):
            conn.execute(
                "INSERT INTO logs (time_unix_nano, observed_time_unix_nano, service, severity_number,"
                " severity_text, body, body_is_json, resource_id, trace_id) VALUES (?, 0, 'checkout', 9, '',"
                " ?, 0, ?, ?)",
                (NOW - 60 * SEC + i, f"from schema 1 #{i}", OLD_POD_ID, TRACE),
            )
        conn.execute("COMMIT")
    finally:
        conn.close()


async def test_a_schema_1_store_is_migrated_in_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "store" / "burnline.db"
    make_schema_1_store(path)
    ex = make_exporter(tmp_path)
    with caplog.at_level(logging.INFO, logger="burnline.exporter.local"):
        await ex.start()
    try:
        assert f"migrated from schema 1 (schema {SCHEMA_VERSION})" in caplog.text
        assert ex.writer.counts == {"logs": 2, "spans": 0}
        assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        # The old records and resource are untouched, and both signals write into the same file.
        assert await ex.export(Batch(Signal.TRACES, [span(0, resource=pod("old-pod")), span(1)])) == 2
        assert await ex.export(Batch(Signal.LOGS, [record(3)])) == 1
    finally:
        await ex.stop()
    assert rows(path, "SELECT body, resource_id FROM logs ORDER BY id") == [
        ("from schema 1 #0", OLD_POD_ID),
        ("from schema 1 #1", OLD_POD_ID),
        (
            "message 3",
            rows(path, "SELECT resource_id FROM spans WHERE span_id = ?", ("0000000000000002",))[0][0],
        ),
    ]
    # The old pod's row is reused by the new span, not copied: two resources in all.
    assert rows(path, "SELECT resource_id FROM spans ORDER BY id")[0] == (OLD_POD_ID,)
    assert rows(path, "SELECT count(*) FROM resources") == [(2,)]
    assert rows(path, "SELECT count(*) FROM spans WHERE trace_id = ?", (TRACE,)) == [(2,)]
    # Opening again migrates nothing.
    caplog.clear()
    again = make_exporter(tmp_path)
    with caplog.at_level(logging.INFO, logger="burnline.exporter.local"):
        await again.start()
        await again.stop()
    assert "migrated" not in caplog.text


async def test_a_schema_1_store_being_read_is_migrated(tmp_path: Path) -> None:
    """`burnline logs` may hold a read transaction on the old store while `burnline run` upgrades it."""
    path = tmp_path / "store" / "burnline.db"
    make_schema_1_store(path)
    reader = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM logs").fetchone() == (2,)
        ex = make_exporter(tmp_path)
        await ex.start()
        try:
            assert await ex.export(Batch(Signal.TRACES, [span(0)])) == 1
        finally:
            await ex.stop()
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM spans").fetchone() == (1,)
    finally:
        reader.close()


@pytest.mark.parametrize("content", ["foreign_table", "not_sqlite"])
async def test_foreign_files_are_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "other.db"
    if content == "not_sqlite":
        path.write_bytes(b"this is not a database file at all" * 100)
    else:
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE accounts (id INTEGER)")
        conn.close()
    ex = make_exporter(tmp_path, path=str(path))
    with pytest.raises(StoreError, match=str(path)):
        await ex.start()
    if content == "foreign_table":
        # Left untouched, not even switched to WAL.
        assert rows(path, "SELECT name FROM sqlite_master") == [("accounts",)]
        assert rows(path, "PRAGMA journal_mode") == [("delete",)]


async def test_unwritable_location_fails_start_with_os_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    ex = make_exporter(tmp_path, path=str(blocker / "sub" / "burnline.db"))
    with pytest.raises(OSError):
        await ex.start()


# ---------------------------------------------------------------------------------------------------
# Retention


async def test_retention_deletes_old_records_and_their_resources(tmp_path: Path) -> None:
    ex = make_exporter(tmp_path, retention={"max_age": "1d", "check_interval": "1h", "delete_chunk": 3})
    await ex.start()
    try:
        await wait_until(lambda: ex.retention_passes == 1)  # the pass at start is done; next in 1h
        old = [record(i, pod("old-pod"), time_unix_nano=NOW - 2 * 86400 * SEC + i) for i in range(10)]
        new = [record(100 + i, pod("new-pod")) for i in range(4)]
        await ex.export(Batch(Signal.LOGS, old + new))
        assert await ex.enforce_retention() == 10
        assert ex.writer.counts["logs"] == 4
    finally:
        await ex.stop()
    assert [r[0] for r in rows(ex.path)] == [f"message {100 + i}" for i in range(4)]
    (resource,) = rows(ex.path, "SELECT attributes FROM resources")
    assert orjson.loads(resource[0])["k8s.pod.name"] == "new-pod"


async def test_retention_deletes_in_bounded_chunks(tmp_path: Path) -> None:
    ex = make_exporter(tmp_path, retention={"max_age": "1h", "check_interval": "1h", "delete_chunk": 4})
    await ex.start()
    try:
        await wait_until(lambda: ex.retention_passes == 1)
        await ex.export(
            Batch(Signal.LOGS, [record(i, time_unix_nano=NOW - 7200 * SEC + i) for i in range(10)])
        )
        chunks: list[int] = []
        while n := await ex._run(ex.writer.delete_chunk, time.time_ns()):
            chunks.append(n)
        assert chunks == [4, 4, 2]
    finally:
        await ex.stop()


async def test_retention_keeps_the_newest_max_records(tmp_path: Path) -> None:
    ex = make_exporter(tmp_path, retention={"max_records": 10, "max_age": 0, "delete_chunk": 7})
    await ex.start()
    try:
        # Arrival order differs from time order: the oldest by record time go first.
        times = [NOW - ((i * 7) % 25) * SEC for i in range(25)]
        await ex.export(Batch(Signal.LOGS, [record(i, time_unix_nano=t) for i, t in enumerate(times)]))
        await wait_until(lambda: ex.writer.counts["logs"] == 10)
    finally:
        await ex.stop()
    kept = sorted(r[0] for r in rows(ex.path, "SELECT time_unix_nano FROM logs"))
    assert kept == sorted(times)[-10:]


async def test_background_retention_runs_periodically(tmp_path: Path) -> None:
    ex = make_exporter(tmp_path, retention={"max_age": "1s", "check_interval": "50ms"})
    await ex.start()
    try:
        await ex.export(Batch(Signal.LOGS, [record(i, time_unix_nano=time.time_ns()) for i in range(5)]))
        assert ex.writer.counts["logs"] == 5
        await wait_until(lambda: ex.writer.counts["logs"] == 0, timeout=10)
        await ex.export(Batch(Signal.LOGS, [record(9, time_unix_nano=time.time_ns())]))

        # A pass deletes the records first and the resources they no longer use after: wait for both.
        def all_gone() -> bool:
            return ex.writer.counts["logs"] == 0 and rows(ex.path, "SELECT count(*) FROM resources") == [(0,)]

        await wait_until(all_gone, timeout=10)
    finally:
        await ex.stop()
    assert rows(ex.path, "SELECT count(*) FROM logs") == [(0,)]
    assert rows(ex.path, "SELECT count(*) FROM resources") == [(0,)]


async def test_retention_deletes_old_spans_and_keeps_resources_in_use(tmp_path: Path) -> None:
    ex = make_exporter(tmp_path, retention={"max_age": "1d", "check_interval": "1h", "delete_chunk": 4})
    await ex.start()
    try:
        await wait_until(lambda: ex.retention_passes == 1)
        old_start = NOW - 2 * 86400 * SEC
        old = [span(i, resource=pod("old-pod"), start_time_unix_nano=old_start + i) for i in range(6)]
        # The shared pod's only log record is old, but a recent span still refers to the resource.
        shared = pod("shared-pod")
        await ex.export(Batch(Signal.TRACES, [*old, span(0, trace_id="ab" * 16, resource=shared)]))
        await ex.export(Batch(Signal.LOGS, [record(0, shared, time_unix_nano=old_start), record(1)]))
        assert await ex.enforce_retention() == 7
        assert ex.writer.counts == {"logs": 1, "spans": 1}
    finally:
        await ex.stop()
    assert rows(ex.path, "SELECT trace_id FROM spans") == [("ab" * 16,)]
    kept = sorted(
        orjson.loads(r[0])["k8s.pod.name"] for r in rows(ex.path, "SELECT attributes FROM resources")
    )
    assert kept == ["checkout-1", "shared-pod"]


async def test_max_records_bounds_each_table_on_its_own(tmp_path: Path) -> None:
    ex = make_exporter(tmp_path, retention={"max_records": 5, "max_age": 0, "delete_chunk": 3})
    await ex.start()
    try:
        starts = [NOW - ((i * 7) % 12) * SEC for i in range(12)]
        await ex.export(Batch(Signal.TRACES, [span(i, start_time_unix_nano=t) for i, t in enumerate(starts)]))
        await ex.export(Batch(Signal.LOGS, [record(i) for i in range(4)]))
        await wait_until(lambda: ex.writer.counts["spans"] == 5)
    finally:
        await ex.stop()
    assert ex.writer.counts["logs"] == 4  # under the limit: spans do not count against it
    kept = sorted(r[0] for r in rows(ex.path, "SELECT start_time_unix_nano FROM spans"))
    assert kept == sorted(starts)[-5:]


async def test_retention_off_starts_no_task(tmp_path: Path) -> None:
    ex = make_exporter(tmp_path, retention={"max_age": 0, "max_records": 0})
    await ex.start()
    try:
        assert ex._retention_task is None
    finally:
        await ex.stop()


# ---------------------------------------------------------------------------------------------------
# Concurrency


async def test_open_reader_does_not_block_the_writer(exporter: LocalExporter) -> None:
    await exporter.export(Batch(Signal.LOGS, [record(0)]))
    reader = sqlite3.connect(exporter.path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM logs").fetchone() == (1,)
        await on_writer(exporter, "PRAGMA busy_timeout = 0")  # any wait for the reader would fail
        assert await exporter.export(Batch(Signal.LOGS, [record(i) for i in range(1, 50)])) == 49
        assert reader.execute("SELECT count(*) FROM logs").fetchone() == (1,)  # its snapshot
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM logs").fetchone() == (50,)
    finally:
        reader.close()


async def test_concurrent_reads_while_writing(exporter: LocalExporter) -> None:
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def read_loop() -> None:
        conn = sqlite3.connect(exporter.path.resolve().as_uri() + "?mode=ro", uri=True)
        conn.execute("PRAGMA busy_timeout = 5000")
        try:
            while not stop.is_set() and len(seen) < 100_000:
                seen.append(conn.execute("SELECT count(*) FROM logs").fetchone()[0])
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=read_loop)
    thread.start()
    try:
        for b in range(20):
            await exporter.export(Batch(Signal.LOGS, [record(b * 50 + i) for i in range(50)]))
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 10)
    assert not errors
    assert seen == sorted(seen) and all(n % 50 == 0 for n in seen)  # whole batches, never half
    assert rows(exporter.path, "SELECT count(*) FROM logs") == [(1000,)]
