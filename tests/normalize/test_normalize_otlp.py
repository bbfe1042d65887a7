"""OTLP -> the data model: every field of spans, logs and metric points, validation, OTLP/JSON."""

from __future__ import annotations

import base64
import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from collector.core.model import (
    NO_ITEMS,
    Exemplar,
    LogRecord,
    MetricKind,
    Scope,
    Span,
    SpanEvent,
    SpanKind,
    SpanLink,
    StatusCode,
    Temporality,
)
from collector.normalize.otlp import (
    InvalidRequest,
    Rejections,
    any_value,
    logs_from_proto,
    metrics_from_proto,
    parse_json_request,
    parse_proto_request,
    spans_from_proto,
)
from collector.normalize.otlp_values import attributes

TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN = bytes.fromhex("eee19b7ec3c1b174")
PARENT = bytes.fromhex("eee19b7ec3c1b173")
OTHER_TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
OTHER_SPAN = bytes.fromhex("b7ad6b7169203331")
T0 = 1_714_557_600_123_456_789


def av(value: Any) -> AnyValue:
    """A Python value as the AnyValue an OTLP client would send (the test's own encoder)."""
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[av(v) for v in value]))
    assert isinstance(value, dict)
    return AnyValue(kvlist_value=KeyValueList(values=kvs(value)))


def kvs(values: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=av(v)) for k, v in values.items()]


EVERY_TYPE = {
    "str": "checkout",
    "bool": True,
    "false": False,
    "int": -(2**63),
    "big": 2**63 - 1,
    "double": 0.25,
    "bytes": b"\x00\xffraw",
    "array": ["a", 1, 2.5, False, None, [b"x"]],
    "kvlist": {"nested": {"deeper": [1, {"k": "v"}]}, "empty": None},
    "empty": None,
    "empty_array": [],
    "empty_kvlist": {},
}


def resource(**attrs: Any) -> Resource:
    return Resource(attributes=kvs(attrs), dropped_attributes_count=2)


def scope(name: str = "io.opentelemetry.http", attrs: dict[str, Any] | None = None) -> InstrumentationScope:
    return InstrumentationScope(
        name=name, version="1.2.3", attributes=kvs(attrs or {}), dropped_attributes_count=1
    )


def full_span(**changes: Any) -> trace_pb2.Span:
    fields: dict[str, Any] = {
        "trace_id": TRACE,
        "span_id": SPAN,
        "parent_span_id": PARENT,
        "trace_state": "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        "flags": 0x301,
        "name": "GET /cart",
        "kind": trace_pb2.Span.SPAN_KIND_SERVER,
        "start_time_unix_nano": T0,
        "end_time_unix_nano": T0 + 2_500_000,
        "attributes": kvs(EVERY_TYPE),
        "dropped_attributes_count": 3,
        "events": [
            trace_pb2.Span.Event(
                time_unix_nano=T0 + 1000,
                name="exception",
                attributes=kvs({"exception.type": "KeyError"}),
                dropped_attributes_count=4,
            ),
            trace_pb2.Span.Event(time_unix_nano=T0 + 2000, name="bare"),
        ],
        "dropped_events_count": 5,
        "links": [
            trace_pb2.Span.Link(
                trace_id=OTHER_TRACE,
                span_id=OTHER_SPAN,
                trace_state="k=v",
                attributes=kvs({"link.kind": "follows"}),
                dropped_attributes_count=6,
                flags=0x101,
            )
        ],
        "dropped_links_count": 7,
        "status": trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="boom"),
    }
    fields.update(changes)
    return trace_pb2.Span(**fields)


def trace_request(*spans: trace_pb2.Span) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource(**{"service.name": "checkout", "k8s.pod.name": "web-1"}),
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        scope=scope(attrs={"scope.attr": 1}),
                        spans=list(spans),
                        schema_url="https://opentelemetry.io/schemas/1.21.0",
                    )
                ],
                schema_url="https://opentelemetry.io/schemas/1.24.0",
            )
        ]
    )


# --- traces ----------------------------------------------------------------------------------


