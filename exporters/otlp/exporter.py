"""The ``otlp`` exporter: traces, logs and metrics to any OTLP endpoint, over gRPC or HTTP/protobuf.

Jaeger (1.35 and later) ingests OTLP natively on 4317 (gRPC) and 4318 (HTTP), so this is burnline's
way to Jaeger as well as to an OpenTelemetry Collector, Tempo, or a vendor's OTLP intake. Records are
encoded by exporters/otlp_encode.py, in a worker thread, one request per export call::

    exporters:
      otlp/jaeger: {endpoint: jaeger:4317, insecure: true}          # plaintext gRPC, Jaeger's default
      otlp/vendor:
        protocol: http/protobuf
        endpoint: https://otlp.vendor.example        # + /v1/traces, /v1/logs, /v1/metrics
        headers: {authorization: "Bearer ${OTLP_TOKEN}"}

Transports (``protocol``):

* ``grpc`` (default): ``endpoint`` is ``host:port`` (TLS unless ``insecure: true``), or
  ``http://host:port`` / ``https://host:port``. One grpc.aio channel, the opentelemetry-proto
  ``*_pb2_grpc`` stubs, gzip per call, ``headers`` as metadata. The channel reconnects by itself with
  a backoff bounded by the exporter's ``retry`` settings, so an endpoint that comes back is used
  again within ``retry.max_interval``.
* ``http/protobuf``: ``endpoint`` is a base URL and ``/v1/traces``, ``/v1/logs``, ``/v1/metrics``
  are appended (after any path it has); ``traces_endpoint``, ``logs_endpoint``, ``metrics_endpoint``
  give a signal's full URL instead. aiohttp, kept-alive connections, bodies gzipped off the event
  loop. The URL scheme decides TLS.

What an answer does, as the OTLP specification says (protocol/otlp.md, "Failures"):

* Success: the batch is delivered. A ``partial_success`` with ``rejected_<items>`` > 0 means the
  endpoint dropped that many for good; OTLP forbids resending the request, and the answer does not
  say which records were dropped, so none can be written to the dead-letter file. They are counted
  exactly, as ``burnline_records_failed_total{reason="partial_success"}``, and logged with the
  endpoint's message; the rest counts as exported. A partial success with 0 rejected carries a
  warning from the endpoint, which is logged.
* Retried after the sender's backoff (RetryableExportError): gRPC UNAVAILABLE, CANCELLED,
  DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, DATA_LOSS, and RESOURCE_EXHAUSTED when the status
  carries a ``google.rpc.RetryInfo`` (the server says it can recover); HTTP 429, 502, 503, 504; no
  connection, a timeout, a dropped connection. ``RetryInfo.retry_delay`` and ``Retry-After`` (seconds
  or an HTTP date) are the retry hint.
* Too large (HTTP 413; gRPC RESOURCE_EXHAUSTED without RetryInfo for a message over the server's
  limit, 4 MiB by default in gRPC servers): the request is split in halves until it fits, and from
  then on the exporter sends at most that many records per request (logged once: lower
  ``batch.max_bytes`` to avoid the extra round trips). A single record too large is refused for good.
* Refused for good, everything else (HTTP 400, 401, 403, 404, other 4xx and 5xx; gRPC
  INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED (Jaeger answers it for logs
  and metrics: it takes traces only), RESOURCE_EXHAUSTED without RetryInfo, INTERNAL, UNKNOWN, ...):
  PermanentExportError, so the sender writes the batch to the dead-letter file; the endpoint's
  message is logged and names the reason. (When only part of a batch was refused, after a split,
  the exporter dead-letters that part itself, with the status as the reason.)
* A record that cannot be encoded (a trace id that is not 32 hex digits, a negative time) is
  dead-lettered alone with reason ``encode_error``; the rest of the batch goes on.

``start()`` only creates the channel or session: an endpoint that is down does not stop the service;
records stay queued and retried until it answers.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import grpc
import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped]  # .pyi, no py.typed
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from grpc import aio as grpc_aio
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from pydantic import Field, field_validator, model_validator

from collector import __version__
from collector.config.types import ClientTLS, Duration, split_endpoint
from collector.core.component import (
    ComponentContext,
    Exporter,
    PermanentExportError,
    RetryableExportError,
    register,
)
from collector.core.model import Batch, Signal
from collector.exporterhelper.sender import ExporterConfig
from exporters.local.exporter import to_json
from exporters.otlp.encode import logs_to_proto, metrics_to_proto, spans_to_proto

USER_AGENT = f"burnline/{__version__}"
# Level 1: OTLP protobufs repeat attribute keys and resource values, so the fastest level already
# gets most of the gain, at a fraction of the CPU of the default level 6.
GZIP_LEVEL = 1
# Answers are small (a partial_success at most); more than this is not an OTLP endpoint talking.
MAX_RESPONSE_BYTES = 1024 * 1024

SIGNAL_PATHS = {Signal.TRACES: "v1/traces", Signal.LOGS: "v1/logs", Signal.METRICS: "v1/metrics"}
_ITEM_NAMES = {Signal.TRACES: "spans", Signal.LOGS: "log records", Signal.METRICS: "data points"}

# OTLP/gRPC: retryable status codes (RESOURCE_EXHAUSTED only with RetryInfo, handled apart).
RETRYABLE_GRPC_CODES = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
# OTLP/HTTP: the only statuses that may be retried; every other 4xx and 5xx must not be.
RETRYABLE_HTTP_STATUSES = frozenset({429, 502, 503, 504})
HTTP_TOO_LARGE = 413

_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Set by the exporter itself: a configured value would garble the request.
_RESERVED_HEADERS = frozenset(
    {"content-type", "content-encoding", "content-length", "transfer-encoding", "host", "te", "connection"}
)


# ---------------------------------------------------------------------------------------------------
# Configuration


class OTLPExporterConfig(ExporterConfig):
    # grpc: host:port, http://host:port or https://host:port. http/protobuf: the base URL that
    # /v1/traces, /v1/logs and /v1/metrics are appended to.
    endpoint: str | None = None
    # http/protobuf only: a signal's full URL, used as is (overrides endpoint for that signal).
    traces_endpoint: str | None = None
    logs_endpoint: str | None = None
    metrics_endpoint: str | None = None
    protocol: Literal["grpc", "http/protobuf"] = "grpc"
    compression: Literal["gzip", "none"] = "gzip"
    # Sent with every request (gRPC metadata, HTTP headers): e.g. authorization, a tenant id.
    headers: dict[str, str] = Field(default_factory=dict)
    tls: ClientTLS | None = None
    # grpc with a host:port endpoint: plaintext instead of TLS (a local Jaeger or collector).
    insecure: bool = False
    timeout: Duration = 10.0

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("timeout must be more than 0")
        return value

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            lower = name.lower()
            if lower in _RESERVED_HEADERS or lower.startswith("grpc-"):
                raise ValueError(f"header {name!r} is set by the exporter itself and cannot be configured")
            if not all(" " <= c <= "~" for c in value):
                raise ValueError(
                    f"the value of header {name!r} must be printable ASCII (no line breaks or control "
                    "characters)"
                )
        return headers

    @model_validator(mode="after")
    def _consistent(self) -> OTLPExporterConfig:
        per_signal = [self.traces_endpoint, self.logs_endpoint, self.metrics_endpoint]
        if self.protocol == "grpc":
            if self.endpoint is None:
                raise ValueError("endpoint is required (host:port, e.g. jaeger:4317)")
            if any(url is not None for url in per_signal):
                raise ValueError(
                    "traces_endpoint, logs_endpoint and metrics_endpoint are for protocol http/protobuf; "
                    "gRPC sends every signal to endpoint"
                )
            self.grpc_target()  # raises on a bad endpoint or contradicting TLS settings
            binary = [name for name in self.headers if name.lower().endswith("-bin")]
            if binary:
                raise ValueError(f"binary gRPC metadata ({', '.join(binary)}) is not supported in headers")
            if self.tls is not None and self.tls.insecure_skip_verify:
                raise ValueError(
                    "tls.insecure_skip_verify is not supported with grpc: give tls.ca_file (the CA that "
                    "signed the endpoint's certificate) instead"
                )
        else:
            if self.endpoint is None and all(url is None for url in per_signal):
                raise ValueError("set endpoint (base URL, e.g. http://jaeger:4318) or per-signal endpoints")
            if self.insecure:
                raise ValueError("insecure applies to grpc; with http/protobuf use an http:// URL")
            urls = self.signal_urls()
            if self.tls is not None and not any(u.startswith("https://") for u in urls.values()):
                raise ValueError("tls is set but no endpoint is https://")
        return self

    def grpc_target(self) -> tuple[str, bool]:
        """(host:port, whether TLS) for protocol grpc."""
        endpoint = self.endpoint or ""
        if "://" in endpoint:
            url = urlsplit(endpoint)
            if url.scheme not in ("http", "https"):
                raise ValueError(
                    f"endpoint {endpoint!r}: use host:port, http://host:port or https://host:port"
                )
            if url.path not in ("", "/") or url.query or url.fragment or url.username:
                raise ValueError(f"endpoint {endpoint!r}: a gRPC endpoint has no path, query or credentials")
            target, secure = url.netloc, url.scheme == "https"
            if secure and self.insecure:
                raise ValueError(f"endpoint {endpoint!r} is https:// but insecure is true")
            if not secure and self.tls is not None:
                raise ValueError(f"endpoint {endpoint!r} is http:// (plaintext) but tls is set")
        else:
            target, secure = endpoint, not self.insecure
            if self.insecure and self.tls is not None:
                raise ValueError("insecure: true and tls contradict each other; set one")
        try:
            split_endpoint(target)
        except ValueError as exc:
            raise ValueError(f"endpoint {endpoint!r}: {exc}") from None
        return target, secure

    def signal_urls(self) -> dict[Signal, str]:
        """The URL of each signal that has one, for protocol http/protobuf."""
        urls: dict[Signal, str] = {}
        given = {
            Signal.TRACES: self.traces_endpoint,
            Signal.LOGS: self.logs_endpoint,
            Signal.METRICS: self.metrics_endpoint,
        }
        for signal, url in given.items():
            if url is not None:
                urls[signal] = _check_url(url, f"{signal.value}_endpoint")
            elif self.endpoint is not None:
                base = _check_url(self.endpoint, "endpoint")
                urls[signal] = f"{base.rstrip('/')}/{SIGNAL_PATHS[signal]}"
        return urls


def _check_url(value: str, name: str) -> str:
    url = urlsplit(value)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"{name} {value!r} is not an http:// or https:// URL")
    if url.username or url.password:
        raise ValueError(f"{name} {value!r}: put credentials in headers (authorization), not in the URL")
    if url.query or url.fragment:
        raise ValueError(f"{name} {value!r}: an OTLP URL takes no query or fragment")
    return value


# ---------------------------------------------------------------------------------------------------
# What a transport tells the exporter


@dataclass(slots=True)
class _Accepted:
    """The endpoint took the request; ``rejected`` of its items it dropped (partial success)."""

    rejected: int = 0
    message: str = ""


class _Failed(Exception):
    """The endpoint did not take the request."""

    def __init__(
        self,
        reason: str,
        detail: str,
        retryable: bool,
        retry_after: float | None = None,
        too_large: bool = False,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after
        self.too_large = too_large


def _rejected_count(signal: Signal, response: Any) -> _Accepted:
    if not response.HasField("partial_success"):
        return _Accepted()
    partial = response.partial_success
    if signal == Signal.TRACES:
        rejected = partial.rejected_spans
    elif signal == Signal.LOGS:
        rejected = partial.rejected_log_records
    else:
        rejected = partial.rejected_data_points
    return _Accepted(int(rejected), partial.error_message)


# ---------------------------------------------------------------------------------------------------
# gRPC


def retry_delay(trailing_metadata: Any) -> float | None:
    """RetryInfo.retry_delay (seconds) from a gRPC status's details, None when it carries none."""
    for key, value in trailing_metadata or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        try:
            status = Status.FromString(value)
        except DecodeError:
            return None
        for detail in status.details:
            if detail.Is(RetryInfo.DESCRIPTOR):
                info = RetryInfo()
                detail.Unpack(info)
                delay: float = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
                return max(0.0, delay)
    return None


