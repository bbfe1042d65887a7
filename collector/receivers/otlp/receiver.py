"""The ``otlp`` receiver: OTLP/gRPC and OTLP/HTTP (binary protobuf and JSON) for traces, logs, metrics.

Follows the OTLP specification (opentelemetry-proto ``docs/specification.md``):

- gRPC (default port 4317): the ``Export`` method of TraceService, LogsService and MetricsService.
  Request compression (gzip) is grpcio's own; a request over ``max_recv_msg_size`` gets
  RESOURCE_EXHAUSTED from grpcio, undecodable data INVALID_ARGUMENT, a missing or wrong bearer token
  UNAUTHENTICATED, backpressure UNAVAILABLE with a ``google.rpc.RetryInfo`` in the status details.
- HTTP (default port 4318): POST ``/v1/traces``, ``/v1/logs``, ``/v1/metrics`` with
  ``application/x-protobuf`` or ``application/json`` bodies, optionally ``Content-Encoding: gzip``
  (or deflate). The answer uses the request's content type. Bad data gets 400, an oversized body
  (before or after inflating) 413, an unknown content type or encoding 415, a missing or wrong token
  401, backpressure 503 with ``Retry-After``. Error bodies are ``google.rpc.Status`` messages.

One request is one batch: decoded whole (in a worker thread when large, so one big request does not
stall every other connection), handed to the pipeline once, and acknowledged only when the pipeline
took it. Invalid items (a span with a malformed id, ...) are left out and reported with OTLP's
partial success; the rest of the request is kept.

A signal this receiver has no pipeline for is refused as not implemented (gRPC UNIMPLEMENTED, HTTP
404), both non-retryable, with a message naming the missing pipeline, as the OpenTelemetry Collector
registers only the services its pipelines use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import grpc
from aiohttp import web

from collector.config.types import split_endpoint
from collector.core.component import ComponentContext, Consumer, Receiver, register
from collector.core.model import Batch, Signal
from collector.core.problem_log import ProblemLog
from collector.httpserver.answers import Rejected
from collector.httpserver.auth import HTTPAuth
from collector.httpserver.body import inflate
from collector.httpserver.server import start_receiver_server
from collector.normalize.otlp import InvalidRequest, parse_json_request, parse_proto_request
from collector.normalize.otlp_values import Rejections
from collector.receivers.otlp.config import GRPCServerConfig, HTTPServerConfig, OTLPReceiverConfig
from collector.receivers.otlp.grpc import grpc_server, serve
from collector.receivers.otlp.http import OTLPHTTP
from collector.receivers.otlp.messages import Failure, Format, Kind, Outcome, bad_data, too_large

# Bodies at least this big (or compressed) are decoded in a worker thread.
_THREAD_DECODE_BYTES = 256 * 1024

# In-flight requests get this long to finish (their pipeline answer) when the receiver stops.
_SHUTDOWN_TIMEOUT = 10.0


@register
class OTLPReceiver(Receiver[OTLPReceiverConfig]):
    """Receives OTLP over gRPC and HTTP (protobuf and JSON) for traces, logs and metrics."""

    type_name = "otlp"
    config_model = OTLPReceiverConfig
    signals = frozenset({Signal.TRACES, Signal.LOGS, Signal.METRICS})

    def __init__(self, config: OTLPReceiverConfig, ctx: ComponentContext, consumers: dict[Signal, Consumer]):
        super().__init__(config, ctx, consumers)
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self._grpc_server: grpc.aio.Server | None = None
        self._runner: web.AppRunner | None = None
        self._serving = False
        self.problems = ProblemLog(self.log)
        # Bearer token only; a client sending another scheme is told which one to use.
        self.auth = HTTPAuth(
            None, None, config.bearer_token, other_scheme="use Authorization: Bearer <token>"
        )

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            if self.config.grpc is not None:
                await self._start_grpc(self.config.grpc)
            if self.config.http is not None:
                await self._start_http(self.config.http)
        except BaseException:
            await self._stop_servers(grace=0.0)
            raise
        self._serving = True

    async def stop(self) -> None:
        self._serving = False
        await self._stop_servers(grace=_SHUTDOWN_TIMEOUT)
        self.ctx.telemetry.connections.labels(self.id).set_function(lambda: 0)

    def ready(self) -> bool:
        return self._serving

    async def _stop_servers(self, grace: float) -> None:
        stops: list[Awaitable[Any]] = []
        if self._grpc_server is not None:
            stops.append(self._grpc_server.stop(grace))
            self._grpc_server = None
        if self._runner is not None:
            stops.append(self._runner.cleanup())
            self._runner = None
        # Both at once: in-flight requests on either transport finish within the same grace.
        for outcome in await asyncio.gather(*stops, return_exceptions=True):
            if isinstance(outcome, BaseException):
                self.log.error("failed to stop a server cleanly: %r", outcome)

    async def _start_grpc(self, config: GRPCServerConfig) -> None:
        host, port = split_endpoint(config.endpoint)
        server = grpc_server(self, config)
        self._grpc_server = server  # from here on, stop() (or a failed start) shuts it down
        self.grpc_port = await serve(server, config, host, port)
        tls = " with TLS" if config.tls else ""
        self.log.info("listening for OTLP/gRPC on %s:%d%s", host, self.grpc_port, tls)

    async def _start_http(self, config: HTTPServerConfig) -> None:
        host, port = split_endpoint(config.endpoint)
        ssl_context = config.tls.context() if config.tls else None
        grpc_hint = (
            f"send OTLP/gRPC to :{self.grpc_port}"
            if self.grpc_port
            else "this receiver has no gRPC port (grpc: is off); use OTLP/HTTP (http/protobuf)"
        )
        self._runner, self.http_port = await start_receiver_server(
            OTLPHTTP(self, config).app(),
            host,
            port,
            self.ctx,
            port_name="the OTLP/HTTP port :{port}",
            ssl_context=ssl_context,
            http2_advice=grpc_hint,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        tls = " with TLS" if ssl_context else ""
        self.log.info("listening for OTLP/HTTP on %s:%d%s", host, self.http_port, tls)

    # --- shared by both transports -------------------------------------------------------------

    def authorize(self, header: str | None) -> None:
        """Raises Failure (401, UNAUTHENTICATED) unless ``header`` carries the bearer token."""
        try:
            self.auth.check(header or "")
        except Rejected as exc:
            raise Failure(401, grpc.StatusCode.UNAUTHENTICATED, exc.reason, exc.detail) from None

    def consumer(self, kind: Kind) -> Consumer:
        consumer = self.consumers.get(kind.signal)
        if consumer is None:
            raise Failure(
                404,
                grpc.StatusCode.UNIMPLEMENTED,
                "signal_not_enabled",
                f"receiver {self.id} takes no {kind.signal.value}: it is in no {kind.signal.value} pipeline",
            )
        return consumer

    async def ingest(self, kind: Kind, body: bytes, fmt: Format, encoding: str, limit: int) -> Outcome:
        """Decodes a request and hands its items to the pipeline; raises Failure or Refused."""
        consumer = self.consumer(kind)
        if encoding != "identity" or len(body) >= _THREAD_DECODE_BYTES:
            items, rejections, size, wire = await asyncio.to_thread(_decode, kind, body, fmt, encoding, limit)
        else:
            items, rejections, size, wire = _decode(kind, body, fmt, encoding, limit)
        if items:
            await consumer.consume(Batch(kind.signal, items, size, wire))
        message = rejections.summary(kind.items) if rejections.count else ""
        return Outcome(kind.respond(rejections.count, message), rejections.count, message)

    def count(self, reason: str) -> None:
        self.ctx.telemetry.protocol_errors.labels(self.id, reason).inc()

    def partial(self, outcome: Outcome, where: str, peer: str) -> None:
        if outcome.rejected:
            self.count("invalid_items")
            self.problems.warn("invalid_items", "partial success", where, peer, outcome.message)


# ---------------------------------------------------------------------------------------------


def _decode(
    kind: Kind, body: bytes, fmt: Format, encoding: str, limit: int
) -> tuple[list[Any], Rejections, int, bytes | None]:
    """Inflates and decodes one request (run in a worker thread for large bodies): its items, the
    ones rejected, its size, and the serialized request when every item was kept (``Batch.wire``)."""
    if encoding != "identity":
        try:
            body = inflate(body, encoding, limit)
        except Rejected as exc:
            if exc.status == 413:
                raise too_large(exc.detail) from None
            raise bad_data("bad_encoding", exc.detail) from None
    try:
        if fmt == "json":
            message = parse_json_request(body, kind.request_class)
        else:
            message = parse_proto_request(body, kind.binary_class)
    except InvalidRequest as exc:
        raise bad_data(f"invalid_{fmt}", str(exc)) from None
    rejections = Rejections()
    items = kind.decode(message, rejections)
    # None when the request holds items the batch does not; a JSON request is serialized here
    # (upb, in C): cheaper than encoding its items later.
    wire = None
    if not rejections.count:
        wire = body if fmt == "protobuf" else message.SerializeToString()
    return items, rejections, len(body), wire