def test_span_keeps_every_field() -> None:
    [span] = spans_from_proto(trace_request(full_span()))
    assert span == Span(
        trace_id="5b8efff798038103d269b633813fc60c",
        span_id="eee19b7ec3c1b174",
        parent_span_id="eee19b7ec3c1b173",
        name="GET /cart",
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + 2_500_000,
        trace_state="rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        flags=0x301,
        kind=SpanKind.SERVER,
        attributes=EVERY_TYPE,
        dropped_attributes_count=3,
        events=[
            SpanEvent(T0 + 1000, "exception", {"exception.type": "KeyError"}, 4),
            SpanEvent(T0 + 2000, "bare"),
        ],
        dropped_events_count=5,
        links=[
            SpanLink(
                trace_id=OTHER_TRACE.hex(),
                span_id=OTHER_SPAN.hex(),
                trace_state="k=v",
                attributes={"link.kind": "follows"},
                dropped_attributes_count=6,
                flags=0x101,
            )
        ],
        dropped_links_count=7,
        status_code=StatusCode.ERROR,
        status_message="boom",
        resource={"service.name": "checkout", "k8s.pod.name": "web-1"},
        resource_schema_url="https://opentelemetry.io/schemas/1.24.0",
        resource_dropped_attributes_count=2,
        scope=Scope(
            name="io.opentelemetry.http",
            version="1.2.3",
            attributes={"scope.attr": 1},
            dropped_attributes_count=1,
            schema_url="https://opentelemetry.io/schemas/1.21.0",
        ),
    )
    # Exact Python types: a bool is not an int, an int is not a float, bytes stay bytes.
    assert type(span.attributes["bool"]) is bool
    assert type(span.attributes["int"]) is int
    assert type(span.attributes["double"]) is float
    assert type(span.attributes["bytes"]) is bytes
    assert span.service_name == "checkout"
    assert span.is_error


def test_records_of_one_resource_share_resource_and_scope() -> None:
    request = trace_request(full_span(), full_span(span_id=OTHER_SPAN))
    second_scope = trace_pb2.ScopeSpans(scope=scope("other"), spans=[full_span(span_id=PARENT)])
    request.resource_spans[0].scope_spans.append(second_scope)
    request.resource_spans.append(
        trace_pb2.ResourceSpans(
            resource=resource(**{"service.name": "cart"}),
            scope_spans=[trace_pb2.ScopeSpans(scope=scope(), spans=[full_span()])],
        )
    )
    a, b, c, d = spans_from_proto(request)
    assert a.resource is b.resource is c.resource
    assert a.scope is b.scope
    assert c.scope is not a.scope and c.scope.name == "other"
    assert d.resource is not a.resource and d.service_name == "cart"
    assert d.scope is not a.scope and d.scope == Scope("io.opentelemetry.http", "1.2.3", {}, 1, "")


def test_minimal_span_defaults() -> None:
    span_proto = trace_pb2.Span(trace_id=TRACE, span_id=SPAN, name="x")
    [span] = spans_from_proto(
        ExportTraceServiceRequest(
            resource_spans=[trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=[span_proto])])]
        )
    )
    assert span == Span(
        trace_id=TRACE.hex(), span_id=SPAN.hex(), name="x", start_time_unix_nano=0, end_time_unix_nano=0
    )
    assert span.parent_span_id == "" and span.resource == {} and span.scope == Scope()
    # No list of its own when there is nothing in it: 112 bytes a span.
    assert span.events is NO_ITEMS and span.links is NO_ITEMS


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        pytest.param({"trace_id": TRACE[:15]}, "trace_id is 15 bytes, expected 16", id="short-trace"),
        pytest.param({"trace_id": TRACE + b"\x00"}, "trace_id is 17 bytes, expected 16", id="long-trace"),
        pytest.param({"trace_id": b""}, "trace_id is missing", id="no-trace"),
        pytest.param({"trace_id": bytes(16)}, "trace_id is all zeros", id="zero-trace"),
        pytest.param({"span_id": SPAN[:4]}, "span_id is 4 bytes, expected 8", id="short-span"),
        pytest.param({"span_id": bytes(8)}, "span_id is all zeros", id="zero-span"),
        pytest.param({"span_id": b""}, "span_id is missing", id="no-span"),
        pytest.param({"parent_span_id": b"\x01" * 9}, "parent_span_id is 9 bytes, expected 8", id="parent"),
        pytest.param(
            {"links": [trace_pb2.Span.Link(trace_id=OTHER_TRACE, span_id=b"\x01")]},
            "links[0].span_id is 1 bytes, expected 8",
            id="link-span",
        ),
        pytest.param(
            {"links": [trace_pb2.Span.Link(span_id=OTHER_SPAN)]},
            "links[0].trace_id is missing",
            id="link-trace",
        ),
    ],
)
def test_span_with_invalid_ids_is_rejected_alone(changes: dict[str, Any], problem: str) -> None:
    good_before, good_after = full_span(name="before"), full_span(name="after", span_id=OTHER_SPAN)
    rejections = Rejections()
    spans = spans_from_proto(trace_request(good_before, full_span(**changes), good_after), rejections)
    assert [s.name for s in spans] == ["before", "after"]
    assert rejections.count == 1
    assert rejections.messages == [f"span #2 ('GET /cart'): {problem}"]
    assert rejections.summary("spans") == f"rejected 1 invalid spans: span #2 ('GET /cart'): {problem}"


