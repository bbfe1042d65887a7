"""otlp receiver: real OpenTelemetry SDK exporters over gRPC and HTTP, OTLP/JSON, errors, backpressure.

Requests go to a running service whose pipelines end in the ``capture`` exporter. The SDK's exporters
are synchronous (they block on their own channel or session), so they run in worker threads while the
receiver serves from the test's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import http.client
import logging
import ssl
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson
import pytest
import trustme
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDictProxy
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, set_span_in_context
from opentelemetry.trace import StatusCode as SdkStatusCode
from pydantic import ValidationError

from collector.config import ConfigError, parse_config
from collector.core.component import ComponentContext
from collector.core.model import (
    Batch,
    LogRecord,
    MetricKind,
    MetricPoint,
    Scope,
    Signal,
    Span,
    StatusCode,
    Temporality,
)
from collector.core.service import Service
from collector.core.telemetry import Telemetry
from collector.normalize.otlp_raw_attributes import RawExportTraceServiceRequest
from collector.receivers.otlp import receiver as otlp
from collector.receivers.otlp.receiver import OTLPReceiver, OTLPReceiverConfig
from tests.support import free_port, metric_value, running_service, wait_until

RID = "otlp"
TOKEN = "s3cret-token"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
TRACES_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS_EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
T0 = 1_714_557_600_123_456_789

RESOURCE: dict[str, Any] = {
    "service.name": "checkout",
    "service.version": "1.4.2",
    "host.cpus": 4,
    "cloud.available": True,
    "load": 0.75,
    "tags": ("blue", "canary"),
}
SPAN_ATTRS: dict[str, Any] = {
    "http.request.method": "GET",
    "http.response.status_code": 503,
    "retry": True,
    "ratio": 0.5,
    "ids": (1, 2, 3),
    "flags": (True, False),
    "weights": (0.5, 1.5),
    "names": ("a", "b"),
}


# --- harness ---------------------------------------------------------------------------------


class BatchSpy:
    """Wraps a receiver's consumer: records every batch handed to the pipeline."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.batches: list[Batch] = []

    async def consume(self, batch: Batch) -> None:
        self.batches.append(batch)
        await self.inner.consume(batch)


class Harness:
    def __init__(self, svc: Service, session: aiohttp.ClientSession) -> None:
        self.svc = svc
        self.session = session
        self.receiver: OTLPReceiver = svc.receivers[RID]  # type: ignore[assignment]
        self.grpc_target = f"127.0.0.1:{self.receiver.grpc_port}"
        self.http_url = f"http://127.0.0.1:{self.receiver.http_port}"

    @property
    def captured(self) -> list[Any]:
        return list(self.svc.exporters["capture"].items)  # type: ignore[attr-defined]

    def captured_of(self, cls: type[Any]) -> list[Any]:
        return [item for item in self.captured if isinstance(item, cls)]

    def spy(self, signal: Signal) -> BatchSpy:
        spy = BatchSpy(self.receiver.consumers[signal])
        self.receiver.consumers[signal] = spy
        return spy

    async def post(
        self,
        body: bytes,
        path: str = "/v1/traces",
        content_type: str | None = PROTOBUF,
        token: str | None = TOKEN,
        **headers: str,
    ) -> tuple[int, bytes, CIMultiDictProxy[str]]:
        sent = {k.replace("_", "-"): v for k, v in headers.items()}
        if content_type is not None:
            sent["Content-Type"] = content_type
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with self.session.post(self.http_url + path, data=body, headers=sent) as resp:
            return resp.status, await resp.read(), resp.headers

    def errors(self, reason: str) -> float:
        return metric_value(self.svc, "burnline_receiver_errors_total", {"component": RID, "reason": reason})

    def metric(self, name: str, signal: str, **labels: str) -> float:
        return metric_value(self.svc, name, {"component": RID, "signal": signal, **labels})


@asynccontextmanager
async def harness(
    tmp_path: Path,
    signals: Sequence[str] = ("traces", "logs", "metrics"),
    capture: dict[str, Any] | None = None,
    **receiver: Any,
) -> AsyncIterator[Harness]:
    receiver.setdefault("grpc", {"endpoint": "127.0.0.1:0"})
    receiver.setdefault("http", {"endpoint": "127.0.0.1:0"})
    receiver.setdefault("bearer_token", TOKEN)
    config = {
        "receivers": {RID: receiver},
        "exporters": {"capture": {"batch": {"flush_interval": "10ms"}, "concurrency": 1, **(capture or {})}},
        "service": {"pipelines": {s: {"receivers": [RID], "exporters": ["capture"]} for s in signals}},
    }
    async with running_service(config, str(tmp_path / "data"), grace=2.0) as svc:
        async with aiohttp.ClientSession() as session:
            yield Harness(svc, session)


def status_of(body: bytes, content_type: str = PROTOBUF) -> Any:
    """The google.rpc.Status of an error response."""
    if content_type == JSON:
        return json_format.Parse(body, status_pb2.Status())
    return status_pb2.Status.FromString(body)


def details_of(status: Any) -> list[Message]:
    out: list[Message] = []
    for packed in status.details:
        for cls in (error_details_pb2.RetryInfo, error_details_pb2.BadRequest):
            if packed.Is(cls.DESCRIPTOR):
                message = cls()
                packed.Unpack(message)
                out.append(message)
    return out


def trace_request(*spans: trace_pb2.Span, service: str = "checkout") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name").value.string_value = service
    resource_spans.scope_spans.add().spans.extend(spans)
    return request


def otlp_json(message: Message) -> bytes:
    """OTLP/JSON of a message: the protobuf JSON mapping with ids turned from base64 into hex."""

    def hex_ids(value: Any) -> Any:
        if isinstance(value, list):
            return [hex_ids(v) for v in value]
        if isinstance(value, dict):
            return {
                k: base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") else hex_ids(v)
                for k, v in value.items()
            }
        return value

    return orjson.dumps(hex_ids(json_format.MessageToDict(message)))


