"""Samples per second the ``prometheus_remote_write`` exporter delivers, by ``shards``, against a
remote-write sink on loopback that answers after a set delay (standing in for a backend across a
network: Mimir in another zone, a Prometheus behind a load balancer).

With one request in flight, throughput is capped at ``max_samples_per_request`` per round trip
(2,000 samples / 50 ms = 40,000 samples/s) however fast burnline is; shards lift that cap. Each
batch is 20,000 samples of 200 targets (100 series each), as a scrape of 200 pods gives. burnline's
CPU per delivered sample is printed too (process CPU time, the sink included: it only counts).

Run: .venv/bin/python bench/remote_write_shards.py [--delay-ms 50] [--batches 10] [--shards 1,2,4,8]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import tempfile
import time

from aiohttp import web

from collector.core.component import ComponentContext
from collector.core.model import Batch, MetricKind, MetricPoint, Signal
from collector.core.telemetry import Telemetry
from collector.exporterhelper.deadletter import DeadLetter
from exporters.prometheus_remote_write.config import PrometheusRemoteWriteConfig
from exporters.prometheus_remote_write.exporter import PrometheusRemoteWriteExporter

TARGETS = 200
SERIES = 100


def batch(t_ns: int) -> Batch:
    points = []
    for t in range(TARGETS):
        resource = {"service.name": "api", "service.namespace": "shop", "service.instance.id": f"api-{t}"}
        for i in range(SERIES):
            points.append(
                MetricPoint(
                    name="http.server.requests",
                    kind=MetricKind.GAUGE,
                    time_unix_nano=t_ns,
                    value=float(i),
                    attributes={"route": f"/r{i}"},
                    resource=resource,
                )
            )
    return Batch(Signal.METRICS, points, 100 * len(points))


async def sink(delay: float) -> tuple[web.AppRunner, str]:
    async def write(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(delay)
        return web.Response(status=204)

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/api/v1/write", write)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    return runner, f"http://127.0.0.1:{port}/api/v1/write"


async def run(shards: int, delay: float, batches: int) -> tuple[float, float]:
    runner, url = await sink(delay)
    telemetry = Telemetry()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = ComponentContext("prometheus_remote_write", telemetry, tmp, logging.getLogger("bench"))
        config = PrometheusRemoteWriteConfig(endpoint=url, shards=shards, target_info=False)
        exporter = PrometheusRemoteWriteExporter(config, ctx)
        exporter.dead_letter = DeadLetter("prometheus_remote_write", tmp, telemetry)
        await exporter.start()
        try:
            payloads = [batch(1_700_000_000_000_000_000 + i * 10**9) for i in range(batches)]
            wall, cpu = time.perf_counter(), time.process_time()
            delivered = 0
            for payload in payloads:
                delivered += await exporter.export(payload)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            await exporter.stop()
            await runner.cleanup()
    return delivered / wall, delivered / cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--delay-ms", type=float, default=50.0, help="the sink's answer delay")
    parser.add_argument("--batches", type=int, default=10, help="batches of 20,000 samples per run")
    parser.add_argument("--shards", default="1,2,4,8")
    args = parser.parse_args()
    print(f"sink answers after {args.delay_ms:g} ms; {args.batches} batches of {TARGETS * SERIES:,} samples")
    print(f"{'shards':>6} {'samples/s':>11} {'samples/CPU-s':>14}")
    for shards in (int(s) for s in args.shards.split(",")):
        per_s, per_cpu = asyncio.run(run(shards, args.delay_ms / 1000, args.batches))
        print(f"{shards:>6} {per_s:>11,.0f} {per_cpu:>14,.0f}")


if __name__ == "__main__":
    main()
