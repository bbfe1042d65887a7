"""QueueSender: bulking, partial retries, backoff, dead letters and the shutdown drain."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from collector.core.component import ComponentContext, Exporter, PermanentExportError, RetryableExportError
from collector.core.model import Batch, Signal
from collector.core.telemetry import Telemetry
from collector.exporterhelper.deadletter import DeadLetter
from collector.exporterhelper.queue import MemoryQueue
from collector.exporterhelper.sender import (
    ExporterConfig,
    QueueSender,
    RetryConfig,
    backoff_delay,
    merge,
    split,
)
from tests.support import wait_until

FAST_RETRY = {"initial_interval": 0.01, "max_interval": 0.05}


class ScriptedExporter(Exporter):
    """Delivers records unless the script says an attempt fails; records every attempt."""

    type_name = "scripted"

    def __init__(self, ctx: ComponentContext, script: list[str]) -> None:
        super().__init__(ExporterConfig(), ctx)
        self.script = script  # per attempt: "ok", "half", "all", "permanent", "hang"
        self.delivered: list[int] = []
        self.attempts: list[list[int]] = []

    async def export(self, batch: Batch) -> int:
        self.attempts.append(list(batch.items))
        step = self.script.pop(0) if self.script else "ok"
        if step == "hang":
            await asyncio.sleep(3600)
        if step == "permanent":
            raise PermanentExportError("mapping rejected")
        if step == "all":
            raise RetryableExportError("http_503", retry_after=None)
        if step == "half":
            landed, rest = batch.items[::2], batch.items[1::2]
            self.delivered.extend(landed)
            raise RetryableExportError(
                "http_429", remaining=Batch(batch.signal, rest, 0), delivered=len(landed)
            )
        self.delivered.extend(batch.items)
        return len(batch)


def make(
    tmp_path: Path, script: list[str], **config: object
) -> tuple[QueueSender, ScriptedExporter, Telemetry]:
    telemetry = Telemetry()
    ctx = ComponentContext("scripted", telemetry, str(tmp_path), logging.getLogger("test"))
    exporter = ScriptedExporter(ctx, script)
    exporter.dead_letter = DeadLetter("scripted", tmp_path / "deadletter", telemetry)
    cfg = ExporterConfig.model_validate(config)
    queue = MemoryQueue("scripted", cfg.queue, telemetry)
    sender = QueueSender(exporter, cfg, queue, telemetry)
    sender.start()
    return sender, exporter, telemetry


def sample(t: Telemetry, name: str, **labels: str) -> float:
    return t.registry.get_sample_value(name, {"component": "scripted", "signal": "logs", **labels}) or 0.0


async def test_partial_retries_deliver_everything_once(tmp_path: Path) -> None:
    sender, exporter, t = make(
        tmp_path, ["half", "all", "half", "ok"], retry=FAST_RETRY, batch={"flush_interval": 0}
    )
    await sender.queue.put(Batch(Signal.LOGS, list(range(10)), 1000))
    await wait_until(lambda: len(exporter.delivered) == 10, timeout=5)
    assert sorted(exporter.delivered) == list(range(10))
    assert exporter.attempts[1] == [1, 3, 5, 7, 9]  # only what was left is retried
    assert sample(t, "burnline_records_exported_total") == 10
    assert sample(t, "burnline_export_retries_total", reason="http_429") == 2
    assert sample(t, "burnline_export_retries_total", reason="http_503") == 1
    assert await sender.drain(1) == 0


async def test_batches_are_merged_and_split_to_bulk_limits(tmp_path: Path) -> None:
    sender, exporter, _ = make(tmp_path, [], batch={"max_records": 4, "flush_interval": 0.2})
    for start in range(0, 10, 2):
        await sender.queue.put(Batch(Signal.LOGS, [start, start + 1], 20))
    await wait_until(lambda: len(exporter.delivered) == 10, timeout=5)
    assert all(len(a) <= 4 for a in exporter.attempts)
    assert len(exporter.attempts) < 5  # merged: fewer export calls than batches put
    await sender.drain(1)


async def test_permanent_error_goes_to_dead_letter(tmp_path: Path) -> None:
    sender, _, t = make(tmp_path, ["permanent"], batch={"flush_interval": 0})
    await sender.queue.put(Batch(Signal.LOGS, [{"n": 1}, {"n": 2}], 10))
    path = tmp_path / "deadletter" / "scripted.ndjson"
    await wait_until(path.exists, timeout=5)
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [line["record"] for line in lines] == [{"n": 1}, {"n": 2}]
    assert {line["reason"] for line in lines} == {"permanent"}
    assert lines[0]["detail"] == "mapping rejected"
    assert sample(t, "burnline_records_failed_total", reason="permanent") == 2
    await sender.drain(1)


async def test_retries_stop_at_max_elapsed_time(tmp_path: Path) -> None:
    sender, exporter, t = make(
        tmp_path,
        ["all"] * 100,
        batch={"flush_interval": 0},
        retry={**FAST_RETRY, "max_elapsed_time": 0.1},
    )
    await sender.queue.put(Batch(Signal.LOGS, [1, 2, 3], 10))
    await wait_until(lambda: sample(t, "burnline_records_failed_total", reason="retries_exhausted") == 3, 5)
    assert 2 <= len(exporter.attempts) < 100
    await sender.drain(1)


async def test_retry_after_hint_is_honoured(tmp_path: Path) -> None:
    class Hinting(ScriptedExporter):
        async def export(self, batch: Batch) -> int:
            self.attempts.append(list(batch.items))
            if len(self.attempts) == 1:
                raise RetryableExportError("http_429", retry_after=0.3)
            return len(batch)

    telemetry = Telemetry()
    ctx = ComponentContext("scripted", telemetry, str(tmp_path), logging.getLogger("test"))
    exporter = Hinting(ctx, [])
    cfg = ExporterConfig.model_validate({"retry": FAST_RETRY, "batch": {"flush_interval": 0}})
    sender = QueueSender(exporter, cfg, MemoryQueue("scripted", cfg.queue, telemetry), telemetry)
    sender.start()
    started = time.monotonic()
    await sender.queue.put(Batch(Signal.LOGS, [1], 1))
    await wait_until(lambda: len(exporter.attempts) == 2, timeout=5)
    assert time.monotonic() - started >= 0.3
    await sender.drain(1)


async def test_drain_gives_up_after_grace_and_counts_the_loss(tmp_path: Path) -> None:
    sender, _, t = make(tmp_path, ["hang"], batch={"flush_interval": 0, "max_records": 3}, concurrency=1)
    await sender.queue.put(Batch(Signal.LOGS, [1, 2, 3], 10))
    await sender.queue.put(Batch(Signal.LOGS, [4, 5], 10))
    await asyncio.sleep(0.05)
    lost = await sender.drain(0.1)
    assert lost == 5  # 3 in flight in the hung export + 2 never taken
    assert sample(t, "burnline_records_dropped_total", reason="shutdown") == 5


async def test_drain_delivers_everything_within_grace(tmp_path: Path) -> None:
    sender, exporter, _ = make(tmp_path, [], batch={"flush_interval": 5})
    for i in range(20):
        await sender.queue.put(Batch(Signal.LOGS, [i], 1))
    assert await sender.drain(5) == 0  # closing ends the 5 s linger at once
    assert sorted(exporter.delivered) == list(range(20))


class SlowReleaseQueue(MemoryQueue):
    """A queue whose releases are stored only when the test says so (a durable queue's delete
    waiting for its commit behind a busy event loop)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.stored: list[asyncio.Future[None]] = []

    def _release(self, batches: list[Batch]) -> asyncio.Future[None] | None:
        self.stored.append(asyncio.get_running_loop().create_future())
        return self.stored[-1]


