"""DurableQueue: what was acknowledged survives restarts, hard stops, out-of-order delivery and corruption."""

from __future__ import annotations

import asyncio
import sqlite3
import zlib
from contextlib import closing
from pathlib import Path

import msgpack
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as PbLogRecord
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs, ScopeLogs
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from collector.core.component import Refused
from collector.core.model import Batch, LogRecord, MetricKind, MetricPoint, Signal, Span, Temporality
from collector.core.telemetry import Telemetry
from collector.exporterhelper import batch_codec, durable_queue
from collector.exporterhelper.durable_queue import DurableQueue, decoded_size
from collector.exporterhelper.queue import QueueConfig
from collector.normalize.otlp import logs_from_proto
from tests.support import decode_measured


def batch(tag: str, n: int = 2, size: int = 100) -> Batch:
    return Batch(Signal.LOGS, [LogRecord(time_unix_nano=i, body=f"{tag}-{i}") for i in range(n)], size)


def bodies(batches: list[Batch] | None) -> list[str]:
    return [r.body for b in batches or [] for r in b.items]


async def open_queue(directory: Path, telemetry: Telemetry | None = None, **settings: object) -> DurableQueue:
    q = DurableQueue("es", QueueConfig.model_validate(settings), telemetry or Telemetry(), directory)
    await q.open()
    return q


def rows(directory: Path) -> int:
    with sqlite3.connect(directory / "es.db") as db:
        return int(db.execute("SELECT COUNT(*) FROM batches").fetchone()[0])


async def test_delivered_batches_are_deleted(tmp_path: Path) -> None:
    q = await open_queue(tmp_path)
    await q.put(batch("a"))
    await q.put(batch("b"))
    assert rows(tmp_path) == 2  # on disk before put returned
    taken = await q.take(100, 10_000, 0)
    assert bodies(taken) == ["a-0", "a-1", "b-0", "b-1"]
    await q.release(taken or [])
    assert rows(tmp_path) == 0 and q.records == 0
    await q.shutdown()


async def test_restart_delivers_what_was_queued(tmp_path: Path) -> None:
    q = await open_queue(tmp_path)
    for tag in "abc":
        await q.put(batch(tag))
    await q.close()
    await q.shutdown()

    t = Telemetry()
    again = await open_queue(tmp_path, t)
    assert again.records == 6
    assert t.registry.get_sample_value("burnline_queue_records", {"component": "es"}) == 6
    taken = await again.take(100, 10_000, 0)
    assert bodies(taken) == ["a-0", "a-1", "b-0", "b-1", "c-0", "c-1"]
    await again.release(taken or [])
    await again.shutdown()
    assert rows(tmp_path) == 0


async def test_abandoned_in_flight_batches_come_back(tmp_path: Path) -> None:
    q = await open_queue(tmp_path)
    await q.put(batch("a"))
    taken = await q.take(100, 10_000, 0)
    q.abandon(taken or [])  # a hard stop interrupted the export
    await q.shutdown()
    again = await open_queue(tmp_path)
    assert bodies(await again.take(100, 10_000, 0)) == ["a-0", "a-1"]
    await again.shutdown()


async def test_out_of_order_delivery_deletes_only_what_was_delivered(tmp_path: Path) -> None:
    q = await open_queue(tmp_path)
    await q.put(batch("a"))
    await q.put(batch("b"))
    first = await q.take(2, 10_000, 0)
    second = await q.take(2, 10_000, 0)
    await q.release(second or [])  # the second sender finished first; the first never does
    await q.shutdown()
    again = await open_queue(tmp_path)
    assert bodies(await again.take(100, 10_000, 0)) == bodies(first) == ["a-0", "a-1"]
    await again.shutdown()


async def take_all(q: DurableQueue, max_records: int, total: int, most_in_memory: int = 0) -> list[str]:
    """Takes and completes batches until ``total`` records came (at most 20 takes); with
    ``most_in_memory``, checks before each take that no more batches than that are held decoded."""
    seen: list[str] = []
    for _ in range(20):
        assert not most_in_memory or len(q._items) <= most_in_memory
        taken = await q.take(max_records, 10_000_000, 0)
        if not taken:
            break
        seen += bodies(taken)
        await q.release(taken)
        if len(seen) >= total:
            break
    return seen