def pb_span(n: int, **changes: Any) -> trace_pb2.Span:
    fields: dict[str, Any] = {
        "trace_id": n.to_bytes(16, "big"),
        "span_id": n.to_bytes(8, "big"),
        "name": f"span-{n}",
        "start_time_unix_nano": T0 + n,
        "end_time_unix_nano": T0 + n + 1000,
    }
    fields.update(changes)
    return trace_pb2.Span(**fields)


# --- what the SDK sends ----------------------------------------------------------------------


def sdk_spans() -> tuple[ReadableSpan, ...]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource(RESOURCE, schema_url="https://opentelemetry.io/schemas/1.24.0")
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer(
        "shop.http",
        "2.1.0",
        schema_url="https://opentelemetry.io/schemas/1.21.0",
        attributes={"lib.kind": "http"},
    )
    with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER, attributes=SPAN_ATTRS) as root:
        root.add_event("cache.miss", {"cache.key": "cart:1", "attempt": 2}, timestamp=T0)
        with tracer.start_as_current_span(
            "SELECT carts",
            kind=SpanKind.CLIENT,
            links=[Link(root.get_span_context(), {"link.reason": "retry"})],
        ) as child:
            child.set_status(Status(SdkStatusCode.ERROR, "timeout"))
    provider.shutdown()
    return exporter.get_finished_spans()


def check_spans(received: list[Span], sent: Sequence[ReadableSpan]) -> None:
    assert len(received) == len(sent)
    by_id = {s.span_id: s for s in received}
    for original in sent:
        ctx = original.get_span_context()
        assert ctx is not None
        span = by_id[f"{ctx.span_id:016x}"]
        assert span.trace_id == f"{ctx.trace_id:032x}"
        assert span.parent_span_id == (f"{original.parent.span_id:016x}" if original.parent else "")
        assert (span.name, span.start_time_unix_nano, span.end_time_unix_nano) == (
            original.name,
            original.start_time,
            original.end_time,
        )
        # The SDK sends SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE (local parents), not the W3C trace flags.
        assert span.flags == 0x100
        assert span.resource == {k: list(v) if isinstance(v, tuple) else v for k, v in RESOURCE.items()}
        assert span.resource_schema_url == "https://opentelemetry.io/schemas/1.24.0"
        assert span.scope == Scope(
            "shop.http", "2.1.0", {"lib.kind": "http"}, 0, "https://opentelemetry.io/schemas/1.21.0"
        )
    root, child = by_id[f"{sent[1].context.span_id:016x}"], by_id[f"{sent[0].context.span_id:016x}"]
    assert root.name == "GET /cart" and root.kind == 2  # SERVER (the SDK's 1 is OTLP's 2)
    assert root.attributes == {k: list(v) if isinstance(v, tuple) else v for k, v in SPAN_ATTRS.items()}
    assert type(root.attributes["retry"]) is bool and type(root.attributes["ratio"]) is float
    assert [(e.name, e.time_unix_nano, e.attributes) for e in root.events] == [
        ("cache.miss", T0, {"cache.key": "cart:1", "attempt": 2})
    ]
    assert root.resource is child.resource and root.scope is child.scope
    assert child.kind == 3 and (child.status_code, child.status_message) == (StatusCode.ERROR, "timeout")
    assert [(link.trace_id, link.span_id, link.attributes, link.flags) for link in child.links] == [
        (root.trace_id, root.span_id, {"link.reason": "retry"}, 0x100)
    ]
    assert root.is_error  # a 503 answer from a server span


def sdk_logs() -> tuple[tuple[ReadableLogRecord, ...], ReadableSpan]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(resource=Resource(RESOURCE))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger(
        "shop.payments", "3.0.0", schema_url="https://s/1", attributes={"team": "pay"}
    )
    with tracer_provider.get_tracer("t").start_as_current_span("pay") as span:
        logger.emit(
            timestamp=T0,
            observed_timestamp=T0 + 5,
            context=set_span_in_context(span),
            severity_number=SeverityNumber.WARN2,
            severity_text="warning",
            body={"msg": "card declined", "codes": [51, 5], "raw": b"\x00\x01", "ok": False},
            attributes={"user.id": "u-17", "amount": 12.5, "attempt": 2, "retry": True},
            event_name="payment.declined",
        )
    logger.emit(timestamp=T0 + 1, body="plain line", severity_number=SeverityNumber.INFO)
    provider.shutdown()
    tracer_provider.shutdown()
    return exporter.get_finished_logs(), spans.get_finished_spans()[0]


def check_logs(received: list[LogRecord], span: ReadableSpan) -> None:
    assert len(received) == 2
    declined, plain = sorted(received, key=lambda r: r.time_unix_nano)
    assert declined.body == {"msg": "card declined", "codes": [51, 5], "raw": b"\x00\x01", "ok": False}
    assert (declined.severity_number, declined.severity_text) == (14, "warning")
    assert declined.attributes == {"user.id": "u-17", "amount": 12.5, "attempt": 2, "retry": True}
    assert declined.trace_id == f"{span.context.trace_id:032x}"
    assert declined.span_id == f"{span.context.span_id:016x}"
    assert (declined.observed_time_unix_nano, declined.event_name) == (T0 + 5, "payment.declined")
    assert declined.flags == int(span.context.trace_flags)  # W3C trace flags of the active span
    assert declined.scope_name == "shop.payments"
    assert declined.scope == Scope("shop.payments", "3.0.0", {"team": "pay"}, 0, "https://s/1")
    assert declined.service_name == "checkout"
    assert (plain.body, plain.severity_number, plain.trace_id, plain.span_id) == ("plain line", 9, "", "")
    assert plain.resource is declined.resource and plain.scope is declined.scope