def test_rejection_summary_keeps_the_first_five_reasons() -> None:
    rejections = Rejections()
    spans = spans_from_proto(
        trace_request(*(full_span(name=f"s{i}", span_id=b"") for i in range(8))), rejections
    )
    assert spans == []
    assert rejections.count == 8
    assert len(rejections.messages) == 5
    assert rejections.summary("spans").endswith("span #5 ('s4'): span_id is missing; and 3 more")
    assert Rejections().summary("spans") == ""


def test_parent_span_id_may_be_all_zero_and_is_kept() -> None:
    [span] = spans_from_proto(trace_request(full_span(parent_span_id=bytes(8))))
    assert span.parent_span_id == "0" * 16


# --- AnyValue --------------------------------------------------------------------------------


def test_any_value_kinds() -> None:
    assert any_value(AnyValue()) is None
    assert any_value(AnyValue(string_value="")) == ""
    assert any_value(AnyValue(int_value=0)) == 0 and type(any_value(AnyValue(int_value=0))) is int
    assert any_value(AnyValue(bool_value=False)) is False
    assert (
        any_value(AnyValue(double_value=0.0)) == 0.0 and type(any_value(AnyValue(double_value=0.0))) is float
    )
    assert any_value(AnyValue(bytes_value=b"")) == b""
    assert any_value(AnyValue(array_value=ArrayValue())) == []
    assert any_value(AnyValue(kvlist_value=KeyValueList())) == {}
    # A profiles-dictionary reference means nothing outside profiles: treated as absent.
    assert any_value(AnyValue(string_value_strindex=3)) is None


def test_attributes_tell_empty_and_zero_values_apart() -> None:
    """Strings are read first; every value that reads as "" there takes the oneof's word."""
    pairs = [
        KeyValue(key=key, value=value)
        for key, value in {
            "text": AnyValue(string_value="x"),
            "empty text": AnyValue(string_value=""),
            "zero": AnyValue(int_value=0),
            "false": AnyValue(bool_value=False),
            "zero float": AnyValue(double_value=0.0),
            "no bytes": AnyValue(bytes_value=b""),
            "unset": AnyValue(),
            "strindex": AnyValue(string_value_strindex=0),
        }.items()
    ]
    got = attributes(pairs)
    assert got == {
        "text": "x",
        "empty text": "",
        "zero": 0,
        "false": False,
        "zero float": 0.0,
        "no bytes": b"",
        "unset": None,
        "strindex": None,
    }
    assert [type(got[k]) for k in ("empty text", "zero", "false", "zero float")] == [str, int, bool, float]


def _values(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaf,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
        ),
        max_leaves=20,
    )


LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.binary(max_size=16)
)


def test_non_finite_doubles_become_strings() -> None:
    # JSON (the local store, burnline logs --json, Elasticsearch) has no NaN or Infinity.
    for number, text in ((math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity")):
        assert any_value(AnyValue(double_value=number)) == text
    nested = AnyValue.FromString(av({"a": [math.nan, 1.5]}).SerializeToString())
    assert any_value(nested) == {"a": ["NaN", 1.5]}


@settings(max_examples=300, deadline=None)
@given(value=_values(LEAVES))
def test_any_value_decodes_what_was_encoded(value: Any) -> None:
    message = AnyValue.FromString(av(value).SerializeToString())
    decoded = any_value(message)
    assert decoded == value
    assert _types(decoded) == _types(value)


def _types(value: Any) -> Any:
    if isinstance(value, list):
        return [_types(v) for v in value]
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    return type(value)


def test_nan_and_infinity_become_strings() -> None:
    attrs = spans_from_proto(trace_request(full_span(attributes=kvs({"n": math.nan, "i": -math.inf}))))[0]
    assert attrs.attributes["n"] == "NaN" and attrs.attributes["i"] == "-Infinity"


# --- logs ------------------------------------------------------------------------------------


def log_request(*records: logs_pb2.LogRecord) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=resource(**{"service.name": "checkout"}),
                scope_logs=[
                    logs_pb2.ScopeLogs(scope=scope("app.logger"), log_records=list(records), schema_url="s1")
                ],
                schema_url="r1",
            )
        ]
    )