def in_memory(b: Batch) -> int:
    """What the queue counts a batch as taking decoded."""
    return decoded_size(len(batch_codec.encode(b)))


async def test_backlog_beyond_memory_is_read_back_in_order(tmp_path: Path) -> None:
    q = await open_queue(tmp_path, memory_bytes=in_memory(batch("b0", n=1)) * 5 // 2)
    for i in range(10):
        await q.put(batch(f"b{i}", n=1, size=100))
    assert len(q._items) == 2  # the rest waits on disk only
    seen = await take_all(q, 3, 10)
    assert seen == [f"b{i}-0" for i in range(10)]
    assert rows(tmp_path) == 0
    await q.shutdown()


async def test_memory_is_bounded_by_the_decoded_batches_not_their_received_size(tmp_path: Path) -> None:
    # A remote-write request decodes to six times its size: a bound by received size held 100 MiB of
    # samples for "16MiB". Here each batch claims 1 byte received and is big once decoded.
    def big(tag: str) -> Batch:
        return Batch(Signal.LOGS, [LogRecord(time_unix_nano=i, body=f"{tag}-{i}" * 50) for i in range(20)], 1)

    q = await open_queue(tmp_path, memory_bytes=in_memory(big("b0")) * 3)
    for i in range(10):
        await q.put(big(f"b{i}"))
    assert len(q._items) == 3
    taken = await q.take(20, 10_000_000, 0)  # one batch leaves memory: room for one from disk
    assert taken is not None and len(taken) == 1
    await q.release(taken)
    seen = bodies(taken) + await take_all(q, 20, 180, most_in_memory=3)
    assert seen == [f"b{i}-{j}" * 50 for i in range(10) for j in range(20)]
    await q.shutdown()


def kubernetes_logs(n: int) -> Batch:
    pod = {"k8s.namespace.name": "shop", "k8s.pod.name": "cart-7d9f8c6b5-x2x7q", "service.name": "cart"}
    records = [
        LogRecord(
            time_unix_nano=1_700_000_000_000_000_000 + i,
            body=f"GET /api/v1/items/{i} 200 {i % 97} ms",
            severity_number=9,
            severity_text="INFO",
            attributes={
                "log.iostream": "stdout",
                "http.route": "/api/v1/items/{id}",
                "request.id": f"r-{i:08x}",
            },
            resource=pod,
        )
        for i in range(n)
    ]
    return Batch(Signal.LOGS, records, 0)


def labelled_samples(n: int) -> Batch:
    points = [
        MetricPoint(
            "container_cpu_usage_seconds_total",
            MetricKind.SUM,
            1_700_000_000_000_000_000,
            {
                "namespace": "shop",
                "pod": f"cart-7d9f8c6b5-{i:05x}",
                "container": "cart",
                "node": f"node-{i % 7}",
            },
            value=float(i),
            monotonic=True,
            temporality=Temporality.CUMULATIVE,
            resource={"service.name": "kubelet", "service.instance.id": f"10.0.0.{i % 200}:10250"},
        )
        for i in range(n)
    ]
    return Batch(Signal.METRICS, points, 0)


def server_spans(n: int) -> Batch:
    spans = [
        Span(
            trace_id=f"{i:032x}",
            span_id=f"{i:016x}",
            name="GET /api/v1/items/{id}",
            start_time_unix_nano=1_700_000_000_000_000_000 + i,
            end_time_unix_nano=1_700_000_000_005_000_000 + i,
            kind=2,
            attributes={
                "http.request.method": "GET",
                "http.response.status_code": 200,
                "url.path": f"/items/{i}",
            },
            resource={"service.name": "cart", "k8s.pod.name": "cart-7d9f8c6b5-x2x7q"},
        )
        for i in range(n)
    ]
    return Batch(Signal.TRACES, spans, 0)


@pytest.mark.parametrize("make", [kubernetes_logs, labelled_samples, server_spans])
def test_the_decoded_estimate_is_within_a_factor_of_two(make: object) -> None:
    assert callable(make)
    row = batch_codec.encode(make(500))
    decoded, held = decode_measured(row)
    assert len(decoded) == 500
    assert held / 2 <= decoded_size(len(row)) <= held * 2, (decoded_size(len(row)), held)


async def test_puts_during_backlog_keep_their_order(tmp_path: Path) -> None:
    q = await open_queue(tmp_path, memory_bytes=100)
    await q.put(batch("a", n=1))
    await q.put(batch("b", n=1))  # over the memory budget: disk only
    first = await q.take(1, 10_000, 0)
    await q.put(batch("c", n=1))
    rest = [await q.take(1, 10_000, 0), await q.take(1, 10_000, 0)]
    assert bodies(first) + bodies(rest[0]) + bodies(rest[1]) == ["a-0", "b-0", "c-0"]
    await q.shutdown()


async def test_corrupt_row_is_skipped_and_counted(tmp_path: Path) -> None:
    q = await open_queue(tmp_path)
    for tag in "abc":
        await q.put(batch(tag))
    await q.shutdown()
    with sqlite3.connect(tmp_path / "es.db") as db:  # bit rot in the middle row
        db.execute("UPDATE batches SET payload = X'00112233' WHERE seq = 2")
    t = Telemetry()
    again = await open_queue(tmp_path, t)
    taken = await again.take(100, 10_000, 0)
    assert bodies(taken) == ["a-0", "a-1", "c-0", "c-1"]
    dropped = {"component": "es", "signal": "unknown", "reason": "queue_corrupt"}
    assert t.registry.get_sample_value("burnline_records_dropped_total", dropped) == 2
    await again.release(taken or [])
    assert again.records == 0
    await again.shutdown()


async def test_torn_wal_tail_loses_nothing_committed(tmp_path: Path) -> None:
    q = await open_queue(tmp_path)
    await q.put(batch("a"))
    await q.put(batch("b"))
    # Simulate a crash: no shutdown (no checkpoint), then a half-written frame at the WAL's end.
    wal = tmp_path / "es.db-wal"
    assert wal.exists()
    with wal.open("ab") as fh:
        fh.write(b"\x37\x7f\x06\x82" + b"\xff" * 5000)
    again = await open_queue(tmp_path)
    assert bodies(await again.take(100, 10_000, 0)) == ["a-0", "a-1", "b-0", "b-1"]
    await again.shutdown()
    await q.shutdown()


async def test_unreadable_database_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "es.db").write_bytes(b"this is not an SQLite database" * 100)
    t = Telemetry()
    q = await open_queue(tmp_path, t)
    assert q.records == 0
    assert list(tmp_path.glob("es.db.corrupt-*"))
    assert "is unreadable" in caplog.text
    await q.put(batch("a"))  # and it works
    assert rows(tmp_path) == 1
    await q.shutdown()