def sdk_metrics() -> tuple[MetricsData, ReadableSpan]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource(RESOURCE),
        views=[View(instrument_name="latency.exp", aggregation=ExponentialBucketHistogramAggregation())],
    )
    meter = provider.get_meter("shop.meter", "4.0.0", schema_url="https://s/2")
    requests = meter.create_counter("requests", unit="{request}", description="requests served")
    requests.add(3, {"route": "/cart"})
    requests.add(2, {"route": "/pay"})
    meter.create_up_down_counter("inflight").add(-1)
    latency = meter.create_histogram("latency", unit="ms", explicit_bucket_boundaries_advisory=[10.0, 100.0])
    with tracer_provider.get_tracer("t").start_as_current_span("slow"):
        for value in (5, 50, 500):
            latency.record(value)
    exp = meter.create_histogram("latency.exp", unit="ms")
    for sample in (1.0, 2.0, 4.0):
        exp.record(sample)
    meter.create_gauge("temperature").set(21.5, {"room": "a"})
    data = reader.get_metrics_data()
    assert data is not None
    provider.shutdown()
    tracer_provider.shutdown()
    return data, spans.get_finished_spans()[0]


def check_metrics(received: list[MetricPoint], span: ReadableSpan) -> None:
    by_name: dict[str, list[MetricPoint]] = {}
    for point in received:
        by_name.setdefault(point.name, []).append(point)
    assert sorted(by_name) == ["inflight", "latency", "latency.exp", "requests", "temperature"]
    requests = sorted(by_name["requests"], key=lambda p: p.attributes["route"])
    assert [(p.attributes, p.value) for p in requests] == [({"route": "/cart"}, 3), ({"route": "/pay"}, 2)]
    assert all(
        (p.kind, p.monotonic, p.temporality, p.unit, p.description)
        == (MetricKind.SUM, True, Temporality.CUMULATIVE, "{request}", "requests served")
        for p in requests
    )
    [inflight] = by_name["inflight"]
    assert (inflight.kind, inflight.monotonic, inflight.value) == (MetricKind.SUM, False, -1)
    [latency] = by_name["latency"]
    assert (latency.kind, latency.count, latency.sum, latency.min, latency.max) == (
        MetricKind.HISTOGRAM,
        3,
        555,
        5,
        500,
    )
    assert (latency.explicit_bounds, latency.bucket_counts) == ([10.0, 100.0], [1, 1, 1])
    assert latency.exemplars, "values recorded in a sampled span carry exemplars"
    assert {(e.trace_id, e.span_id) for e in latency.exemplars} == {
        (f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}")
    }
    [exp] = by_name["latency.exp"]
    assert (exp.kind, exp.count, exp.sum, exp.min, exp.max) == (
        MetricKind.EXPONENTIAL_HISTOGRAM,
        3,
        7.0,
        1.0,
        4.0,
    )
    assert sum(exp.positive_bucket_counts) == 3 and exp.scale != 0
    [temperature] = by_name["temperature"]
    assert (temperature.kind, temperature.value, temperature.attributes) == (
        MetricKind.GAUGE,
        21.5,
        {"room": "a"},
    )
    assert all(p.scope == Scope("shop.meter", "4.0.0", {}, 0, "https://s/2") for p in received)
    assert all(p.resource["service.name"] == "checkout" for p in received)


async def in_thread(call: Callable[[], Any]) -> Any:
    return await asyncio.to_thread(call)


# --- real SDK exporters ----------------------------------------------------------------------


async def test_sdk_grpc_exporters_deliver_traces_logs_and_metrics(tmp_path: Path) -> None:
    spans = sdk_spans()
    logs, log_span = sdk_logs()
    metrics, metric_span = sdk_metrics()
    async with harness(tmp_path) as h:
        auth = (("authorization", f"Bearer {TOKEN}"),)
        span_exporter = GrpcSpanExporter(endpoint=h.grpc_target, insecure=True, headers=auth, timeout=5)
        log_exporter = GrpcLogExporter(
            endpoint=h.grpc_target, insecure=True, headers=auth, timeout=5, compression=grpc.Compression.Gzip
        )
        metric_exporter = GrpcMetricExporter(endpoint=h.grpc_target, insecure=True, headers=auth, timeout=5)
        try:
            assert (await in_thread(lambda: span_exporter.export(spans))).name == "SUCCESS"
            assert (await in_thread(lambda: log_exporter.export(logs))).name == "SUCCESS"
            assert (await in_thread(lambda: metric_exporter.export(metrics))).name == "SUCCESS"
        finally:
            span_exporter.shutdown()
            log_exporter.shutdown()
            metric_exporter.shutdown()
        await wait_until(lambda: len(h.captured) == 2 + 2 + 6)
        check_spans(h.captured_of(Span), spans)
        check_logs(h.captured_of(LogRecord), log_span)
        check_metrics(h.captured_of(MetricPoint), metric_span)
        assert h.metric("burnline_records_accepted_total", "traces") == 2
        assert h.metric("burnline_records_accepted_total", "logs") == 2
        assert h.metric("burnline_records_accepted_total", "metrics") == 6


async def test_sdk_http_exporters_deliver_traces_logs_and_metrics(tmp_path: Path) -> None:
    spans = sdk_spans()
    logs, log_span = sdk_logs()
    metrics, metric_span = sdk_metrics()
    async with harness(tmp_path) as h:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        span_exporter = HttpSpanExporter(endpoint=f"{h.http_url}/v1/traces", headers=auth, timeout=5)
        log_exporter = HttpLogExporter(
            endpoint=f"{h.http_url}/v1/logs", headers=auth, timeout=5, compression=HttpCompression.Gzip
        )
        metric_exporter = HttpMetricExporter(
            endpoint=f"{h.http_url}/v1/metrics", headers=auth, timeout=5, compression=HttpCompression.Deflate
        )
        try:
            assert (await in_thread(lambda: span_exporter.export(spans))).name == "SUCCESS"
            assert (await in_thread(lambda: log_exporter.export(logs))).name == "SUCCESS"
            assert (await in_thread(lambda: metric_exporter.export(metrics))).name == "SUCCESS"
        finally:
            span_exporter.shutdown()  # type: ignore[no-untyped-call]
            log_exporter.shutdown()  # type: ignore[no-untyped-call]
            metric_exporter.shutdown()
        await wait_until(lambda: len(h.captured) == 2 + 2 + 6)
        check_spans(h.captured_of(Span), spans)
        check_logs(h.captured_of(LogRecord), log_span)
        check_metrics(h.captured_of(MetricPoint), metric_span)


