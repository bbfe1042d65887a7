"""A pipeline on its own: processors in order, then the exporters' queues; what it keeps of a
batch's received request (``Batch.wire``)."""

from __future__ import annotations

import logging
from typing import Any

from collector.core.component import ComponentContext
from collector.core.model import Batch, LogRecord, Signal
from collector.core.pipeline import Pipeline
from collector.core.telemetry import Telemetry
from collector.exporterhelper.queue import MemoryQueue, QueueConfig
from collector.processors.attributes import AttributesConfig, AttributesProcessor
from collector.processors.filter import FilterConfig, FilterProcessor

NOW = 1_795_993_008_000_000_000


def context(name: str, telemetry: Telemetry) -> ComponentContext:
    return ComponentContext(name, telemetry, "", logging.getLogger(f"test.{name}"))


def received(*bodies: str) -> Batch:
    records = [LogRecord(NOW, body, 9, attributes={"n": i}) for i, body in enumerate(bodies)]
    return Batch(Signal.LOGS, records, 100 * len(records), wire=b"the request they came in")


async def through(processors: list[Any], batch: Batch) -> Batch:
    """The batch the pipeline's one queue got."""
    telemetry = Telemetry()
    queue = MemoryQueue("sink", QueueConfig(storage="memory"), telemetry)
    queue.keep_wire = True  # as for the otlp exporter
    await Pipeline("logs", Signal.LOGS, processors, [queue]).consume(batch)
    taken = await queue.take(100, 1 << 20, 0.0)
    assert taken is not None
    [got] = taken
    return got


async def test_without_processors_the_batch_keeps_its_request() -> None:
    batch = received("a", "b")
    assert await through([], batch) is batch


async def test_a_processor_that_changes_records_drops_the_request() -> None:
    telemetry = Telemetry()
    upsert = AttributesProcessor(
        AttributesConfig.model_validate({"actions": [{"key": "env", "action": "upsert", "value": "prod"}]}),
        context("attributes", telemetry),
    )
    got = await through([upsert], received("a", "b"))
    # Changed in place and handed on as the same records: the request no longer says what they hold.
    assert [r.attributes["env"] for r in got.items] == ["prod", "prod"]
    assert got.wire is None and got.size_bytes == 200


async def test_a_processor_that_only_reads_keeps_the_request() -> None:
    telemetry = Telemetry()
    keep_all = FilterProcessor(FilterConfig.model_validate({"min_severity": 5}), context("filter", telemetry))
    batch = received("a", "b")
    assert (await through([keep_all], batch)).wire == batch.wire