async def test_concurrent_puts_share_commits(tmp_path: Path) -> None:
    q = await open_queue(tmp_path)
    commits = 0
    original = q._commit

    def counting(*args: object) -> list[int]:
        nonlocal commits
        commits += 1
        return original(*args)  # type: ignore[arg-type]

    q._commit = counting  # type: ignore[method-assign]
    await asyncio.gather(*(q.put(batch(f"p{i}", n=1)) for i in range(50)))
    assert rows(tmp_path) == 50
    assert commits < 50  # group commit: several puts per transaction (and fsync)
    await q.shutdown()


async def test_bounds_count_what_is_on_disk_after_restart(tmp_path: Path) -> None:
    q = await open_queue(tmp_path)
    await q.put(batch("a", n=4))
    await q.shutdown()
    again = await open_queue(tmp_path, max_records=5, block_timeout=0)
    with pytest.raises(Refused):
        await again.put(batch("b", n=2))
    await again.shutdown()


async def test_without_fsync_still_survives_the_process(tmp_path: Path) -> None:
    q = await open_queue(tmp_path, fsync=False)
    await q.put(batch("a"))
    again = await open_queue(tmp_path)  # no shutdown: as after a SIGKILL
    assert bodies(await again.take(100, 10_000, 0)) == ["a-0", "a-1"]
    await again.shutdown()
    await q.shutdown()


