"""The durable queue's batch codec: every field of every model survives, shared objects stay shared."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.core.model import (
    Batch,
    Exemplar,
    LogRecord,
    MetricKind,
    MetricPoint,
    Scope,
    Signal,
    Span,
    SpanEvent,
    SpanLink,
    Temporality,
)
from collector.exporterhelper import batch_codec
from collector.exporterhelper.batch_codec import CodecError, _document, decode, encode
from collector.normalize.otlp import items_from_request
from collector.normalize.otlp_values import Rejections
from tests.e2e.test_otlp_fidelity import original_logs, original_metrics, original_traces

ANY_VALUES = {
    "s": "text",
    "b": True,
    "i": -(2**63),
    "f": 1.5,
    "bytes": b"\x00\xff",
    "list": [1, "two", 3.0, None],
    "map": {"nested": {"deep": [False]}},
    "empty": None,
}


def log_records() -> list[LogRecord]:
    pod = {"service.name": "checkout", "k8s.pod.name": "checkout-1"}
    scope = Scope("app", "1.0", {"a": 1}, 2, "https://opentelemetry.io/schemas/1.26.0")
    records = [
        LogRecord(
            time_unix_nano=i,
            body={"msg": i},
            severity_number=9,
            severity_text="INFO",
            attributes=ANY_VALUES,
            resource=pod,
            trace_id="ab" * 16,
            span_id="cd" * 8,
            observed_time_unix_nano=7,
            scope_name="app",
            scope=scope,
            flags=1,
            dropped_attributes_count=3,
            event_name="e",
            resource_schema_url="u",
            resource_dropped_attributes_count=4,
        )
        for i in range(3)
    ]
    return records


def test_logs_round_trip_and_resources_stay_shared() -> None:
    records = log_records()
    back = decode(encode(Batch(Signal.LOGS, records, 321)))
    assert back.size_bytes == 321 and back.signal is Signal.LOGS
    assert back.items == records
    assert back.items[0].resource is back.items[2].resource
    assert back.items[0].scope is back.items[1].scope


def test_each_shared_object_is_written_once_however_the_records_interleave() -> None:
    first, second = {"k8s.pod.name": "a"}, {"k8s.pod.name": "b"}
    scope = Scope("app")
    records = [
        LogRecord(time_unix_nano=i, body=str(i), resource=res, scope=sc)  # type: ignore[arg-type]
        for i, (res, sc) in enumerate([(first, scope), (second, scope), (first, None), (second, scope)])
    ]
    document = _document(Batch(Signal.LOGS, records, 4))
    assert document[4] == {"resource": [first, second], "scope": [scope]}
    back = decode(encode(Batch(Signal.LOGS, records, 4)))
    assert back.items == records
    assert back.items[0].resource is back.items[2].resource is not back.items[1].resource
    assert back.items[1].resource is back.items[3].resource
    assert back.items[2].scope is None and back.items[0].scope is back.items[3].scope


def a_span() -> Span:
    return Span(
        trace_id="0af7651916cd43dd8448eb211c80319c",
        span_id="b7ad6b7169203331",
        name="GET /cart",
        start_time_unix_nano=1,
        end_time_unix_nano=2,
        parent_span_id="00f067aa0ba902b7",
        trace_state="k=v",
        flags=257,
        kind=2,
        attributes=ANY_VALUES,
        dropped_attributes_count=1,
        events=[SpanEvent(5, "exception", {"exception.type": "E"}, 1)],
        dropped_events_count=2,
        links=[SpanLink("ab" * 16, "cd" * 8, "x=y", {"l": 1}, 1, 1)],
        dropped_links_count=3,
        status_code=2,
        status_message="boom",
        resource={"service.name": "cart"},
        resource_schema_url="s",
        resource_dropped_attributes_count=1,
        scope=Scope("tracer"),
    )


def test_spans_round_trip() -> None:
    span = a_span()
    assert decode(encode(Batch(Signal.TRACES, [span, span], 10))).items == [span, span]


def metric_points() -> list[MetricPoint]:
    return [
        MetricPoint(
            "http_requests",
            MetricKind.SUM,
            10,
            {"code": "200"},
            5,
            value=42,
            monotonic=True,
            temporality=Temporality.CUMULATIVE,
            exemplars=[Exemplar(9, 0.5, {"a": "b"}, "ab" * 16, "cd" * 8)],
        ),
        MetricPoint(
            "latency",
            MetricKind.HISTOGRAM,
            10,
            count=3,
            sum=1.5,
            min=0.1,
            max=1.0,
            bucket_counts=[1, 2, 0],
            explicit_bounds=[0.5, 1.0],
            temporality=Temporality.DELTA,
        ),
        MetricPoint("rpc", MetricKind.SUMMARY, 10, count=2, sum=3.0, quantiles=[(0.5, 1.0), (0.99, 2.0)]),
        MetricPoint(
            "exp",
            MetricKind.EXPONENTIAL_HISTOGRAM,
            10,
            count=4,
            scale=3,
            zero_count=1,
            positive_offset=-2,
            positive_bucket_counts=[1, 2],
            negative_bucket_counts=[1],
        ),
    ]


def test_metric_points_round_trip() -> None:
    points = metric_points()
    back = decode(encode(Batch(Signal.METRICS, points, 0))).items
    assert back == points
    assert back[0].kind is MetricKind.SUM
    assert back[2].quantiles == [(0.5, 1.0), (0.99, 2.0)]


def test_fields_added_later_get_defaults() -> None:
    """A batch queued by a version whose LogRecord had fewer fields still decodes."""
    old = msgpack.packb([1, "logs", 5, ["time_unix_nano", "body"], {"resource": [], "scope": []}, [[3, "x"]]])
    (record,) = decode(old).items
    assert record == LogRecord(time_unix_nano=3, body="x")


@pytest.mark.parametrize(
    ("signal", "build"),
    [(Signal.TRACES, original_traces), (Signal.LOGS, original_logs), (Signal.METRICS, original_metrics)],
    ids=["traces", "logs", "metrics"],
)
def test_a_batch_with_its_received_request_is_stored_as_the_request(signal: Signal, build: Any) -> None:
    request = build()
    wire = request.SerializeToString()
    items = items_from_request(signal, wire, Rejections())
    data = encode(Batch(signal, items, 1234, wire))
    assert msgpack.unpackb(data) == [batch_codec.WIRE_FORMAT, signal.value, 1234, wire]
    back = decode(data)
    assert (back.signal, back.size_bytes, back.wire) == (signal, 1234, wire)
    assert back.items == items and back.items


@pytest.mark.parametrize(
    "document",
    [
        [2, "traces", 10, b"\xff\xff"],  # not a protobuf request
        [2, "traces", 10, "text"],
        [2, "traces", "10", b""],
        [2, "nothing", 10, b""],
        [2, "traces", 10],
    ],
)
def test_a_stored_request_that_is_not_one_is_a_codec_error(document: list[Any]) -> None:
    with pytest.raises(CodecError):
        decode(msgpack.packb(document))


@pytest.mark.parametrize("data", [b"", b"\x93\x01\x02", msgpack.packb([99, "logs", 0, [], {}, []]), b"\xc1"])
def test_garbage_is_a_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode(data)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6), json_values, st.integers(0, 2**63))
def test_any_attributes_round_trip(attributes: dict[str, object], body: object, when: int) -> None:
    record = LogRecord(time_unix_nano=when, body=body, attributes=attributes)
    assert decode(encode(Batch(Signal.LOGS, [record], 1))).items == [record]


def test_ormsgpack_writes_the_bytes_msgpack_writes() -> None:
    """Queued batches are written by ormsgpack (faster) and were written by msgpack: the same bytes,
    so what either queued reads back the same, whichever wrote it."""
    batches = [
        Batch(Signal.LOGS, log_records(), 321),
        Batch(Signal.TRACES, [a_span(), a_span()], 10),
        Batch(Signal.METRICS, metric_points(), 0),
    ]
    for batch in batches:
        doc = batch_codec._document(batch)
        assert batch_codec._pack_by_ormsgpack(doc) == batch_codec._pack_by_msgpack(doc)
        assert encode(batch) == batch_codec._pack_by_msgpack(doc)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6), json_values, st.integers(0, 2**63))
def test_ormsgpack_writes_the_bytes_msgpack_writes_for_any_values(
    attributes: dict[str, object], body: object, when: int
) -> None:
    event = SpanEvent(when, "e", attributes)
    items = [
        LogRecord(time_unix_nano=when, body=body, attributes=attributes),
        Span("ab" * 16, "cd" * 8, "s", when, when, attributes=attributes, events=[event]),
    ]
    for signal, item in zip((Signal.LOGS, Signal.TRACES), items, strict=True):
        doc = batch_codec._document(Batch(signal, [item], 1))
        assert batch_codec._pack_by_ormsgpack(doc) == batch_codec._pack_by_msgpack(doc)


def nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({1: "an integer key", None: "a nil key"}, id="keys-that-are-no-strings"),
        pytest.param(nested(300), id="nested-300-deep"),
    ],
)
def test_what_ormsgpack_refuses_msgpack_writes(body: object) -> None:
    """The model may hold such values (a client's odd record kept whole); they are queued all the same."""
    record = LogRecord(time_unix_nano=1, body=body)
    doc = batch_codec._document(Batch(Signal.LOGS, [record], 1))
    with pytest.raises(TypeError):
        batch_codec._pack_by_ormsgpack(doc)
    data = encode(Batch(Signal.LOGS, [record], 1))
    assert data == batch_codec._pack_by_msgpack(doc)
    assert decode(data).items[0].time_unix_nano == 1


@pytest.mark.parametrize(
    "doc",
    [
        [1, "logs", 5, ["body"], {"resource": [], "scope": []}, [["x"]]],  # time_unix_nano missing
        [1, "logs", 5, ["time_unix_nano", "resource"], {"scope": []}, [[1, 0]]],  # no resource table
        [1, "logs", 5, ["time_unix_nano", "resource"], {"resource": [], "scope": []}, [[1, 3]]],  # bad index
        [
            1,
            "metrics",
            5,
            ["name", "kind", "time_unix_nano"],
            {"resource": [], "scope": []},
            [["m", "nope", 1]],
        ],
    ],
)
def test_well_formed_msgpack_of_the_wrong_shape_is_a_codec_error(doc: list[object]) -> None:
    """Found by bench/fuzz_decoders.py: such documents raised TypeError, KeyError, IndexError."""
    with pytest.raises(CodecError):
        decode(msgpack.packb(doc))