# --- HTTP specifics --------------------------------------------------------------------------


async def test_one_request_is_one_batch_answered_in_its_own_content_type(tmp_path: Path) -> None:
    request = trace_request(pb_span(1), pb_span(2))
    request.resource_spans.extend(trace_request(pb_span(3), service="cart").resource_spans)
    body = request.SerializeToString()
    async with harness(tmp_path) as h:
        spy = h.spy(Signal.TRACES)
        status, answer, headers = await h.post(body)
        assert (status, headers["Content-Type"]) == (200, PROTOBUF)
        assert ExportTraceServiceResponse.FromString(answer) == ExportTraceServiceResponse()
        assert not ExportTraceServiceResponse.FromString(answer).HasField("partial_success")

        zipped = gzip.compress(body)
        status, answer, headers = await h.post(zipped, Content_Encoding="gzip")
        assert status == 200

        json_body = otlp_json(request)
        status, answer, headers = await h.post(json_body, content_type="application/json; charset=utf-8")
        assert (status, headers["Content-Type"], orjson.loads(answer)) == (200, JSON, {})
        await wait_until(lambda: len(h.captured) == 9)
    assert [len(b) for b in spy.batches] == [3, 3, 3]
    assert [b.size_bytes for b in spy.batches] == [len(body), len(body), len(json_body)]
    assert spy.batches[0].items == spy.batches[1].items == spy.batches[2].items
    # Each batch keeps its request serialized, for the otlp exporter to send as it is: the body
    # itself (inflated), and the JSON request as protobuf.
    assert spy.batches[0].wire == spy.batches[1].wire == body
    assert spy.batches[2].wire is not None
    assert ExportTraceServiceRequest.FromString(spy.batches[2].wire) == request
    first = spy.batches[0].items
    assert first[0].resource is first[1].resource and first[2].service_name == "cart"


async def test_json_request_arrives_as_its_protobuf_twin(tmp_path: Path) -> None:
    """OTLP/JSON written by hand (hex ids, string 64-bit ints, int enums) = the protobuf request."""
    trace_id, span_id, parent = "5B8EFFF798038103D269B633813FC60C", "eee19b7ec3c1b174", "eee19b7ec3c1b173"
    json_body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "manual", "version": "1"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "parentSpanId": parent,
                                "name": "GET /cart",
                                "kind": 2,
                                "startTimeUnixNano": str(T0),
                                "endTimeUnixNano": str(T0 + 10),
                                "attributes": [
                                    {"key": "http.response.status_code", "value": {"intValue": "200"}},
                                    {"key": "bytes", "value": {"bytesValue": "AQI="}},
                                    {
                                        "key": "list",
                                        "value": {"arrayValue": {"values": [{"doubleValue": 1.5}]}},
                                    },
                                ],
                                "events": [{"timeUnixNano": str(T0 + 1), "name": "e"}],
                                "status": {"code": 1},
                                "futureField": True,
                            }
                        ],
                    }
                ],
            }
        ]
    }
    proto = trace_request(
        trace_pb2.Span(
            trace_id=bytes.fromhex(trace_id),
            span_id=bytes.fromhex(span_id),
            parent_span_id=bytes.fromhex(parent),
            name="GET /cart",
            kind=trace_pb2.Span.SPAN_KIND_SERVER,
            start_time_unix_nano=T0,
            end_time_unix_nano=T0 + 10,
            events=[trace_pb2.Span.Event(time_unix_nano=T0 + 1, name="e")],
            status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_OK),
        )
    )
    attrs = proto.resource_spans[0].scope_spans[0].spans[0].attributes
    attrs.add(key="http.response.status_code").value.int_value = 200
    attrs.add(key="bytes").value.bytes_value = b"\x01\x02"
    attrs.add(key="list").value.array_value.values.add().double_value = 1.5
    proto.resource_spans[0].scope_spans[0].scope.name = "manual"
    proto.resource_spans[0].scope_spans[0].scope.version = "1"
    async with harness(tmp_path) as h:
        assert (await h.post(orjson.dumps(json_body), content_type=JSON))[0] == 200
        assert (await h.post(proto.SerializeToString()))[0] == 200
        await wait_until(lambda: len(h.captured) == 2)
        from_json, from_proto = h.captured
    assert from_json == from_proto
    assert from_json.trace_id == trace_id.lower()
    assert from_json.attributes == {"http.response.status_code": 200, "bytes": b"\x01\x02", "list": [1.5]}