def received(tag: str, n: int = 1, padding: int = 0) -> Batch:
    """A batch as the OTLP receiver hands it on: log records with the request they came in."""
    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                scope_logs=[
                    ScopeLogs(
                        log_records=[
                            PbLogRecord(
                                time_unix_nano=i + 1,
                                body=AnyValue(string_value=f"{tag}-{i}" + " " * padding),
                            )
                            for i in range(n)
                        ]
                    )
                ]
            )
        ]
    )
    wire = request.SerializeToString()
    return Batch(Signal.LOGS, logs_from_proto(request), len(wire), wire)


def held(b: Batch) -> int:
    """What the queue counts a batch that keeps its request as taking in memory."""
    assert b.wire is not None
    return decoded_size(len(batch_codec.encode(b))) + len(b.wire)


async def test_a_kept_received_request_counts_in_the_memory_bound(tmp_path: Path) -> None:
    """The bytes of ``Batch.wire`` are held beside the decoded records, and counted with them."""
    first = received("w0", padding=2000)
    q = await open_queue(tmp_path, memory_bytes=held(first) * 5 // 2)
    q.keep_wire = True
    await q.put(first)
    for i in range(1, 4):
        await q.put(received(f"w{i}", padding=2000))
    # Counted without the requests, three would fit in memory; with them, two.
    assert len(q._items) == 2
    seen: list[str] = []
    for _ in range(5):
        taken = await q.take(10, 10_000_000, 0)
        if not taken:
            break
        # Held in memory or read back from disk, every batch comes with its request.
        assert all(t.wire is not None for t in taken)
        seen += [r.body.rstrip() for b in taken for r in b.items]
        await q.release(taken)
        if len(seen) == 4:
            break
    assert seen == [f"w{i}-0" for i in range(4)]
    await q.shutdown()


@pytest.mark.parametrize("keep", [True, False])
async def test_a_received_request_is_stored_and_read_back_as_the_request(tmp_path: Path, keep: bool) -> None:
    """Stored as the request (no rows to encode) for any exporter, and read back as the receiver
    read it; the request is held, in memory and after reading back, only for an exporter that
    sends it as it is (``keep_wire``), and only then counted in the memory it takes."""
    q = await open_queue(tmp_path)
    q.keep_wire = keep
    sent = received("r", n=3)
    await q.put(sent)
    [(payload,)] = sqlite3.connect(tmp_path / "es.db").execute("SELECT payload FROM batches").fetchall()
    assert sent.wire is not None and sent.wire in payload and len(payload) < len(sent.wire) + 32
    assert msgpack.unpackb(payload)[0] == batch_codec.WIRE_FORMAT
    assert q._hot_bytes == decoded_size(len(payload)) + (len(sent.wire) if keep else 0)
    [held] = await q.take(10, 10_000_000, 0) or []
    assert held.items is sent.items and held.wire == (sent.wire if keep else None)
    await q.shutdown()  # taken, not released: read back at the next start
    again = await open_queue(tmp_path)
    again.keep_wire = keep
    [back] = await again.take(10, 10_000_000, 0) or []
    assert back.items == sent.items and back.size_bytes == sent.size_bytes
    assert back.wire == (sent.wire if keep else None)
    await again.release([back])
    assert again.records == 0
    await again.shutdown()


async def test_a_batch_without_its_received_request_is_stored_as_rows(tmp_path: Path) -> None:
    """A batch whose records no longer match a request (or never came in one) is encoded."""
    q = await open_queue(tmp_path)
    sent = received("r", n=3)
    await q.put(Batch(sent.signal, sent.items, sent.size_bytes))
    [(payload,)] = sqlite3.connect(tmp_path / "es.db").execute("SELECT payload FROM batches").fetchall()
    assert msgpack.unpackb(payload)[0] == batch_codec.FORMAT_VERSION
    await q.shutdown()
    again = await open_queue(tmp_path)
    [back] = await again.take(10, 10_000_000, 0) or []
    assert back.items == sent.items and back.wire is None
    await again.shutdown()


async def test_a_request_read_back_with_records_this_version_rejects_counts_what_it_holds(
    tmp_path: Path,
) -> None:
    """A request stored by a version that kept a record this one rejects (here: a span id of 7
    bytes, stored by hand): the others are delivered, and the queue's count stays exact."""
    good, bad = "ab" * 8, b"\x01" * 7
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                scope_spans=[
                    ScopeSpans(
                        spans=[
                            PbSpan(trace_id=b"\x02" * 16, span_id=bytes.fromhex(good), name="kept"),
                            PbSpan(trace_id=b"\x02" * 16, span_id=bad, name="rejected"),
                        ]
                    )
                ]
            )
        ]
    )
    wire = request.SerializeToString()
    q = await open_queue(tmp_path)
    q.keep_wire = True
    stored = Span(trace_id="02" * 16, span_id=good, name="kept", start_time_unix_nano=0, end_time_unix_nano=0)
    await q.put(Batch(Signal.TRACES, [stored, stored], len(wire), wire))
    await q.shutdown()
    again = await open_queue(tmp_path)
    assert again.records == 2  # what the row says, until it is read
    [back] = await again.take(10, 10_000_000, 0) or []
    assert [s.name for s in back.items] == ["kept"] and back.wire is None
    assert again.records == 1
    await again.release([back])
    assert again.records == 0
    await again.shutdown()


