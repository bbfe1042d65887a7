"""Model -> OTLP encoding (exporters/otlp/encode.py): every field, every value type, grouping.

The decoders at the top turn OTLP messages back into model objects, independently of the receiver's
decoding, so that ``decode(parse(serialize(encode(x)))) == x`` checks every field at once; the
exporter tests use them too.
"""

from __future__ import annotations

import enum
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from collector.core.model import (
    Exemplar,
    LogRecord,
    MetricKind,
    MetricPoint,
    Scope,
    Span,
    SpanEvent,
    SpanKind,
    SpanLink,
    StatusCode,
    Temporality,
)
from exporters.otlp.encode import logs_to_proto, metrics_to_proto, spans_to_proto
from exporters.otlp.encode_values import EncodeError, put_value

T0 = 1_714_564_800_123_456_789
TRACE = "5b8efff798038103d269b633813fc60c"
TRACE2 = "0af7651916cd43dd8448eb211c80319c"
SPAN = "eee19b7ec3c1b174"
PARENT = "b7ad6b7169203331"
RESOURCE = {"service.name": "checkout", "k8s.pod.name": "checkout-1", "replicas": 3}
SCOPE = Scope(
    "io.opentelemetry.aiohttp", "0.45b0", {"lib.flag": True}, 1, "https://opentelemetry.io/schemas/1.21.0"
)
EVERY_TYPE: dict[str, Any] = {
    "str": "GET",
    "empty.str": "",
    "bool.true": True,
    "bool.false": False,
    "int": 200,
    "int.negative": -7,
    "int.max": 2**63 - 1,
    "float": 0.25,
    "bytes": b"\x00\xffraw",
    "list": ["a", 1, 2.5, False, None, [1, 2], {"k": "v"}],
    "empty.list": [],
    "dict": {"nested": {"deeper": [1, "x"]}, "n": 1, "none": None},
    "empty.dict": {},
    "none": None,
}


# ---------------------------------------------------------------------------------------------------
# Decoders: OTLP -> model, written from the proto definitions, for comparing with what was encoded


