"""Throughput of the in-memory exporter path: pipeline -> MemoryQueue -> QueueSender -> exporter.

Prints records/s and MiB/s for a null exporter (the machinery alone), for several producer batch
sizes. Run: .venv/bin/python bench/queue_throughput.py [--records N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time

from collector.core.component import ComponentContext, Exporter
from collector.core.model import Batch, LogRecord, Signal
from collector.core.telemetry import Telemetry
from collector.exporterhelper.deadletter import DeadLetter
from collector.exporterhelper.queue import MemoryQueue
from collector.exporterhelper.sender import ExporterConfig, QueueSender

RECORD_BYTES = 300  # a typical container log line with its Fluent Bit metadata, on the wire


class NullExporter(Exporter):
    type_name = "null"

    async def export(self, batch: Batch) -> int:
        return len(batch)


async def run(records: int, batch_size: int) -> tuple[float, float]:
    telemetry = Telemetry()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = ComponentContext("null", telemetry, tmp, logging.getLogger("bench"))
        exporter = NullExporter(ExporterConfig(), ctx)
        exporter.dead_letter = DeadLetter("null", tmp, telemetry)
        cfg = ExporterConfig.model_validate({"batch": {"max_records": 2000, "flush_interval": 0.05}})
        queue = MemoryQueue("null", cfg.queue, telemetry)
        sender = QueueSender(exporter, cfg, queue, telemetry)
        sender.start()
        template = [LogRecord(time_unix_nano=i, body="x" * 200) for i in range(batch_size)]
        started = time.perf_counter()
        for _ in range(records // batch_size):
            await queue.put(Batch(Signal.LOGS, template, RECORD_BYTES * batch_size))
        await queue.join()
        elapsed = time.perf_counter() - started
        await sender.drain(5)
    sent = records // batch_size * batch_size
    return sent / elapsed, sent * RECORD_BYTES / elapsed / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"{'batch size':>10}  {'records/s':>12}  {'MiB/s':>8}   (null exporter, {args.records} records)")
    for batch_size in (1, 10, 100, 1000):
        n = args.records if batch_size > 1 else min(args.records, 200_000)
        rate, mib = asyncio.run(run(n, batch_size))
        print(f"{batch_size:>10}  {rate:>12,.0f}  {mib:>8.1f}")


if __name__ == "__main__":
    main()
