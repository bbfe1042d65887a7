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

gRPC status details are built from googleapis-common-protos' ``google.rpc`` messages (a dependency of
opentelemetry-proto) rather than grpcio-status, which is not a dependency.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hmac
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

import grpc
import orjson
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.duration_pb2 import Duration as DurationProto
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from pydantic import Field, SecretStr, field_validator, model_validator

from collector.config.types import ByteSize, Duration, Endpoint, ServerTLS, split_endpoint
from collector.core.component import ComponentConfig, ComponentContext, Consumer, Receiver, Refused, register
from collector.core.model import Batch, Signal
from collector.httpserver.receiving import ProblemLog, inflate
from collector.httpserver.receiving import Rejected as _InflateRejected
from collector.httpserver.server import start_server
from collector.normalize.otlp import (
    InvalidRequest,
    Rejections,
    logs_from_proto,
    metrics_from_proto,
    parse_json_request,
    parse_proto_request,
    spans_from_proto,
)
from collector.receivers.protocol_sniff import ProtocolGuard, WrongProtocolLog

MiB = 1024 * 1024

# Bodies at least this big (or compressed) are decoded in a worker thread.
_THREAD_DECODE_BYTES = 256 * 1024

# In-flight requests get this long to finish (their pipeline answer) when the receiver stops.
_SHUTDOWN_TIMEOUT = 10.0


PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# application/protobuf is the IANA-registered name (2023); some clients send it.
_PROTOBUF_TYPES = frozenset({PROTOBUF, "application/protobuf"})
_ENCODINGS = frozenset({"gzip", "x-gzip", "deflate"})

# Headers a browser may send cross-origin without them being listed in cors.allowed_headers.
_CORS_DEFAULT_HEADERS = frozenset({"accept", "content-type", "content-encoding", "x-requested-with"})

_Format = Literal["protobuf", "json"]


class GRPCServerConfig(ComponentConfig):
    endpoint: Endpoint = "0.0.0.0:4317"
    # Larger messages (after decompression) get RESOURCE_EXHAUSTED; 4 MiB is gRPC's and OTLP's default.
    max_recv_msg_size: ByteSize = 4 * MiB
    tls: ServerTLS | None = None

    @field_validator("max_recv_msg_size")
    @classmethod
    def _positive(cls, value: int) -> int:
        if not 1 <= value < 2**31:
            raise ValueError("max_recv_msg_size must be between 1 byte and 2 GiB")
        return value

    @field_validator("tls")
    @classmethod
    def _grpc_tls(cls, value: ServerTLS | None) -> ServerTLS | None:
        if value is not None and value.min_version != "1.2":
            # grpcio has no setting for it; it negotiates TLS 1.3 with clients that offer it.
            raise ValueError("grpcio cannot be limited to TLS 1.3: leave min_version at 1.2 for gRPC")
        return value


class CORSConfig(ComponentConfig):
    """Cross-origin requests from browsers (OpenTelemetry JS web instrumentation)."""

    # Exact origins (https://app.example.com), wildcard patterns (https://*.example.com) or "*".
    allowed_origins: list[str] = Field(min_length=1)
    # Request headers allowed beyond Accept, Content-Type, Content-Encoding and X-Requested-With
    # (add Authorization when a bearer token is configured); "*" allows any.
    allowed_headers: list[str] = []
    # How long browsers may cache a preflight answer; None leaves it to the browser.
    max_age: Duration | None = None


class HTTPServerConfig(ComponentConfig):
    endpoint: Endpoint = "0.0.0.0:4318"
    # The body as sent and after inflating; larger ones get 413. 20 MiB is OTLP's recommended default.
    max_request_body_size: ByteSize = 20 * MiB
    tls: ServerTLS | None = None
    cors: CORSConfig | None = None
    traces_url_path: str = "/v1/traces"
    logs_url_path: str = "/v1/logs"
    metrics_url_path: str = "/v1/metrics"

    @model_validator(mode="after")
    def _check(self) -> HTTPServerConfig:
        if self.max_request_body_size < 1:
            raise ValueError("max_request_body_size must be at least 1 byte")
        paths = [self.traces_url_path, self.logs_url_path, self.metrics_url_path]
        if any(not p.startswith("/") for p in paths):
            raise ValueError("the url paths must start with '/'")
        if len(set(paths)) != len(paths):
            raise ValueError("traces_url_path, logs_url_path and metrics_url_path must differ")
        return self


