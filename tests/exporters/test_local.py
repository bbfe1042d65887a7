"""The local exporter: SQLite store writes (logs and spans) and errors; schema versioning and
migration, retention and concurrency are in test_local_store.py."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.core.component import PermanentExportError, RetryableExportError
from collector.core.model import (
    Batch,
    Scope,
    Severity,
    Signal,
    Span,
    SpanEvent,
    SpanKind,
    SpanLink,
    StatusCode,
)
from collector.core.telemetry import Telemetry
from collector.exporterhelper.queue import MemoryQueue
from collector.exporterhelper.sender import QueueSender
from exporters.local.config import LocalConfig, store_path
from exporters.local.exporter import LocalExporter
from tests.exporters.local_support import NOW, SEC, TRACE, make_exporter, on_writer, pod, record, rows, span
from tests.support import InjectReceiver, metric_value, running_service, wait_until


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
        attributes={
            "big": 2**70,
            "obj": object(),
            "bytes": b"\xffraw",
            3: "int key",
            "s": "\udc80",
            b"bin": "bin key",
            "nan": float("nan"),
        },
    )
    assert await exporter.export(Batch(Signal.LOGS, [odd, record(2)])) == 2
    (body, attrs), second = rows(exporter.path, "SELECT body, attributes FROM logs ORDER BY id")
    assert body == "bad ? surrogate"
    decoded = orjson.loads(attrs)  # valid JSON: no NaN token, no key dropped
    assert decoded["big"] == str(2**70) and decoded["obj"].startswith("<object") and "raw" in decoded["bytes"]
    assert decoded["3"] == "int key" and decoded["bin"] == "bin key" and decoded["nan"] == "NaN"
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
    assert LocalExporter.signals == {Signal.LOGS, Signal.TRACES}
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
# Spans

_SPAN_COLUMNS = (
    "trace_id, span_id, parent_span_id, trace_state, name, kind, start_time_unix_nano, end_time_unix_nano,"
    " duration_ns, status_code, status_message, is_error, service, attributes, events, links, resource_id,"
    " scope_name, scope_version"
)


async def test_spans_are_stored_with_every_field(exporter: LocalExporter) -> None:
    res = pod("checkout-7d9f")
    failed = span(
        1,
        resource=res,
        trace_state="vendor=1",
        kind=SpanKind.CLIENT,
        status_code=StatusCode.ERROR,
        status_message="connection reset",
        attributes={"db.system": "postgresql", "rows": 3},
        events=[SpanEvent(NOW, "exception", {"exception.type": "IOError"}, dropped_attributes_count=2)],
        links=[
            SpanLink("ab" * 16, "cd" * 8, "k=v", {"why": "batch"}, flags=1),
            SpanLink("ef" * 16, "01" * 8),
        ],
        scope=Scope("psycopg", "3.1"),
    )
    server_5xx = span(2, resource=res, kind=SpanKind.SERVER, attributes={"http.response.status_code": 503})
    records = [span(0, resource=res, kind=SpanKind.SERVER, status_code=StatusCode.OK), failed, server_5xx]
    assert await exporter.export(Batch(Signal.TRACES, records)) == 3
    assert exporter.writer.counts["spans"] == 3
    root, child, second = rows(exporter.path, f"SELECT {_SPAN_COLUMNS} FROM spans ORDER BY id")
    start = records[0].start_time_unix_nano
    assert root[:14] == (
        TRACE, "0000000000000001", None, None, "op 0", SpanKind.SERVER, start, start + 5_000_000,
        5_000_000, StatusCode.OK, None, 0, "checkout", None,
    )  # fmt: skip
    assert root[14:16] == (None, None) and root[17:] == (None, None)
    assert child[2:6] == ("0000000000000001", "vendor=1", "op 1", SpanKind.CLIENT)
    assert child[9:13] == (StatusCode.ERROR, "connection reset", 1, "checkout")
    assert orjson.loads(child[13]) == {"db.system": "postgresql", "rows": 3}
    assert orjson.loads(child[14]) == [
        {
            "time_unix_nano": NOW,
            "name": "exception",
            "attributes": {"exception.type": "IOError"},
            "dropped_attributes_count": 2,
        }
    ]
    assert orjson.loads(child[15]) == [
        {"trace_id": "ab" * 16, "span_id": "cd" * 8, "trace_state": "k=v", "attributes": {"why": "batch"},
         "flags": 1},
        {"trace_id": "ef" * 16, "span_id": "01" * 8},
    ]  # fmt: skip
    assert child[17:] == ("psycopg", "3.1")
    assert second[9:12] == (StatusCode.UNSET, None, 1)  # a server's 503 is an error though status is unset
    # Spans share the resources table with logs: one row for the pod.
    assert root[16] == child[16] == second[16] is not None
    await exporter.export(Batch(Signal.LOGS, [record(1, dict(res))]))
    assert rows(exporter.path, "SELECT count(*) FROM resources") == [(1,)]


async def test_a_span_sent_again_is_delivered_not_duplicated(exporter: LocalExporter) -> None:
    first = [span(i) for i in range(3)]
    assert await exporter.export(Batch(Signal.TRACES, first)) == 3
    # A client retrying after a lost acknowledgement: the same spans plus new ones.
    again = [span(i) for i in range(5)]
    assert await exporter.export(Batch(Signal.TRACES, again)) == 5
    assert rows(exporter.path, "SELECT span_id FROM spans ORDER BY id") == [
        (f"{i + 1:016x}",) for i in range(5)
    ]
    assert exporter.writer.counts["spans"] == 5
    # The same span id in another trace is another span.
    assert await exporter.export(Batch(Signal.TRACES, [span(0, trace_id="ab" * 16)])) == 1
    assert exporter.writer.counts["spans"] == 6


async def test_invalid_spans_are_dead_lettered_and_the_rest_kept(tmp_path: Path) -> None:
    telemetry = Telemetry()
    ex = make_exporter(tmp_path, telemetry)
    await ex.start()
    try:
        bad = [
            span(1, trace_id=""),
            span(2, trace_id="0" * 32),
            Span(TRACE, "xyz", "bad span id", NOW, NOW),
            span(3, start_time_unix_nano=2**70),
            span(4, parent_span_id="not hex"),
            record(5),  # a log record in a traces batch
        ]
        good = [span(0), span(6, name="bad \ud800 name", attributes={"big": 2**70})]
        assert await ex.export(Batch(Signal.TRACES, [good[0], *bad, good[1]])) == 2
    finally:
        await ex.stop()
    (first, no_attributes), (odd, attributes) = rows(
        ex.path, "SELECT name, attributes FROM spans ORDER BY id"
    )
    assert (first, no_attributes) == ("op 0", None)
    assert odd == "bad ? name" and orjson.loads(attributes) == {"big": str(2**70)}
    letters = [
        orjson.loads(line) for line in (tmp_path / "deadletter" / "local.ndjson").read_bytes().splitlines()
    ]
    assert len(letters) == 6 and {letter["signal"] for letter in letters} == {"traces"}
    reasons = " | ".join(letter["detail"] for letter in letters)
    for problem in ("trace id ''", "trace id '000", "span id 'xyz'", "is not Unix nanoseconds",
                    "parent span id 'not hex'", "expected a Span"):  # fmt: skip
        assert problem in reasons
    failed = telemetry.registry.get_sample_value(
        "burnline_records_failed_total",
        {"component": "local", "signal": "traces", "reason": "invalid_record"},
    )
    assert failed == 6


async def test_spans_through_the_service_land_in_the_store(tmp_path: Path) -> None:
    db = tmp_path / "svc.db"
    config = {
        "receivers": {"inject": {}},
        "exporters": {"local": {"path": str(db), "batch": {"flush_interval": "10ms"}}},
        "service": {"pipelines": {"traces": {"receivers": ["inject"], "exporters": ["local"]}}},
    }
    async with running_service(config, str(tmp_path)) as svc:
        receiver = svc.receivers["inject"]
        assert isinstance(receiver, InjectReceiver)
        # (InjectReceiver.push is typed for log records; it hands over any signal's items.)
        for b in range(4):
            batch: list[Any] = [span(b * 5 + i) for i in range(5)]
            await receiver.push(batch, Signal.TRACES)
        resent: list[Any] = [span(0), span(1)]
        await receiver.push(resent, Signal.TRACES)  # counted as delivered, not stored again
        exported = {"component": "local", "signal": "traces"}
        await wait_until(lambda: metric_value(svc, "burnline_records_exported_total", exported) == 22)
    assert rows(db, "SELECT count(*), count(DISTINCT span_id) FROM spans") == [(20, 20)]
    assert rows(db, "SELECT count(*) FROM spans WHERE parent_span_id IS NULL") == [(1,)]


async def test_an_exporter_in_logs_and_traces_pipelines_gets_batches_of_one_signal(tmp_path: Path) -> None:
    telemetry = Telemetry()
    ex = make_exporter(tmp_path, telemetry, batch={"flush_interval": "10ms"})
    await ex.start()
    queue = MemoryQueue("local", ex.config.queue, telemetry)
    # Both are queued before a worker takes anything, as when both pipelines deliver in one instant.
    await queue.put(Batch(Signal.TRACES, [span(i) for i in range(3)], 300))
    await queue.put(Batch(Signal.LOGS, [record(i, trace_id=TRACE) for i in range(2)], 200))
    sender = QueueSender(ex, ex.config, queue, telemetry)
    sender.start()
    try:
        assert await sender.drain(timeout=10) == 0
    finally:
        await ex.stop()
    assert rows(ex.path, "SELECT count(*) FROM spans") == [(3,)]
    assert rows(ex.path, "SELECT count(*) FROM logs") == [(2,)]
    assert not (tmp_path / "deadletter" / "local.ndjson").exists()


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