def classify_grpc_error(code: Any, details: str, trailing_metadata: Any) -> _Failed:
    """What an OTLP/gRPC error status means for the request (see the module docstring)."""
    name = getattr(code, "name", str(code))
    reason = f"grpc_{name.lower()}"
    delay = retry_delay(trailing_metadata)
    if code in RETRYABLE_GRPC_CODES:
        return _Failed(reason, details, retryable=True, retry_after=delay)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        if delay is not None:
            return _Failed(reason, details, retryable=True, retry_after=delay)
        if "larger than max" in details:
            return _Failed(reason, details, retryable=False, too_large=True)
    return _Failed(reason, details, retryable=False)


class _GrpcTransport:
    def __init__(self, config: OTLPExporterConfig) -> None:
        self.config = config
        self.target, self.secure = config.grpc_target()
        self.metadata = tuple((k.lower(), v) for k, v in config.headers.items())
        self.compression = (
            grpc.Compression.Gzip if config.compression == "gzip" else grpc.Compression.NoCompression
        )
        self._channel: Any = None
        self._methods: dict[Signal, Any] = {}

    def describe(self, signal: Signal | None = None) -> str:
        del signal  # one target for every signal
        return f"{'grpcs' if self.secure else 'grpc'}://{self.target}"

    def _credentials(self) -> Any:
        tls = self.config.tls
        if tls is None:
            return grpc.ssl_channel_credentials()
        return grpc.ssl_channel_credentials(
            root_certificates=Path(tls.ca_file).read_bytes() if tls.ca_file else None,
            private_key=Path(tls.key_file or tls.cert_file).read_bytes() if tls.cert_file else None,
            certificate_chain=Path(tls.cert_file).read_bytes() if tls.cert_file else None,
        )

    def _options(self) -> list[tuple[str, Any]]:
        retry = self.config.retry
        # gRPC's own reconnect backoff grows to 120 s by default: an endpoint back after an outage
        # would sit unused that long. Bound it by the exporter's retry settings instead.
        initial_ms = max(10, int(retry.initial_interval * 1000))
        options: list[tuple[str, Any]] = [
            ("grpc.primary_user_agent", USER_AGENT),
            ("grpc.initial_reconnect_backoff_ms", initial_ms),
            ("grpc.max_reconnect_backoff_ms", max(initial_ms, int(retry.max_interval * 1000))),
        ]
        tls = self.config.tls
        if tls is not None and tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        return options

    async def open(self) -> None:
        if self.secure:
            self._channel = grpc_aio.secure_channel(self.target, self._credentials(), options=self._options())
        else:
            self._channel = grpc_aio.insecure_channel(self.target, options=self._options())
        channel = self._channel
        stubs: dict[Signal, Any] = {  # generated code without annotations
            Signal.TRACES: trace_service_pb2_grpc.TraceServiceStub,
            Signal.LOGS: logs_service_pb2_grpc.LogsServiceStub,
            Signal.METRICS: metrics_service_pb2_grpc.MetricsServiceStub,
        }
        self._methods = {signal: stub(channel).Export for signal, stub in stubs.items()}

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    @staticmethod
    def prepare(request: Message) -> Any:
        return request  # the stub serializes; gRPC compresses

    async def send(self, signal: Signal, prepared: Any) -> _Accepted:
        method = self._methods.get(signal)
        if method is None:
            raise _Failed("not_started", "the exporter is not started", retryable=True)
        try:
            response = await method(
                prepared, timeout=self.config.timeout, metadata=self.metadata, compression=self.compression
            )
        except grpc_aio.AioRpcError as exc:
            raise classify_grpc_error(exc.code(), exc.details() or "", exc.trailing_metadata()) from exc
        return _rejected_count(signal, response)