class OTLPReceiverConfig(ComponentConfig):
    # Either may be null to turn that transport off.
    grpc: GRPCServerConfig | None = Field(default_factory=GRPCServerConfig)
    http: HTTPServerConfig | None = Field(default_factory=HTTPServerConfig)
    # Clients must send ``Authorization: Bearer <token>`` (HTTP header or gRPC metadata).
    bearer_token: SecretStr | None = None

    @model_validator(mode="after")
    def _check(self) -> OTLPReceiverConfig:
        if self.grpc is None and self.http is None:
            raise ValueError("grpc and http are both off: enable at least one")
        if self.bearer_token is not None and not self.bearer_token.get_secret_value():
            raise ValueError("bearer_token must not be empty")
        return self


@dataclass(frozen=True, slots=True)
class _Kind:
    """What differs between the three signals' Export calls."""

    signal: Signal
    request_class: type[Message]
    # Builds the Export response; with rejections, its partial_success names how many and why.
    respond: Callable[[int, str], Message]
    decode: Callable[[Any, Rejections], list[Any]]
    items: str  # what the items are called in messages
    service: str  # the gRPC service's full name


def _traces_response(rejected: int, message: str) -> trace_service_pb2.ExportTraceServiceResponse:
    response = trace_service_pb2.ExportTraceServiceResponse()
    if rejected:
        response.partial_success.CopyFrom(
            trace_service_pb2.ExportTracePartialSuccess(rejected_spans=rejected, error_message=message)
        )
    return response


def _logs_response(rejected: int, message: str) -> logs_service_pb2.ExportLogsServiceResponse:
    response = logs_service_pb2.ExportLogsServiceResponse()
    if rejected:
        response.partial_success.CopyFrom(
            logs_service_pb2.ExportLogsPartialSuccess(rejected_log_records=rejected, error_message=message)
        )
    return response


def _metrics_response(rejected: int, message: str) -> metrics_service_pb2.ExportMetricsServiceResponse:
    response = metrics_service_pb2.ExportMetricsServiceResponse()
    if rejected:
        response.partial_success.CopyFrom(
            metrics_service_pb2.ExportMetricsPartialSuccess(
                rejected_data_points=rejected, error_message=message
            )
        )
    return response


def _service(module: Any, name: str) -> str:
    return str(module.DESCRIPTOR.services_by_name[name].full_name)


_KINDS = {
    Signal.TRACES: _Kind(
        Signal.TRACES,
        trace_service_pb2.ExportTraceServiceRequest,
        _traces_response,
        spans_from_proto,
        "spans",
        _service(trace_service_pb2, "TraceService"),
    ),
    Signal.LOGS: _Kind(
        Signal.LOGS,
        logs_service_pb2.ExportLogsServiceRequest,
        _logs_response,
        logs_from_proto,
        "log records",
        _service(logs_service_pb2, "LogsService"),
    ),
    Signal.METRICS: _Kind(
        Signal.METRICS,
        metrics_service_pb2.ExportMetricsServiceRequest,
        _metrics_response,
        metrics_from_proto,
        "data points",
        _service(metrics_service_pb2, "MetricsService"),
    ),
}


class Failure(Exception):
    """A request answered with an error: its HTTP status, gRPC code, counter reason and message."""

    def __init__(self, http_status: int, grpc_code: grpc.StatusCode, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.http_status = http_status
        self.grpc_code = grpc_code
        self.reason = reason
        self.detail = detail


def _bad_data(reason: str, detail: str) -> Failure:
    return Failure(400, grpc.StatusCode.INVALID_ARGUMENT, reason, detail)


@dataclass(slots=True)
class _Outcome:
    response: Message
    rejected: int
    message: str


def _retry_seconds(exc: Refused) -> int:
    # Whole seconds, at least one: Retry-After has no fractions, and sub-second hints only make
    # clients hammer a pipeline that is full.
    return max(1, math.ceil(exc.retry_after))


def _status(code: grpc.StatusCode, message: str, *details: Message) -> status_pb2.Status:
    status = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        packed = AnyProto()
        packed.Pack(detail)
        status.details.append(packed)
    return status


def _retry_info(seconds: int) -> error_details_pb2.RetryInfo:
    return error_details_pb2.RetryInfo(retry_delay=DurationProto(seconds=seconds))


def _bad_request(detail: str) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field="", description=detail)]
    )


