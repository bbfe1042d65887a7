"""MemoryQueue: bounds, the block and drop_newest policies, lingering takes, close and join."""

from __future__ import annotations

import asyncio

import pytest

from collector.core.component import Refused
from collector.core.model import Batch, Signal
from collector.core.telemetry import Telemetry
from collector.exporterhelper.queue import MemoryQueue, QueueConfig


def batch(n: int, size: int = 100) -> Batch:
    return Batch(Signal.LOGS, list(range(n)), size)


def queue(**settings: object) -> tuple[MemoryQueue, Telemetry]:
    telemetry = Telemetry()
    return MemoryQueue("exp", QueueConfig.model_validate(settings), telemetry), telemetry


async def test_fifo_and_take_limits() -> None:
    q, t = queue()
    for n in (3, 4, 5):
        await q.put(batch(n))
    taken = await q.take(max_records=7, max_bytes=10_000, linger=0)
    assert [len(b) for b in taken or []] == [3, 4]
    rest = await q.take(max_records=7, max_bytes=10_000, linger=0)
    assert [len(b) for b in rest or []] == [5]
    assert t.registry.get_sample_value("burnline_queue_records", {"component": "exp"}) == 12
    await q.release((taken or []) + (rest or []))
    assert q.records == 0 and q.bytes == 0


async def test_take_limits_by_bytes_but_never_returns_nothing() -> None:
    q, _ = queue()
    await q.put(batch(1, size=5000))
    await q.put(batch(1, size=10))
    first = await q.take(max_records=100, max_bytes=1000, linger=0)
    assert [b.size_bytes for b in first or []] == [5000]  # an oversized batch still goes, alone


async def test_linger_collects_until_max_records() -> None:
    q, _ = queue()
    await q.put(batch(2))

    async def later() -> None:
        await asyncio.sleep(0.05)
        await q.put(batch(8))

    task = asyncio.create_task(later())
    taken = await q.take(max_records=10, max_bytes=10_000, linger=2.0)
    await task
    assert sum(len(b) for b in taken or []) == 10  # returned as soon as full, well before 2 s


async def test_block_policy_waits_for_room_then_refuses() -> None:
    q, _ = queue(max_records=5, block_timeout=0.1)
    await q.put(batch(5))
    with pytest.raises(Refused, match="queue full"):
        await q.put(batch(1))
    taken = await q.take(10, 10_000, 0)
    waiter = asyncio.create_task(q.put(batch(3)))
    await asyncio.sleep(0.01)
    assert not waiter.done()  # blocked: the taken batch is still in flight
    await q.release(taken or [])
    await asyncio.wait_for(waiter, 1)
    assert q.records == 3


async def test_max_bytes_bounds_too() -> None:
    q, _ = queue(max_bytes=250, block_timeout=0)
    await q.put(batch(1, 200))
    with pytest.raises(Refused):
        await q.put(batch(1, 100))


async def test_drop_newest_counts_what_it_drops() -> None:
    q, t = queue(max_records=5, full_policy="drop_newest")
    await q.put(batch(5))
    await q.put(batch(4))
    assert q.records == 5
    dropped = t.registry.get_sample_value(
        "burnline_records_dropped_total", {"component": "exp", "signal": "logs", "reason": "queue_full"}
    )
    assert dropped == 4


async def test_close_refuses_puts_and_ends_takers_when_empty() -> None:
    q, _ = queue()
    await q.put(batch(2))
    await q.close()
    with pytest.raises(Refused, match="shutting down"):
        await q.put(batch(1))
    taken = await q.take(10, 10_000, linger=5.0)  # closed: no lingering
    assert [len(b) for b in taken or []] == [2]
    assert await q.take(10, 10_000, 0) is None


async def test_join_waits_until_done() -> None:
    q, _ = queue()
    await q.put(batch(2))
    joiner = asyncio.create_task(q.join())
    taken = await q.take(10, 10_000, 0)
    await asyncio.sleep(0.01)
    assert not joiner.done()
    await q.release(taken or [])
    await asyncio.wait_for(joiner, 1)


async def test_two_lingering_takers_never_get_an_empty_take() -> None:
    q, _ = queue()
    await q.put(batch(1))
    first = asyncio.create_task(q.take(max_records=100, max_bytes=10_000, linger=0.2))
    await asyncio.sleep(0)  # the first taker is now lingering for a fuller batch
    second = await q.take(max_records=1, max_bytes=10_000, linger=0)
    assert [len(b) for b in second or []] == [1]
    assert not first.done()
    await q.put(batch(2))
    got = await asyncio.wait_for(first, 2)
    assert [len(b) for b in got or []] == [2]  # waited again rather than returning []


@pytest.mark.parametrize("keep", [False, True])
async def test_a_batch_s_received_request_is_kept_only_for_an_exporter_that_sends_it(keep: bool) -> None:
    q, _ = queue()
    q.keep_wire = keep
    received = Batch(Signal.TRACES, [1, 2], 200, wire=b"the request")
    await q.put(received)
    [taken] = await q.take(10, 10_000, 0) or []
    assert taken.items == [1, 2] and taken.size_bytes == 200
    assert taken.wire == (b"the request" if keep else None)