def _page_size(directory: Path) -> int:
    with closing(sqlite3.connect(directory / "es.db")) as db:
        return int(db.execute("PRAGMA page_size").fetchone()[0])


def _old_database(directory: Path, rows_of: list[Batch]) -> None:
    """A queue database as burnline made them before PAGE_SIZE: SQLite's default pages, WAL."""
    db = sqlite3.connect(directory / "es.db", isolation_level=None)
    db.execute("PRAGMA page_size=4096")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(durable_queue.BATCHES_TABLE)
    for b in rows_of:
        payload = batch_codec.encode(b)
        db.execute(
            "INSERT INTO batches (records, size, crc, payload) VALUES (?, ?, ?, ?)",
            (len(b), b.size_bytes, zlib.crc32(payload), payload),
        )
    db.close()


async def test_a_new_queue_database_has_the_larger_pages(tmp_path: Path) -> None:
    q = await open_queue(tmp_path)
    await q.put(batch("a"))
    assert _page_size(tmp_path) == durable_queue.PAGE_SIZE != 4096
    await q.shutdown()


async def test_an_older_empty_database_is_rebuilt_with_the_larger_pages(tmp_path: Path) -> None:
    _old_database(tmp_path, [batch("a")])
    with closing(sqlite3.connect(tmp_path / "es.db", isolation_level=None)) as db:
        db.execute("DELETE FROM batches")
    q = await open_queue(tmp_path)
    assert _page_size(tmp_path) == durable_queue.PAGE_SIZE
    # The row numbers go on from where they were: AUTOINCREMENT's counter survives the rebuild.
    await q.put(batch("b"))
    with closing(sqlite3.connect(tmp_path / "es.db")) as db:
        assert db.execute("SELECT seq FROM batches").fetchall() == [(2,)]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    taken = await q.take(100, 10_000, 0)
    assert bodies(taken) == ["b-0", "b-1"]
    await q.release(taken or [])
    await q.shutdown()


async def test_an_older_database_holding_rows_keeps_its_pages_and_delivers_them(tmp_path: Path) -> None:
    _old_database(tmp_path, [batch("a"), batch("b")])
    q = await open_queue(tmp_path)
    assert q.records == 4 and _page_size(tmp_path) == 4096
    taken = await q.take(100, 10_000, 0)
    assert bodies(taken) == ["a-0", "a-1", "b-0", "b-1"]
    await q.release(taken or [])
    await q.shutdown()
    again = await open_queue(tmp_path)  # empty now: rebuilt on this start
    assert _page_size(tmp_path) == durable_queue.PAGE_SIZE
    await again.shutdown()


async def test_an_older_database_another_connection_holds_is_kept_as_it_is(tmp_path: Path) -> None:
    """Rebuilding needs the only connection; with another one open (a tool reading it) the queue
    opens at the old page size, not as a corrupt database set aside."""
    _old_database(tmp_path, [])
    with closing(sqlite3.connect(tmp_path / "es.db", isolation_level=None)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM batches").fetchone()
        q = await open_queue(tmp_path)
        reader.execute("COMMIT")
    assert _page_size(tmp_path) == 4096
    assert not list(tmp_path.glob("*.corrupt-*"))
    await q.put(batch("a"))
    taken = await q.take(100, 10_000, 0)
    assert bodies(taken) == ["a-0", "a-1"]
    await q.release(taken or [])
    await q.shutdown()