def test_log_record_keeps_every_field() -> None:
    proto = logs_pb2.LogRecord(
        time_unix_nano=T0,
        observed_time_unix_nano=T0 + 5,
        severity_number=logs_pb2.SEVERITY_NUMBER_WARN2,
        severity_text="warning",
        body=av({"msg": "card declined", "codes": [51, 5]}),
        attributes=kvs(EVERY_TYPE),
        dropped_attributes_count=2,
        flags=1,
        trace_id=TRACE,
        span_id=SPAN,
        event_name="payment.declined",
    )
    [record] = logs_from_proto(log_request(proto))
    expected_scope = Scope("app.logger", "1.2.3", {}, 1, "s1")
    assert record == LogRecord(
        time_unix_nano=T0,
        body={"msg": "card declined", "codes": [51, 5]},
        severity_number=14,
        severity_text="warning",
        attributes=EVERY_TYPE,
        resource={"service.name": "checkout"},
        trace_id=TRACE.hex(),
        span_id=SPAN.hex(),
        observed_time_unix_nano=T0 + 5,
        scope_name="app.logger",
        scope=expected_scope,
        flags=1,
        dropped_attributes_count=2,
        event_name="payment.declined",
        resource_schema_url="r1",
        resource_dropped_attributes_count=2,
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param(AnyValue(), None, id="empty"),
        pytest.param(av("text"), "text", id="string"),
        pytest.param(av(b"\x01"), b"\x01", id="bytes"),
        pytest.param(av([1, "a"]), [1, "a"], id="array"),
    ],
)
def test_log_bodies(body: AnyValue | None, expected: Any) -> None:
    proto = logs_pb2.LogRecord(time_unix_nano=T0)
    if body is not None:
        proto.body.CopyFrom(body)
    [record] = logs_from_proto(log_request(proto))
    assert record.body == expected
    assert record.trace_id == "" and record.span_id == ""


def test_logs_share_resource_and_scope_and_reject_malformed_ids() -> None:
    rejections = Rejections()
    records = logs_from_proto(
        log_request(
            logs_pb2.LogRecord(time_unix_nano=1),
            logs_pb2.LogRecord(time_unix_nano=2, trace_id=TRACE[:8], event_name="bad"),
            logs_pb2.LogRecord(time_unix_nano=3, span_id=SPAN + SPAN),
            logs_pb2.LogRecord(time_unix_nano=4, trace_id=bytes(16), span_id=bytes(8)),
        ),
        rejections,
    )
    assert [r.time_unix_nano for r in records] == [1, 4]
    assert records[0].resource is records[1].resource
    assert records[0].scope is records[1].scope
    # All-zero ids are kept as sent: on logs they only say "no trace context".
    assert records[1].trace_id == "0" * 32
    assert rejections.count == 2
    assert rejections.messages == [
        "log record #2 ('bad'): trace_id is 8 bytes, expected 16",
        "log record #3: span_id is 16 bytes, expected 8",
    ]


# --- metrics ---------------------------------------------------------------------------------


def exemplar(value: float | int, **changes: Any) -> metrics_pb2.Exemplar:
    fields: dict[str, Any] = {
        "time_unix_nano": T0 + 7,
        "filtered_attributes": kvs({"user": "u1"}),
        "trace_id": TRACE,
        "span_id": SPAN,
    }
    fields["as_int" if isinstance(value, int) else "as_double"] = value
    fields.update(changes)
    return metrics_pb2.Exemplar(**fields)


def metric_request(*metrics: metrics_pb2.Metric) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=resource(**{"service.name": "checkout"}),
                scope_metrics=[
                    metrics_pb2.ScopeMetrics(scope=scope("meter"), metrics=list(metrics), schema_url="s")
                ],
                schema_url="r",
            )
        ]
    )


def test_gauge_and_sum_points() -> None:
    gauge = metrics_pb2.Metric(
        name="queue.depth",
        description="items waiting",
        unit="{item}",
        metadata=kvs({"origin": "prometheus"}),
        gauge=metrics_pb2.Gauge(
            data_points=[
                metrics_pb2.NumberDataPoint(
                    attributes=kvs({"queue": "a"}), time_unix_nano=T0, as_int=7, exemplars=[exemplar(7)]
                ),
                metrics_pb2.NumberDataPoint(
                    attributes=kvs({"queue": "b"}), time_unix_nano=T0, as_double=1.5, flags=1
                ),
                metrics_pb2.NumberDataPoint(time_unix_nano=T0),
            ]
        ),
    )
    total = metrics_pb2.Metric(
        name="http.requests",
        unit="1",
        sum=metrics_pb2.Sum(
            aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
            is_monotonic=True,
            data_points=[
                metrics_pb2.NumberDataPoint(start_time_unix_nano=T0 - 60, time_unix_nano=T0, as_int=42)
            ],
        ),
    )
    a, b, c, d = metrics_from_proto(metric_request(gauge, total))
    assert (a.name, a.kind, a.value, a.attributes, a.description, a.unit) == (
        "queue.depth",
        MetricKind.GAUGE,
        7,
        {"queue": "a"},
        "items waiting",
        "{item}",
    )
    assert type(a.value) is int and type(b.value) is float and c.value is None
    assert a.metadata == {"origin": "prometheus"} and a.metadata is b.metadata
    assert a.exemplars == [Exemplar(T0 + 7, 7, {"user": "u1"}, TRACE.hex(), SPAN.hex())]
    assert (b.flags, a.temporality, a.monotonic) == (1, Temporality.UNSPECIFIED, False)
    assert (d.kind, d.value, d.temporality, d.monotonic, d.start_time_unix_nano, d.time_unix_nano) == (
        MetricKind.SUM,
        42,
        Temporality.CUMULATIVE,
        True,
        T0 - 60,
        T0,
    )
    assert a.resource is d.resource and a.scope is d.scope
    assert a.scope == Scope("meter", "1.2.3", {}, 1, "s")
    assert (a.resource_schema_url, a.resource_dropped_attributes_count) == ("r", 2)