async def test_partial_success_for_spans_with_bad_ids(tmp_path: Path) -> None:
    spans = [pb_span(1), pb_span(2, trace_id=b"\x01" * 15), pb_span(3), pb_span(4, span_id=b"")]
    body = trace_request(*spans).SerializeToString()
    async with harness(tmp_path) as h:
        spy = h.spy(Signal.TRACES)
        status, answer, _ = await h.post(body)
        assert status == 200
        response = ExportTraceServiceResponse.FromString(answer)
        assert response.partial_success.rejected_spans == 2
        # The request holds spans the batch does not: it is not kept to be sent on.
        [partial] = spy.batches
        assert len(partial) == 2 and partial.wire is None
        assert (
            "span #2 ('span-2'): trace_id is 15 bytes, expected 16" in response.partial_success.error_message
        )
        assert "span #4 ('span-4'): span_id is missing" in response.partial_success.error_message

        status, answer, _ = await h.post(
            orjson.dumps(
                {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "ab" * 16, "spanId": "cd" * 3}]}]}]}
            ),
            content_type=JSON,
        )
        assert status == 200
        assert orjson.loads(answer)["partialSuccess"]["rejectedSpans"] == "1"  # int64: a JSON string

        async with grpc.aio.insecure_channel(h.grpc_target) as channel:
            export = channel.unary_unary(TRACES_EXPORT)
            raw = await export(body, metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=5)
        assert ExportTraceServiceResponse.FromString(raw).partial_success.rejected_spans == 2
        await wait_until(lambda: len(h.captured) == 4)
        assert sorted(s.name for s in h.captured) == ["span-1", "span-1", "span-3", "span-3"]
        assert h.errors("invalid_items") == 3


async def test_partial_success_for_a_span_with_an_attribute_that_is_not_utf8(tmp_path: Path) -> None:
    # upb would refuse the whole request at parse time; burnline reads span attributes after the
    # parse (collector/normalize/raw_key_values.py), so only the span that carries one is refused.
    twin = RawExportTraceServiceRequest.FromString(
        trace_request(pb_span(1), pb_span(2), pb_span(3)).SerializeToString()
    )
    bad = b"\x0a\x01k\x12\x05\x0a\x03a\xffc"  # KeyValue{key: "k", value: {string_value: b"a\xffc"}}
    twin.resource_spans[0].scope_spans[0].spans[1].attributes.append(bad)  # type: ignore[attr-defined]
    async with harness(tmp_path) as h:
        spy = h.spy(Signal.TRACES)
        status, answer, _ = await h.post(twin.SerializeToString())
        assert status == 200
        response = ExportTraceServiceResponse.FromString(answer)
        assert response.partial_success.rejected_spans == 1
        assert response.partial_success.error_message.startswith(
            "rejected 1 invalid spans: span #2 ('span-2'): an attribute is not a valid KeyValue ("
        )
        assert "bad UTF-8" in response.partial_success.error_message
        [batch] = spy.batches
        assert [s.name for s in batch.items] == ["span-1", "span-3"] and batch.wire is None
        assert h.errors("invalid_items") == 1


async def test_empty_request_succeeds_without_a_batch(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        spy = h.spy(Signal.TRACES)
        assert (await h.post(b""))[0] == 200
        assert (await h.post(b"{}", content_type=JSON))[0] == 200
        assert (
            await h.post(
                ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans()]).SerializeToString()
            )
        )[0] == 200
    assert spy.batches == []


@pytest.mark.parametrize(
    ("request_args", "status", "reason", "message"),
    [
        pytest.param(
            {"body": trace_request(pb_span(1)).SerializeToString()[:-5]},
            400,
            "invalid_protobuf",
            "invalid protobuf ExportTraceServiceRequest",
            id="truncated-protobuf",
        ),
        pytest.param(
            {"body": b'{"resourceSpans": [', "content_type": JSON},
            400,
            "invalid_json",
            "invalid JSON",
            id="bad-json",
        ),
        pytest.param(
            {
                "body": b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}',
                "content_type": JSON,
            },
            400,
            "invalid_json",
            "is not a hex-encoded id",
            id="bad-hex",
        ),
        pytest.param(
            {"body": b"hello", "content_type": "text/plain"},
            415,
            "unsupported_media_type",
            "Content-Type 'text/plain' is not supported",
            id="text-plain",
        ),
        pytest.param(
            {"body": b"hello", "content_type": None},
            415,
            "unsupported_media_type",
            "is not supported",
            id="no-content-type",
        ),
        pytest.param(
            {"body": b"x", "Content_Encoding": "br"},
            415,
            "unsupported_encoding",
            "Content-Encoding 'br' is not supported",
            id="brotli",
        ),
        pytest.param(
            {"body": b"not gzip at all", "Content_Encoding": "gzip"},
            400,
            "bad_encoding",
            "invalid gzip data",
            id="bad-gzip",
        ),
        pytest.param(
            {"body": gzip.compress(b"\x0a\x00")[:-4], "Content_Encoding": "gzip"},
            400,
            "bad_encoding",
            "truncated",
            id="truncated-gzip",
        ),
        pytest.param({"body": b"x" * 2001}, 413, "too_large", "over the 2000-byte limit", id="oversized"),
        pytest.param(
            {"body": gzip.compress(b"\x00" * 2001), "Content_Encoding": "gzip"},
            413,
            "too_large",
            "inflates past the 2000-byte limit",
            id="gzip-bomb",
        ),
        pytest.param(
            {"body": b"", "token": None}, 401, "unauthorized", "authentication required", id="no-token"
        ),
        pytest.param(
            {"body": b"", "token": "wrong"}, 401, "unauthorized", "wrong bearer token", id="bad-token"
        ),
        pytest.param(
            {"body": b"", "path": "/v1/profiles"},
            404,
            "not_found",
            "no OTLP endpoint at /v1/profiles",
            id="path",
        ),
    ],
)
async def test_bad_http_requests(
    tmp_path: Path, request_args: dict[str, Any], status: int, reason: str, message: str
) -> None:
    async with harness(tmp_path, http={"endpoint": "127.0.0.1:0", "max_request_body_size": 2000}) as h:
        got, answer, headers = await h.post(**request_args)
        assert got == status
        content_type = JSON if request_args.get("content_type") == JSON else PROTOBUF
        assert headers["Content-Type"] == content_type
        error = status_of(answer, content_type)
        assert message in error.message
        if status == 400:
            [bad_request] = details_of(error)
            assert isinstance(bad_request, error_details_pb2.BadRequest)
        if status == 401:
            assert headers["WWW-Authenticate"] == 'Bearer realm="burnline"'
        assert h.errors(reason) == 1
        # The server keeps serving.
        assert (await h.post(trace_request(pb_span(7)).SerializeToString()))[0] == 200
        await wait_until(lambda: len(h.captured) == 1)
        assert h.metric("burnline_records_received_total", "traces") == 1


