"""The ``remote_write`` receiver: Prometheus remote-write 1.0 (snappy-compressed protobuf over HTTP).

A sender (Prometheus, Grafana Agent/Alloy, vmagent, the OpenTelemetry Collector) POSTs a
``prometheus.WriteRequest`` compressed with snappy's *block* format to ``path``. One request is one
batch: decoded whole, converted once, handed to the pipeline once, and answered 204 only when the
pipeline took it.

Answers, as the specification and Prometheus' own receiver give them (a sender retries 5xx, drops
the request on any other 4xx, and retries 429 only when configured to):

- 204: written.
- 400: the body is not snappy, not a WriteRequest, or holds invalid series (no ``__name__``, an
  empty or repeated label name, a native histogram this receiver cannot read). The valid series of
  such a request are still ingested, as the spec allows; the message names the first problems.
- 401: Basic or bearer authentication is configured and the request does not pass it.
- 413: the body, or what it inflates to, is over the configured limit.
- 415: not snappy, not protobuf, or a protobuf message other than ``prometheus.WriteRequest``
  (remote-write 2.0's ``io.prometheus.write.v2.Request`` included, as the 2.0 spec asks of a
  receiver that does not support it).
- 503 + Retry-After (default) or 429 + Retry-After (``refused_status: 429``): the pipeline refused
  the batch (backpressure). 503 is the default because Prometheus retries every 5xx but drops a
  request answered 429 unless ``queue_config.retry_on_http_429`` is set (it is off by default):
  refusing with 429 would lose data with a stock Prometheus.

A missing Content-Type (or a generic ``application/octet-stream``), Content-Encoding or
``X-Prometheus-Remote-Write-Version`` is taken as remote-write 1.0, as Prometheus' own receiver
does. Labels need not be sorted: attributes are a map,
and Prometheus' receiver sorts them too. A label with an empty value is absent (Prometheus' data
model). Metric and label names may use any UTF-8, as Prometheus 3 allows.

How samples become points: :mod:`collector.receivers.remote_write.convert`.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from collector.config.types import split_endpoint
from collector.core.component import ComponentContext, Consumer, Receiver, Refused, register
from collector.core.model import Batch, Signal
from collector.core.problem_log import ProblemLog
from collector.httpserver.answers import Rejected, refused_response, rejection_response, warn_request
from collector.httpserver.auth import HTTPAuth
from collector.httpserver.body import decompress_snappy, read_body
from collector.httpserver.server import start_receiver_server
from collector.receivers.remote_write.config import RemoteWriteConfig
from collector.receivers.remote_write.convert import Conversion, Converter, parse_write_request
from collector.receivers.remote_write.families import FamilyTypes
from collector.receivers.request_turn import request_turn

PROTOCOL_VERSION = "0.1.0"
WRITE_REQUEST_V1 = "prometheus.WriteRequest"

# Bodies at least this big are decoded in a worker thread so that one large request does not stall
# every other connection's I/O (Prometheus' default 2000-sample request is well under this).
_THREAD_DECODE_BYTES = 128 * 1024
_SHUTDOWN_TIMEOUT = 10.0

# Content types that say nothing about the payload: taken as remote-write 1.0, as a missing one is.
_GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_PROTOBUF_TYPES = frozenset(
    {"application/x-protobuf", "application/protobuf", "application/vnd.google.protobuf"}
)


def _message_type(content_type: str) -> str:
    """The protobuf message a Content-Type names; "" for one that is not protobuf at all."""
    mime, _, params = content_type.partition(";")
    mime = mime.strip().lower()
    if mime in _GENERIC_TYPES:
        return WRITE_REQUEST_V1
    if mime not in _PROTOBUF_TYPES:
        return ""
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "proto":
            return value.strip().strip('"')
    return WRITE_REQUEST_V1


@register
class RemoteWriteReceiver(Receiver[RemoteWriteConfig]):
    """Receives Prometheus remote-write 1.0 requests."""

    type_name = "remote_write"
    config_model = RemoteWriteConfig
    signals = frozenset({Signal.METRICS})

    def __init__(self, config: RemoteWriteConfig, ctx: ComponentContext, consumers: dict[Signal, Consumer]):
        super().__init__(config, ctx, consumers)
        self.host, self.port = split_endpoint(config.endpoint)
        self.families = FamilyTypes(config.metadata_cache_size)
        self.converter = Converter(self.families, config.infer_types)
        self._runner: web.AppRunner | None = None
        self._serving = False
        self._problems = ProblemLog(self.log)
        self._auth = HTTPAuth(config.username, config.password, config.bearer_token)

    async def start(self) -> None:
        app = web.Application(client_max_size=self.config.max_body_size)
        app.router.add_route("*", self.config.path, self._handle)
        ssl_context = self.config.tls.context() if self.config.tls else None
        # Bodies stay raw (start_receiver_server): they are snappy, which aiohttp does not know.
        self._runner, self.port = await start_receiver_server(
            app,
            self.host,
            self.port,
            self.ctx,
            port_name="the remote_write port :{port}",
            ssl_context=ssl_context,
            http2_advice="remote_write is HTTP/1.1; send OTLP/gRPC to the OTLP port (:4317)",
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        self._serving = True
        scheme = "https" if ssl_context else "http"
        self.log.info(
            "listening for Prometheus remote-write on %s://%s:%d%s",
            scheme,
            self.host,
            self.port,
            self.config.path,
        )

    async def stop(self) -> None:
        self._serving = False
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.ctx.telemetry.connections.labels(self.id).set_function(lambda: 0)

    def ready(self) -> bool:
        return self._serving

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            if request.method != "POST":
                raise Rejected(405, "method_not_allowed", f"method {request.method} is not allowed; POST")
            try:
                async with request_turn(self.ctx):
                    return await self._ingest(request)
            except Refused as exc:  # no turn came: the body was never read
                warn_request(self._problems, request, "busy", self.config.refused_status, exc.reason)
                return refused_response(exc, self.config.refused_status)
        except Rejected as exc:
            return self._reject(request, exc)
        except Exception:
            # A bug, not the sender's fault: 500 makes it retry rather than drop the samples.
            self.log.exception("failed to handle a remote-write request from %s", request.remote)
            return web.Response(status=500, text="internal error\n")

    def _reject(self, request: web.Request, exc: Rejected) -> web.Response:
        self.ctx.telemetry.protocol_errors.labels(self.id, exc.reason).inc()
        warn_request(self._problems, request, exc.reason, exc.status, exc.detail)
        return rejection_response(exc, self._auth.challenge, allow="POST")

    async def _ingest(self, request: web.Request) -> web.Response:
        self._auth.check(request.headers.get("Authorization", ""))
        encoding = request.headers.get("Content-Encoding", "").strip().lower() or "snappy"
        if encoding != "snappy":
            raise Rejected(
                415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported; use snappy"
            )
        content_type = request.headers.get("Content-Type", "")
        message = _message_type(content_type)
        if message != WRITE_REQUEST_V1:
            what = f"protobuf message {message!r}" if message else f"Content-Type {content_type!r}"
            raise Rejected(
                415,
                "unsupported_media_type",
                f"{what} is not supported; this receiver takes remote-write 1.0: "
                f"application/x-protobuf (proto={WRITE_REQUEST_V1})",
            )
        version = request.headers.get("X-Prometheus-Remote-Write-Version", "")
        if version and not version.startswith(("0.", "1.")):
            self.log.debug("remote-write version %r with a 1.0 message from %s", version, request.remote)
        body = await read_body(request, self.config.max_body_size)
        if not body:
            raise Rejected(400, "empty_body", "the request has no body")
        if len(body) >= _THREAD_DECODE_BYTES:
            conversion = await asyncio.to_thread(self._decode, body)
        else:
            conversion = self._decode(body)
        telemetry = self.ctx.telemetry
        for reason, n in conversion.dropped.items():
            telemetry.dropped.labels(self.id, Signal.METRICS.value, reason).inc(n)
        points = conversion.points
        if points:
            try:
                await self.consumers[Signal.METRICS].consume(Batch(Signal.METRICS, points, conversion.size))
            except Refused as exc:
                return self._refused(request, exc, len(points))
        headers = {"X-Prometheus-Remote-Write-Version": PROTOCOL_VERSION}
        if conversion.invalid:
            detail = (
                f"{conversion.invalid} invalid series not written ({len(points)} points written): "
                + "; ".join(conversion.problems)
            )
            telemetry.protocol_errors.labels(self.id, "invalid_series").inc()
            warn_request(self._problems, request, "invalid_series", 400, detail)
            return web.Response(status=400, text=detail + "\n", headers=headers)
        return web.Response(status=204, headers=headers)

    def _refused(self, request: web.Request, exc: Refused, n: int) -> web.Response:
        status = self.config.refused_status
        detail = f"the pipeline refused {n} points: {exc.reason}"
        warn_request(self._problems, request, "refused", status, detail)
        return refused_response(exc, status)

    def _decode(self, body: bytes) -> Conversion:
        data = decompress_snappy(body, self.config.max_decompressed_size)
        conversion = self.converter.convert(parse_write_request(data))
        conversion.size = len(data)
        return conversion