def test_histogram_points() -> None:
    histogram = metrics_pb2.Metric(
        name="http.server.duration",
        unit="ms",
        histogram=metrics_pb2.Histogram(
            aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_DELTA,
            data_points=[
                metrics_pb2.HistogramDataPoint(
                    time_unix_nano=T0,
                    start_time_unix_nano=T0 - 10,
                    count=6,
                    sum=123.5,
                    min=0.5,
                    max=99.0,
                    bucket_counts=[1, 2, 3],
                    explicit_bounds=[10.0, 100.0],
                    exemplars=[exemplar(12.5, span_id=b"")],
                    flags=1,
                ),
                metrics_pb2.HistogramDataPoint(time_unix_nano=T0, count=0),
            ],
        ),
    )
    full, bare = metrics_from_proto(metric_request(histogram))
    assert (full.kind, full.temporality, full.count, full.sum, full.min, full.max) == (
        MetricKind.HISTOGRAM,
        Temporality.DELTA,
        6,
        123.5,
        0.5,
        99.0,
    )
    assert (full.bucket_counts, full.explicit_bounds, full.flags) == ([1, 2, 3], [10.0, 100.0], 1)
    assert full.exemplars == [Exemplar(T0 + 7, 12.5, {"user": "u1"}, TRACE.hex(), "")]
    # Optional sum/min/max that were not sent stay None (not 0).
    assert (bare.sum, bare.min, bare.max, bare.bucket_counts) == (None, None, None, [])


def test_exponential_histogram_points() -> None:
    metric = metrics_pb2.Metric(
        name="latency",
        exponential_histogram=metrics_pb2.ExponentialHistogram(
            aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
            data_points=[
                metrics_pb2.ExponentialHistogramDataPoint(
                    time_unix_nano=T0,
                    count=10,
                    sum=55.0,
                    scale=3,
                    zero_count=1,
                    zero_threshold=1e-9,
                    positive=metrics_pb2.ExponentialHistogramDataPoint.Buckets(
                        offset=-2, bucket_counts=[1, 4, 2]
                    ),
                    negative=metrics_pb2.ExponentialHistogramDataPoint.Buckets(offset=5, bucket_counts=[2]),
                    min=-40.0,
                    max=20.0,
                )
            ],
        ),
    )
    [point] = metrics_from_proto(metric_request(metric))
    assert (point.kind, point.temporality, point.count, point.sum, point.min, point.max) == (
        MetricKind.EXPONENTIAL_HISTOGRAM,
        Temporality.CUMULATIVE,
        10,
        55.0,
        -40.0,
        20.0,
    )
    assert (point.scale, point.zero_count, point.zero_threshold) == (3, 1, 1e-9)
    assert (point.positive_offset, point.positive_bucket_counts) == (-2, [1, 4, 2])
    assert (point.negative_offset, point.negative_bucket_counts) == (5, [2])


def test_summary_points() -> None:
    metric = metrics_pb2.Metric(
        name="rpc.duration",
        summary=metrics_pb2.Summary(
            data_points=[
                metrics_pb2.SummaryDataPoint(
                    time_unix_nano=T0,
                    start_time_unix_nano=T0 - 1,
                    count=100,
                    sum=250.0,
                    quantile_values=[
                        metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=2.0),
                        metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=9.5),
                    ],
                    attributes=kvs({"method": "Get"}),
                    flags=1,
                )
            ]
        ),
    )
    [point] = metrics_from_proto(metric_request(metric))
    assert (point.kind, point.count, point.sum, point.quantiles) == (
        MetricKind.SUMMARY,
        100,
        250.0,
        [(0.5, 2.0), (0.99, 9.5)],
    )
    assert (point.attributes, point.flags, point.start_time_unix_nano) == ({"method": "Get"}, 1, T0 - 1)