async def test_chunked_body_over_the_limit_is_cut_off(tmp_path: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"\x00" * 500

    async with harness(tmp_path, http={"endpoint": "127.0.0.1:0", "max_request_body_size": 2000}) as h:
        headers = {"Content-Type": PROTOBUF, "Authorization": f"Bearer {TOKEN}"}
        async with h.session.post(h.http_url + "/v1/traces", data=chunks(), headers=headers) as resp:
            assert resp.status == 413
            assert status_of(await resp.read()).message == "the body is over the 2000-byte limit"
        assert h.errors("too_large") == 1
        assert (await h.post(trace_request(pb_span(1)).SerializeToString()))[0] == 200


async def test_methods_and_signals_not_in_a_pipeline(tmp_path: Path) -> None:
    async with harness(tmp_path, signals=["traces"]) as h:
        async with h.session.get(h.http_url + "/v1/traces") as resp:
            assert (resp.status, resp.headers["Allow"]) == (405, "POST")
        status, answer, _ = await h.post(b"", path="/v1/logs")
        assert status == 404
        assert status_of(answer).message == "receiver otlp takes no logs: it is in no logs pipeline"

        async with grpc.aio.insecure_channel(h.grpc_target) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await channel.unary_unary(LOGS_EXPORT)(b"", metadata=(("authorization", f"Bearer {TOKEN}"),))
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert caught.value.details() == "receiver otlp takes no logs: it is in no logs pipeline"
        assert h.errors("signal_not_enabled") == 2


async def test_large_and_compressed_bodies_are_decoded_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    real = otlp._decode

    def recording(*args: Any) -> Any:
        threads.append(threading.get_ident())
        return real(*args)

    monkeypatch.setattr(otlp, "_decode", recording)
    small = trace_request(pb_span(1)).SerializeToString()
    big = trace_request(*(pb_span(n, name="x" * 1000) for n in range(1, 400))).SerializeToString()
    assert len(big) > 256 * 1024
    async with harness(tmp_path) as h:
        assert (await h.post(small))[0] == 200
        assert (await h.post(big))[0] == 200
        assert (await h.post(zlib.compress(small), Content_Encoding="deflate"))[0] == 200
        async with grpc.aio.insecure_channel(h.grpc_target) as channel:
            await channel.unary_unary(TRACES_EXPORT)(big, metadata=(("authorization", f"Bearer {TOKEN}"),))
        await wait_until(lambda: len(h.captured) == 1 + 399 + 1 + 399)
    loop_thread = threading.get_ident()
    assert [t == loop_thread for t in threads] == [True, False, False, False]


async def test_cors(tmp_path: Path) -> None:
    cors = {"allowed_origins": ["https://shop.example.com", "https://*.example.org"], "max_age": "10m"}
    async with harness(tmp_path, http={"endpoint": "127.0.0.1:0", "cors": cors}) as h:
        preflight = {
            "Origin": "https://app.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization, x-custom",
        }
        async with h.session.options(h.http_url + "/v1/traces", headers=preflight) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example.org"
            assert resp.headers["Access-Control-Allow-Methods"] == "POST"
            # authorization and x-custom are not in allowed_headers.
            assert resp.headers["Access-Control-Allow-Headers"] == "content-type"
            assert resp.headers["Access-Control-Max-Age"] == "600"
        async with h.session.options(
            h.http_url + "/v1/traces", headers={**preflight, "Origin": "https://evil.example.com"}
        ) as resp:
            assert resp.status == 204 and "Access-Control-Allow-Origin" not in resp.headers
        status, _, headers = await h.post(b"", Origin="https://shop.example.com")
        assert (status, headers["Access-Control-Allow-Origin"]) == (200, "https://shop.example.com")
        status, _, headers = await h.post(b"", token=None, Origin="https://shop.example.com")
        assert (status, headers["Access-Control-Allow-Origin"]) == (401, "https://shop.example.com")


async def test_tls_on_both_transports(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key_file.write_bytes(cert.private_key_pem.bytes())
    tls = {"cert_file": str(cert_file), "key_file": str(key_file)}
    spans = sdk_spans()
    async with harness(
        tmp_path, grpc={"endpoint": "127.0.0.1:0", "tls": tls}, http={"endpoint": "127.0.0.1:0", "tls": tls}
    ) as h:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
        exporter = GrpcSpanExporter(
            endpoint=f"localhost:{h.receiver.grpc_port}",
            credentials=credentials,
            headers=(("authorization", f"Bearer {TOKEN}"),),
            timeout=5,
        )
        try:
            assert (await in_thread(lambda: exporter.export(spans))).name == "SUCCESS"
        finally:
            exporter.shutdown()
        client_ssl = ssl.create_default_context()
        ca.configure_trust(client_ssl)
        url = f"https://127.0.0.1:{h.receiver.http_port}/v1/traces"
        body = trace_request(pb_span(9)).SerializeToString()
        headers = {"Content-Type": PROTOBUF, "Authorization": f"Bearer {TOKEN}"}
        async with h.session.post(url, data=body, headers=headers, ssl=client_ssl) as resp:
            assert resp.status == 200
        await wait_until(lambda: len(h.captured) == 3)


# --- gRPC specifics --------------------------------------------------------------------------


async def test_bad_grpc_requests(tmp_path: Path) -> None:
    async with harness(tmp_path, grpc={"endpoint": "127.0.0.1:0", "max_recv_msg_size": 2000}) as h:
        async with grpc.aio.insecure_channel(h.grpc_target) as channel:
            export = channel.unary_unary(TRACES_EXPORT)
            auth = (("authorization", f"Bearer {TOKEN}"),)

            async def code_of(body: bytes, **kwargs: Any) -> grpc.aio.AioRpcError:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await export(body, timeout=5, **kwargs)
                return caught.value

            error = await code_of(trace_request(pb_span(1)).SerializeToString()[:-3], metadata=auth)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "invalid protobuf ExportTraceServiceRequest" in (error.details() or "")
            trailing = dict(error.trailing_metadata() or ())
            status = status_pb2.Status.FromString(trailing["grpc-status-details-bin"])
            assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert isinstance(details_of(status)[0], error_details_pb2.BadRequest)

            error = await code_of(b"", metadata=(("authorization", "Bearer nope"),))
            assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, "wrong bearer token")
            error = await code_of(b"")
            assert (error.code(), error.details()) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "authentication required",
            )

            error = await code_of(b"\x00" * 2001, metadata=auth)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # The limit holds after decompression too.
            big = trace_request(pb_span(1, name="x" * 3000)).SerializeToString()
            error = await code_of(big, metadata=auth, compression=grpc.Compression.Gzip)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

            # Still serving; gzip-compressed requests within the limit are fine.
            small = trace_request(pb_span(2)).SerializeToString()
            assert await export(small, metadata=auth, compression=grpc.Compression.Gzip, timeout=5) == b""
        await wait_until(lambda: len(h.captured) == 1)
        assert h.errors("invalid_protobuf") == 1
        assert h.errors("unauthorized") == 2


