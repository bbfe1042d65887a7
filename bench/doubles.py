"""Backends that answer at once, for benchmarks: an Elasticsearch `_bulk` sink, OTLP sinks, and
scrape targets with a remote-write sink.

Unlike tests/doubles/ (protocol-faithful, recording everything), these do the least work that still
gives the exporter a valid answer, so the process under test is the only thing measured. Each runs
in its own process (pinned by bench/pipeline.py to the load generator's core) and serves its counts
on `GET /_bench/stats` (HTTP sinks) or in a JSON line on stdout at exit.

`scrape-targets` listens on ``--targets`` ports of 127.0.0.1 (chosen by the kernel, written one a line
to ``--ports-file``), each answering GET /metrics with one of a few pre-rendered (and pre-gzipped)
expositions of bench/workloads.py, and on ``--port`` takes remote-write requests (POST
/api/v1/write, counted in samples) and serves /_bench/stats, which also gives the scrapes answered
and the process' own CPU seconds (this double is the scenario's load).

Run: .venv/bin/python bench/doubles.py {es,otlp-http,otlp-grpc,scrape-targets} --port PORT
       [--stats-port PORT] [--targets N --ports-file FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import resource
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import cramjam
import grpc
import orjson
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workloads

ES_INFO = orjson.dumps(
    {
        "name": "bench-sink",
        "cluster_name": "bench",
        "cluster_uuid": "bench",
        "version": {"number": "9.1.0", "build_flavor": "default", "lucene_version": "10.2.0"},
        "tagline": "You Know, for Search",
    }
)


class Counts:
    def __init__(self) -> None:
        self.requests = 0
        self.items = 0
        self.bytes = 0
        self.scrapes = 0
        self.scraped_samples = 0
        self.scraped_bytes = 0

    def as_json(self) -> bytes:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return orjson.dumps(
            {
                "requests": self.requests,
                "items": self.items,
                "bytes": self.bytes,
                "scrapes": self.scrapes,
                "scraped_samples": self.scraped_samples,
                "scraped_bytes": self.scraped_bytes,
                "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            }
        )


def _inflate(body: bytes) -> bytes:
    """aiohttp already inflates a request body with Content-Encoding; this handles one sent without."""
    if body[:2] == b"\x1f\x8b":
        return gzip.decompress(body)
    return body


def _es_headers(request: web.Request) -> dict[str, str]:
    accept = request.headers.get("Accept", "")
    content_type = "application/json"
    if "compatible-with=" in accept:
        content_type = "application/vnd.elasticsearch+json;compatible-with=" + accept.rsplit("=", 1)[1]
    return {"Content-Type": content_type, "X-Elastic-Product": "Elasticsearch"}


def es_app(counts: Counts) -> web.Application:
    async def bulk(request: web.Request) -> web.Response:
        body = _inflate(await request.read())
        # Every operation here is `create`: an action line and a source line.
        n = body.count(b"\n") // 2
        counts.requests += 1
        counts.items += n
        counts.bytes += request.content_length or len(body)
        item = b'{"create":{"status":201}}'
        payload = b'{"took":0,"errors":false,"items":[' + b",".join([item] * n) + b"]}"
        return web.Response(body=payload, headers=_es_headers(request))

    async def info(request: web.Request) -> web.Response:
        return web.Response(body=ES_INFO, headers=_es_headers(request))

    async def acknowledged(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b'{"acknowledged":true}', headers=_es_headers(request))

    async def stats(request: web.Request) -> web.Response:
        return web.Response(body=counts.as_json(), content_type="application/json")

    app = web.Application(client_max_size=1 << 30)
    app.router.add_get("/_bench/stats", stats)
    app.router.add_post("/_bulk", bulk)
    app.router.add_put("/_bulk", bulk)
    app.router.add_get("/", info)
    app.router.add_route("*", "/{tail:.*}", acknowledged)
    return app


def otlp_http_app(counts: Counts) -> web.Application:
    async def export(request: web.Request) -> web.Response:
        raw = await request.read()
        counts.requests += 1
        counts.bytes += len(raw)
        # An empty Export*ServiceResponse: full success.
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def stats(request: web.Request) -> web.Response:
        return web.Response(body=counts.as_json(), content_type="application/json")

    app = web.Application(client_max_size=1 << 30)
    app.router.add_get("/_bench/stats", stats)
    app.router.add_post("/v1/{signal}", export)
    return app


def remote_write_samples(body: bytes) -> int:
    """The samples in a snappy-compressed WriteRequest (its series' samples; histograms count one)."""
    from collector.prompb import remote_pb2

    request = remote_pb2.WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
    return sum(len(ts.samples) + len(ts.histograms) for ts in request.timeseries)


async def serve_scrape_targets(
    port: int, targets: int, ports_file: Path, counts: Counts, stop: asyncio.Event
) -> None:
    variants = 8
    plain = [workloads.exposition(v) for v in range(variants)]
    zipped = [gzip.compress(body, 1) for body in plain]
    samples = workloads.SCRAPE_SAMPLES
    served: dict[int, int] = {}

    async def metrics(request: web.Request) -> web.Response:
        local = request.transport.get_extra_info("sockname")[1] if request.transport else 0
        n = served.get(local, 0)
        served[local] = n + 1
        v = (local + n) % variants  # each scrape of a target moves its values on
        counts.scrapes += 1
        counts.scraped_samples += samples
        headers = {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            headers["Content-Encoding"] = "gzip"
            counts.scraped_bytes += len(zipped[v])
            return web.Response(body=zipped[v], headers=headers)
        counts.scraped_bytes += len(plain[v])
        return web.Response(body=plain[v], headers=headers)

    async def write(request: web.Request) -> web.Response:
        body = await request.read()
        counts.requests += 1
        counts.bytes += len(body)
        counts.items += remote_write_samples(body)
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        return web.Response(body=counts.as_json(), content_type="application/json")

    app = web.Application(client_max_size=1 << 30)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/api/v1/write", write)
    app.router.add_get("/_bench/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    socks = []
    for _ in range(targets):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
        await web.SockSite(runner, sock, backlog=512).start()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    ports_file.write_text("".join(f"{sock.getsockname()[1]}\n" for sock in socks))
    await stop.wait()
    await runner.cleanup()


async def serve_http(app: web.Application, port: int, stop: asyncio.Event) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await stop.wait()
    await runner.cleanup()


async def serve_grpc(port: int, stats_port: int, counts: Counts, stop: asyncio.Event) -> None:
    def handler(method: str) -> grpc.RpcMethodHandler:
        async def export(request: bytes, context: Any) -> bytes:
            counts.requests += 1
            counts.bytes += len(request)
            return b""

        return grpc.unary_unary_rpc_method_handler(export)

    services = {
        "opentelemetry.proto.collector.trace.v1.TraceService": {"Export": handler("traces")},
        "opentelemetry.proto.collector.logs.v1.LogsService": {"Export": handler("logs")},
        "opentelemetry.proto.collector.metrics.v1.MetricsService": {"Export": handler("metrics")},
    }
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 1 << 30)])
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(name, methods) for name, methods in services.items()]
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stats_app = web.Application()

    async def stats(request: web.Request) -> web.Response:
        return web.Response(body=counts.as_json(), content_type="application/json")

    stats_app.router.add_get("/_bench/stats", stats)
    await serve_http(stats_app, stats_port, stop)
    await server.stop(0)


async def main_async(args: argparse.Namespace) -> None:
    kind, port, stats_port = args.kind, args.port, args.stats_port
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    counts = Counts()
    if kind == "es":
        await serve_http(es_app(counts), port, stop)
    elif kind == "otlp-http":
        await serve_http(otlp_http_app(counts), port, stop)
    elif kind == "scrape-targets":
        await serve_scrape_targets(port, args.targets, args.ports_file, counts, stop)
    else:
        await serve_grpc(port, stats_port, counts, stop)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("kind", choices=["es", "otlp-http", "otlp-grpc", "scrape-targets"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stats-port", type=int, default=0, help="otlp-grpc: where /_bench/stats is served")
    parser.add_argument("--targets", type=int, default=1000, help="scrape-targets: how many ports")
    parser.add_argument("--ports-file", type=Path, help="scrape-targets: where the ports are written")
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
