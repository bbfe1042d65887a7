"""The durable queue's batch codec: every field of every model survives, shared objects stay shared."""

from __future__ import annotations

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
from collector.exporterhelper.batch_codec import CodecError, decode, encode

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


def test_logs_round_trip_and_resources_stay_shared() -> None:
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
    back = decode(encode(Batch(Signal.LOGS, records, 321)))
    assert back.size_bytes == 321 and back.signal is Signal.LOGS
    assert back.items == records
    assert back.items[0].resource is back.items[2].resource
    assert back.items[0].scope is back.items[1].scope


def test_spans_round_trip() -> None:
    span = Span(
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
    assert decode(encode(Batch(Signal.TRACES, [span, span], 10))).items == [span, span]


def test_metric_points_round_trip() -> None:
    points = [
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
    back = decode(encode(Batch(Signal.METRICS, points, 0))).items
    assert back == points
    assert back[0].kind is MetricKind.SUM
    assert back[2].quantiles == [(0.5, 1.0), (0.99, 2.0)]


def test_fields_added_later_get_defaults() -> None:
    """A batch queued by a version whose LogRecord had fewer fields still decodes."""
    old = msgpack.packb([1, "logs", 5, ["time_unix_nano", "body"], {"resource": [], "scope": []}, [[3, "x"]]])
    (record,) = decode(old).items
    assert record == LogRecord(time_unix_nano=3, body="x")


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