# --- backpressure ----------------------------------------------------------------------------

PAUSED = {"paused": True, "queue": {"max_records": 2, "block_timeout": "100ms"}}


async def fill_pipeline(h: Harness) -> None:
    """Two spans reach the paused exporter and fill the 2-record queue."""
    assert (await h.post(trace_request(pb_span(101), pb_span(102)).SerializeToString()))[0] == 200


async def test_http_backpressure_then_sdk_retry_delivers_everything(tmp_path: Path) -> None:
    spans = sdk_spans()
    async with harness(tmp_path, capture=PAUSED) as h:
        await fill_pipeline(h)
        status, answer, headers = await h.post(trace_request(pb_span(103)).SerializeToString())
        assert (status, headers["Retry-After"]) == (503, "1")
        [retry] = details_of(status_of(answer))
        assert isinstance(retry, error_details_pb2.RetryInfo) and retry.retry_delay.seconds == 1
        status, answer, headers = await h.post(
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "'
            + b"ab" * 16
            + b'", "spanId": "'
            + b"cd" * 8
            + b'"}]}]}]}',
            content_type=JSON,
        )
        assert (status, headers["Retry-After"], headers["Content-Type"]) == (503, "1", JSON)
        assert "exporter queue full" in status_of(answer, JSON).message
        refused = h.metric("burnline_records_refused_total", "traces", reason="exporter queue full")
        assert refused == 2

        exporter = HttpSpanExporter(
            endpoint=f"{h.http_url}/v1/traces", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15
        )
        try:
            sending = asyncio.create_task(in_thread(lambda: exporter.export(spans)))
            # The SDK got a 503 (counted as refused) and waits Retry-After before trying again.
            await wait_until(
                lambda: h.metric("burnline_records_refused_total", "traces", reason="exporter queue full") > 2
            )
            assert not sending.done()
            h.svc.exporters["capture"].resume.set()  # type: ignore[attr-defined]
            assert (await asyncio.wait_for(sending, 15)).name == "SUCCESS"
        finally:
            exporter.shutdown()  # type: ignore[no-untyped-call]
        await wait_until(lambda: len(h.captured) == 4)
    # Everything acknowledged arrived, once.
    names = sorted(s.name for s in h.captured)
    assert names == ["GET /cart", "SELECT carts", "span-101", "span-102"]


async def test_grpc_backpressure_then_sdk_retry_delivers_everything(tmp_path: Path) -> None:
    spans = sdk_spans()
    async with harness(tmp_path, capture=PAUSED) as h:
        await fill_pipeline(h)
        async with grpc.aio.insecure_channel(h.grpc_target) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await channel.unary_unary(TRACES_EXPORT)(
                    trace_request(pb_span(103)).SerializeToString(),
                    metadata=(("authorization", f"Bearer {TOKEN}"),),
                    timeout=5,
                )
        error = caught.value
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        trailing = dict(error.trailing_metadata() or ())
        status = status_pb2.Status.FromString(trailing["grpc-status-details-bin"])
        assert status.code == grpc.StatusCode.UNAVAILABLE.value[0]
        [retry] = details_of(status)
        assert isinstance(retry, error_details_pb2.RetryInfo) and retry.retry_delay.seconds == 1
        assert error_details_pb2.RetryInfo.FromString(trailing["google.rpc.retryinfo-bin"]) == retry

        exporter = GrpcSpanExporter(
            endpoint=h.grpc_target, insecure=True, headers=(("authorization", f"Bearer {TOKEN}"),), timeout=15
        )
        try:
            sending = asyncio.create_task(in_thread(lambda: exporter.export(spans)))
            await wait_until(
                lambda: h.metric("burnline_records_refused_total", "traces", reason="exporter queue full") > 1
            )
            assert not sending.done()
            h.svc.exporters["capture"].resume.set()  # type: ignore[attr-defined]
            assert (await asyncio.wait_for(sending, 15)).name == "SUCCESS"
        finally:
            exporter.shutdown()
        await wait_until(lambda: len(h.captured) == 4)
    assert sorted(s.name for s in h.captured) == ["GET /cart", "SELECT carts", "span-101", "span-102"]


# --- robustness ------------------------------------------------------------------------------