def test_invalid_points_are_rejected_alone() -> None:
    histogram = metrics_pb2.Metric(
        name="h",
        histogram=metrics_pb2.Histogram(
            data_points=[
                metrics_pb2.HistogramDataPoint(bucket_counts=[1, 2], explicit_bounds=[1.0, 2.0]),
                metrics_pb2.HistogramDataPoint(bucket_counts=[1, 2, 3], explicit_bounds=[1.0, 2.0]),
            ]
        ),
    )
    gauge = metrics_pb2.Metric(
        name="g",
        gauge=metrics_pb2.Gauge(
            data_points=[
                metrics_pb2.NumberDataPoint(as_int=1, exemplars=[exemplar(1, trace_id=b"\x01" * 3)]),
                metrics_pb2.NumberDataPoint(as_int=2),
            ]
        ),
    )
    no_data = metrics_pb2.Metric(name="declared-only")
    rejections = Rejections()
    points = metrics_from_proto(metric_request(histogram, gauge, no_data), rejections)
    assert [(p.name, p.value, p.bucket_counts) for p in points] == [("h", None, [1, 2, 3]), ("g", 2, [])]
    assert rejections.count == 2
    assert rejections.messages == [
        "histogram 'h' data point #1: 2 bucket counts for 2 explicit bounds, expected 3",
        "gauge 'g' data point #1: exemplars[0].trace_id is 3 bytes, expected 16",
    ]


# --- protobuf and OTLP/JSON parsing ----------------------------------------------------------


