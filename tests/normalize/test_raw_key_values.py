"""Spans and log records read through the twin requests that keep their attributes serialized
(collector/normalize/otlp_raw_attributes.py, raw_key_values.py) against the same bytes read through
opentelemetry-proto's own Export*ServiceRequest: the same records, attribute for attribute and in
the same order, or the same refusal."""

from __future__ import annotations

import math
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1 import logs_pb2

from collector.core.model import Signal, Span
from collector.normalize.otlp import (
    InvalidRequest,
    items_from_request,
    logs_from_proto,
    parse_proto_request,
    spans_from_proto,
)
from collector.normalize.otlp_raw_attributes import RawExportLogsServiceRequest, RawExportTraceServiceRequest
from collector.normalize.otlp_values import Rejections
from collector.normalize.raw_key_values import raw_attributes
from tests.normalize.test_normalize_otlp import (
    EVERY_TYPE,
    SPAN,
    T0,
    TRACE,
    full_span,
    kvs,
    log_request,
    trace_request,
)


def both_ways(body: bytes) -> tuple[list[Span], list[Span]]:
    """The spans of ``body`` read as the original request and as the twin."""
    original = spans_from_proto(ExportTraceServiceRequest.FromString(body))
    twin = spans_from_proto(RawExportTraceServiceRequest.FromString(body))
    return original, twin


def logs_both_ways(body: bytes) -> tuple[list[Any], list[Any]]:
    original = logs_from_proto(ExportLogsServiceRequest.FromString(body))
    twin = logs_from_proto(RawExportLogsServiceRequest.FromString(body))
    return original, twin


def log_body(attributes: list[KeyValue], **changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "time_unix_nano": T0,
        "severity_text": "ERROR",
        "body": AnyValue(string_value="card declined"),
        "attributes": attributes,
        "trace_id": TRACE,
        "span_id": SPAN,
        "event_name": "payment.declined",
    }
    fields.update(changes)
    return log_request(logs_pb2.LogRecord(**fields)).SerializeToString()


def assert_same(original: list[Any], twin: list[Any]) -> None:
    # NaN is not equal to itself; OTLP doubles arrive as "NaN" text, so == holds for the rest.
    assert twin == original
    assert [list(s.attributes) for s in twin] == [list(s.attributes) for s in original]


def test_the_twin_reads_and_writes_the_same_bytes() -> None:
    body = trace_request(full_span(), full_span(name="second")).SerializeToString()
    twin = RawExportTraceServiceRequest.FromString(body)
    assert twin.SerializeToString() == body
    attributes = twin.resource_spans[0].scope_spans[0].spans[0].attributes  # type: ignore[attr-defined]
    assert [KeyValue.FromString(raw).key for raw in attributes] == list(EVERY_TYPE)
    assert ExportTraceServiceRequest.FromString(twin.SerializeToString()) == trace_request(
        full_span(), full_span(name="second")
    )


def test_every_value_type_reads_the_same() -> None:
    assert_same(*both_ways(trace_request(full_span()).SerializeToString()))


ODD_VALUES: dict[str, Any] = {
    "": "an empty key",
    "empty string": "",
    "zero": 0,
    "minus one": -1,
    "int64 min": -(2**63),
    "int64 max": 2**63 - 1,
    "true": True,
    "nan": math.nan,
    "inf": -math.inf,
    "ключ": "значение ✓",
    "k" * 300: "a key longer than 127 bytes",
    "long": "v" * 70_000,  # a length of three varint bytes
    "dup": "first",
}


def test_odd_keys_and_values_read_the_same() -> None:
    span = full_span(attributes=[*kvs(ODD_VALUES), KeyValue(key="dup", value=AnyValue(string_value="last"))])
    original, twin = both_ways(trace_request(span).SerializeToString())
    assert_same(original, twin)
    assert twin[0].attributes["dup"] == "last"
    assert twin[0].attributes["zero"] == 0 and twin[0].attributes["empty string"] == ""
    log_attributes = [*kvs(ODD_VALUES), *kvs(EVERY_TYPE)]
    assert_same(*logs_both_ways(log_body(log_attributes)))


def _span_with_raw_attributes(*raws: bytes) -> bytes:
    """A request whose one span carries these exact KeyValue bytes (what no SDK writes, but a
    protobuf parser accepts)."""
    body = trace_request(full_span(attributes=[])).SerializeToString()
    twin = RawExportTraceServiceRequest.FromString(body)
    twin.resource_spans[0].scope_spans[0].spans[0].attributes.extend(raws)  # type: ignore[attr-defined]
    return twin.SerializeToString()


