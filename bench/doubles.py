"""Backends that answer at once, for benchmarks: an Elasticsearch `_bulk` sink and OTLP sinks.

Unlike tests/doubles/ (protocol-faithful, recording everything), these do the least work that still
gives the exporter a valid answer, so the process under test is the only thing measured. Each runs
in its own process (pinned by bench/pipeline.py to the load generator's core) and serves its counts
on `GET /_bench/stats` (HTTP sinks) or in a JSON line on stdout at exit.

Run: .venv/bin/python bench/doubles.py {es,otlp-http,otlp-grpc} --port PORT [--stats-port PORT]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import signal
from typing import Any

import grpc
import orjson
from aiohttp import web

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

    def as_json(self) -> bytes:
        return orjson.dumps({"requests": self.requests, "items": self.items, "bytes": self.bytes})


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


async def main_async(kind: str, port: int, stats_port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    counts = Counts()
    if kind == "es":
        await serve_http(es_app(counts), port, stop)
    elif kind == "otlp-http":
        await serve_http(otlp_http_app(counts), port, stop)
    else:
        await serve_grpc(port, stats_port, counts, stop)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("kind", choices=["es", "otlp-http", "otlp-grpc"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stats-port", type=int, default=0, help="otlp-grpc: where /_bench/stats is served")
    args = parser.parse_args()
    asyncio.run(main_async(args.kind, args.port, args.stats_port))


if __name__ == "__main__":
    main()