def test_truncated_protobuf_is_an_invalid_request() -> None:
    body = trace_request(full_span()).SerializeToString()
    assert parse_proto_request(body, ExportTraceServiceRequest) == trace_request(full_span())
    with pytest.raises(InvalidRequest, match="invalid protobuf ExportTraceServiceRequest"):
        parse_proto_request(body[: len(body) // 2], ExportTraceServiceRequest)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# EVERY_TYPE's kvlist, {"nested": {"deeper": [1, {"k": "v"}]}, "empty": None}, in OTLP/JSON.
DEEPER_JSON = {
    "arrayValue": {
        "values": [
            {"intValue": "1"},
            {"kvlistValue": {"values": [{"key": "k", "value": {"stringValue": "v"}}]}},
        ]
    }
}
KVLIST_JSON = {
    "kvlistValue": {
        "values": [
            {
                "key": "nested",
                "value": {"kvlistValue": {"values": [{"key": "deeper", "value": DEEPER_JSON}]}},
            },
            {"key": "empty", "value": {}},
        ]
    }
}


# Written by hand after the OTLP/JSON rules (not by json_format): hex ids in either case, enums as
# integers, 64-bit integers as strings, bytes values in base64, unknown fields at several levels.
TRACE_JSON = {
    "resourceSpans": [
        {
            "resource": {
                "attributes": [
                    {"key": "service.name", "value": {"stringValue": "checkout"}},
                    {"key": "k8s.pod.name", "value": {"stringValue": "web-1"}},
                ],
                "droppedAttributesCount": 2,
                "entityRefs": [],
            },
            "scopeSpans": [
                {
                    "scope": {
                        "name": "io.opentelemetry.http",
                        "version": "1.2.3",
                        "attributes": [{"key": "scope.attr", "value": {"intValue": "1"}}],
                        "droppedAttributesCount": 1,
                    },
                    "spans": [
                        {
                            "traceId": "5B8EFFF798038103D269B633813FC60C",
                            "spanId": "eee19b7ec3c1b174",
                            "parentSpanId": "eee19b7ec3c1b173",
                            "traceState": "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
                            "flags": 769,
                            "name": "GET /cart",
                            "kind": 2,
                            "startTimeUnixNano": str(T0),
                            "endTimeUnixNano": str(T0 + 2_500_000),
                            "attributes": [
                                {"key": "str", "value": {"stringValue": "checkout"}},
                                {"key": "bool", "value": {"boolValue": True}},
                                {"key": "false", "value": {"boolValue": False}},
                                {"key": "int", "value": {"intValue": str(-(2**63))}},
                                {"key": "big", "value": {"intValue": str(2**63 - 1)}},
                                {"key": "double", "value": {"doubleValue": 0.25}},
                                {"key": "bytes", "value": {"bytesValue": b64(b"\x00\xffraw")}},
                                {
                                    "key": "array",
                                    "value": {
                                        "arrayValue": {
                                            "values": [
                                                {"stringValue": "a"},
                                                {"intValue": 1},
                                                {"doubleValue": 2.5},
                                                {"boolValue": False},
                                                {},
                                                {"arrayValue": {"values": [{"bytesValue": b64(b"x")}]}},
                                            ]
                                        }
                                    },
                                },
                                {"key": "kvlist", "value": KVLIST_JSON},
                                {"key": "empty", "value": {}},
                                {"key": "empty_array", "value": {"arrayValue": {}}},
                                {"key": "empty_kvlist", "value": {"kvlistValue": {}}},
                            ],
                            "droppedAttributesCount": 3,
                            "events": [
                                {
                                    "timeUnixNano": str(T0 + 1000),
                                    "name": "exception",
                                    "attributes": [
                                        {"key": "exception.type", "value": {"stringValue": "KeyError"}}
                                    ],
                                    "droppedAttributesCount": 4,
                                    "someFutureField": {"x": 1},
                                },
                                {"timeUnixNano": T0 + 2000, "name": "bare"},
                            ],
                            "droppedEventsCount": 5,
                            "links": [
                                {
                                    "traceId": "0af7651916cd43dd8448eb211c80319c",
                                    "spanId": "B7AD6B7169203331",
                                    "traceState": "k=v",
                                    "attributes": [{"key": "link.kind", "value": {"stringValue": "follows"}}],
                                    "droppedAttributesCount": 6,
                                    "flags": 257,
                                }
                            ],
                            "droppedLinksCount": 7,
                            "status": {"code": 2, "message": "boom"},
                        }
                    ],
                    "schemaUrl": "https://opentelemetry.io/schemas/1.21.0",
                }
            ],
            "schemaUrl": "https://opentelemetry.io/schemas/1.24.0",
            "unknownResourceLevelField": "ignored",
        }
    ],
    "unknownTopLevel": [1, 2, 3],
}


def test_json_request_decodes_to_its_protobuf_twin() -> None:
    proto = trace_request(full_span())
    from_json = parse_json_request(orjson.dumps(TRACE_JSON), ExportTraceServiceRequest)
    assert from_json == proto
    assert spans_from_proto(from_json) == spans_from_proto(proto)


def test_json_accepts_snake_case_enum_names_and_numbers_for_64_bit_integers() -> None:
    body = {
        "resource_spans": [
            {
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": TRACE.hex(),
                                "span_id": SPAN.hex(),
                                "parent_span_id": "",
                                "name": "x",
                                "kind": "SPAN_KIND_CLIENT",
                                "start_time_unix_nano": T0,
                                "endTimeUnixNano": T0 + 1,
                                "status": {"code": "STATUS_CODE_OK"},
                                "links": [{"trace_id": OTHER_TRACE.hex(), "span_id": OTHER_SPAN.hex()}],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    [span] = spans_from_proto(parse_json_request(orjson.dumps(body), ExportTraceServiceRequest))
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE.hex(), SPAN.hex(), "")
    assert (span.kind, span.status_code, span.start_time_unix_nano, span.end_time_unix_nano) == (
        SpanKind.CLIENT,
        StatusCode.OK,
        T0,
        T0 + 1,
    )
    assert span.links[0].trace_id == OTHER_TRACE.hex()


def test_json_logs_and_metrics_decode_to_their_protobuf_twins() -> None:
    logs_json = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
                "scopeLogs": [
                    {
                        "scope": {"name": "app.logger"},
                        "logRecords": [
                            {
                                "timeUnixNano": str(T0),
                                "observedTimeUnixNano": str(T0 + 5),
                                "severityNumber": 14,
                                "severityText": "warning",
                                "body": {"stringValue": "card declined"},
                                "traceId": TRACE.hex().upper(),
                                "spanId": SPAN.hex(),
                                "flags": 1,
                                "eventName": "payment.declined",
                            }
                        ],
                    }
                ],
            }
        ]
    }
    logs_proto = ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=Resource(attributes=kvs({"service.name": "checkout"})),
                scope_logs=[
                    logs_pb2.ScopeLogs(
                        scope=InstrumentationScope(name="app.logger"),
                        log_records=[
                            logs_pb2.LogRecord(
                                time_unix_nano=T0,
                                observed_time_unix_nano=T0 + 5,
                                severity_number=logs_pb2.SEVERITY_NUMBER_WARN2,
                                severity_text="warning",
                                body=av("card declined"),
                                trace_id=TRACE,
                                span_id=SPAN,
                                flags=1,
                                event_name="payment.declined",
                            )
                        ],
                    )
                ],
            )
        ]
    )
    from_json = parse_json_request(orjson.dumps(logs_json), ExportLogsServiceRequest)
    assert logs_from_proto(from_json) == logs_from_proto(logs_proto)

    metrics_json = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "http.server.duration",
                                "histogram": {
                                    "aggregationTemporality": 1,
                                    "dataPoints": [
                                        {
                                            "timeUnixNano": str(T0),
                                            "count": "6",
                                            "sum": 123.5,
                                            "bucketCounts": ["1", "2", 3],
                                            "explicitBounds": [10, 100.0],
                                            "exemplars": [
                                                {
                                                    "timeUnixNano": str(T0 + 7),
                                                    "asDouble": 12.5,
                                                    "traceId": TRACE.hex(),
                                                    "spanId": SPAN.hex(),
                                                }
                                            ],
                                        }
                                    ],
                                },
                            }
                        ]
                    }
                ]
            }
        ]
    }
    metrics_proto = ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                scope_metrics=[
                    metrics_pb2.ScopeMetrics(
                        metrics=[
                            metrics_pb2.Metric(
                                name="http.server.duration",
                                histogram=metrics_pb2.Histogram(
                                    aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_DELTA,
                                    data_points=[
                                        metrics_pb2.HistogramDataPoint(
                                            time_unix_nano=T0,
                                            count=6,
                                            sum=123.5,
                                            bucket_counts=[1, 2, 3],
                                            explicit_bounds=[10.0, 100.0],
                                            exemplars=[
                                                metrics_pb2.Exemplar(
                                                    time_unix_nano=T0 + 7,
                                                    as_double=12.5,
                                                    trace_id=TRACE,
                                                    span_id=SPAN,
                                                )
                                            ],
                                        )
                                    ],
                                ),
                            )
                        ]
                    )
                ]
            )
        ]
    )
    from_json_metrics = parse_json_request(orjson.dumps(metrics_json), ExportMetricsServiceRequest)
    assert from_json_metrics == metrics_proto
    assert metrics_from_proto(from_json_metrics) == metrics_from_proto(metrics_proto)


