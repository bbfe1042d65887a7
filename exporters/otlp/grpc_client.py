"""OTLP over gRPC: one grpc.aio channel, the serialized export request sent as it is, gzip per call,
``headers`` as metadata; what an error status means for the request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped]  # .pyi, no py.typed
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from grpc import aio as grpc_aio
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from collector.core.model import Signal
from exporters.otlp.answers import USER_AGENT, Accepted, Failed, rejected_count
from exporters.otlp.config import OTLPExporterConfig

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


# The Export method of each signal's service, as the opentelemetry-proto *_pb2_grpc stubs name it.
_EXPORT_METHODS: dict[Signal, tuple[str, Any]] = {
    Signal.TRACES: (
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        trace_service_pb2.ExportTraceServiceResponse.FromString,
    ),
    Signal.LOGS: (
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        logs_service_pb2.ExportLogsServiceResponse.FromString,
    ),
    Signal.METRICS: (
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        metrics_service_pb2.ExportMetricsServiceResponse.FromString,
    ),
}


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


def classify_grpc_error(code: Any, details: str, trailing_metadata: Any) -> Failed:
    """What an OTLP/gRPC error status means for the request (see the module docstring)."""
    name = getattr(code, "name", str(code))
    reason = f"grpc_{name.lower()}"
    delay = retry_delay(trailing_metadata)
    if code in RETRYABLE_GRPC_CODES:
        return Failed(reason, details, retryable=True, retry_after=delay)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        if delay is not None:
            return Failed(reason, details, retryable=True, retry_after=delay)
        if "larger than max" in details:
            return Failed(reason, details, retryable=False, too_large=True)
    return Failed(reason, details, retryable=False)


class GrpcTransport:
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
        # The request goes as serialized by prepare() (no request_serializer): a retry sends the
        # same bytes without encoding the records again.
        self._methods = {
            signal: self._channel.unary_unary(path, request_serializer=None, response_deserializer=response)
            for signal, (path, response) in _EXPORT_METHODS.items()
        }

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    @staticmethod
    def prepare(request: Message) -> bytes:
        return request.SerializeToString()  # gRPC compresses

    @staticmethod
    async def prepare_wire(wire: bytes) -> bytes:
        """The message for a request already serialized (``Batch.wire``): as it is."""
        return wire

    async def send(self, signal: Signal, prepared: bytes) -> Accepted:
        method = self._methods.get(signal)
        if method is None:
            raise Failed("not_started", "the exporter is not started", retryable=True)
        try:
            response = await method(
                prepared, timeout=self.config.timeout, metadata=self.metadata, compression=self.compression
            )
        except grpc_aio.AioRpcError as exc:
            raise classify_grpc_error(exc.code(), exc.details() or "", exc.trailing_metadata()) from exc
        return rejected_count(signal, response)