async def test_arbitrary_bodies_never_get_a_5xx(tmp_path: Path) -> None:
    async with harness(tmp_path, http={"endpoint": "127.0.0.1:0", "max_request_body_size": 65536}) as h:
        port = h.receiver.http_port
        assert port is not None
        target = h.grpc_target
        tried: list[int] = []

        @settings(
            max_examples=150,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @given(
            body=st.binary(max_size=2048)
            | st.builds(
                lambda b: trace_request(pb_span(1)).SerializeToString()[: len(b)], st.binary(max_size=80)
            ),
            content_type=st.sampled_from([PROTOBUF, JSON, "application/protobuf"]),
            gzipped=st.booleans(),
        )
        def property_holds(body: bytes, content_type: str, gzipped: bool) -> None:
            tried.append(len(body))
            headers = {"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}"}
            if gzipped:
                headers["Content-Encoding"] = "gzip"
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                connection.request("POST", "/v1/traces", body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
            finally:
                connection.close()
            assert response.status < 500, (response.status, answer)
            assert response.status in (200, 400, 413), response.status
            with grpc.insecure_channel(target) as channel:
                try:
                    channel.unary_unary(TRACES_EXPORT)(
                        body, metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=10
                    )
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc

        await in_thread(property_holds)
        assert len(tried) >= 100
        assert (await h.post(trace_request(pb_span(1)).SerializeToString()))[0] == 200
        assert h.receiver.ready()


# --- lifecycle and config --------------------------------------------------------------------


class GatedConsumer:
    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.batches: list[Batch] = []

    async def consume(self, batch: Batch) -> None:
        self.entered.set()
        await self.release.wait()
        self.batches.append(batch)


async def test_stop_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    config = OTLPReceiverConfig.model_validate(
        {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}
    )
    ctx = ComponentContext(RID, Telemetry(), str(tmp_path), logging.getLogger("test.otlp"))
    consumer = GatedConsumer()
    receiver = OTLPReceiver(config, ctx, {Signal.TRACES: consumer})
    assert not receiver.ready()
    await receiver.start()
    assert receiver.ready() and receiver.grpc_port and receiver.http_port
    body = trace_request(pb_span(1)).SerializeToString()
    async with (
        aiohttp.ClientSession() as session,
        grpc.aio.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as ch,
    ):

        async def post() -> int:
            url = f"http://127.0.0.1:{receiver.http_port}/v1/traces"
            async with session.post(url, data=body, headers={"Content-Type": PROTOBUF}) as resp:
                return resp.status

        http_call = asyncio.create_task(post())
        await asyncio.wait_for(consumer.entered.wait(), 5)
        consumer.entered.clear()

        async def export() -> bytes:
            return await ch.unary_unary(TRACES_EXPORT)(body, timeout=10)  # type: ignore[no-any-return]

        grpc_call = asyncio.create_task(export())
        await asyncio.wait_for(consumer.entered.wait(), 5)
        stopping = asyncio.create_task(receiver.stop())
        await asyncio.sleep(0.2)
        assert not stopping.done() and not http_call.done() and not grpc_call.done()
        assert not receiver.ready()
        consumer.release.set()
        assert await asyncio.wait_for(http_call, 5) == 200
        assert await asyncio.wait_for(grpc_call, 5) == b""
        await asyncio.wait_for(stopping, 5)
    assert len(consumer.batches) == 2
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", receiver.http_port)


async def test_port_conflicts_fail_start(tmp_path: Path) -> None:
    port = free_port()
    holder = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
    try:
        for section in ("grpc", "http"):
            other = "http" if section == "grpc" else "grpc"
            config = OTLPReceiverConfig.model_validate(
                {section: {"endpoint": f"127.0.0.1:{port}"}, other: {"endpoint": "127.0.0.1:0"}}
            )
            ctx = ComponentContext(RID, Telemetry(), str(tmp_path), logging.getLogger("test.otlp"))
            receiver = OTLPReceiver(config, ctx, {Signal.TRACES: GatedConsumer()})
            with pytest.raises(OSError):
                await receiver.start()
            assert not receiver.ready()
    finally:
        holder.close()
        await holder.wait_closed()


def test_config_defaults_and_validation() -> None:
    config = OTLPReceiverConfig()
    assert config.grpc is not None and config.http is not None
    assert (config.grpc.endpoint, config.grpc.max_recv_msg_size) == ("0.0.0.0:4317", 4 * 1024 * 1024)
    assert (config.http.endpoint, config.http.max_request_body_size) == ("0.0.0.0:4318", 20 * 1024 * 1024)
    assert OTLPReceiverConfig.model_validate({"http": None}).http is None
    with pytest.raises(ValidationError, match="enable at least one"):
        OTLPReceiverConfig.model_validate({"grpc": None, "http": None})
    with pytest.raises(ValidationError, match="must differ"):
        OTLPReceiverConfig.model_validate({"http": {"logs_url_path": "/v1/traces"}})
    with pytest.raises(ValidationError, match="bearer_token must not be empty"):
        OTLPReceiverConfig.model_validate({"bearer_token": ""})
    with pytest.raises(ConfigError, match=r"receivers\.otlp\.grpc\.max_recv_msg_size"):
        parse_config(
            {
                "receivers": {"otlp": {"grpc": {"max_recv_msg_size": "lots"}}},
                "exporters": {"capture": {}},
                "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["capture"]}}},
            },
            env={},
        )


async def test_custom_url_paths_and_http_only(tmp_path: Path) -> None:
    async with harness(
        tmp_path, grpc=None, http={"endpoint": "127.0.0.1:0", "traces_url_path": "/otlp/t"}
    ) as h:
        assert h.receiver.grpc_port is None
        assert (await h.post(trace_request(pb_span(1)).SerializeToString(), path="/otlp/t"))[0] == 200
        assert (await h.post(b"", path="/v1/traces"))[0] == 404
        await wait_until(lambda: len(h.captured) == 1)