def _span_json(**span: Any) -> bytes:
    return orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"{", "invalid JSON", id="truncated"),
        pytest.param(b"", "invalid JSON", id="empty"),
        pytest.param(
            b"[]", "the body is a JSON list, expected an ExportTraceServiceRequest object", id="array"
        ),
        pytest.param(b'{"resourceSpans": 5}', "invalid OTLP/JSON ExportTraceServiceRequest", id="wrong-type"),
        pytest.param(
            _span_json(traceId="abc"), "resourceSpans[0].scopeSpans[0].spans[0].traceId", id="odd-hex"
        ),
        pytest.param(_span_json(spanId="zz" * 8), "'zzzzzzzzzzzzzzzz' is not a hex-encoded id", id="not-hex"),
        pytest.param(_span_json(spanId=12), "an id is a hex string, not a JSON int", id="number-id"),
        pytest.param(_span_json(kind="SPAN_KIND_BOGUS", name=7), "invalid OTLP/JSON", id="bad-scalar"),
        pytest.param(_span_json(startTimeUnixNano="soon"), "invalid OTLP/JSON", id="bad-int"),
    ],
)
def test_invalid_json_requests(body: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_json_request(body, ExportTraceServiceRequest)


def test_json_ids_of_the_wrong_length_are_rejected_per_span() -> None:
    body = orjson.dumps(
        {
            "resourceSpans": [
                {
                    "scopeSpans": [
                        {
                            "spans": [
                                {"traceId": TRACE.hex(), "spanId": SPAN.hex(), "name": "ok"},
                                {"traceId": TRACE.hex()[:30], "spanId": SPAN.hex(), "name": "short"},
                                {"traceId": TRACE.hex(), "name": "no span id"},
                            ]
                        }
                    ]
                }
            ]
        }
    )
    rejections = Rejections()
    spans = spans_from_proto(parse_json_request(body, ExportTraceServiceRequest), rejections)
    assert [s.name for s in spans] == ["ok"]
    assert rejections.messages == [
        "span #2 ('short'): trace_id is 15 bytes, expected 16",
        "span #3 ('no span id'): span_id is missing",
    ]


def test_json_attribute_named_like_an_id_is_left_alone() -> None:
    """Only id fields are hex: an attribute called traceId keeps its (base64) bytes value."""
    body = _span_json(
        traceId=TRACE.hex(),
        spanId=SPAN.hex(),
        attributes=[{"key": "traceId", "value": {"bytesValue": b64(b"\x01\x02")}}],
    )
    [span] = spans_from_proto(parse_json_request(body, ExportTraceServiceRequest))
    assert span.attributes == {"traceId": b"\x01\x02"}
