"""A test double of an OTLP endpoint, standing in for Jaeger (and any OTLP receiver) on loopback.

Not a Jaeger: it keeps what it receives in memory and answers the way an OTLP receiver does (Jaeger
1.35+ runs the OpenTelemetry Collector's OTLP receiver on 4317 and 4318):

* OTLP/gRPC: the TraceService, LogsService and MetricsService ``Export`` methods (grpc.aio, the
  opentelemetry-proto servicers); a service not offered answers UNIMPLEMENTED, as Jaeger does for
  logs and metrics (``signals={Signal.TRACES}``); a message above ``max_request_bytes`` is refused by
  gRPC itself with RESOURCE_EXHAUSTED "Received message larger than max". The gRPC port is a TCP
  relay in front of the server that counts what clients send (``grpc_wire_bytes``), so a test can
  see that gzip compressed the traffic.
* OTLP/HTTP: ``POST /v1/traces``, ``/v1/logs``, ``/v1/metrics`` (plus ``extra_paths``) with
  ``application/x-protobuf`` bodies, identity or gzip; 415 for another content type, 400 with a
  google.rpc.Status for a body that does not decode, 413 above ``max_request_bytes`` (decompressed),
  404 for a signal not offered, 405 for another method. Answers are Export*ServiceResponse protobufs.
* TLS on both (``server_cert``: a trustme leaf certificate), mutual TLS with ``client_ca_pem``.
* Injections: the next requests answer a gRPC status (with RetryInfo when ``retry_delay`` is given)
  or an HTTP status (with Retry-After when given) instead of taking the data (``fail_next``), or
  take the data and answer a partial success (``partial_next``), or answer only after a while
  (``stall_next``: a slow endpoint, for client timeouts); an outage is ``stop()`` then
  ``start()`` on the same ports, what was received kept.

Every request is recorded (``requests``), taken or not, with its decoded protobuf, its headers or
metadata (lower-case names) and its size on the wire (HTTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc import aio as grpc_aio
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc as logs_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as metrics_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc

from collector.core.model import Signal
from tests.support import free_port

DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024  # gRPC's default receive limit, which Jaeger keeps

_REQUESTS: dict[Signal, Any] = {
    Signal.TRACES: trace_pb.ExportTraceServiceRequest,
    Signal.LOGS: logs_pb.ExportLogsServiceRequest,
    Signal.METRICS: metrics_pb.ExportMetricsServiceRequest,
}
_PATHS = {"/v1/traces": Signal.TRACES, "/v1/logs": Signal.LOGS, "/v1/metrics": Signal.METRICS}


def _response(signal: Signal, rejected: int = 0, message: str = "") -> Any:
    """An Export*ServiceResponse; with partial_success set when something is to be said."""
    if signal == Signal.TRACES:
        response: Any = trace_pb.ExportTraceServiceResponse()
        if rejected or message:
            response.partial_success.rejected_spans = rejected
    elif signal == Signal.LOGS:
        response = logs_pb.ExportLogsServiceResponse()
        if rejected or message:
            response.partial_success.rejected_log_records = rejected
    else:
        response = metrics_pb.ExportMetricsServiceResponse()
        if rejected or message:
            response.partial_success.rejected_data_points = rejected
    if rejected or message:
        response.partial_success.error_message = message
    return response


@dataclass
class ReceivedRequest:
    transport: str  # "grpc" or "http"
    signal: Signal
    request: Any  # the decoded Export*ServiceRequest (None when it did not decode)
    headers: dict[str, str]
    answer: str  # "ok", "partial", "grpc UNAVAILABLE", "http 503", ...
    wire_bytes: int = 0  # HTTP: the body as sent (compressed when gzip)
    content_encoding: str = ""
    path: str = ""
    time: float = field(default_factory=time.monotonic)  # when it arrived

    @property
    def taken(self) -> bool:
        return self.answer in ("ok", "partial")


@dataclass
class _Injected:
    grpc_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    http_status: int = 503
    message: str = "injected by the test"
    retry_delay: float | None = None
    retry_after: str | None = None
    rejected: int | None = None  # set: a partial success instead of a failure
    stall: float = 0.0  # seconds to wait before answering normally (a slow endpoint)
    normal: bool = False  # answered as without injection (to script "ok, then fail")


class _Relay:
    """A TCP relay in front of the gRPC server that counts the bytes clients send."""

    def __init__(self, port: int, target_port: int) -> None:
        self.port = port
        self.target_port = target_port
        self.client_bytes = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:
                return
            self._writers.add(up_writer)
            pumps = [
                asyncio.create_task(self._pump(reader, up_writer, count=True)),
                asyncio.create_task(self._pump(up_reader, writer, count=False)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
                up_writer.close()
                self._writers.discard(up_writer)
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if count:
                    self.client_bytes += len(data)
                writer.write(data)
                await writer.drain()


class OTLPEndpointDouble:
    """An OTLP/gRPC and OTLP/HTTP endpoint on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        *,
        grpc_port: int | None = None,
        http_port: int | None = None,
        server_cert: Any = None,
        client_ca_pem: bytes | None = None,
        signals: Iterable[Signal] = tuple(Signal),
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        extra_paths: dict[str, Signal] | None = None,
    ) -> None:
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.server_cert = server_cert
        self.client_ca_pem = client_ca_pem  # set: clients must show a certificate this CA signed
        self.signals = frozenset(signals)
        self.max_request_bytes = max_request_bytes
        self.paths = {**_PATHS, **(extra_paths or {})}
        self.requests: list[ReceivedRequest] = []
        self._injected: deque[_Injected] = deque()
        self._grpc_server: Any = None
        self._relay: _Relay | None = None
        self._runner: web.AppRunner | None = None
        self._wire_bytes_before = 0  # relay counts of earlier runs (stop/start)

    # -- addresses ----------------------------------------------------------------------------------

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        scheme = "https" if self.server_cert is not None else "http"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    @property
    def grpc_wire_bytes(self) -> int:
        """Bytes gRPC clients sent (TLS and HTTP/2 framing included), over every run."""
        return self._wire_bytes_before + (self._relay.client_bytes if self._relay else 0)

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listens (again) on the same ports; what was received before a stop() is kept."""
        if self._runner is not None:
            return
        server = grpc_aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", self.max_request_bytes),
            ]
        )
        adders: dict[Signal, tuple[Any, Any]] = {  # generated code without annotations
            Signal.TRACES: (trace_grpc.add_TraceServiceServicer_to_server, _TraceServicer),
            Signal.LOGS: (logs_grpc.add_LogsServiceServicer_to_server, _LogsServicer),
            Signal.METRICS: (metrics_grpc.add_MetricsServiceServicer_to_server, _MetricsServicer),
        }
        for signal, (add, servicer) in adders.items():
            if signal in self.signals:
                add(servicer(self), server)
        if self.server_cert is not None:
            chain = b"".join(blob.bytes() for blob in self.server_cert.cert_chain_pems)
            credentials = grpc.ssl_server_credentials(
                [(self.server_cert.private_key_pem.bytes(), chain)],
                root_certificates=self.client_ca_pem,
                require_client_auth=self.client_ca_pem is not None,
            )
            inner_port = server.add_secure_port("127.0.0.1:0", credentials)
        else:
            inner_port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        relay = _Relay(self.grpc_port, inner_port)
        await relay.start()
        self._grpc_server, self._relay = server, relay

        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle_http)
        # Decompression is ours: the recorded wire size and the 413 check need both sizes.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)
        await runner.setup()
        ssl_context = None
        if self.server_cert is not None:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.server_cert.configure_cert(ssl_context)
            if self.client_ca_pem is not None:
                ssl_context.load_verify_locations(cadata=self.client_ca_pem.decode())
                ssl_context.verify_mode = ssl.CERT_REQUIRED
        site = web.TCPSite(runner, "127.0.0.1", self.http_port, reuse_address=True, ssl_context=ssl_context)
        await site.start()
        self._runner = runner

    async def stop(self) -> None:
        """Closes both listeners and every connection, like an endpoint going down."""
        if self._relay is not None:
            self._wire_bytes_before += self._relay.client_bytes
            await self._relay.stop()
            self._relay = None
        if self._grpc_server is not None:
            await self._grpc_server.stop(None)
            self._grpc_server = None
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> OTLPEndpointDouble:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- injection ----------------------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        *,
        grpc_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        http_status: int = 503,
        retry_delay: float | None = None,
        retry_after: str | None = None,
        message: str = "injected by the test",
        after: int = 0,
    ) -> None:
        """The next ``count`` requests (either transport), after ``after`` answered normally, are not
        taken: gRPC answers ``grpc_code`` (with RetryInfo(retry_delay) when given), HTTP
        ``http_status`` (with Retry-After when given)."""
        for _ in range(after):
            self._injected.append(_Injected(normal=True))
        for _ in range(count):
            self._injected.append(_Injected(grpc_code, http_status, message, retry_delay, retry_after))

    def stall_next(self, seconds: float, count: int = 1) -> None:
        """The next ``count`` requests are answered normally, but only after ``seconds``."""
        for _ in range(count):
            self._injected.append(_Injected(stall=seconds))

    def partial_next(self, rejected: int, message: str, count: int = 1) -> None:
        """The next ``count`` requests are taken, answered with partial_success(rejected, message)."""
        for _ in range(count):
            self._injected.append(_Injected(message=message, rejected=rejected))

    # -- what arrived -------------------------------------------------------------------------------

    def taken(self, signal: Signal | None = None) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.taken and (signal is None or r.signal == signal)]

    def resource_spans(self) -> list[Any]:
        return [rs for r in self.taken(Signal.TRACES) for rs in r.request.resource_spans]

    def spans(self) -> list[Any]:
        return [s for rs in self.resource_spans() for ss in rs.scope_spans for s in ss.spans]

    def log_records(self) -> list[Any]:
        return [
            lr
            for r in self.taken(Signal.LOGS)
            for rl in r.request.resource_logs
            for sl in rl.scope_logs
            for lr in sl.log_records
        ]

    def metrics(self) -> list[Any]:
        return [
            m
            for r in self.taken(Signal.METRICS)
            for rm in r.request.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        ]

    # -- serving ------------------------------------------------------------------------------------

    def _next_answer(self) -> _Injected | None:
        injected = self._injected.popleft() if self._injected else None
        return None if injected is not None and injected.normal else injected

    async def _grpc_export(self, signal: Signal, request: Any, context: Any) -> Any:
        metadata = {m.key.lower(): m.value for m in context.invocation_metadata() or ()}
        injected = self._next_answer()
        if injected is not None and injected.stall:
            self.requests.append(ReceivedRequest("grpc", signal, request, metadata, "stalled"))
            await asyncio.sleep(injected.stall)
            return _response(signal)
        if injected is not None and injected.rejected is None:
            self.requests.append(
                ReceivedRequest("grpc", signal, request, metadata, f"grpc {injected.grpc_code.name}")
            )
            trailing: tuple[tuple[str, bytes], ...] = ()
            if injected.retry_delay is not None:
                trailing = (("grpc-status-details-bin", _status_details(injected)),)
            await context.abort(injected.grpc_code, injected.message, trailing_metadata=trailing)
        rejected = injected.rejected if injected is not None and injected.rejected is not None else 0
        message = injected.message if injected is not None else ""
        answer = "partial" if injected is not None else "ok"
        self.requests.append(ReceivedRequest("grpc", signal, request, metadata, answer))
        return _response(signal, rejected, message)

    async def _handle_http(self, request: web.Request) -> web.StreamResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        signal = self.paths.get(request.path)
        if signal is None or signal not in self.signals:
            return _http_error(404, f"no OTLP service at {request.path}")
        if request.method != "POST":
            return _http_error(405, f"{request.method} is not allowed; use POST")
        content_type = request.content_type
        if content_type != "application/x-protobuf":
            return _http_error(415, f"unsupported content type {content_type!r}")
        wire = await request.read()
        encoding = headers.get("content-encoding", "").lower()
        rec = ReceivedRequest(
            "http",
            signal,
            None,
            headers,
            "",
            wire_bytes=len(wire),
            content_encoding=encoding,
            path=request.path,
        )
        self.requests.append(rec)
        try:
            body = _decompress(wire, encoding, self.max_request_bytes)
        except _TooLarge:
            rec.answer = "http 413"
            return _http_error(413, f"request body larger than {self.max_request_bytes} bytes")
        except ValueError as exc:
            rec.answer = "http 400"
            return _http_error(400, f"cannot decompress the body: {exc}")
        try:
            rec.request = _REQUESTS[signal].FromString(body)
        except DecodeError as exc:
            rec.answer = "http 400"
            return _http_error(400, f"cannot decode the protobuf body: {exc}")
        injected = self._next_answer()
        if injected is not None and injected.stall:
            rec.answer = "stalled"
            await asyncio.sleep(injected.stall)
            return web.Response(
                body=_response(signal).SerializeToString(), content_type="application/x-protobuf"
            )
        if injected is not None and injected.rejected is None:
            rec.answer = f"http {injected.http_status}"
            extra = {"Retry-After": injected.retry_after} if injected.retry_after is not None else {}
            return _http_error(injected.http_status, injected.message, extra)
        rejected = injected.rejected if injected is not None and injected.rejected is not None else 0
        message = injected.message if injected is not None else ""
        rec.answer = "partial" if injected is not None else "ok"
        return web.Response(
            body=_response(signal, rejected, message).SerializeToString(),
            content_type="application/x-protobuf",
        )


class _TooLarge(Exception):
    pass


def _decompress(wire: bytes, encoding: str, limit: int) -> bytes:
    if encoding in ("", "identity"):
        body = wire
    elif encoding == "gzip":
        try:
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            body = decompressor.decompress(wire, limit + 1)
        except zlib.error as exc:
            raise ValueError(str(exc)) from exc
    else:
        raise ValueError(f"unsupported content encoding {encoding!r}")
    if len(body) > limit:
        raise _TooLarge
    return body


def _status_details(injected: _Injected) -> bytes:
    status = status_pb2.Status(code=injected.grpc_code.value[0], message=injected.message)
    delay = injected.retry_delay or 0.0
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=int(delay), nanos=int((delay % 1) * 1e9))
        )
    )
    status.details.append(detail)
    return bytes(status.SerializeToString())


def _http_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = status_pb2.Status(message=message).SerializeToString()
    return web.Response(status=status, body=body, content_type="application/x-protobuf", headers=headers)


class _TraceServicer(trace_grpc.TraceServiceServicer):
    def __init__(self, double: OTLPEndpointDouble) -> None:
        self.double = double

    async def Export(self, request: Any, context: Any) -> Any:
        return await self.double._grpc_export(Signal.TRACES, request, context)


class _LogsServicer(logs_grpc.LogsServiceServicer):
    def __init__(self, double: OTLPEndpointDouble) -> None:
        self.double = double

    async def Export(self, request: Any, context: Any) -> Any:
        return await self.double._grpc_export(Signal.LOGS, request, context)


class _MetricsServicer(metrics_grpc.MetricsServiceServicer):
    def __init__(self, double: OTLPEndpointDouble) -> None:
        self.double = double

    async def Export(self, request: Any, context: Any) -> Any:
        return await self.double._grpc_export(Signal.METRICS, request, context)