def _field(number: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(_field(2, _field(1, b"v")) + _field(1, b"k"), id="value-before-key"),
        pytest.param(_field(1, b"k") + _field(2, _field(1, b"v")) + _field(15, b"?"), id="unknown-field"),
        pytest.param(_field(1, b"k") + _field(2, _field(1, b"v") + _field(15, b"?")), id="unknown-in-value"),
        pytest.param(_field(1, b"x") + _field(1, b"k") + _field(2, _field(1, b"v")), id="key-twice"),
        pytest.param(_field(1, b"k") + _field(2, _field(1, b"a") + b"\x18\x05"), id="oneof-twice"),
        pytest.param(_field(1, b"k") + _field(2, b"\x18\x80\x01"), id="int-two-bytes"),
        pytest.param(_field(1, b"k") + _field(2, b"\x10\x01"), id="bool"),
        pytest.param(_field(1, b"k"), id="no-value"),
        pytest.param(_field(2, _field(1, b"v")), id="no-key"),
        pytest.param(b"", id="empty"),
    ],
)
def test_unusual_encodings_read_as_protobuf_reads_them(raw: bytes) -> None:
    assert_same(*both_ways(_span_with_raw_attributes(_field(1, b"a") + _field(2, _field(1, b"1")), raw)))


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(_field(1, b"k\xff") + _field(2, _field(1, b"v")), id="key"),
        pytest.param(_field(1, b"k") + _field(2, _field(1, b"v\xff")), id="string-value"),
        pytest.param(_field(1, b"k") + _field(2, b"\x18" + b"\xff" * 11), id="varint-too-long"),
        pytest.param(_field(1, b"k") + _field(2, b"\x0a\x05ab"), id="truncated"),
    ],
)
def test_a_malformed_attribute_rejects_its_span_alone(raw: bytes) -> None:
    body = _span_with_raw_attributes(raw)
    # The original request refuses the whole body (upb checks at parse time) ...
    with pytest.raises(InvalidRequest, match="invalid protobuf ExportTraceServiceRequest"):
        parse_proto_request(body, ExportTraceServiceRequest)
    # ... the twin parses it, and only the span with the malformed attribute is left out.
    twin = RawExportTraceServiceRequest.FromString(body)
    twin.resource_spans[0].scope_spans[0].spans.append(  # type: ignore[attr-defined]
        RawExportTraceServiceRequest.FromString(trace_request(full_span(name="fine")).SerializeToString())
        .resource_spans[0]
        .scope_spans[0]
        .spans[0]  # type: ignore[attr-defined]
    )
    rejections = Rejections()
    spans = items_from_request(Signal.TRACES, twin.SerializeToString(), rejections)
    assert [s.name for s in spans] == ["fine"]
    assert rejections.count == 1
    [message] = rejections.messages
    assert message.startswith("span #1 ('GET /cart'): an attribute is not a valid KeyValue (")
    assert "burnline.raw" not in message  # the client sent OTLP's messages, and is told so
    with pytest.raises(DecodeError):
        raw_attributes([raw])


def test_a_log_record_with_a_malformed_attribute_is_rejected_alone() -> None:
    twin = RawExportLogsServiceRequest.FromString(log_body([]))
    records = twin.resource_logs[0].scope_logs[0].log_records  # type: ignore[attr-defined]
    records.add().CopyFrom(records[0])
    records[1].event_name = "fine"
    records[0].attributes.append(_field(1, b"k") + _field(2, _field(1, b"v\xff")))
    rejections = Rejections()
    logs = items_from_request(Signal.LOGS, twin.SerializeToString(), rejections)
    assert [r.event_name for r in logs] == ["fine"]
    assert rejections.messages == [
        "log record #1 ('payment.declined'): an attribute is not a valid KeyValue (Error parsing message "
        "with type 'opentelemetry.proto.common.v1.KeyValue': String field had bad UTF-8)"
    ]


def test_errors_name_otlp_messages_not_the_twin() -> None:
    body = trace_request(full_span()).SerializeToString()
    with pytest.raises(InvalidRequest) as caught:
        items_from_request(Signal.TRACES, body[: len(body) // 2], Rejections())
    assert "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest" in str(caught.value)
    assert "burnline.raw" not in str(caught.value)


ATTRIBUTE_VALUES = st.one_of(
    st.text(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=False),
    st.binary(max_size=20),
    st.none(),
    st.lists(st.one_of(st.text(max_size=5), st.integers(-5, 5)), max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=200), ATTRIBUTE_VALUES), max_size=12))
def test_any_attributes_read_the_same(pairs: list[tuple[str, Any]]) -> None:
    attributes = [kv for key, value in pairs for kv in kvs({key: value})]
    assert_same(*both_ways(trace_request(full_span(attributes=attributes)).SerializeToString()))
    assert_same(*logs_both_ways(log_body(attributes)))