def value_of(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [value_of(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which)


def attributes_of(kvs: Any) -> dict[str, Any]:
    return {kv.key: value_of(kv.value) for kv in kvs}


def scope_of(scope: Any, schema_url: str) -> Scope:
    return Scope(
        scope.name, scope.version, attributes_of(scope.attributes), scope.dropped_attributes_count, schema_url
    )


def decode_spans(request: ExportTraceServiceRequest) -> list[Span]:
    out = []
    for rs in request.resource_spans:
        resource = attributes_of(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = scope_of(ss.scope, ss.schema_url)
            for s in ss.spans:
                out.append(
                    Span(
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        name=s.name,
                        start_time_unix_nano=s.start_time_unix_nano,
                        end_time_unix_nano=s.end_time_unix_nano,
                        parent_span_id=s.parent_span_id.hex(),
                        trace_state=s.trace_state,
                        flags=s.flags,
                        kind=s.kind,
                        attributes=attributes_of(s.attributes),
                        dropped_attributes_count=s.dropped_attributes_count,
                        events=[
                            SpanEvent(
                                e.time_unix_nano,
                                e.name,
                                attributes_of(e.attributes),
                                e.dropped_attributes_count,
                            )
                            for e in s.events
                        ],
                        dropped_events_count=s.dropped_events_count,
                        links=[
                            SpanLink(
                                lk.trace_id.hex(),
                                lk.span_id.hex(),
                                lk.trace_state,
                                attributes_of(lk.attributes),
                                lk.dropped_attributes_count,
                                lk.flags,
                            )
                            for lk in s.links
                        ],
                        dropped_links_count=s.dropped_links_count,
                        status_code=s.status.code,
                        status_message=s.status.message,
                        resource=resource,
                        resource_schema_url=rs.schema_url,
                        resource_dropped_attributes_count=rs.resource.dropped_attributes_count,
                        scope=scope,
                    )
                )
    return out


def decode_logs(request: ExportLogsServiceRequest) -> list[LogRecord]:
    out = []
    for rl in request.resource_logs:
        resource = attributes_of(rl.resource.attributes)
        for sl in rl.scope_logs:
            scope = scope_of(sl.scope, sl.schema_url)
            for r in sl.log_records:
                out.append(
                    LogRecord(
                        time_unix_nano=r.time_unix_nano,
                        body=value_of(r.body) if r.HasField("body") else None,
                        severity_number=r.severity_number,
                        severity_text=r.severity_text,
                        attributes=attributes_of(r.attributes),
                        resource=resource,
                        trace_id=r.trace_id.hex(),
                        span_id=r.span_id.hex(),
                        observed_time_unix_nano=r.observed_time_unix_nano,
                        scope_name=scope.name,
                        scope=scope,
                        flags=r.flags,
                        dropped_attributes_count=r.dropped_attributes_count,
                        event_name=r.event_name,
                        resource_schema_url=rl.schema_url,
                        resource_dropped_attributes_count=rl.resource.dropped_attributes_count,
                    )
                )
    return out


def _exemplars(exemplars: Any) -> list[Exemplar]:
    return [
        Exemplar(
            e.time_unix_nano,
            getattr(e, e.WhichOneof("value")),
            attributes_of(e.filtered_attributes),
            e.trace_id.hex(),
            e.span_id.hex(),
        )
        for e in exemplars
    ]


def decode_metrics(request: ExportMetricsServiceRequest) -> list[MetricPoint]:
    out = []
    for rm in request.resource_metrics:
        resource = attributes_of(rm.resource.attributes)
        for sm in rm.scope_metrics:
            scope = scope_of(sm.scope, sm.schema_url)
            for m in sm.metrics:
                kind = MetricKind(m.WhichOneof("data") or "")
                data = getattr(m, kind.value)
                for p in data.data_points:
                    point = MetricPoint(
                        name=m.name,
                        kind=kind,
                        time_unix_nano=p.time_unix_nano,
                        attributes=attributes_of(p.attributes),
                        start_time_unix_nano=p.start_time_unix_nano,
                        description=m.description,
                        unit=m.unit,
                        metadata=attributes_of(m.metadata),
                        flags=p.flags,
                        resource=resource,
                        resource_schema_url=rm.schema_url,
                        resource_dropped_attributes_count=rm.resource.dropped_attributes_count,
                        scope=scope,
                    )
                    if kind in (MetricKind.GAUGE, MetricKind.SUM):
                        which = p.WhichOneof("value")
                        point.value = getattr(p, which) if which else None
                        point.exemplars = _exemplars(p.exemplars)
                    if kind == MetricKind.SUM:
                        point.temporality = data.aggregation_temporality
                        point.monotonic = data.is_monotonic
                    if kind in (MetricKind.HISTOGRAM, MetricKind.EXPONENTIAL_HISTOGRAM):
                        point.temporality = data.aggregation_temporality
                        point.count = p.count
                        point.sum = p.sum if p.HasField("sum") else None
                        point.min = p.min if p.HasField("min") else None
                        point.max = p.max if p.HasField("max") else None
                        point.exemplars = _exemplars(p.exemplars)
                    if kind == MetricKind.HISTOGRAM:
                        point.bucket_counts = list(p.bucket_counts)
                        point.explicit_bounds = list(p.explicit_bounds)
                    if kind == MetricKind.EXPONENTIAL_HISTOGRAM:
                        point.scale = p.scale
                        point.zero_count = p.zero_count
                        point.zero_threshold = p.zero_threshold
                        point.positive_offset = p.positive.offset
                        point.positive_bucket_counts = list(p.positive.bucket_counts)
                        point.negative_offset = p.negative.offset
                        point.negative_bucket_counts = list(p.negative.bucket_counts)
                    if kind == MetricKind.SUMMARY:
                        point.count = p.count
                        point.sum = p.sum
                        point.quantiles = [(q.quantile, q.value) for q in p.quantile_values]
                    out.append(point)
    return out


def wire(request: Any) -> Any:
    """Through the wire and back: serialized, then parsed by opentelemetry-proto."""
    return type(request).FromString(request.SerializeToString())


# ---------------------------------------------------------------------------------------------------
# Model objects with every field set


def full_span(span_id: str = SPAN, resource: dict[str, Any] | None = None, scope: Scope = SCOPE) -> Span:
    return Span(
        trace_id=TRACE,
        span_id=span_id,
        name="POST /checkout",
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + 1_500_000,
        parent_span_id=PARENT,
        trace_state="rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        flags=0x301,
        kind=SpanKind.SERVER,
        attributes=dict(EVERY_TYPE),
        dropped_attributes_count=2,
        events=[
            SpanEvent(T0 + 10, "exception", {"exception.type": "ValueError", "exception.escaped": False}, 1),
            SpanEvent(T0 + 20, "retry"),
        ],
        dropped_events_count=3,
        links=[
            SpanLink(TRACE2, "00f067aa0ba902b7", "k=v", {"link.kind": "follows", "n": 2}, 4, 0x101),
            SpanLink(TRACE2, "53995c3f42cd8ad8"),
        ],
        dropped_links_count=5,
        status_code=StatusCode.ERROR,
        status_message="payment declined",
        resource=resource if resource is not None else RESOURCE,
        resource_schema_url="https://opentelemetry.io/schemas/1.24.0",
        resource_dropped_attributes_count=6,
        scope=scope,
    )


def full_log(**changes: Any) -> LogRecord:
    record = LogRecord(
        time_unix_nano=T0,
        body={"msg": "card declined", "codes": [51, 5], "raw": b"\x01"},
        severity_number=17,
        severity_text="ERROR",
        attributes=dict(EVERY_TYPE),
        resource=RESOURCE,
        trace_id=TRACE,
        span_id=SPAN,
        observed_time_unix_nano=T0 + 5,
        scope_name=SCOPE.name,
        scope=SCOPE,
        flags=1,
        dropped_attributes_count=7,
        event_name="payment.declined",
        resource_schema_url="https://opentelemetry.io/schemas/1.24.0",
        resource_dropped_attributes_count=8,
    )
    for key, value in changes.items():
        setattr(record, key, value)
    return record


def every_metric_kind() -> list[MetricPoint]:
    common: dict[str, Any] = {
        "resource": RESOURCE,
        "scope": SCOPE,
        "resource_schema_url": "https://opentelemetry.io/schemas/1.24.0",
        "resource_dropped_attributes_count": 1,
    }
    exemplar = Exemplar(T0 - 5, 0.75, {"user": "u1"}, TRACE, SPAN)
    return [
        MetricPoint(
            "queue.depth",
            MetricKind.GAUGE,
            T0,
            {"queue": "a"},
            value=12,
            unit="{item}",
            description="Items waiting",
            metadata={"prometheus.type": "gauge"},
            exemplars=[Exemplar(T0 - 1, 3, {}, "", "")],
            **common,
        ),
        MetricPoint("cpu.ratio", MetricKind.GAUGE, T0, {"cpu": 0}, value=0.5, flags=1, **common),
        MetricPoint(
            "http.requests",
            MetricKind.SUM,
            T0,
            {"code": 200},
            start_time_unix_nano=T0 - 60_000_000_000,
            value=1024,
            temporality=Temporality.CUMULATIVE,
            monotonic=True,
            unit="{request}",
            **common,
        ),
        MetricPoint(
            "balance.delta",
            MetricKind.SUM,
            T0,
            value=-3.5,
            temporality=Temporality.DELTA,
            monotonic=False,
            exemplars=[exemplar],
            **common,
        ),
        MetricPoint(
            "http.duration",
            MetricKind.HISTOGRAM,
            T0,
            {"route": "/"},
            start_time_unix_nano=T0 - 1,
            temporality=Temporality.CUMULATIVE,
            count=10,
            sum=3.25,
            min=0.01,
            max=1.5,
            bucket_counts=[1, 4, 5],
            explicit_bounds=[0.1, 0.5],
            exemplars=[exemplar],
            unit="s",
            **common,
        ),
        MetricPoint(
            "http.duration.nosum",
            MetricKind.HISTOGRAM,
            T0,
            temporality=Temporality.DELTA,
            count=0,
            bucket_counts=[0],
            **common,
        ),
        MetricPoint(
            "rpc.latency",
            MetricKind.EXPONENTIAL_HISTOGRAM,
            T0,
            temporality=Temporality.DELTA,
            count=9,
            sum=12.0,
            min=0.5,
            max=4.0,
            scale=3,
            zero_count=1,
            zero_threshold=1e-9,
            positive_offset=-2,
            positive_bucket_counts=[1, 2, 3],
            negative_offset=1,
            negative_bucket_counts=[2],
            exemplars=[exemplar],
            **common,
        ),
        MetricPoint(
            "gc.pause",
            MetricKind.SUMMARY,
            T0,
            {"gen": "young"},
            start_time_unix_nano=T0 - 10,
            count=4,
            sum=0.2,
            quantiles=[(0.5, 0.04), (0.99, 0.09)],
            **common,
        ),
    ]


# ---------------------------------------------------------------------------------------------------
# Values


@pytest.mark.parametrize(
    ("value", "which", "expected"),
    [
        ("text", "string_value", "text"),
        ("", "string_value", ""),
        (True, "bool_value", True),
        (False, "bool_value", False),
        (0, "int_value", 0),
        (-(2**63), "int_value", -(2**63)),
        (2**63 - 1, "int_value", 2**63 - 1),
        (1.5, "double_value", 1.5),
        (float("inf"), "double_value", float("inf")),
        (b"\x00\x01", "bytes_value", b"\x00\x01"),
        (bytearray(b"ab"), "bytes_value", b"ab"),
        (memoryview(b"cd"), "bytes_value", b"cd"),
    ],
)
def test_scalar_values_keep_their_type(value: Any, which: str, expected: Any) -> None:
    target = AnyValue()
    put_value(target, value)
    assert target.WhichOneof("value") == which
    assert getattr(target, which) == expected


def test_bool_is_not_taken_for_an_int() -> None:
    for value in (True, False):
        target = AnyValue()
        put_value(target, value)
        assert target.WhichOneof("value") == "bool_value"


def test_none_is_an_empty_value_that_is_present() -> None:
    request = spans_to_proto([Span(TRACE, SPAN, "n", 1, 2, attributes={"k": None})])
    [kv] = request.resource_spans[0].scope_spans[0].spans[0].attributes
    assert kv.HasField("value") and kv.value.WhichOneof("value") is None


def test_containers_nest() -> None:
    target = AnyValue()
    put_value(target, {"a": [1, {"b": (True, None)}], "c": {}, "d": [], "e": {1}})
    assert value_of(target) == {"a": [1, {"b": [True, None]}], "c": {}, "d": [], "e": [1]}
    assert target.kvlist_value.values[1].value.WhichOneof("value") == "kvlist_value"
    assert target.kvlist_value.values[2].value.WhichOneof("value") == "array_value"


class Color(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


@pytest.mark.parametrize(
    ("value", "which", "expected"),
    [
        (2**64, "string_value", str(2**64)),  # beyond int64: kept as text rather than failing
        (-(2**63) - 1, "string_value", str(-(2**63) - 1)),
        (Color.RED, "string_value", "red"),
        (Level.HIGH, "int_value", 3),
        ("bad \udcff byte", "string_value", "bad \ufffd byte"),  # an undecodable byte (surrogateescape)
        ("x\ud800", "string_value", "x\ufffd\ufffd\ufffd"),  # any other lone surrogate
        (object, "string_value", str(object)),
    ],
)
def test_values_otlp_has_no_type_for_never_fail(value: Any, which: str, expected: Any) -> None:
    target = AnyValue()
    put_value(target, value)
    assert target.WhichOneof("value") == which
    assert getattr(target, which) == expected


def test_odd_attribute_keys_become_text() -> None:
    request = spans_to_proto([Span(TRACE, SPAN, "n", 1, 2, attributes={5: "five", "k\udcff": 1})])  # type: ignore[dict-item]
    keys = [kv.key for kv in request.resource_spans[0].scope_spans[0].spans[0].attributes]
    assert keys == ["5", "k\ufffd"]


# ---------------------------------------------------------------------------------------------------
# Spans


def test_every_span_field_is_mapped() -> None:
    span = full_span()
    request = spans_to_proto([span])
    [rs] = request.resource_spans
    assert rs.schema_url == "https://opentelemetry.io/schemas/1.24.0"
    assert rs.resource.dropped_attributes_count == 6
    assert attributes_of(rs.resource.attributes) == RESOURCE
    [ss] = rs.scope_spans
    assert (ss.scope.name, ss.scope.version, ss.scope.dropped_attributes_count) == (
        "io.opentelemetry.aiohttp",
        "0.45b0",
        1,
    )
    assert attributes_of(ss.scope.attributes) == {"lib.flag": True}
    assert ss.schema_url == "https://opentelemetry.io/schemas/1.21.0"
    [pb] = ss.spans
    assert pb.trace_id == bytes.fromhex(TRACE) and len(pb.trace_id) == 16
    assert pb.span_id == bytes.fromhex(SPAN) and len(pb.span_id) == 8
    assert pb.parent_span_id == bytes.fromhex(PARENT)
    assert pb.trace_state == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    assert pb.flags == 0x301
    assert pb.name == "POST /checkout"
    assert pb.kind == 2  # SPAN_KIND_SERVER
    assert (pb.start_time_unix_nano, pb.end_time_unix_nano) == (T0, T0 + 1_500_000)
    assert attributes_of(pb.attributes) == EVERY_TYPE
    assert pb.dropped_attributes_count == 2
    assert [(e.time_unix_nano, e.name, e.dropped_attributes_count) for e in pb.events] == [
        (T0 + 10, "exception", 1),
        (T0 + 20, "retry", 0),
    ]
    assert attributes_of(pb.events[0].attributes) == {
        "exception.type": "ValueError",
        "exception.escaped": False,
    }
    assert pb.dropped_events_count == 3
    link = pb.links[0]
    assert (link.trace_id, link.span_id) == (bytes.fromhex(TRACE2), bytes.fromhex("00f067aa0ba902b7"))
    assert (link.trace_state, link.dropped_attributes_count, link.flags) == ("k=v", 4, 0x101)
    assert attributes_of(link.attributes) == {"link.kind": "follows", "n": 2}
    assert pb.dropped_links_count == 5
    assert (pb.status.code, pb.status.message) == (2, "payment declined")  # STATUS_CODE_ERROR


def test_spans_round_trip_through_the_wire() -> None:
    other_scope = Scope("manual")
    spans = [
        full_span(),
        full_span("1111111111111111", resource={"service.name": "cart"}),
        full_span("2222222222222222", scope=other_scope),
        Span(TRACE2, "3333333333333333", "minimal", 5, 6),
    ]
    # Grouped by resource, then scope: the span of the second scope moves up beside the first.
    assert decode_spans(wire(spans_to_proto(spans))) == [spans[0], spans[2], spans[1], spans[3]]


def test_empty_span_fields_stay_empty() -> None:
    request = spans_to_proto([Span(TRACE, SPAN, "", 0, 0)])
    [rs] = request.resource_spans
    assert rs.HasField("resource") and not rs.resource.attributes
    assert rs.scope_spans[0].HasField("scope")
    pb = rs.scope_spans[0].spans[0]
    assert pb.parent_span_id == b"" and pb.trace_state == "" and not pb.events and not pb.links
    # Status is always sent, as OpenTelemetry's SDKs and the Collector do; UNSET is its zero value.
    assert pb.HasField("status") and pb.status.code == 0 and pb.status.message == ""


def test_an_empty_batch_is_an_empty_request() -> None:
    assert spans_to_proto([]).SerializeToString() == b""
    assert logs_to_proto([]).SerializeToString() == b""
    assert metrics_to_proto([]).SerializeToString() == b""


def test_spans_group_by_resource_content_then_scope_in_first_seen_order() -> None:
    shop = {"service.name": "shop"}
    cart = {"service.name": "cart"}
    shop_again = dict(shop)  # equal content, another object (e.g. from another receiver)
    web, db = Scope("web"), Scope("db")
    spans = [
        Span(TRACE, "0000000000000001", "a", 1, 2, resource=shop, scope=web),
        Span(TRACE, "0000000000000002", "b", 1, 2, resource=cart, scope=web),
        Span(TRACE, "0000000000000003", "c", 1, 2, resource=shop, scope=db),
        Span(TRACE, "0000000000000004", "d", 1, 2, resource=shop_again, scope=web),
        Span(TRACE, "0000000000000005", "e", 1, 2, resource=shop, scope=Scope("web")),  # equal scope
        Span(TRACE, "0000000000000006", "f", 1, 2, resource=shop, resource_schema_url="https://s/1"),
        Span(TRACE, "0000000000000007", "g", 1, 2, resource=shop, resource_dropped_attributes_count=1),
    ]
    request = spans_to_proto(spans)
    layout = [
        (
            attributes_of(rs.resource.attributes)["service.name"],
            rs.schema_url,
            rs.resource.dropped_attributes_count,
            [(ss.scope.name, [s.name for s in ss.spans]) for ss in rs.scope_spans],
        )
        for rs in request.resource_spans
    ]
    assert layout == [
        ("shop", "", 0, [("web", ["a", "d", "e"]), ("db", ["c"])]),
        ("cart", "", 0, [("web", ["b"])]),
        ("shop", "https://s/1", 0, [("", ["f"])]),
        ("shop", "", 1, [("", ["g"])]),
    ]


def test_scope_schema_url_separates_scopes() -> None:
    a, b = Scope("lib", schema_url="https://s/1"), Scope("lib", schema_url="https://s/2")
    request = spans_to_proto(
        [
            Span(TRACE, "0000000000000001", "x", 1, 2, scope=a),
            Span(TRACE, "0000000000000002", "y", 1, 2, scope=b),
        ]
    )
    assert [ss.schema_url for ss in request.resource_spans[0].scope_spans] == ["https://s/1", "https://s/2"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"trace_id": ""}, "trace_id is empty"),
        ({"trace_id": "abc"}, "trace_id 'abc' is not 32 hex digits"),
        ({"trace_id": "z" * 32}, "is not hex"),
        ({"span_id": "0" * 15}, "span_id '000000000000000' is not 16 hex digits"),
        ({"parent_span_id": "xyz"}, "span_id 'xyz' is not 16 hex digits"),
        ({"links": [SpanLink("00", SPAN)]}, "trace_id '00' is not 32 hex digits"),
        ({"start_time_unix_nano": -1}, "ValueError"),
        ({"end_time_unix_nano": 2**64}, "ValueError"),
        ({"name": 5}, "TypeError"),
        ({"flags": 2**32}, "ValueError"),
    ],
)
def test_a_span_that_cannot_be_encoded_is_set_aside(change: dict[str, Any], reason: str) -> None:
    good1 = Span(TRACE, "0000000000000001", "good1", 1, 2, resource={"service.name": "a"})
    bad = Span(TRACE, SPAN, "bad", 1, 2, resource={"service.name": "only-the-bad-one"}, scope=Scope("bad"))
    for key, value in change.items():
        setattr(bad, key, value)
    good2 = Span(TRACE, "0000000000000002", "good2", 1, 2, resource={"service.name": "a"})
    rejected: list[tuple[Any, str]] = []
    request = spans_to_proto([good1, bad, good2], rejected)
    [(item, why)] = rejected
    assert item is bad and reason in why
    # Nothing of the bad span is left, not even an empty group for its resource or scope.
    assert [s.name for s in decode_spans(request)] == ["good1", "good2"]
    assert len(request.resource_spans) == 1 and len(request.resource_spans[0].scope_spans) == 1
    with pytest.raises(EncodeError, match="cannot encode Span"):
        spans_to_proto([good1, bad])


def test_many_spans_share_one_converted_resource() -> None:
    resource = {"service.name": "bulk", "k8s.pod.name": "p"}
    spans = [
        Span(TRACE, f"{i + 1:016x}", f"op{i}", i, i + 1, resource=resource, scope=SCOPE) for i in range(2000)
    ]
    request = spans_to_proto(spans)
    assert len(request.resource_spans) == 1
    assert len(request.resource_spans[0].scope_spans[0].spans) == 2000
    assert [s.span_id for s in decode_spans(request)] == [s.span_id for s in spans]


# ---------------------------------------------------------------------------------------------------
# Logs


def test_every_log_field_is_mapped() -> None:
    request = logs_to_proto([full_log()])
    [rl] = request.resource_logs
    assert (rl.schema_url, rl.resource.dropped_attributes_count) == (
        "https://opentelemetry.io/schemas/1.24.0",
        8,
    )
    [sl] = rl.scope_logs
    assert (sl.scope.name, sl.scope.version, sl.schema_url) == (
        "io.opentelemetry.aiohttp",
        "0.45b0",
        "https://opentelemetry.io/schemas/1.21.0",
    )
    [pb] = sl.log_records
    assert (pb.time_unix_nano, pb.observed_time_unix_nano) == (T0, T0 + 5)
    assert (pb.severity_number, pb.severity_text) == (17, "ERROR")
    assert value_of(pb.body) == {"msg": "card declined", "codes": [51, 5], "raw": b"\x01"}
    assert attributes_of(pb.attributes) == EVERY_TYPE
    assert (pb.dropped_attributes_count, pb.flags, pb.event_name) == (7, 1, "payment.declined")
    assert (pb.trace_id, pb.span_id) == (bytes.fromhex(TRACE), bytes.fromhex(SPAN))


def test_logs_round_trip_through_the_wire() -> None:
    records = [
        full_log(),
        full_log(body="plain text", trace_id="", span_id="", resource={"service.name": "other"}),
        full_log(body=None, attributes={}, scope=Scope("x", schema_url="https://s/x"), scope_name="x"),
    ]
    assert decode_logs(wire(logs_to_proto(records))) == [records[0], records[2], records[1]]


def test_log_without_scope_object_uses_its_scope_name() -> None:
    records = [
        LogRecord(T0, "a", scope_name="app.log"),
        LogRecord(T0, "b", scope_name="app.log"),
        LogRecord(T0, "c", scope_name="other"),
        LogRecord(T0, "d"),
    ]
    request = logs_to_proto(records)
    [rl] = request.resource_logs
    assert [(sl.scope.name, [r.body.string_value for r in sl.log_records]) for sl in rl.scope_logs] == [
        ("app.log", ["a", "b"]),
        ("other", ["c"]),
        ("", ["d"]),
    ]


def test_log_without_body_sends_none_and_empty_ids_are_left_out() -> None:
    request = logs_to_proto([LogRecord(T0)])
    pb = request.resource_logs[0].scope_logs[0].log_records[0]
    assert not pb.HasField("body")
    assert pb.trace_id == b"" and pb.span_id == b""


def test_a_log_with_a_bad_trace_id_is_set_aside() -> None:
    rejected: list[tuple[Any, str]] = []
    records = [LogRecord(T0, "ok"), LogRecord(T0, "bad", trace_id="not-hex"), LogRecord(T0, "ok2")]
    request = logs_to_proto(records, rejected)
    assert [r.body for r in decode_logs(request)] == ["ok", "ok2"]
    assert [(r.body, why) for r, why in rejected] == [("bad", "trace_id 'not-hex' is not 32 hex digits")]


# ---------------------------------------------------------------------------------------------------
# Metrics


def test_every_metric_kind_round_trips_through_the_wire() -> None:
    points = every_metric_kind()
    decoded = decode_metrics(wire(metrics_to_proto(points)))
    # The decoder gives every point its metric's metadata, which the model keeps on the first one.
    for point in decoded:
        if point.name == "queue.depth":
            assert point.metadata == {"prometheus.type": "gauge"}
            point.metadata = {}
    for point in points:
        point.metadata = {}
    assert decoded == points


def test_metric_fields_by_kind() -> None:
    request = metrics_to_proto(every_metric_kind())
    [rm] = request.resource_metrics
    [sm] = rm.scope_metrics
    by_name = {m.name: m for m in sm.metrics}
    gauge = by_name["queue.depth"]
    assert (gauge.unit, gauge.description) == ("{item}", "Items waiting")
    assert attributes_of(gauge.metadata) == {"prometheus.type": "gauge"}
    assert gauge.gauge.data_points[0].WhichOneof("value") == "as_int"
    assert by_name["cpu.ratio"].gauge.data_points[0].WhichOneof("value") == "as_double"
    total = by_name["http.requests"].sum
    assert (total.aggregation_temporality, total.is_monotonic) == (2, True)
    assert total.data_points[0].start_time_unix_nano == T0 - 60_000_000_000
    delta = by_name["balance.delta"].sum
    assert (delta.aggregation_temporality, delta.is_monotonic) == (1, False)
    exemplar = delta.data_points[0].exemplars[0]
    assert (exemplar.trace_id, exemplar.span_id) == (bytes.fromhex(TRACE), bytes.fromhex(SPAN))
    assert exemplar.as_double == 0.75 and attributes_of(exemplar.filtered_attributes) == {"user": "u1"}
    hist = by_name["http.duration"].histogram
    point = hist.data_points[0]
    assert (hist.aggregation_temporality, point.count, point.sum, point.min, point.max) == (
        2,
        10,
        3.25,
        0.01,
        1.5,
    )
    assert (list(point.bucket_counts), list(point.explicit_bounds)) == ([1, 4, 5], [0.1, 0.5])
    bare = by_name["http.duration.nosum"].histogram.data_points[0]
    assert not bare.HasField("sum") and not bare.HasField("min") and not bare.HasField("max")
    exp = by_name["rpc.latency"].exponential_histogram.data_points[0]
    assert (exp.scale, exp.zero_count, exp.zero_threshold) == (3, 1, 1e-9)
    assert (exp.positive.offset, list(exp.positive.bucket_counts)) == (-2, [1, 2, 3])
    assert (exp.negative.offset, list(exp.negative.bucket_counts)) == (1, [2])
    summary = by_name["gc.pause"].summary.data_points[0]
    assert (summary.count, summary.sum) == (4, 0.2)
    assert [(q.quantile, q.value) for q in summary.quantile_values] == [(0.5, 0.04), (0.99, 0.09)]


def test_points_of_one_series_group_become_one_metric() -> None:
    res = {"service.name": "api"}
    points = [
        MetricPoint(
            "requests",
            MetricKind.SUM,
            T0,
            {"code": 200},
            value=5,
            temporality=2,
            monotonic=True,
            resource=res,
        ),
        MetricPoint("latency", MetricKind.GAUGE, T0, value=0.1, resource=res),
        MetricPoint(
            "requests",
            MetricKind.SUM,
            T0,
            {"code": 500},
            value=1,
            temporality=2,
            monotonic=True,
            resource=res,
        ),
        # Same name, but another unit / temporality / monotonicity / kind: another metric each.
        MetricPoint(
            "requests", MetricKind.SUM, T0, value=2, temporality=2, monotonic=True, unit="1", resource=res
        ),
        MetricPoint("requests", MetricKind.SUM, T0, value=3, temporality=1, monotonic=True, resource=res),
        MetricPoint("requests", MetricKind.SUM, T0, value=4, temporality=2, monotonic=False, resource=res),
        MetricPoint("requests", MetricKind.GAUGE, T0, value=6, resource=res),
        # Another resource: its own ResourceMetrics.
        MetricPoint(
            "requests", MetricKind.SUM, T0, value=7, temporality=2, monotonic=True, resource={"x": 1}
        ),
        MetricPoint(
            "requests",
            MetricKind.SUM,
            T0,
            {"code": 404},
            value=8,
            temporality=2,
            monotonic=True,
            resource=res,
        ),
    ]
    request = metrics_to_proto(points)
    layout = [
        [
            (
                m.name,
                m.WhichOneof("data"),
                [
                    getattr(p, p.WhichOneof("value") or "")
                    for p in getattr(m, m.WhichOneof("data") or "").data_points
                ],
            )
            for m in rm.scope_metrics[0].metrics
        ]
        for rm in request.resource_metrics
    ]
    assert layout == [
        [
            ("requests", "sum", [5, 1, 8]),
            ("latency", "gauge", [0.1]),
            ("requests", "sum", [2]),
            ("requests", "sum", [3]),
            ("requests", "sum", [4]),
            ("requests", "gauge", [6]),
        ],
        [("requests", "sum", [7])],
    ]


def test_a_gauge_without_a_value_has_no_value() -> None:
    request = metrics_to_proto([MetricPoint("stale", MetricKind.GAUGE, T0, flags=1)])
    point = request.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
    assert point.WhichOneof("value") is None and point.flags == 1


def test_a_point_that_cannot_be_encoded_is_set_aside_without_leaving_an_empty_metric() -> None:
    rejected: list[tuple[Any, str]] = []
    points = [
        MetricPoint("ok", MetricKind.GAUGE, T0, value=1),
        MetricPoint("bad", MetricKind.GAUGE, -1, value=1),
        MetricPoint("ok", MetricKind.GAUGE, -2, value=2),
        MetricPoint("bad.exemplar", MetricKind.SUM, T0, value=1, exemplars=[Exemplar(T0, 1, trace_id="zz")]),
        MetricPoint("ok", MetricKind.GAUGE, T0 + 1, value=3),
    ]
    request = metrics_to_proto(points, rejected)
    assert [(p.name, p.value) for p in decode_metrics(request)] == [("ok", 1), ("ok", 3)]
    assert [m.name for m in request.resource_metrics[0].scope_metrics[0].metrics] == ["ok"]
    assert [p.name for p, _ in rejected] == ["bad", "ok", "bad.exemplar"]


def test_an_unknown_metric_kind_is_set_aside() -> None:
    rejected: list[tuple[Any, str]] = []
    point = MetricPoint("odd", "histogram2", T0)  # type: ignore[arg-type]
    metrics_to_proto([point], rejected)
    assert rejected == [(point, "unknown metric kind 'histogram2'")]


# ---------------------------------------------------------------------------------------------------
# The same bytes as OpenTelemetry's own encoder


def test_spans_encode_as_the_opentelemetry_sdk_encodes_them() -> None:
    from opentelemetry import trace as trace_api
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "sdk", "replicas": 2}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("burnline.test", "1.0", schema_url="https://opentelemetry.io/schemas/1.21.0")
    with tracer.start_as_current_span("parent", kind=trace_api.SpanKind.SERVER) as parent:
        parent.set_attribute("http.status_code", 503)
        parent.set_attribute("ratio", 0.5)
        parent.set_attribute("tags", ["a", "b"])
        parent.set_attribute("ok", False)
        parent.add_event("retry", {"attempt": 2})
        with tracer.start_as_current_span(
            "child", links=[trace_api.Link(parent.get_span_context(), {"l": 1})]
        ):
            pass
        parent.set_status(trace_api.Status(trace_api.StatusCode.ERROR, "backend down"))
    provider.shutdown()
    sdk_spans = memory.get_finished_spans()
    expected = encode_spans(sdk_spans)

    # The SDK's encoder sets flags from trace flags and the remote-parent bits: take them from it.
    sdk_flags = [s.flags for rs in expected.resource_spans for ss in rs.scope_spans for s in ss.spans]
    sdk_link_flags = [
        [lk.flags for lk in s.links]
        for rs in expected.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]
    resource = dict(sdk_spans[0].resource.attributes)
    scope = Scope("burnline.test", "1.0", schema_url="https://opentelemetry.io/schemas/1.21.0")
    ours = []
    for s, flags, link_flags in zip(sdk_spans, sdk_flags, sdk_link_flags, strict=True):
        ctx = s.get_span_context()
        assert ctx is not None and s.start_time is not None and s.end_time is not None
        assert s.attributes is not None
        ours.append(
            Span(
                trace_id=f"{ctx.trace_id:032x}",
                span_id=f"{ctx.span_id:016x}",
                name=s.name,
                start_time_unix_nano=s.start_time,
                end_time_unix_nano=s.end_time,
                parent_span_id=f"{s.parent.span_id:016x}" if s.parent else "",
                flags=flags,
                kind=s.kind.value + 1,  # the SDK's enum starts at INTERNAL = 0
                attributes={k: list(v) if isinstance(v, tuple) else v for k, v in s.attributes.items()},
                events=[SpanEvent(e.timestamp, e.name, dict(e.attributes or {})) for e in s.events],
                links=[
                    SpanLink(
                        f"{lk.context.trace_id:032x}",
                        f"{lk.context.span_id:016x}",
                        attributes=dict(lk.attributes or {}),
                        flags=lf,
                    )
                    for lk, lf in zip(s.links, link_flags, strict=True)
                ],
                status_code=s.status.status_code.value,
                status_message=s.status.description or "",
                resource=resource,
                scope=scope,
            )
        )
    assert spans_to_proto(ours) == expected