async def test_the_next_batch_goes_out_before_the_last_release_is_stored(tmp_path: Path) -> None:
    telemetry = Telemetry()
    ctx = ComponentContext("scripted", telemetry, str(tmp_path), logging.getLogger("test"))
    exporter = ScriptedExporter(ctx, [])
    exporter.dead_letter = DeadLetter("scripted", tmp_path / "deadletter", telemetry)
    cfg = ExporterConfig.model_validate({"batch": {"flush_interval": 0, "max_records": 1}, "concurrency": 1})
    queue = SlowReleaseQueue("scripted", cfg.queue, telemetry)
    sender = QueueSender(exporter, cfg, queue, telemetry)
    sender.start()
    for i in range(3):
        await queue.put(Batch(Signal.LOGS, [i], 1))
    await wait_until(lambda: exporter.delivered == [0, 1, 2])
    assert len(queue.stored) == 3 and not any(f.done() for f in queue.stored)
    assert queue.records == 3  # counted until their release is stored
    # The drain waits for the releases: a durable queue closes its database only after them.
    draining = asyncio.create_task(sender.drain(5))
    await asyncio.sleep(0.05)
    assert not draining.done()
    for stored in queue.stored:
        stored.set_result(None)
    assert await asyncio.wait_for(draining, 5) == 0
    assert queue.records == 0


