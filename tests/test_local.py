"""The local exporter: SQLite store writes, errors, retention, schema versioning, concurrency."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.component import (
    ComponentContext,
    PermanentExportError,
    RetryableExportError,
)
from collector.deadletter import DeadLetter
from collector.model import Batch, LogRecord, Severity, Signal
from collector.queue import MemoryQueue
from collector.sender import QueueSender
from collector.telemetry import Telemetry
from exporters.local import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    LocalConfig,
    LocalExporter,
    StoreError,
    store_path,
)
from tests.support import InjectReceiver, metric_value, running_service, wait_until

NOW = time.time_ns()
SEC = 1_000_000_000


def pod(name: str, service: str = "checkout") -> dict[str, Any]:
    return {"service.name": service, "k8s.namespace.name": "shop", "k8s.pod.name": name}


def record(i: int, resource: dict[str, Any] | None = None, **kw: Any) -> LogRecord:
    kw.setdefault("time_unix_nano", NOW - (1000 - i) * 1_000_000)
    kw.setdefault("body", f"message {i}")
    kw.setdefault("severity_number", Severity.INFO)
    return LogRecord(resource=pod("checkout-1") if resource is None else resource, **kw)


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


@pytest.fixture
async def exporter(tmp_path: Path) -> Any:
    ex = make_exporter(tmp_path)
    await ex.start()
    yield ex
    await ex.stop()


# ---------------------------------------------------------------------------------------------------
# Config


def test_config_defaults_and_path() -> None:
    cfg = LocalConfig()
    assert cfg.retention.max_age == 7 * 86400
    assert cfg.retention.max_records == 5_000_000
    assert store_path(cfg, "./data") == Path("data/burnline.db")
    assert store_path(cfg, "/var/lib/burnline") == Path("/var/lib/burnline/burnline.db")
    assert store_path(LocalConfig(path="/tmp/x.db"), "./data") == Path("/tmp/x.db")
    cfg = LocalConfig.model_validate({"retention": {"max_age": "2h", "check_interval": "5s"}})
    assert cfg.retention.max_age == 7200 and cfg.retention.check_interval == 5
    with pytest.raises(ValueError, match="retention_period"):
        LocalConfig.model_validate({"retention_period": "1d"})


# ---------------------------------------------------------------------------------------------------
# Writing


async def test_export_writes_every_field(exporter: LocalExporter) -> None:
    res = pod("checkout-7d9f")
    batch = Batch(
        Signal.LOGS,
        [
            record(1, res, severity_text="error", severity_number=Severity.ERROR, attributes={"k": 1},
                   trace_id="ab" * 16, span_id="cd" * 8, observed_time_unix_nano=NOW, scope_name="app"),
            record(2, res, body={"msg": "structured", "n": [1, 2]}),
            record(3, {}, body=None),
        ],
    )  # fmt: skip
    assert await exporter.export(batch) == 3
    got = rows(
        exporter.path,
        "SELECT time_unix_nano, observed_time_unix_nano, service, severity_number, severity_text, body,"
        " body_is_json, attributes, resource_id, trace_id, span_id, scope_name FROM logs ORDER BY id",
    )
    first, second, third = got
    assert first[:8] == (
        batch.items[0].time_unix_nano,
        NOW,
        "checkout",
        17,
        "error",
        "message 1",
        0,
        '{"k":1}',
    )
    assert first[9:] == ("ab" * 16, "cd" * 8, "app")
    assert second[5:8] == ('{"msg":"structured","n":[1,2]}', 1, None)
    assert second[8] == first[8] is not None  # one resource row shared
    assert third[2] == "" and third[5] is None and third[8] is None and third[9] is None
    (resource,) = rows(exporter.path, "SELECT attributes FROM resources")
    assert orjson.loads(resource[0]) == res


async def test_resources_are_stored_once_across_batches(exporter: LocalExporter) -> None:
    a, b = pod("a"), pod("b")
    for _ in range(3):
        # Equal content in new dict objects must still map to the same row.
        await exporter.export(Batch(Signal.LOGS, [record(i, dict(a if i % 2 else b)) for i in range(10)]))
    assert rows(exporter.path, "SELECT count(*) FROM resources") == [(2,)]
    assert rows(exporter.path, "SELECT count(DISTINCT resource_id) FROM logs") == [(2,)]


async def test_record_without_time_gets_observed_time(exporter: LocalExporter) -> None:
    before = time.time_ns()
    await exporter.export(Batch(Signal.LOGS, [record(1, time_unix_nano=0, observed_time_unix_nano=NOW - SEC),
                                               record(2, time_unix_nano=0)]))  # fmt: skip
    (t1,), (t2,) = rows(exporter.path, "SELECT time_unix_nano FROM logs ORDER BY id")
    assert t1 == NOW - SEC
    assert before <= t2 <= time.time_ns()


async def test_odd_values_are_stored_not_fatal(exporter: LocalExporter) -> None:
    odd = record(
        1,
        body="bad \ud800 surrogate",
        attributes={"big": 2**70, "obj": object(), "bytes": b"\xffraw", 3: "int key", "s": "\udc80"},
    )
    assert await exporter.export(Batch(Signal.LOGS, [odd, record(2)])) == 2
    (body, attrs), second = rows(exporter.path, "SELECT body, attributes FROM logs ORDER BY id")
    assert body == "bad ? surrogate"
    decoded = orjson.loads(attrs)
    assert decoded["big"] == 2**70 and decoded["obj"].startswith("<object") and "raw" in decoded["bytes"]
    assert second == ("message 2", None)


async def test_unstorable_records_are_dead_lettered_and_the_rest_kept(tmp_path: Path) -> None:
    telemetry = Telemetry()
    ex = make_exporter(tmp_path, telemetry)
    await ex.start()
    try:
        bad_time = record(1, time_unix_nano=2**70)
        bad_severity = record(2, severity_number=2**80)
        not_a_number = record(4, severity_number="loud")
        no_text = record(5, severity_text=None)  # tolerated: stored as ""
        batch = Batch(Signal.LOGS, [record(0), bad_time, bad_severity, record(3), not_a_number, no_text])
        assert await ex.export(batch) == 3
    finally:
        await ex.stop()
    assert rows(ex.path, "SELECT body, severity_text FROM logs") == [
        ("message 0", ""),
        ("message 3", ""),
        ("message 5", ""),
    ]
    lines = (tmp_path / "deadletter" / "local.ndjson").read_bytes().splitlines()
    dead = sorted(orjson.loads(line)["record"]["body"] for line in lines)
    assert dead == ["message 1", "message 2", "message 4"]
    failed = telemetry.registry.get_sample_value(
        "burnline_records_failed_total", {"component": "local", "signal": "logs", "reason": "invalid_record"}
    )
    assert failed == 3


async def test_other_signals_are_refused_permanently(exporter: LocalExporter) -> None:
    assert Signal.LOGS in LocalExporter.signals
    with pytest.raises(PermanentExportError, match="metrics"):
        await exporter.export(Batch(Signal.METRICS, [object()]))
    assert await exporter.export(Batch(Signal.LOGS, [])) == 0


async def test_export_does_not_block_the_event_loop(exporter: LocalExporter) -> None:
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    big = Batch(Signal.LOGS, [record(i, attributes={"n": i, "text": "x" * 200}) for i in range(20000)])
    assert await exporter.export(big) == 20000
    stop.set()
    await task
    assert ticks > 10  # the loop kept running while the writer thread converted and inserted


# ---------------------------------------------------------------------------------------------------
# Errors


async def test_locked_database_is_retryable(exporter: LocalExporter) -> None:
    await on_writer(exporter, "PRAGMA busy_timeout = 50")
    other = sqlite3.connect(exporter.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(RetryableExportError) as err:
            await exporter.export(Batch(Signal.LOGS, [record(1)]))
        assert err.value.reason == "locked" and err.value.remaining is None and err.value.delivered == 0
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert await exporter.export(Batch(Signal.LOGS, [record(1)])) == 1


async def test_disk_full_is_retryable_and_logged(
    exporter: LocalExporter, caplog: pytest.LogCaptureFixture
) -> None:
    await exporter.export(Batch(Signal.LOGS, [record(0)]))
    ((pages,),) = await on_writer(exporter, "PRAGMA page_count")
    await on_writer(exporter, f"PRAGMA max_page_count = {pages}")  # what SQLITE_FULL looks like
    big = Batch(Signal.LOGS, [record(i, body="x" * 1000) for i in range(200)])
    with caplog.at_level(logging.INFO, logger="burnline.exporter.local"):
        with pytest.raises(RetryableExportError) as err:
            await exporter.export(big)
        assert err.value.reason == "disk_full" and err.value.remaining is None
        with pytest.raises(RetryableExportError):
            await exporter.export(big)
        full = [r for r in caplog.records if "disk full" in r.getMessage()]
        assert len(full) == 1 and full[0].levelno == logging.ERROR  # once, not per retry
        assert "200 record(s) stay queued" in full[0].getMessage()
        assert rows(exporter.path, "SELECT count(*) FROM logs") == [(1,)]  # nothing half-written
        await on_writer(exporter, "PRAGMA max_page_count = 1073741823")
        assert await exporter.export(big) == 200
        assert any("writable again" in r.getMessage() for r in caplog.records)


async def test_sender_retries_through_a_lock_and_delivers(tmp_path: Path) -> None:
    telemetry = Telemetry()
    ex = make_exporter(
        tmp_path,
        telemetry,
        retry={"initial_interval": "20ms", "max_interval": "50ms"},
        batch={"flush_interval": "10ms"},
    )
    await ex.start()
    await on_writer(ex, "PRAGMA busy_timeout = 20")
    other = sqlite3.connect(ex.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    queue = MemoryQueue("local", ex.config.queue, telemetry)
    sender = QueueSender(ex, ex.config, queue, telemetry)
    sender.start()
    try:
        await queue.put(Batch(Signal.LOGS, [record(i) for i in range(5)], 500))
        retries = {"component": "local", "signal": "logs", "reason": "locked"}
        await wait_until(
            lambda: (telemetry.registry.get_sample_value("burnline_export_retries_total", retries) or 0) >= 2
        )
        other.execute("ROLLBACK")
        assert await sender.drain(timeout=10) == 0
    finally:
        other.close()
        await ex.stop()
    assert len(rows(ex.path)) == 5
    assert (
        telemetry.registry.get_sample_value(
            "burnline_records_exported_total", {"component": "local", "signal": "logs"}
        )
        == 5
    )


async def test_queue_sender_delivers_many_batches(tmp_path: Path) -> None:
    telemetry = Telemetry()
    ex = make_exporter(
        tmp_path, telemetry, batch={"max_records": 250, "flush_interval": "10ms"}, concurrency=2
    )
    await ex.start()
    queue = MemoryQueue("local", ex.config.queue, telemetry)
    sender = QueueSender(ex, ex.config, queue, telemetry)
    sender.start()
    try:
        for b in range(20):
            await queue.put(Batch(Signal.LOGS, [record(b * 100 + i) for i in range(100)], 10_000))
        assert await sender.drain(timeout=30) == 0
    finally:
        await ex.stop()
    bodies = [r[0] for r in rows(ex.path)]
    assert sorted(bodies) == sorted(f"message {i}" for i in range(2000))


async def test_full_service_pipeline_drains_into_the_store(tmp_path: Path) -> None:
    db = tmp_path / "svc.db"
    config = {
        "receivers": {"inject": {}},
        "exporters": {"local": {"path": str(db), "batch": {"flush_interval": "10ms"}}},
        "service": {"pipelines": {"logs": {"receivers": ["inject"], "exporters": ["local"]}}},
    }
    async with running_service(config, str(tmp_path)) as svc:
        receiver = svc.receivers["inject"]
        assert isinstance(receiver, InjectReceiver)
        for b in range(5):
            await receiver.push([record(b * 10 + i) for i in range(10)])
        await wait_until(
            lambda: (
                metric_value(svc, "burnline_records_exported_total", {"component": "local", "signal": "logs"})
                == 50
            )
        )
    assert rows(db, "SELECT count(*) FROM logs") == [(50,)]


# ---------------------------------------------------------------------------------------------------
# Schema


async def test_new_store_has_schema_version_and_wal(exporter: LocalExporter) -> None:
    assert rows(exporter.path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(exporter.path, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert rows(exporter.path, "PRAGMA journal_mode") == [("wal",)]
    assert await on_writer(exporter, "PRAGMA synchronous") == [(1,)]  # NORMAL
    indexes = {r[0] for r in rows(exporter.path, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"logs_time", "logs_service_time", "logs_severity_time", "logs_trace"} <= indexes


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
            assert again.writer.counts == {"logs": 7}
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
        await wait_until(lambda: ex.writer.counts["logs"] == 0, timeout=10)
    finally:
        await ex.stop()
    assert rows(ex.path, "SELECT count(*) FROM logs") == [(0,)]
    assert rows(ex.path, "SELECT count(*) FROM resources") == [(0,)]


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
