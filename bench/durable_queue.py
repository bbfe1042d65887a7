"""Durable queue throughput, and what fsync-backed acknowledgement costs end to end, in one run.

1. The queue alone: producers put 100-record batches while a consumer takes and completes them;
   records/s and MiB/s for the durable queue with and without fsync, and the in-memory queue.
2. End to end: Forward clients (acks on) -> forward receiver -> queue -> a null exporter, in one
   process; acknowledged records/s for each queue mode.

Run: .venv/bin/python bench/durable_queue.py [--seconds 5] [--producers 8]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack

from collector.config import parse_config
from collector.core.component import Exporter, register
from collector.core.model import Batch, LogRecord, Signal
from collector.core.service import Service
from collector.core.telemetry import Telemetry
from collector.exporterhelper.durable_queue import DurableQueue
from collector.exporterhelper.queue import MemoryQueue, QueueConfig
from collector.exporterhelper.sender import ExporterConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support import free_port

RECORDS_PER_BATCH = 100
RECORD_BYTES = 300
MODES: dict[str, dict[str, Any]] = {
    "disk, fsync": {"storage": "disk", "fsync": True},
    "disk, no fsync": {"storage": "disk", "fsync": False},
    "memory": {"storage": "memory"},
}


@register
class NullExporter(Exporter):
    type_name = "bench_null"
    config_model = ExporterConfig
    signals = frozenset(Signal)

    async def export(self, batch: Batch) -> int:
        return len(batch)


def a_batch(i: int) -> Batch:
    records = [
        LogRecord(
            time_unix_nano=i * 1000 + j,
            body="x" * 200,
            attributes={"fluent.tag": "bench"},
            resource={"service.name": "bench", "k8s.pod.name": "bench-0"},
        )
        for j in range(RECORDS_PER_BATCH)
    ]
    return Batch(Signal.LOGS, records, RECORD_BYTES * RECORDS_PER_BATCH)


async def queue_alone(mode: dict[str, Any], directory: Path, seconds: float, producers: int) -> float:
    config = QueueConfig.model_validate({**mode, "max_bytes": "1GiB"})
    q: MemoryQueue
    if config.storage == "disk":
        durable = DurableQueue("bench", config, Telemetry(), directory)
        await durable.open()
        q = durable
    else:
        q = MemoryQueue("bench", config, Telemetry())
    batches = [a_batch(i) for i in range(16)]
    done = 0
    deadline = time.perf_counter() + seconds

    async def produce(k: int) -> None:
        i = k
        while time.perf_counter() < deadline:
            await q.put(batches[i % len(batches)])
            i += producers

    async def consume() -> None:
        nonlocal done
        while True:
            taken = await q.take(2000, 10 * 2**20, 0)
            if taken is None:
                return
            await q.done(taken)
            done += sum(len(b) for b in taken)

    started = time.perf_counter()
    consumer = asyncio.create_task(consume())
    await asyncio.gather(*(produce(k) for k in range(producers)))
    await q.close()
    await consumer
    elapsed = time.perf_counter() - started
    await q.shutdown()
    return done / elapsed


async def end_to_end(mode: dict[str, Any], directory: Path, seconds: float, clients: int) -> float:
    port = free_port()
    config = parse_config(
        {
            "receivers": {"forward": {"endpoint": f"127.0.0.1:{port}"}},
            "exporters": {"bench_null": {"queue": {**mode, "max_bytes": "1GiB"}}},
            "service": {
                "data_dir": str(directory),
                "admin": {"endpoint": f"127.0.0.1:{free_port()}"},
                "pipelines": {"logs": {"receivers": ["forward"], "exporters": ["bench_null"]}},
            },
        },
        env={},
    )
    service = Service(config)
    await service.start()
    entries = [[1700000000 + j, {"log": "x" * 200, "stream": "stdout"}] for j in range(RECORDS_PER_BATCH)]
    acked = 0
    deadline = time.perf_counter() + seconds

    async def client(n: int) -> None:
        nonlocal acked
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        unpacker = msgpack.Unpacker(raw=False)
        i = 0
        while time.perf_counter() < deadline:
            writer.write(msgpack.packb(["bench", entries, {"chunk": f"{n}-{i}"}]))
            await writer.drain()
            while True:
                unpacker.feed(await reader.read(65536))
                try:
                    unpacker.unpack()
                    break
                except msgpack.OutOfData:
                    continue
            acked += RECORDS_PER_BATCH
            i += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - started
    await service.stop(grace=30)
    return acked / elapsed


async def main_async(seconds: float, producers: int, clients: int) -> None:
    mib = RECORD_BYTES / 2**20
    shape = f"{RECORDS_PER_BATCH}-record batches of {RECORD_BYTES} B records"
    print(f"queue alone ({producers} producers, {shape}):")
    for name, mode in MODES.items():
        with tempfile.TemporaryDirectory(dir=".") as tmp:
            rate = await queue_alone(mode, Path(tmp), seconds, producers)
        print(f"  {name:<16} {rate:>12,.0f} records/s {rate * mib:>8.1f} MiB/s")
    print(f"end to end ({clients} Forward clients with acks -> forward -> queue -> null exporter):")
    base = None
    for name, mode in MODES.items():
        with tempfile.TemporaryDirectory(dir=".") as tmp:
            rate = await end_to_end(mode, Path(tmp), seconds, clients)
        base = base or rate
        print(f"  {name:<16} {rate:>12,.0f} acked records/s  ({rate / base:.2f}x the fsync mode)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--producers", type=int, default=8)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main_async(args.seconds, args.producers, args.clients))


if __name__ == "__main__":
    main()