def _json_bytes(message: Message) -> bytes:
    return orjson.dumps(json_format.MessageToDict(message))


@register
class OTLPReceiver(Receiver):
    """Receives OTLP over gRPC and HTTP (protobuf and JSON) for traces, logs and metrics."""

    type_name = "otlp"
    config_model = OTLPReceiverConfig
    signals = frozenset({Signal.TRACES, Signal.LOGS, Signal.METRICS})

    config: OTLPReceiverConfig

    def __init__(self, config: OTLPReceiverConfig, ctx: ComponentContext, consumers: dict[Signal, Consumer]):
        super().__init__(config, ctx, consumers)
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self._grpc_server: grpc.aio.Server | None = None
        self._runner: web.AppRunner | None = None
        self._serving = False
        self._problems = ProblemLog(self.log)
        self._token = config.bearer_token.get_secret_value().encode() if config.bearer_token else None
        self._http_paths: dict[str, _Kind] = {}
        if config.http is not None:
            self._http_paths = {
                config.http.traces_url_path: _KINDS[Signal.TRACES],
                config.http.logs_url_path: _KINDS[Signal.LOGS],
                config.http.metrics_url_path: _KINDS[Signal.METRICS],
            }

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
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", config.max_recv_msg_size),
                # grpcio sets SO_REUSEPORT by default, which lets a second server share the port
                # silently; a port conflict must be an error.
                ("grpc.so_reuseport", 0),
            ]
        )
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    kind.service,
                    # No (de)serializers: the handler gets the raw message, so that it decides
                    # where to parse it and answers INVALID_ARGUMENT for a bad one.
                    {"Export": grpc.unary_unary_rpc_method_handler(self._grpc_export_handler(kind))},
                )
                for kind in _KINDS.values()
            ]
        )
        self._grpc_server = server  # from here on, stop() (or a failed start) shuts it down
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            if config.tls is None:
                bound = server.add_insecure_port(address)
            else:
                bound = server.add_secure_port(address, _grpc_credentials(config.tls))
        except RuntimeError as exc:  # grpcio >= 1.52 raises; older ones return 0
            raise OSError(f"cannot listen for OTLP/gRPC on {config.endpoint}: {exc}") from None
        if not bound:
            raise OSError(f"cannot listen for OTLP/gRPC on {config.endpoint}")
        await server.start()
        self.grpc_port = int(bound)
        tls = " with TLS" if config.tls else ""
        self.log.info("listening for OTLP/gRPC on %s:%d%s", host, self.grpc_port, tls)

    async def _start_http(self, config: HTTPServerConfig) -> None:
        host, port = split_endpoint(config.endpoint)
        app = web.Application(client_max_size=config.max_request_body_size)
        app.router.add_route("*", "/{path:.*}", self._http_handle)
        if config.cors is not None:
            app.on_response_prepare.append(self._cors_headers)
        ssl_context = config.tls.context() if config.tls else None
        grpc_hint = (
            f"send OTLP/gRPC to :{self.grpc_port}"
            if self.grpc_port
            else "this receiver has no gRPC port (grpc: is off); use OTLP/HTTP (http/protobuf)"
        )
        guard = ProtocolGuard(
            WrongProtocolLog(self.id, self.log, self.ctx.telemetry.protocol_errors),
            "http1",
            f"the OTLP/HTTP port :{port}",
            tls=ssl_context,
            advice={"http2": grpc_hint},
        )
        self._runner, self.http_port = await start_server(
            app,
            host,
            port,
            guard=guard,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
            auto_decompress=False,
            connections=self.ctx.telemetry.connections.labels(self.id),
        )
        guard.port_name = f"the OTLP/HTTP port :{self.http_port}"
        tls = " with TLS" if ssl_context else ""
        self.log.info("listening for OTLP/HTTP on %s:%d%s", host, self.http_port, tls)

    # --- shared by both transports -------------------------------------------------------------

    def _authorized(self, header: str | None) -> None:
        if self._token is None:
            return
        scheme, _, credentials = (header or "").strip().partition(" ")
        if not header:
            raise Failure(401, grpc.StatusCode.UNAUTHENTICATED, "unauthorized", "authentication required")
        if scheme.lower() != "bearer":
            raise Failure(
                401, grpc.StatusCode.UNAUTHENTICATED, "unauthorized", "use Authorization: Bearer <token>"
            )
        if not hmac.compare_digest(credentials.strip().encode("utf-8", "surrogateescape"), self._token):
            raise Failure(401, grpc.StatusCode.UNAUTHENTICATED, "unauthorized", "wrong bearer token")

    def _consumer(self, kind: _Kind) -> Consumer:
        consumer = self.consumers.get(kind.signal)
        if consumer is None:
            raise Failure(
                404,
                grpc.StatusCode.UNIMPLEMENTED,
                "signal_not_enabled",
                f"receiver {self.id} takes no {kind.signal.value}: it is in no {kind.signal.value} pipeline",
            )
        return consumer

    async def _ingest(self, kind: _Kind, body: bytes, fmt: _Format, encoding: str, limit: int) -> _Outcome:
        """Decodes a request and hands its items to the pipeline; raises Failure or Refused."""
        consumer = self._consumer(kind)
        if encoding != "identity" or len(body) >= _THREAD_DECODE_BYTES:
            items, rejections, size = await asyncio.to_thread(_decode, kind, body, fmt, encoding, limit)
        else:
            items, rejections, size = _decode(kind, body, fmt, encoding, limit)
        if items:
            await consumer.consume(Batch(kind.signal, items, size))
        message = rejections.summary(kind.items) if rejections.count else ""
        return _Outcome(kind.respond(rejections.count, message), rejections.count, message)

    def _count(self, reason: str) -> None:
        self.ctx.telemetry.protocol_errors.labels(self.id, reason).inc()

    def _partial(self, outcome: _Outcome, where: str, peer: str) -> None:
        if outcome.rejected:
            self._count("invalid_items")
            self._problems.warn("invalid_items", "partial success", where, peer, outcome.message)

    # --- gRPC ----------------------------------------------------------------------------------

    def _grpc_export_handler(self, kind: _Kind) -> Callable[[bytes, Any], Awaitable[bytes]]:
        limit = self.config.grpc.max_recv_msg_size if self.config.grpc else 0
        where = f"{kind.service}/Export"

        async def export(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            peer = context.peer() or "an unknown peer"
            try:
                metadata = {key: value for key, value in context.invocation_metadata() or ()}
                self._authorized(metadata.get("authorization"))
                outcome = await self._ingest(kind, request, "protobuf", "identity", limit)
            except Failure as exc:
                self._count(exc.reason)
                self._problems.warn(exc.reason, exc.grpc_code.name, where, peer, exc.detail)
                details = (
                    (_bad_request(exc.detail),) if exc.grpc_code == grpc.StatusCode.INVALID_ARGUMENT else ()
                )
                await _grpc_abort(context, _status(exc.grpc_code, exc.detail, *details))
            except Refused as exc:
                seconds = _retry_seconds(exc)
                detail = f"not accepted now: {exc.reason}; retry in {seconds}s"
                self._problems.warn("refused", "UNAVAILABLE", where, peer, detail)
                retry = _retry_info(seconds)
                await _grpc_abort(
                    context,
                    _status(grpc.StatusCode.UNAVAILABLE, detail, retry),
                    # opentelemetry-python's exporters read RetryInfo from this key, not from the
                    # status details that the Go and Java exporters read.
                    ("google.rpc.retryinfo-bin", retry.SerializeToString()),
                )
            except Exception:
                self.log.exception("failed to handle an OTLP/gRPC %s export from %s", kind.signal.value, peer)
                await _grpc_abort(context, _status(grpc.StatusCode.INTERNAL, "internal error"))
            self._partial(outcome, where, peer)
            return outcome.response.SerializeToString()

        return export

    # --- HTTP ----------------------------------------------------------------------------------

    async def _http_handle(self, request: web.Request) -> web.StreamResponse:
        kind = self._http_paths.get(request.path)
        # Error bodies follow the request's encoding when it is JSON, else protobuf (the spec's default).
        fmt: _Format = "json" if request.content_type == JSON else "protobuf"
        peer = request.remote or "an unknown peer"
        where = f"{request.method} {request.path}"
        try:
            if kind is None:
                raise Failure(
                    404, grpc.StatusCode.NOT_FOUND, "not_found", f"no OTLP endpoint at {request.path}"
                )
            if request.method == "OPTIONS" and self.config.http and self.config.http.cors:
                return self._preflight(request)
            if request.method != "POST":
                raise Failure(
                    405,
                    grpc.StatusCode.UNIMPLEMENTED,
                    "method_not_allowed",
                    f"use POST, not {request.method}",
                )
            self._authorized(request.headers.get("Authorization"))
            self._consumer(kind)  # before reading the body: no work for a signal nobody takes
            fmt, encoding = self._http_format(request)
            body = await self._read_body(request)
            assert self.config.http is not None
            outcome = await self._ingest(kind, body, fmt, encoding, self.config.http.max_request_body_size)
        except Failure as exc:
            return self._http_failure(exc, fmt, where, peer)
        except Refused as exc:
            seconds = _retry_seconds(exc)
            detail = f"not accepted now: {exc.reason}; retry in {seconds}s"
            self._problems.warn("refused", "503", where, peer, detail)
            status = _status(grpc.StatusCode.UNAVAILABLE, detail, _retry_info(seconds))
            return _http_response(503, status, fmt, {"Retry-After": str(seconds)})
        except Exception:
            self.log.exception("failed to handle an OTLP/HTTP request to %s from %s", request.path, peer)
            return _http_response(500, _status(grpc.StatusCode.INTERNAL, "internal error"), fmt)
        self._partial(outcome, where, peer)
        return _http_response(200, outcome.response, fmt)

    def _http_failure(self, exc: Failure, fmt: _Format, where: str, peer: str) -> web.Response:
        self._count(exc.reason)
        self._problems.warn(exc.reason, str(exc.http_status), where, peer, exc.detail)
        details = (_bad_request(exc.detail),) if exc.http_status == 400 else ()
        headers: dict[str, str] = {}
        if exc.http_status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="burnline"'
        elif exc.http_status == 405:
            headers["Allow"] = "POST, OPTIONS" if self.config.http and self.config.http.cors else "POST"
        response = _http_response(exc.http_status, _status(exc.grpc_code, exc.detail, *details), fmt, headers)
        if exc.http_status == 413:
            response.force_close()  # the rest of the body was not read: do not reuse the connection
        return response

    def _http_format(self, request: web.Request) -> tuple[_Format, str]:
        content_type = request.content_type
        fmt: _Format
        if content_type in _PROTOBUF_TYPES:
            fmt = "protobuf"
        elif content_type == JSON:
            fmt = "json"
        else:
            raise Failure(
                415,
                grpc.StatusCode.INVALID_ARGUMENT,
                "unsupported_media_type",
                f"Content-Type {content_type!r} is not supported: use {PROTOBUF} or {JSON}",
            )
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower() or "identity"
        if encoding != "identity" and encoding not in _ENCODINGS:
            raise Failure(
                415,
                grpc.StatusCode.INVALID_ARGUMENT,
                "unsupported_encoding",
                f"Content-Encoding {encoding!r} is not supported: use gzip, deflate or none",
            )
        return fmt, encoding

    async def _read_body(self, request: web.Request) -> bytes:
        assert self.config.http is not None
        limit = self.config.http.max_request_body_size
        declared = request.content_length
        if declared is not None and declared > limit:
            raise _too_large(f"the body of {declared} bytes is over the {limit}-byte limit")
        body = bytearray()
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > limit:
                raise _too_large(f"the body is over the {limit}-byte limit")
        return bytes(body)

    # --- CORS ----------------------------------------------------------------------------------

    def _allowed_origin(self, origin: str) -> str | None:
        """The Access-Control-Allow-Origin value for a request's Origin, None if not allowed."""
        cors = self.config.http.cors if self.config.http else None
        if cors is None or not origin:
            return None
        for pattern in cors.allowed_origins:
            if pattern == "*":
                return "*"
            if pattern == origin or ("*" in pattern and fnmatch.fnmatchcase(origin, pattern)):
                return origin
        return None

    def _preflight(self, request: web.Request) -> web.Response:
        cors = self.config.http.cors if self.config.http else None
        assert cors is not None
        origin = self._allowed_origin(request.headers.get("Origin", ""))
        method = request.headers.get("Access-Control-Request-Method", "")
        if origin is None or method.upper() != "POST":
            # No CORS headers: the browser does not send the request.
            return web.Response(status=204)
        allowed = {h.lower() for h in cors.allowed_headers} | _CORS_DEFAULT_HEADERS
        requested = [h.strip() for h in request.headers.get("Access-Control-Request-Headers", "").split(",")]
        granted = [h for h in requested if h and ("*" in allowed or h.lower() in allowed)]
        headers = {"Access-Control-Allow-Methods": "POST"}
        if granted:
            headers["Access-Control-Allow-Headers"] = ", ".join(granted)
        if cors.max_age is not None:
            headers["Access-Control-Max-Age"] = str(int(cors.max_age))
        return web.Response(status=204, headers=headers)

    async def _cors_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = self._allowed_origin(request.headers.get("Origin", ""))
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            if origin != "*":
                response.headers.add("Vary", "Origin")


# ---------------------------------------------------------------------------------------------


def _decode(
    kind: _Kind, body: bytes, fmt: _Format, encoding: str, limit: int
) -> tuple[list[Any], Rejections, int]:
    """Inflates and decodes one request (run in a worker thread for large bodies)."""
    if encoding != "identity":
        try:
            body = inflate(body, encoding, limit)
        except _InflateRejected as exc:
            if exc.status == 413:
                raise _too_large(exc.detail) from None
            raise _bad_data("bad_encoding", exc.detail) from None
    try:
        if fmt == "json":
            message = parse_json_request(body, kind.request_class)
        else:
            message = parse_proto_request(body, kind.request_class)
    except InvalidRequest as exc:
        raise _bad_data(f"invalid_{fmt}", str(exc)) from None
    rejections = Rejections()
    return kind.decode(message, rejections), rejections, len(body)


def _too_large(detail: str) -> Failure:
    return Failure(413, grpc.StatusCode.RESOURCE_EXHAUSTED, "too_large", detail)


def _http_response(
    status: int, message: Message, fmt: _Format, headers: dict[str, str] | None = None
) -> web.Response:
    if fmt == "json":
        return web.Response(status=status, body=_json_bytes(message), content_type=JSON, headers=headers)
    return web.Response(
        status=status, body=message.SerializeToString(), content_type=PROTOBUF, headers=headers
    )


async def _grpc_abort(
    context: grpc.aio.ServicerContext[bytes, bytes], status: status_pb2.Status, *extra: tuple[str, bytes]
) -> NoReturn:
    """Ends the call with ``status``, its details in grpc-status-details-bin as gRPC's rich errors do."""
    trailing = (("grpc-status-details-bin", status.SerializeToString()), *extra)
    code = next(c for c in grpc.StatusCode if c.value[0] == status.code)
    await context.abort(code, status.message, trailing_metadata=trailing)
    raise AssertionError("unreachable: abort() raises")


def _grpc_credentials(tls: ServerTLS) -> grpc.ServerCredentials:
    key = Path(tls.key_file).read_bytes()
    chain = Path(tls.cert_file).read_bytes()
    client_ca = Path(tls.client_ca_file).read_bytes() if tls.client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
