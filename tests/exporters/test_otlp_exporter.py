"""The OTLP exporter against the OTLP endpoint double (standing in for Jaeger), over gRPC and HTTP."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
import trustme
from pydantic import ValidationError

import exporters.otlp.exporter  # noqa: F401  (registers the "otlp" exporter type)
from collector.core.component import ComponentContext, PermanentExportError, RetryableExportError, registered
from collector.core.model import Batch, LogRecord, Scope, Signal, Span
from collector.core.retry_after import parse_retry_after
from collector.core.telemetry import Telemetry
from collector.exporterhelper.deadletter import DeadLetter
from collector.exporterhelper.queue import MemoryQueue
from collector.exporterhelper.sender import QueueSender
from exporters.otlp.encode import spans_to_proto
from exporters.otlp.exporter import OTLPExporter, OTLPExporterConfig
from exporters.otlp.grpc_client import classify_grpc_error
from tests.doubles.otlp_endpoint import OTLPEndpointDouble
from tests.exporters.test_otlp_encode import (
    decode_logs,
    decode_metrics,
    decode_spans,
    every_metric_kind,
    full_log,
    full_span,
)
from tests.support import running_service, wait_until

T0 = 1_714_564_800_000_000_000
TRACE = "5b8efff798038103d269b633813fc60c"
RESOURCE = {"service.name": "checkout", "k8s.namespace.name": "shop", "k8s.pod.name": "checkout-1"}
FAST_RETRY = {"initial_interval": "10ms", "max_interval": "50ms", "randomization_factor": 0}
PROTOCOLS = ["grpc", "http/protobuf"]


def spans(n: int, start: int = 0, padding: int = 0, resource: dict[str, Any] | None = None) -> list[Span]:
    """``n`` spans of one trace, numbered from ``start`` (attribute ``seq``)."""
    return [
        Span(
            trace_id=TRACE,
            span_id=f"{i + 1:016x}",
            name=f"op {i}",
            start_time_unix_nano=T0 + i,
            end_time_unix_nano=T0 + i + 1000,
            attributes={"seq": i, "padding": "x" * padding} if padding else {"seq": i},
            resource=resource if resource is not None else RESOURCE,
            scope=Scope("burnline.test"),
        )
        for i in range(start, start + n)
    ]


def batch(items: list[Any], signal: Signal = Signal.TRACES) -> Batch:
    return Batch(signal, items, 100 * len(items))


def endpoint_settings(double: OTLPEndpointDouble, protocol: str) -> dict[str, Any]:
    if protocol == "grpc":
        return {"endpoint": double.grpc_endpoint, "insecure": True}
    return {"endpoint": double.http_url, "protocol": "http/protobuf"}


def new_exporter(
    tmp_path: Path, telemetry: Telemetry | None = None, name: str = "otlp", **settings: Any
) -> OTLPExporter:
    telemetry = telemetry or Telemetry()
    settings.setdefault("retry", FAST_RETRY)
    settings.setdefault("batch", {"flush_interval": "20ms"})
    config = OTLPExporterConfig.model_validate(settings)
    exporter = OTLPExporter(
        config, ComponentContext(name, telemetry, str(tmp_path), logging.getLogger("test.otlp"))
    )
    exporter.dead_letter = DeadLetter(name, tmp_path / "deadletter", telemetry)
    return exporter


async def started(
    double: OTLPEndpointDouble,
    protocol: str,
    tmp_path: Path,
    telemetry: Telemetry | None = None,
    **settings: Any,
) -> OTLPExporter:
    exporter = new_exporter(tmp_path, telemetry, **{**endpoint_settings(double, protocol), **settings})
    await exporter.start()
    return exporter


def sample(telemetry: Telemetry, name: str, signal: str = "traces", **labels: str) -> float:
    value = telemetry.registry.get_sample_value(name, {"component": "otlp", "signal": signal, **labels})
    return value or 0.0


def dead_letters(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "deadletter" / "otlp.ndjson"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def received_span_ids(double: OTLPEndpointDouble) -> list[str]:
    return [s.span_id.hex() for s in double.spans()]


class Sending:
    """An exporter fed by a real queue and QueueSender, as the service runs it."""

    def __init__(self, exporter: OTLPExporter, telemetry: Telemetry) -> None:
        self.exporter = exporter
        self.telemetry = telemetry
        self.queue = MemoryQueue("otlp", exporter.config.queue, telemetry)
        self.sender = QueueSender(exporter, exporter.config, self.queue, telemetry)
        self.sender.start()

    async def put(self, items: list[Any], signal: Signal = Signal.TRACES) -> None:
        await self.queue.put(batch(items, signal))

    def exported(self, signal: str = "traces") -> float:
        return sample(self.telemetry, "burnline_records_exported_total", signal)

    def retries(self) -> float:
        total = 0.0
        for metric in self.telemetry.registry.collect():
            for s in metric.samples:
                if s.name == "burnline_export_retries_total":
                    total += s.value
        return total

    async def close(self) -> int:
        lost = await self.sender.drain(10.0)
        await self.exporter.stop()
        return lost


@pytest.fixture
async def double() -> AsyncIterator[OTLPEndpointDouble]:
    async with OTLPEndpointDouble() as endpoint:
        yield endpoint


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


# ---------------------------------------------------------------------------------------------------
# Configuration


def test_registered_as_otlp() -> None:
    assert registered("exporter")["otlp"] is OTLPExporter
    assert OTLPExporter.signals == {Signal.TRACES, Signal.LOGS, Signal.METRICS}


def test_defaults() -> None:
    config = OTLPExporterConfig.model_validate({"endpoint": "jaeger:4317"})
    assert (config.protocol, config.compression, config.timeout, config.headers) == ("grpc", "gzip", 10.0, {})
    assert config.grpc_target() == ("jaeger:4317", True)  # TLS unless told otherwise, as the Collector
    assert OTLPExporterConfig.model_validate({"endpoint": "jaeger:4317", "insecure": True}).grpc_target() == (
        "jaeger:4317",
        False,
    )
    assert OTLPExporterConfig.model_validate({"endpoint": "http://jaeger:4317"}).grpc_target() == (
        "jaeger:4317",
        False,
    )
    assert OTLPExporterConfig.model_validate({"endpoint": "https://[::1]:4317"}).grpc_target() == (
        "[::1]:4317",
        True,
    )


def test_http_urls_append_signal_paths_unless_given() -> None:
    config = OTLPExporterConfig.model_validate(
        {
            "protocol": "http/protobuf",
            "endpoint": "https://otlp.example:4318/intake/",
            "metrics_endpoint": "https://metrics.example/api/v1/otlp",
            "timeout": "2s",
        }
    )
    assert config.signal_urls() == {
        Signal.TRACES: "https://otlp.example:4318/intake/v1/traces",
        Signal.LOGS: "https://otlp.example:4318/intake/v1/logs",
        Signal.METRICS: "https://metrics.example/api/v1/otlp",
    }
    assert config.timeout == 2.0
    only_traces = OTLPExporterConfig.model_validate(
        {"protocol": "http/protobuf", "traces_endpoint": "http://jaeger:4318/v1/traces"}
    )
    assert only_traces.signal_urls() == {Signal.TRACES: "http://jaeger:4318/v1/traces"}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "endpoint is required"),
        ({"endpoint": "jaeger"}, "is not host:port"),
        ({"endpoint": "ftp://jaeger:4317"}, "use host:port"),
        ({"endpoint": "http://jaeger:4317/v1"}, "no path"),
        (
            {"endpoint": "jaeger:4317", "traces_endpoint": "http://j/v1/traces"},
            "are for protocol http/protobuf",
        ),
        ({"endpoint": "https://jaeger:4317", "insecure": True}, "https:// but insecure"),
        ({"endpoint": "jaeger:4317", "insecure": True, "tls": {}}, "contradict"),
        ({"endpoint": "http://jaeger:4317", "tls": {}}, "plaintext) but tls"),
        ({"endpoint": "jaeger:4317", "tls": {"insecure_skip_verify": True}}, "not supported with grpc"),
        ({"protocol": "http/protobuf"}, "set endpoint"),
        ({"protocol": "http/protobuf", "endpoint": "jaeger:4318"}, "is not an http:// or https:// URL"),
        ({"protocol": "http/protobuf", "endpoint": "http://u:p@jaeger:4318"}, "not in the URL"),
        ({"protocol": "http/protobuf", "endpoint": "http://jaeger:4318?x=1"}, "no query"),
        (
            {"protocol": "http/protobuf", "endpoint": "http://jaeger:4318", "insecure": True},
            "insecure applies",
        ),
        ({"protocol": "http/protobuf", "endpoint": "http://jaeger:4318", "tls": {}}, "no endpoint is https"),
        ({"protocol": "http/json", "endpoint": "http://jaeger:4318"}, "protocol"),
        ({"endpoint": "jaeger:4317", "compression": "zstd"}, "compression"),
        ({"endpoint": "jaeger:4317", "timeout": 0}, "timeout must be more than 0"),
        ({"endpoint": "jaeger:4317", "headers": {"bad name": "x"}}, "not a valid HTTP header name"),
        ({"endpoint": "jaeger:4317", "headers": {"Content-Type": "x"}}, "set by the exporter"),
        ({"endpoint": "jaeger:4317", "headers": {"grpc-timeout": "1S"}}, "set by the exporter"),
        ({"endpoint": "jaeger:4317", "headers": {"x-a": "1\r\nx-b: 2"}}, "printable ASCII"),
        ({"endpoint": "jaeger:4317", "headers": {"x-trace-bin": "AAEC"}}, "binary gRPC metadata"),
        ({"endpoint": "jaeger:4317", "unknown": 1}, "Extra inputs are not permitted"),
    ],
)
def test_configuration_errors_name_the_problem(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        OTLPExporterConfig.model_validate(settings)


# ---------------------------------------------------------------------------------------------------
# Delivery


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_spans_arrive_field_by_field_as_exported(
    double: OTLPEndpointDouble, protocol: str, tmp_path: Path
) -> None:
    exporter = await started(double, protocol, tmp_path)
    sent = [
        full_span("0000000000000001"),
        full_span("0000000000000002", resource={"service.name": "cart", "k8s.pod.name": "cart-0"}),
        *spans(3, start=10),
        full_span("0000000000000003"),
    ]
    assert await exporter.export(batch(sent)) == len(sent)
    await exporter.stop()
    [request] = double.requests
    assert (request.transport, request.signal, request.answer) == (
        protocol.split("/", maxsplit=1)[0],
        Signal.TRACES,
        "ok",
    )
    arrived = decode_spans(request.request)
    assert sorted(arrived, key=lambda s: s.span_id) == sorted(sent, key=lambda s: s.span_id)
    # One ResourceSpans per resource, the spans of a resource together.
    assert [len(rs.scope_spans) for rs in request.request.resource_spans] == [1, 1, 1]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_logs_and_metrics_arrive_as_exported(
    double: OTLPEndpointDouble, protocol: str, tmp_path: Path
) -> None:
    exporter = await started(double, protocol, tmp_path)
    records = [full_log(), full_log(body="second", scope=None, scope_name="app"), LogRecord(T0, "plain")]
    points = every_metric_kind()
    assert await exporter.export(batch(records, Signal.LOGS)) == 3
    assert await exporter.export(batch(points, Signal.METRICS)) == len(points)
    await exporter.stop()
    [logs] = double.taken(Signal.LOGS)
    [metrics] = double.taken(Signal.METRICS)
    arrived_logs = decode_logs(logs.request)
    assert [r.body for r in arrived_logs] == [r.body for r in records]
    assert arrived_logs[0] == records[0]
    assert (arrived_logs[1].scope_name, arrived_logs[1].scope) == ("app", Scope("app"))
    arrived_points = decode_metrics(metrics.request)
    assert [(p.name, p.kind) for p in arrived_points] == [(p.name, p.kind) for p in points]
    assert arrived_points[2] == points[2]  # a cumulative monotonic sum, every field


async def test_an_empty_batch_sends_nothing(double: OTLPEndpointDouble, tmp_path: Path) -> None:
    exporter = await started(double, "grpc", tmp_path)
    assert await exporter.export(batch([])) == 0
    await exporter.stop()
    assert double.requests == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_headers_go_with_every_request(
    double: OTLPEndpointDouble, protocol: str, tmp_path: Path
) -> None:
    exporter = await started(
        double, protocol, tmp_path, headers={"Authorization": "Bearer s3cret", "X-Scope-OrgID": "tenant-1"}
    )
    await exporter.export(batch(spans(1)))
    await exporter.export(batch([LogRecord(T0, "x")], Signal.LOGS))
    await exporter.stop()
    for request in double.requests:
        assert request.headers["authorization"] == "Bearer s3cret"
        assert request.headers["x-scope-orgid"] == "tenant-1"
        assert "burnline/" in request.headers["user-agent"]
    if protocol != "grpc":
        assert {r.headers["content-type"] for r in double.requests} == {"application/x-protobuf"}


async def test_http_bodies_are_gzipped_by_default(double: OTLPEndpointDouble, tmp_path: Path) -> None:
    sent = spans(300, padding=40)
    size = len(spans_to_proto(sent).SerializeToString())
    exporter = await started(double, "http/protobuf", tmp_path)
    await exporter.export(batch(sent))
    await exporter.stop()
    plain = await started(double, "http/protobuf", tmp_path, compression="none")
    await plain.export(batch(sent))
    await plain.stop()
    gzipped, identity = double.requests
    assert gzipped.content_encoding == "gzip" and gzipped.wire_bytes < size / 5
    assert identity.content_encoding == "" and identity.wire_bytes == size
    assert decode_spans(gzipped.request) == decode_spans(identity.request) == sent


async def test_grpc_messages_are_gzipped_by_default(double: OTLPEndpointDouble, tmp_path: Path) -> None:
    sent = spans(300, padding=40)
    size = len(spans_to_proto(sent).SerializeToString())
    exporter = await started(double, "grpc", tmp_path)
    await exporter.export(batch(sent))
    await exporter.stop()
    gzipped_wire = double.grpc_wire_bytes
    plain = await started(double, "grpc", tmp_path, compression="none")
    await plain.export(batch(sent))
    await plain.stop()
    plain_wire = double.grpc_wire_bytes - gzipped_wire
    assert plain_wire > size  # the whole message plus HTTP/2 framing
    assert gzipped_wire < size / 5
    assert [decode_spans(r.request) for r in double.requests] == [sent, sent]


# ---------------------------------------------------------------------------------------------------
# Failures: what is retried, what is not


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        (grpc.StatusCode.CANCELLED, True),
        (grpc.StatusCode.UNKNOWN, False),
        (grpc.StatusCode.INVALID_ARGUMENT, False),
        (grpc.StatusCode.DEADLINE_EXCEEDED, True),
        (grpc.StatusCode.NOT_FOUND, False),
        (grpc.StatusCode.ALREADY_EXISTS, False),
        (grpc.StatusCode.PERMISSION_DENIED, False),
        (grpc.StatusCode.UNAUTHENTICATED, False),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, False),  # without RetryInfo
        (grpc.StatusCode.FAILED_PRECONDITION, False),
        (grpc.StatusCode.ABORTED, True),
        (grpc.StatusCode.OUT_OF_RANGE, True),
        (grpc.StatusCode.UNIMPLEMENTED, False),
        (grpc.StatusCode.INTERNAL, False),
        (grpc.StatusCode.UNAVAILABLE, True),
        (grpc.StatusCode.DATA_LOSS, True),
    ],
)
def test_grpc_codes_are_classified_as_the_otlp_specification_says(
    code: grpc.StatusCode, retryable: bool
) -> None:
    failure = classify_grpc_error(code, "details", ())
    assert failure.retryable is retryable
    assert failure.reason == f"grpc_{code.name.lower()}"
    assert failure.retry_after is None and not failure.too_large


def test_retry_after_header_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    hint = parse_retry_after(future)
    assert hint is not None and 25 <= hint <= 31


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_retryable_http_statuses(double: OTLPEndpointDouble, status: int, tmp_path: Path) -> None:
    exporter = await started(double, "http/protobuf", tmp_path)
    double.fail_next(http_status=status, retry_after="7", message="busy")
    with pytest.raises(RetryableExportError) as caught:
        await exporter.export(batch(spans(3)))
    assert (caught.value.reason, caught.value.retry_after) == (f"http_{status}", 7.0)
    assert caught.value.remaining is not None and len(caught.value.remaining) == 3
    assert caught.value.delivered == 0
    assert await exporter.export(caught.value.remaining) == 3
    await exporter.stop()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 500, 501, 505])
async def test_other_http_statuses_are_permanent(
    double: OTLPEndpointDouble, status: int, tmp_path: Path
) -> None:
    exporter = await started(double, "http/protobuf", tmp_path)
    double.fail_next(http_status=status, message="no such thing")
    with pytest.raises(PermanentExportError, match=f"http_{status}: HTTP {status}: no such thing"):
        await exporter.export(batch(spans(2)))
    await exporter.stop()
    assert len(double.requests) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_unavailable_is_retried_until_delivered(
    double: OTLPEndpointDouble, protocol: str, tmp_path: Path, telemetry: Telemetry
) -> None:
    sending = Sending(await started(double, protocol, tmp_path, telemetry), telemetry)
    double.fail_next(2)  # gRPC UNAVAILABLE, HTTP 503
    await sending.put(spans(5))
    await wait_until(lambda: sending.exported() == 5)
    assert await sending.close() == 0
    assert [r.answer for r in double.requests][:2] in (["grpc UNAVAILABLE"] * 2, ["http 503"] * 2)
    assert received_span_ids(double) == [f"{i + 1:016x}" for i in range(5)]
    assert sending.retries() == 2
    assert dead_letters(tmp_path) == []


async def test_http_retry_after_is_honoured(
    double: OTLPEndpointDouble, tmp_path: Path, telemetry: Telemetry
) -> None:
    sending = Sending(await started(double, "http/protobuf", tmp_path, telemetry), telemetry)
    double.fail_next(http_status=503, retry_after="1")
    await sending.put(spans(2))
    await wait_until(lambda: sending.exported() == 2)
    await sending.close()
    first, second = double.requests
    # The sender's own backoff is 10 ms here: only the endpoint's hint explains the wait.
    assert 0.95 <= second.time - first.time < 5


async def test_grpc_retry_info_delay_is_honoured(
    double: OTLPEndpointDouble, tmp_path: Path, telemetry: Telemetry
) -> None:
    sending = Sending(await started(double, "grpc", tmp_path, telemetry), telemetry)
    double.fail_next(grpc_code=grpc.StatusCode.UNAVAILABLE, retry_delay=0.8)
    await sending.put(spans(2))
    await wait_until(lambda: sending.exported() == 2)
    await sending.close()
    first, second = double.requests
    assert 0.75 <= second.time - first.time < 5


async def test_resource_exhausted_with_retry_info_is_retried(
    double: OTLPEndpointDouble, tmp_path: Path, telemetry: Telemetry
) -> None:
    exporter = await started(double, "grpc", tmp_path, telemetry)
    double.fail_next(grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=1.5, message="rate limited")
    with pytest.raises(RetryableExportError) as caught:
        await exporter.export(batch(spans(4)))
    assert (caught.value.reason, caught.value.retry_after) == ("grpc_resource_exhausted", 1.5)
    sending = Sending(exporter, telemetry)
    double.fail_next(grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=0.0)
    await sending.put(spans(4))
    await wait_until(lambda: sending.exported() == 4)
    await sending.close()
    assert dead_letters(tmp_path) == []


async def test_resource_exhausted_without_retry_info_is_dead_lettered(
    double: OTLPEndpointDouble, tmp_path: Path, telemetry: Telemetry
) -> None:
    sending = Sending(await started(double, "grpc", tmp_path, telemetry), telemetry)
    double.fail_next(grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED, message="quota exceeded for good")
    await sending.put(spans(3))
    await wait_until(lambda: len(dead_letters(tmp_path)) == 3)
    await sending.close()
    assert len(double.requests) == 1  # not retried
    assert {d["detail"] for d in dead_letters(tmp_path)} == {
        "grpc_resource_exhausted: quota exceeded for good"
    }
    assert sending.exported() == 0


@pytest.mark.parametrize(
    ("protocol", "failure", "reason"),
    [
        ("grpc", {"grpc_code": grpc.StatusCode.INVALID_ARGUMENT}, "grpc_invalid_argument: malformed span"),
        ("http/protobuf", {"http_status": 400}, "http_400: HTTP 400: malformed span"),
    ],
)
async def test_permanent_failure_goes_to_the_dead_letter_file(
    double: OTLPEndpointDouble,
    protocol: str,
    *,
    failure: dict[str, Any],
    reason: str,
    tmp_path: Path,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sending = Sending(await started(double, protocol, tmp_path, telemetry), telemetry)
    double.fail_next(message="malformed span", **failure)
    await sending.put(spans(3))
    await wait_until(lambda: len(dead_letters(tmp_path)) == 3)
    await sending.put(spans(2, start=3))
    await wait_until(lambda: sending.exported() == 2)
    await sending.close()
    letters = dead_letters(tmp_path)
    assert {(d["reason"], d["detail"]) for d in letters} == {("permanent", reason)}
    assert [d["record"]["span_id"] for d in letters] == [f"{i + 1:016x}" for i in range(3)]
    assert letters[0]["record"]["attributes"] == {"seq": 0}
    assert sample(telemetry, "burnline_records_failed_total", reason="permanent") == 3
    assert len(double.requests) == 2 and sending.retries() == 0
    assert "refused 3 spans for good" in caplog.text


@pytest.mark.parametrize(
    ("protocol", "reason"), [("grpc", "grpc_unimplemented"), ("http/protobuf", "http_404")]
)
async def test_jaeger_takes_traces_only(
    protocol: str, reason: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with OTLPEndpointDouble(signals={Signal.TRACES}) as jaeger:
        exporter = await started(jaeger, protocol, tmp_path)
        assert await exporter.export(batch(spans(2))) == 2
        with pytest.raises(PermanentExportError, match=reason):
            await exporter.export(batch([LogRecord(T0, "a log")], Signal.LOGS))
        await exporter.stop()
    assert "does the endpoint take logs? Jaeger takes traces only" in caplog.text


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_partial_success_counts_what_the_endpoint_dropped(
    double: OTLPEndpointDouble,
    protocol: str,
    tmp_path: Path,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = await started(double, protocol, tmp_path, telemetry)
    double.partial_next(rejected=3, message="3 spans are older than the retention")
    assert await exporter.export(batch(spans(10))) == 7
    assert sample(telemetry, "burnline_records_failed_total", reason="partial_success") == 3
    assert "dropped 3 of 10 spans: 3 spans are older than the retention" in caplog.text
    # An endpoint claiming more than it was sent drops at most everything.
    double.partial_next(rejected=50, message="all gone")
    assert await exporter.export(batch(spans(4))) == 0
    assert sample(telemetry, "burnline_records_failed_total", reason="partial_success") == 7
    # A partial success with nothing rejected is a warning only.
    double.partial_next(rejected=0, message="attribute names should be lower case")
    assert await exporter.export(batch(spans(2))) == 2
    assert "attribute names should be lower case" in caplog.text
    await exporter.stop()
    assert len(double.requests) == 3  # OTLP forbids resending after a partial success
    assert dead_letters(tmp_path) == []  # which records were dropped, nobody knows


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_too_large_requests_are_split_until_they_fit(
    protocol: str, tmp_path: Path, telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    async with OTLPEndpointDouble(max_request_bytes=40_000) as small:
        exporter = await started(small, protocol, tmp_path, telemetry)
        sent = spans(100, padding=900)  # ~95 kB encoded
        assert await exporter.export(batch(sent)) == 100
        assert exporter.request_limit is not None and exporter.request_limit <= 50
        assert sorted(received_span_ids(small)) == sorted(s.span_id for s in sent)
        assert "too large" in caplog.text
        refused = len([r for r in small.requests if not r.taken])
        # Later batches are cut to the learnt size up front: no refused request any more.
        assert await exporter.export(batch(spans(100, start=100, padding=900))) == 100
        assert len([r for r in small.requests if not r.taken]) == refused
        # One span larger than the limit by itself can never be sent.
        [huge] = spans(1, start=500, padding=60_000)
        assert await exporter.export(batch([huge, *spans(2, start=600)])) == 2
        await exporter.stop()
    [letter] = dead_letters(tmp_path)
    assert letter["record"]["span_id"] == huge.span_id
    assert letter["reason"] in ("grpc_resource_exhausted", "http_413")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_batch_s_received_request_is_sent_as_it_is(
    double: OTLPEndpointDouble, protocol: str, tmp_path: Path
) -> None:
    """``Batch.wire`` (the request the records came in, unchanged since) goes out without encoding
    the records again. Here it names the spans apart from the records, to tell which was sent."""
    sent = spans(3)
    as_received = [dataclasses.replace(s, name=f"received {i}") for i, s in enumerate(sent)]
    wire = spans_to_proto(as_received).SerializeToString()
    exporter = await started(double, protocol, tmp_path, compression="none")
    assert await exporter.export(Batch(Signal.TRACES, sent, len(wire), wire)) == 3
    [request] = double.taken(Signal.TRACES)
    assert decode_spans(request.request) == as_received
    if protocol == "http/protobuf":
        assert request.wire_bytes == len(wire)
    # Once the endpoint said requests must be smaller, a larger batch goes in pieces of its records.
    exporter.request_limit = 2
    assert await exporter.export(Batch(Signal.TRACES, sent, len(wire), wire)) == 3
    await exporter.stop()
    pieces = double.taken(Signal.TRACES)[1:]
    assert [decode_spans(p.request) for p in pieces] == [sent[:2], sent[2:]]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_record_that_cannot_be_encoded_is_dead_lettered_alone(
    double: OTLPEndpointDouble, protocol: str, tmp_path: Path, telemetry: Telemetry
) -> None:
    exporter = await started(double, protocol, tmp_path, telemetry)
    good = spans(2)
    # Values JSON has no room for must not stop the record from reaching the dead-letter file.
    bad = Span(
        "not-a-trace-id", "0000000000000009", "bad", T0, T0 + 1, attributes={"big": 2**70, "b": b"\x01"}
    )
    assert await exporter.export(batch([good[0], bad, good[1]])) == 2
    await exporter.stop()
    assert received_span_ids(double) == [s.span_id for s in good]
    [letter] = dead_letters(tmp_path)
    assert (letter["reason"], letter["detail"]) == (
        "encode_error",
        "trace_id 'not-a-trace-id' is not 32 hex digits",
    )
    assert letter["record"]["name"] == "bad"
    # Beyond 64 bits a number becomes its decimal text, as everywhere burnline writes JSON (orjson
    # and most readers cannot take it as a number).
    assert letter["record"]["attributes"] == {"big": str(2**70), "b": "\x01"}
    assert sample(telemetry, "burnline_records_failed_total", reason="encode_error") == 1


async def test_a_refused_request_after_a_split_is_dead_lettered_by_the_exporter(tmp_path: Path) -> None:
    async with OTLPEndpointDouble(max_request_bytes=40_000) as small:
        exporter = await started(small, "http/protobuf", tmp_path)
        small.fail_next(http_status=413)  # the whole batch: too large
        small.fail_next(http_status=400, message="bad half")  # the first half: refused for good
        assert await exporter.export(batch(spans(10))) == 5
        await exporter.stop()
    letters = dead_letters(tmp_path)
    assert [d["record"]["span_id"] for d in letters] == [f"{i + 1:016x}" for i in range(5)]
    assert {(d["reason"], d["detail"]) for d in letters} == {("http_400", "HTTP 400: bad half")}
    assert received_span_ids(small) == [f"{i + 1:016x}" for i in range(5, 10)]


async def test_a_retryable_failure_after_a_split_keeps_what_landed(
    double: OTLPEndpointDouble, tmp_path: Path
) -> None:
    exporter = await started(double, "grpc", tmp_path)
    exporter.request_limit = 4  # as learnt from an earlier too-large answer
    double.fail_next(after=1)  # the first request (4 spans) lands, the second is refused for now
    sent = spans(10)
    with pytest.raises(RetryableExportError) as caught:
        await exporter.export(batch(sent))
    await exporter.stop()
    assert caught.value.delivered == 4
    # The rest waits with the refused request: 6 spans to retry, in their order.
    assert caught.value.remaining is not None
    assert [s.span_id for s in caught.value.remaining.items] == [s.span_id for s in sent[4:]]
    assert received_span_ids(double) == [s.span_id for s in sent[:4]]
    assert len(double.requests) == 2


# ---------------------------------------------------------------------------------------------------
# Connections, timeouts, outages


@pytest.mark.parametrize(
    ("protocol", "reason"), [("grpc", "grpc_unavailable"), ("http/protobuf", "connection")]
)
async def test_no_endpoint_is_retryable(protocol: str, reason: str, tmp_path: Path) -> None:
    down = OTLPEndpointDouble()  # never started
    exporter = await started(down, protocol, tmp_path)  # start does not fail
    with pytest.raises(RetryableExportError) as caught:
        await exporter.export(batch(spans(2)))
    await exporter.stop()
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("protocol", "reason"), [("grpc", "grpc_deadline_exceeded"), ("http/protobuf", "timeout")]
)
async def test_a_slow_endpoint_times_out_and_is_retried(
    double: OTLPEndpointDouble, protocol: str, reason: str, tmp_path: Path
) -> None:
    exporter = await started(double, protocol, tmp_path, timeout="300ms")
    double.stall_next(2.0)
    t0 = time.monotonic()
    with pytest.raises(RetryableExportError) as caught:
        await exporter.export(batch(spans(2)))
    assert caught.value.reason == reason
    assert time.monotonic() - t0 < 1.5  # the client gave up; the endpoint would have answered at 2 s
    await exporter.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_endpoint_down_at_start_then_up_gets_everything(
    protocol: str, tmp_path: Path, telemetry: Telemetry
) -> None:
    endpoint = OTLPEndpointDouble()
    sending = Sending(await started(endpoint, protocol, tmp_path, telemetry), telemetry)
    await sending.put(spans(5))
    await wait_until(lambda: sending.retries() >= 2)
    async with endpoint:
        await wait_until(lambda: sending.exported() == 5)
        await sending.put(spans(5, start=5))
        await wait_until(lambda: sending.exported() == 10)
        assert await sending.close() == 0
    assert received_span_ids(endpoint) == [f"{i + 1:016x}" for i in range(10)]
    assert dead_letters(tmp_path) == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_outage_then_recovery_on_the_same_port(
    protocol: str, tmp_path: Path, telemetry: Telemetry
) -> None:
    async with OTLPEndpointDouble() as endpoint:
        sending = Sending(await started(endpoint, protocol, tmp_path, telemetry), telemetry)
        await sending.put(spans(3))
        await wait_until(lambda: sending.exported() == 3)
        await endpoint.stop()
        await sending.put(spans(3, start=3))
        await wait_until(lambda: sending.retries() >= 1)
        await endpoint.start()
        await wait_until(lambda: sending.exported() == 6)
        assert await sending.close() == 0
    assert received_span_ids(endpoint) == [f"{i + 1:016x}" for i in range(6)]


# ---------------------------------------------------------------------------------------------------
# TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_tls_with_the_endpoints_ca(ca: trustme.CA, protocol: str, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with OTLPEndpointDouble(server_cert=ca.issue_cert("127.0.0.1")) as secure:
        endpoint = secure.grpc_endpoint if protocol == "grpc" else secure.http_url
        assert endpoint.startswith("https://") or protocol == "grpc"
        exporter = new_exporter(tmp_path, endpoint=endpoint, protocol=protocol, tls={"ca_file": str(ca_file)})
        await exporter.start()
        assert await exporter.export(batch(spans(3))) == 3
        await exporter.stop()
        # Without the CA, the certificate is not trusted: retried (an operator fixes the settings).
        untrusting = new_exporter(tmp_path, endpoint=endpoint, protocol=protocol)
        await untrusting.start()
        with pytest.raises(RetryableExportError) as caught:
            await untrusting.export(batch(spans(1)))
        await untrusting.stop()
    assert caught.value.reason in ("grpc_unavailable", "tls")
    assert len(secure.spans()) == 3


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_mutual_tls(ca: trustme.CA, protocol: str, tmp_path: Path) -> None:
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "client.key"
    ca.cert_pem.write_to_path(str(ca_file))
    client = ca.issue_cert("burnline-client")
    client.cert_chain_pems[0].write_to_path(str(cert_file))
    client.private_key_pem.write_to_path(str(key_file))
    async with OTLPEndpointDouble(
        server_cert=ca.issue_cert("127.0.0.1"), client_ca_pem=ca.cert_pem.bytes()
    ) as secure:
        endpoint = secure.grpc_endpoint if protocol == "grpc" else secure.http_url
        tls = {"ca_file": str(ca_file), "cert_file": str(cert_file), "key_file": str(key_file)}
        exporter = new_exporter(tmp_path, endpoint=endpoint, protocol=protocol, tls=tls)
        await exporter.start()
        assert await exporter.export(batch(spans(2))) == 2
        await exporter.stop()
        anonymous = new_exporter(
            tmp_path, endpoint=endpoint, protocol=protocol, tls={"ca_file": str(ca_file)}
        )
        await anonymous.start()
        with pytest.raises(RetryableExportError):
            await anonymous.export(batch(spans(1)))
        await anonymous.stop()
    assert len(secure.spans()) == 2


# ---------------------------------------------------------------------------------------------------
# In the service


async def test_traces_through_the_service_reach_jaeger(tmp_path: Path) -> None:
    async with OTLPEndpointDouble(signals={Signal.TRACES}) as jaeger:
        config = {
            "receivers": {"inject": {}},
            "exporters": {
                "otlp/jaeger": {
                    "endpoint": jaeger.grpc_endpoint,
                    "insecure": True,
                    "batch": {"flush_interval": "20ms"},
                }
            },
            "service": {"pipelines": {"traces": {"receivers": ["inject"], "exporters": ["otlp/jaeger"]}}},
        }
        async with running_service(config, str(tmp_path)) as svc:
            sent = [full_span(f"{i + 1:016x}") for i in range(20)]
            await svc.receivers["inject"].push(sent, Signal.TRACES)  # type: ignore[attr-defined]
            await wait_until(lambda: len(jaeger.spans()) == 20)
        assert sorted(s.span_id for s in decode_spans_of(jaeger)) == [s.span_id for s in sent]
        assert decode_spans_of(jaeger)[0] == sent[0]


def decode_spans_of(double: OTLPEndpointDouble) -> list[Span]:
    return [s for r in double.taken(Signal.TRACES) for s in decode_spans(r.request)]


async def test_http_per_signal_url(tmp_path: Path) -> None:
    async with OTLPEndpointDouble(extra_paths={"/custom/traces": Signal.TRACES}) as endpoint:
        exporter = new_exporter(
            tmp_path, protocol="http/protobuf", traces_endpoint=f"{endpoint.http_url}/custom/traces"
        )
        await exporter.start()
        assert await exporter.export(batch(spans(1))) == 1
        with pytest.raises(PermanentExportError, match="no logs_endpoint and no endpoint"):
            await exporter.export(batch([LogRecord(T0, "x")], Signal.LOGS))
        await exporter.stop()
    assert [r.path for r in endpoint.requests] == ["/custom/traces"]