def test_backoff_grows_is_capped_and_jittered() -> None:
    cfg = RetryConfig(initial_interval=1, max_interval=10, multiplier=2, randomization_factor=0.5)
    rng = random.Random(7)
    for attempt, base in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (9, 10)]:
        delays = [backoff_delay(cfg, attempt, rng) for _ in range(200)]
        assert base * 0.5 <= min(delays) and max(delays) <= base * 1.5
        assert max(delays) - min(delays) > base * 0.5  # really jittered
    no_jitter = RetryConfig(initial_interval=1, max_interval=10, multiplier=2, randomization_factor=0)
    assert backoff_delay(no_jitter, 3) == 4


def test_merge_and_split() -> None:
    [merged] = merge([Batch(Signal.LOGS, [1, 2], 20), Batch(Signal.LOGS, [3], 10)])
    assert merged.items == [1, 2, 3] and merged.size_bytes == 30
    logs, traces = merge(
        [Batch(Signal.LOGS, [1], 1), Batch(Signal.TRACES, [2], 2), Batch(Signal.LOGS, [3], 3)]
    )
    assert (logs.signal, logs.items, logs.size_bytes) == (Signal.LOGS, [1, 3], 4)
    assert (traces.signal, traces.items) == (Signal.TRACES, [2])
    pieces = split(Batch(Signal.LOGS, list(range(10)), 1000), max_records=4, max_bytes=10_000)
    assert [p.items for p in pieces] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    by_bytes = split(Batch(Signal.LOGS, list(range(10)), 1000), max_records=100, max_bytes=300)
    assert [len(p) for p in by_bytes] == [3, 3, 3, 1]


def test_merged_batches_keep_their_requests_concatenated() -> None:
    """Serialized protobuf messages concatenate into their merge: the merged batch's request holds
    every span of the batches, in order. One batch without its request: none for the merge."""
    requests = [
        ExportTraceServiceRequest(
            resource_spans=[
                ResourceSpans(
                    resource=Resource(attributes=[KeyValue(key="app", value=AnyValue(string_value=name))]),
                    scope_spans=[ScopeSpans(spans=[PbSpan(name=f"{name} {i}") for i in range(count)])],
                )
            ]
        )
        for name, count in (("cart", 2), ("checkout", 1))
    ]
    wires = [r.SerializeToString() for r in requests]
    [merged] = merge([Batch(Signal.TRACES, [1, 2], 20, wires[0]), Batch(Signal.TRACES, [3], 10, wires[1])])
    assert merged.items == [1, 2, 3] and merged.wire is not None
    whole = ExportTraceServiceRequest.FromString(merged.wire)
    assert [s.name for rs in whole.resource_spans for s in rs.scope_spans[0].spans] == [
        "cart 0",
        "cart 1",
        "checkout 0",
    ]
    assert list(whole.resource_spans) == [requests[0].resource_spans[0], requests[1].resource_spans[0]]
    [partly] = merge([Batch(Signal.TRACES, [1], 10, wires[0]), Batch(Signal.TRACES, [2], 10)])
    assert partly.wire is None


@pytest.mark.parametrize("n", [0, 1])
def test_split_small(n: int) -> None:
    assert sum(len(p) for p in split(Batch(Signal.LOGS, list(range(n)), 10), 4, 100)) == n
