"""A load generator for one benchmark scenario, run as its own process with pre-encoded payloads.

Each connection sends one request (a Forward frame with `chunk`, an HTTP POST, a gRPC call), waits
for its acknowledgement, and sends the next, as Fluent Bit and the OpenTelemetry SDKs do. Only the
acknowledgements that arrive inside [t0, t1] (absolute Unix times) are counted; the generator stops
sending at t1 and waits (bounded) for the answers still due. At the end it prints one JSON line:
acked items and bytes in the window, ack latency percentiles, its own CPU seconds (so a reader can
check it was not the bottleneck) and, over the whole run (warm-up included), the items sent, acked,
refused and left unanswered, to set beside burnline's own counters.

A refusal is counted the way each receiver signals one: HTTP 503/429, gRPC UNAVAILABLE or
RESOURCE_EXHAUSTED, and for Forward a connection closed without the chunk's ack (the Forward receiver
withholds the ack and closes the connection; the connection is then opened again, as Fluent Bit does,
and the next frame sent).

Run by bench/pipeline.py; by hand:
  .venv/bin/python bench/loadgen.py forward 127.0.0.1:24224 --t0 $(date +%s) --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import msgpack
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workloads


class Tally:
    def __init__(self, t0: float, t1: float) -> None:
        self.t0, self.t1 = t0, t1
        self.items = 0
        self.bytes = 0
        self.refused = 0  # items, over the whole run
        self.errors = 0  # requests that failed otherwise (reset, timeout, unexpected answer)
        self.sent_total = 0  # items, over the whole run
        self.acked_total = 0
        self.unanswered = 0  # items sent whose answer never came (a timeout or a reset)
        self.latencies: list[float] = []

    def acked(self, sent_at: float, items: int, size: int) -> None:
        now = time.time()
        self.acked_total += items
        if self.t0 <= now <= self.t1:
            self.items += items
            self.bytes += size
            self.latencies.append(now - sent_at)

    def report(self, kind: str) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else None

        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "kind": kind,
            "items": self.items,
            "bytes": self.bytes,
            "refused": self.refused,
            "errors": self.errors,
            "sent_total": self.sent_total,
            "acked_total": self.acked_total,
            "unanswered": self.unanswered,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        }


async def forward(target: str, payloads: list[bytes], per: int, conns: int, tally: Tally) -> None:
    host, _, port = target.rpartition(":")

    async def connection(n: int) -> None:
        i = n
        reconnects = 0
        while time.time() < tally.t1 and reconnects < 100_000:
            reconnects += 1
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
            except OSError:
                tally.errors += 1
                await asyncio.sleep(0.05)
                continue
            unpacker = msgpack.Unpacker(raw=False)
            try:
                while time.time() < tally.t1:
                    payload = payloads[i % len(payloads)]
                    i += conns
                    sent = time.time()
                    tally.sent_total += per
                    writer.write(payload)
                    await writer.drain()
                    reply = None
                    while reply is None:
                        try:
                            data = await asyncio.wait_for(
                                reader.read(65536), timeout=max(1.0, tally.t1 - time.time() + 30)
                            )
                        except (TimeoutError, ConnectionError):
                            tally.unanswered += per
                            tally.errors += 1
                            raise
                        if not data:
                            # Closed without the ack: the Forward receiver's refusal.
                            tally.refused += per
                            raise EOFError
                        unpacker.feed(data)
                        for reply in unpacker:  # noqa: B007
                            break
                    tally.acked(sent, per, len(payload))
            except (EOFError, TimeoutError, ConnectionError):
                pass  # open a new connection and go on, as Fluent Bit does
            finally:
                writer.close()

    await asyncio.gather(*(connection(n) for n in range(conns)))


async def http_post(
    url: str, payloads: list[bytes], per: int, conns: int, tally: Tally, *, headers: dict[str, str], ok: int
) -> None:
    connector = aiohttp.TCPConnector(limit=conns)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def worker(n: int) -> None:
            i = n
            while time.time() < tally.t1:
                payload = payloads[i % len(payloads)]
                i += conns
                sent = time.time()
                tally.sent_total += per
                try:
                    async with session.post(url, data=payload, headers=headers) as r:
                        await r.read()
                        if r.status == ok:
                            tally.acked(sent, per, len(payload))
                        elif r.status in (429, 503):
                            tally.refused += per
                            await asyncio.sleep(min(1.0, float(r.headers.get("Retry-After", "0.2") or 0.2)))
                        else:
                            tally.errors += 1
                except (aiohttp.ClientError, TimeoutError):
                    tally.errors += 1
                    tally.unanswered += per
                    await asyncio.sleep(0.1)

        await asyncio.gather(*(worker(n) for n in range(conns)))


async def otlp_grpc(target: str, payloads: list[bytes], per: int, conns: int, tally: Tally) -> None:
    method = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    channels = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(conns)
    ]

    async def worker(n: int) -> None:
        call = channels[n].unary_unary(method)
        i = n
        while time.time() < tally.t1:
            payload = payloads[i % len(payloads)]
            i += conns
            sent = time.time()
            tally.sent_total += per
            try:
                await call(payload, timeout=60)
                tally.acked(sent, per, len(payload))
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                    tally.refused += per
                    await asyncio.sleep(0.2)
                else:
                    tally.errors += 1
                    tally.unanswered += per

    try:
        await asyncio.gather(*(worker(n) for n in range(conns)))
    finally:
        for channel in channels:
            await channel.close()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    t0 = args.t0
    tally = Tally(t0, t0 + args.seconds)
    per = args.per_request
    if args.kind == "forward":
        payloads = workloads.forward_frames(workloads.log_records(per * 16), per)
        job = forward(args.target, payloads, per, args.connections, tally)
    elif args.kind == "http-json":
        payloads = workloads.json_bodies(workloads.log_records(per * 16), per)
        url = f"http://{args.target}/kube.var.log"
        headers = {"Content-Type": "application/json"}
        job = http_post(url, payloads, per, args.connections, tally, headers=headers, ok=201)
    elif args.kind == "otlp-http":
        payloads = workloads.trace_requests(16, per)
        url = f"http://{args.target}/v1/traces"
        headers = {"Content-Type": "application/x-protobuf"}
        job = http_post(url, payloads, per, args.connections, tally, headers=headers, ok=200)
    elif args.kind == "remote-write":
        payloads = workloads.remote_write_requests(16, per)
        url = f"http://{args.target}/api/v1/write"
        headers = {
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        }
        job = http_post(url, payloads, per, args.connections, tally, headers=headers, ok=204)
    else:
        payloads = workloads.trace_requests(16, per)
        job = otlp_grpc(args.target, payloads, per, args.connections, tally)
    # Start sending before t0 (warm-up) but count only inside the window.
    try:
        await asyncio.wait_for(job, timeout=args.seconds + max(0.0, t0 - time.time()) + 120)
    except TimeoutError:
        tally.errors += 1  # answers still outstanding after the bound: reported, not waited for
    return tally.report(args.kind)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("kind", choices=["forward", "http-json", "otlp-http", "otlp-grpc", "remote-write"])
    parser.add_argument("target", help="host:port")
    parser.add_argument("--t0", type=float, required=True, help="Unix time the measured window starts")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the measured window")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--per-request", type=int, default=1000, help="records or spans per request")
    args = parser.parse_args()
    print(orjson.dumps(asyncio.run(main_async(args))).decode(), flush=True)


if __name__ == "__main__":
    main()
