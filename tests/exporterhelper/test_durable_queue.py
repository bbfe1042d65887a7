"""DurableQueue: what was acknowledged survives restarts, hard stops, out-of-order delivery and corruption."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from collector.core.component import Refused
from collector.core.model import Batch, LogRecord, Signal
from collector.core.telemetry import Telemetry
from collector.exporterhelper.durable_queue import DurableQueue
from collector.exporterhelper.queue import QueueConfig


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
    await q.done(taken or [])
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
    await again.done(taken or [])
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
    await q.done(second or [])  # the second sender finished first; the first never does
    await q.shutdown()
    again = await open_queue(tmp_path)
    assert bodies(await again.take(100, 10_000, 0)) == bodies(first) == ["a-0", "a-1"]
    await again.shutdown()


async def test_backlog_beyond_memory_is_read_back_in_order(tmp_path: Path) -> None:
    q = await open_queue(tmp_path, memory_bytes=250)
    for i in range(10):
        await q.put(batch(f"b{i}", n=1, size=100))
    assert len(q._items) == 2  # the rest waits on disk only
    seen: list[str] = []
    for _ in range(20):
        taken = await q.take(3, 10_000, 0)
        if not taken:
            break
        seen += bodies(taken)
        await q.done(taken)
        if len(seen) == 10:
            break
    assert seen == [f"b{i}-0" for i in range(10)]
    assert rows(tmp_path) == 0
    await q.shutdown()


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
    await again.done(taken or [])
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