# ---------------------------------------------------------------------------------------------------
# HTTP


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), None when absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


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


def parse_http_success(signal: Signal, body: bytes, content_type: str) -> _Accepted:
    """The partial_success of a 2xx answer. An empty or unreadable body is a full success: the
    status says the data was taken, and only a partial_success could say otherwise."""
    if not body:
        return _Accepted()
    try:
        if content_type == "application/json":
            response = json_format.Parse(body, _JSON_RESPONSES[signal](), ignore_unknown_fields=True)
        else:
            response = _RESPONSES[signal](body)
    except (DecodeError, ValueError):
        return _Accepted()
    return _rejected_count(signal, response)


class _HttpTransport:
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

    def prepare(self, request: Message) -> Any:
        body = request.SerializeToString()
        return gzip.compress(body, GZIP_LEVEL) if self.gzip else body

    async def send(self, signal: Signal, prepared: Any) -> _Accepted:
        session = self._session
        if session is None:
            raise _Failed("not_started", "the exporter is not started", retryable=True)
        url = self.urls.get(signal)
        if url is None:
            raise _Failed(
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
            raise _Failed("tls", f"TLS failed: {exc}", retryable=True) from exc
        except TimeoutError as exc:  # before ClientConnectionError: a read timeout is both
            detail = f"no answer within {self.config.timeout:g}s"
            raise _Failed("timeout", detail, retryable=True) from exc
        except aiohttp.ClientConnectionError as exc:
            raise _Failed("connection", f"{type(exc).__name__}: {exc}", retryable=True) from exc
        except aiohttp.ClientError as exc:
            raise _Failed("http_client", f"{type(exc).__name__}: {exc}", retryable=True) from exc
        if 200 <= status < 300:
            return parse_http_success(signal, body, content_type)
        reason = f"http_{status}"
        detail = f"HTTP {status}: {_error_message(body, content_type)}"
        if status in RETRYABLE_HTTP_STATUSES:
            raise _Failed(reason, detail, retryable=True, retry_after=retry_after)
        raise _Failed(reason, detail, retryable=False, too_large=status == HTTP_TOO_LARGE)


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


# ---------------------------------------------------------------------------------------------------
# The exporter

_ENCODERS: dict[Signal, Callable[[Sequence[Any], list[tuple[Any, str]]], Message]] = {
    Signal.TRACES: spans_to_proto,
    Signal.LOGS: logs_to_proto,
    Signal.METRICS: metrics_to_proto,
}


@dataclass(slots=True)
class _Outcome:
    """What became of a batch's records in one export call."""

    delivered: int = 0
    rejected: int = 0
    retry: list[Any] = field(default_factory=list)
    reason: str = ""
    retry_after: float | None = None
    refused: list[tuple[list[Any], _Failed]] = field(default_factory=list)

    def again(self, items: Sequence[Any], failure: _Failed | None = None) -> None:
        self.retry.extend(items)
        if failure is not None:
            self.reason = self.reason or failure.reason
            if failure.retry_after is not None:
                self.retry_after = max(self.retry_after or 0.0, failure.retry_after)


@register
class OTLPExporter(Exporter):
    """Sends batches to an OTLP endpoint (Jaeger, an OpenTelemetry Collector, ...)."""

    type_name = "otlp"
    config_model = OTLPExporterConfig
    signals = frozenset({Signal.TRACES, Signal.LOGS, Signal.METRICS})

    config: OTLPExporterConfig

    def __init__(self, config: OTLPExporterConfig, ctx: ComponentContext) -> None:
        super().__init__(config, ctx)
        self._transport: _GrpcTransport | _HttpTransport = (
            _GrpcTransport(config) if config.protocol == "grpc" else _HttpTransport(config)
        )
        # Records per request once the endpoint said a request was too large (None: no limit).
        self.request_limit: int | None = None
        self._failing: str | None = None  # the reason of the last failed request, to log changes once

    async def start(self) -> None:
        await self._transport.open()
        self.log.info("exporting OTLP to %s", self._transport.describe())

    async def stop(self) -> None:
        await self._transport.close()

    # -- export -------------------------------------------------------------------------------------

    async def export(self, batch: Batch) -> int:
        if batch.signal not in self.signals:
            raise PermanentExportError(f"the otlp exporter does not send {batch.signal.value}")
        if not batch.items:
            return 0
        outcome = _Outcome()
        items = batch.items
        limit = self.request_limit or len(items)
        for start in range(0, len(items), limit):
            chunk = items[start : start + limit]
            if outcome.retry:  # an earlier request failed for now: the rest waits for the retry too
                outcome.again(chunk)
                continue
            await self._send(batch.signal, chunk, outcome)
        if outcome.refused:
            first_items, first_failure = outcome.refused[0]
            if len(first_items) == len(items) and not outcome.rejected:
                # The whole batch was refused in one request: the sender dead-letters it.
                raise PermanentExportError(f"{first_failure.reason}: {first_failure.detail}")
            for refused_items, failure in outcome.refused:
                self.dead_letter.write(
                    batch.signal,
                    [self.dead_letter_view(i) for i in refused_items],
                    failure.reason,
                    failure.detail,
                )
                outcome.rejected += len(refused_items)
        if outcome.retry:
            per_record = batch.size_bytes // len(items) if items else 0
            raise RetryableExportError(
                outcome.reason or "retry",
                remaining=Batch(batch.signal, outcome.retry, per_record * len(outcome.retry)),
                retry_after=outcome.retry_after,
                delivered=outcome.delivered,
                rejected=outcome.rejected,
            )
        return outcome.delivered

    def _encode(self, signal: Signal, items: Sequence[Any]) -> tuple[Any, list[Any], list[tuple[Any, str]]]:
        """(request ready for the transport, records in it, records that cannot be encoded).
        Runs in a worker thread."""
        rejected: list[tuple[Any, str]] = []
        request = _ENCODERS[signal](items, rejected)
        kept = list(items)
        if rejected:
            bad = {id(item) for item, _ in rejected}
            kept = [item for item in items if id(item) not in bad]
        return self._transport.prepare(request), kept, rejected

    async def _send(self, signal: Signal, items: Sequence[Any], outcome: _Outcome) -> None:
        prepared, kept, unencodable = await asyncio.to_thread(self._encode, signal, items)
        if unencodable:
            self._dead_letter_unencodable(signal, unencodable)
            outcome.rejected += len(unencodable)
        if not kept:
            return
        try:
            accepted = await self._transport.send(signal, prepared)
        except _Failed as failure:
            await self._failed(signal, kept, failure, outcome)
            return
        if self._failing is not None:
            self.log.info("OTLP endpoint %s takes requests again", self._transport.describe(signal))
            self._failing = None
        self._accepted(signal, len(kept), accepted, outcome)

    async def _failed(self, signal: Signal, items: list[Any], failure: _Failed, outcome: _Outcome) -> None:
        if failure.too_large and len(items) > 1:
            half = len(items) // 2
            if self.request_limit is None or half < self.request_limit:
                self.request_limit = half
                self.log.warning(
                    "a request of %d %s is too large for %s (%s); sending at most %d per request from now "
                    "on (lower batch.max_bytes or batch.max_records to avoid this)",
                    len(items),
                    _ITEM_NAMES[signal],
                    self._transport.describe(signal),
                    failure.detail,
                    half,
                )
            await self._send(signal, items[:half], outcome)
            if outcome.retry:
                outcome.again(items[half:])
            else:
                await self._send(signal, items[half:], outcome)
            return
        if failure.retryable:
            if self._failing != failure.reason:
                self._failing = failure.reason
                self.log.warning(
                    "OTLP endpoint %s did not take %d %s: %s; they stay queued and are retried",
                    self._transport.describe(signal),
                    len(items),
                    _ITEM_NAMES[signal],
                    failure,
                )
            outcome.again(items, failure)
            return
        self.log.error(
            "OTLP endpoint %s refused %d %s for good: %s%s",
            self._transport.describe(signal),
            len(items),
            _ITEM_NAMES[signal],
            failure,
            _hint(signal, failure),
        )
        outcome.refused.append((list(items), failure))

    def _accepted(self, signal: Signal, sent: int, accepted: _Accepted, outcome: _Outcome) -> None:
        if accepted.rejected > 0:
            # Which records were dropped, the endpoint does not say: they are counted, not
            # dead-lettered (and OTLP forbids sending the request again).
            dropped = min(accepted.rejected, sent)
            self.ctx.telemetry.failed.labels(self.id, signal.value, "partial_success").inc(dropped)
            self.log.error(
                "OTLP endpoint %s dropped %d of %d %s: %s",
                self._transport.describe(signal),
                dropped,
                sent,
                _ITEM_NAMES[signal],
                accepted.message or "(no message)",
            )
            outcome.delivered += sent - dropped
            outcome.rejected += dropped
            return
        if accepted.message:
            self.log.warning("OTLP endpoint %s: %s", self._transport.describe(signal), accepted.message)
        outcome.delivered += sent

    def dead_letter_view(self, item: Any) -> Any:
        """The record as JSON that cannot fail to encode (records are dead-lettered for odd values)."""
        view = {f.name: getattr(item, f.name) for f in fields(item)} if is_dataclass(item) else item
        return orjson.Fragment(to_json(view))

    def _dead_letter_unencodable(self, signal: Signal, failed: list[tuple[Any, str]]) -> None:
        by_reason: dict[str, list[Any]] = {}
        for item, reason in failed:
            by_reason.setdefault(reason, []).append(self.dead_letter_view(item))
        for reason, views in by_reason.items():
            self.dead_letter.write(signal, views, "encode_error", reason)


def _hint(signal: Signal, failure: _Failed) -> str:
    if failure.reason in ("grpc_unimplemented", "http_404") and signal != Signal.TRACES:
        return f" (does the endpoint take {signal.value}? Jaeger takes traces only)"
    if failure.reason in ("grpc_unauthenticated", "grpc_permission_denied", "http_401", "http_403"):
        return " (check the credentials in headers)"
    return ""
