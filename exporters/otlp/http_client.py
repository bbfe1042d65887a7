"""OTLP over HTTP/protobuf: aiohttp, kept-alive connections, the request body gzipped once (off the
event loop, with the encoding); what a status and an error body mean for the request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from collector.core.gzip_body import gzip_body, gzip_compress
from collector.core.model import Signal
from collector.core.retry_after import parse_retry_after
from exporters.otlp.answers import USER_AGENT, Accepted, Failed, rejected_count
from exporters.otlp.config import OTLPExporterConfig

# Level 1: OTLP protobufs repeat attribute keys and resource values, so the fastest level already
# gets most of the gain, at a fraction of the CPU of the default level 6.
GZIP_LEVEL = 1
# Answers are small (a partial_success at most); more than this is not an OTLP endpoint talking.
MAX_RESPONSE_BYTES = 1024 * 1024

# OTLP/HTTP: the only statuses that may be retried; every other 4xx and 5xx must not be.
RETRYABLE_HTTP_STATUSES = frozenset({429, 502, 503, 504})
HTTP_TOO_LARGE = 413


def _error_message(body: bytes, content_type: str) -> str:
    """The message of an OTLP/HTTP error body (a google.rpc.Status), else the start of the body."""
    if content_type == "application/x-protobuf":
        try:
            status = Status.FromString(body)
        except DecodeError:
            pass
        else:
            return str(status.message)
    if content_type == "application/json":
        try:
            parsed = json.loads(body)
        except ValueError:
            pass
        else:
            if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
                return str(parsed["message"])
    return body[:300].decode("utf-8", "replace").strip()


_RESPONSES: dict[Signal, Callable[[bytes], Message]] = {
    Signal.TRACES: trace_service_pb2.ExportTraceServiceResponse.FromString,
    Signal.LOGS: logs_service_pb2.ExportLogsServiceResponse.FromString,
    Signal.METRICS: metrics_service_pb2.ExportMetricsServiceResponse.FromString,
}
_JSON_RESPONSES: dict[Signal, type[Message]] = {
    Signal.TRACES: trace_service_pb2.ExportTraceServiceResponse,
    Signal.LOGS: logs_service_pb2.ExportLogsServiceResponse,
    Signal.METRICS: metrics_service_pb2.ExportMetricsServiceResponse,
}


def parse_http_success(signal: Signal, body: bytes, content_type: str) -> Accepted:
    """The partial_success of a 2xx answer. An empty or unreadable body is a full success: the
    status says the data was taken, and only a partial_success could say otherwise."""
    if not body:
        return Accepted()
    try:
        if content_type == "application/json":
            response = json_format.Parse(body, _JSON_RESPONSES[signal](), ignore_unknown_fields=True)
        else:
            response = _RESPONSES[signal](body)
    except (DecodeError, ValueError):
        return Accepted()
    return rejected_count(signal, response)


class HttpTransport:
    def __init__(self, config: OTLPExporterConfig) -> None:
        self.config = config
        self.urls = config.signal_urls()
        self.gzip = config.compression == "gzip"
        self._session: aiohttp.ClientSession | None = None
        tls = config.tls
        self._server_hostname = tls.server_name if tls is not None and tls.server_name else None

    def describe(self, signal: Signal | None = None) -> str:
        if signal is not None and signal in self.urls:
            return self.urls[signal]
        return self.config.endpoint or ", ".join(sorted(set(self.urls.values())))

    async def open(self) -> None:
        tls = self.config.tls
        ssl_context = tls.context() if tls is not None else True
        connector = aiohttp.TCPConnector(limit=self.config.concurrency + 1, ssl=ssl_context)
        headers = {"User-Agent": USER_AGENT, **self.config.headers}
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def prepare(self, request: Message) -> bytes:
        body = request.SerializeToString()
        return gzip_compress(body, GZIP_LEVEL) if self.gzip else body

    async def prepare_wire(self, wire: bytes) -> bytes:
        """The body for a request already serialized (``Batch.wire``)."""
        return await gzip_body(wire, GZIP_LEVEL) if self.gzip else wire

    async def send(self, signal: Signal, prepared: bytes) -> Accepted:
        session = self._session
        if session is None:
            raise Failed("not_started", "the exporter is not started", retryable=True)
        url = self.urls.get(signal)
        if url is None:
            raise Failed(
                "no_endpoint",
                f"no {signal.value}_endpoint and no endpoint is configured for {signal.value}",
                retryable=False,
            )
        headers = {"Content-Type": "application/x-protobuf"}
        if self.gzip:
            headers["Content-Encoding"] = "gzip"
        kwargs: dict[str, Any] = {}
        if self._server_hostname:
            kwargs["server_hostname"] = self._server_hostname
        try:
            async with session.post(url, data=prepared, headers=headers, **kwargs) as response:
                body = await _read_limited(response)
                status = response.status
                content_type = response.content_type
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError) as exc:
            raise Failed("tls", f"TLS failed: {exc}", retryable=True) from exc
        except TimeoutError as exc:  # before ClientConnectionError: a read timeout is both
            detail = f"no answer within {self.config.timeout:g}s"
            raise Failed("timeout", detail, retryable=True) from exc
        except aiohttp.ClientConnectionError as exc:
            raise Failed("connection", f"{type(exc).__name__}: {exc}", retryable=True) from exc
        except aiohttp.ClientError as exc:
            raise Failed("http_client", f"{type(exc).__name__}: {exc}", retryable=True) from exc
        if 200 <= status < 300:
            return parse_http_success(signal, body, content_type)
        reason = f"http_{status}"
        detail = f"HTTP {status}: {_error_message(body, content_type)}"
        if status in RETRYABLE_HTTP_STATUSES:
            raise Failed(reason, detail, retryable=True, retry_after=retry_after)
        raise Failed(reason, detail, retryable=False, too_large=status == HTTP_TOO_LARGE)


async def _read_limited(response: aiohttp.ClientResponse) -> bytes:
    if response.content_length is not None and response.content_length > MAX_RESPONSE_BYTES:
        return b""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            break
    return b"".join(chunks)
