"""OTLP -> the data model: Export*ServiceRequest messages into Spans, LogRecords and MetricPoints.

Every OTLP field is kept (see the model's docs), so that OTLP in -> OTLP out loses nothing. Records of
one ResourceSpans/ResourceLogs/ResourceMetrics share one resource dict; records of one scope container
share one :class:`Scope` (which carries that container's ``schema_url``). Ids become lower-case hex
(``""`` when empty). AnyValues become Python values: string -> str, bool -> bool, int -> int,
double -> float (NaN/±Inf -> "NaN"/"Infinity"/"-Infinity"), bytes -> bytes, array -> list,
kvlist -> dict, empty -> None.

Items are validated one by one, as OTLP's partial success allows: a span whose trace id is not 16
bytes or whose span id is not 8 bytes (or all zero: the trace API calls those invalid) is rejected and
counted in a :class:`Rejections`, and the rest of the request is kept. The OpenTelemetry Collector
refuses the whole request instead; one bad span from one buggy library should not cost its
neighbours.

Binary trace and logs requests are parsed as twins that keep each record's attributes serialized
(otlp_raw_attributes.py), read by raw_key_values.py. So a span or log record with an attribute
protobuf refuses (text that is not valid UTF-8) is also rejected alone, where parsing the request
as OTLP's own message would have refused all of it.

OTLP/JSON (:func:`parse_json_request`) is the protobuf JSON mapping with OTLP's deviations: trace and
span ids are hex, not base64; enums are integers (names are accepted too, as the protobuf mapping
allows); 64-bit integers are strings or numbers; unknown fields are ignored; keys are lowerCamelCase
(the original snake_case names are accepted, as the protobuf JSON parser does).
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar, cast

import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.core.model import NO_ITEMS, LogRecord, MetricPoint, Signal, Span, SpanEvent, SpanLink
from collector.core.trace_ids import SPAN_ID_BYTES, TRACE_ID_BYTES
from collector.normalize.otlp_metrics import METRIC_KINDS, MetricIdentity, add_points
from collector.normalize.otlp_raw_attributes import (
    RawExportLogsServiceRequest,
    RawExportTraceServiceRequest,
    original_names,
)
from collector.normalize.otlp_values import (
    Rejections,
    any_value,
    attributes,
    describe,
    id_problem,
    scope_groups,
)
from collector.normalize.raw_key_values import raw_attributes

M = TypeVar("M", bound=Message)

# The bytes fields OTLP/JSON writes as hex (in Span, Span.Link, LogRecord and Exemplar).
_HEX_ID_FIELDS = frozenset({"trace_id", "span_id", "parent_span_id"})
_HEX = re.compile(r"[0-9A-Fa-f]*")


class InvalidRequest(ValueError):
    """The request body cannot be decoded at all (answered 400 / INVALID_ARGUMENT)."""


# ---------------------------------------------------------------------------------------------
# Binary protobuf and OTLP/JSON request parsing.


def parse_proto_request(body: bytes, message_class: type[M]) -> M:
    """Parses a binary protobuf Export*ServiceRequest; InvalidRequest when it is not one."""
    try:
        return message_class.FromString(body)
    except DecodeError as exc:
        detail = original_names(str(exc))
        raise InvalidRequest(f"invalid protobuf {message_class.DESCRIPTOR.name}: {detail}") from None
    except RecursionError:
        raise InvalidRequest(f"invalid protobuf {message_class.DESCRIPTOR.name}: nested too deeply") from None


def parse_json_request(body: bytes, message_class: type[M]) -> M:
    """Parses an OTLP/JSON Export*ServiceRequest; InvalidRequest when it is not one."""
    name = message_class.DESCRIPTOR.name
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"invalid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidRequest(f"the body is a JSON {type(document).__name__}, expected an {name} object")
    _hex_ids_to_base64(document, _descriptor(message_class), "")
    message = message_class()
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise InvalidRequest(f"invalid OTLP/JSON {name}: {exc}") from None
    except (ValueError, TypeError, RecursionError) as exc:  # what ParseDict lets through on odd input
        raise InvalidRequest(f"invalid OTLP/JSON {name}: {exc or type(exc).__name__}") from None
    return message


def _descriptor(message_class: type[Message]) -> Descriptor:
    # The upb runtime's descriptor class is typed apart from the pure-Python one; they are the same API.
    return cast(Descriptor, message_class.DESCRIPTOR)


@functools.cache
def _id_paths(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    """The JSON keys (lowerCamelCase and original) of the fields that are hex ids or lead to one."""
    keys: dict[str, FieldDescriptor] = {}
    for fd in descriptor.fields:
        wanted = (fd.type == FieldDescriptor.TYPE_BYTES and fd.name in _HEX_ID_FIELDS) or (
            fd.type == FieldDescriptor.TYPE_MESSAGE and _leads_to_id(fd.message_type, frozenset())
        )
        if wanted:
            keys[fd.json_name] = fd
            keys[fd.name] = fd
    return keys


def _leads_to_id(descriptor: Descriptor | None, seen: frozenset[str]) -> bool:
    if descriptor is None or descriptor.full_name in seen:
        return False  # recursive types (AnyValue) hold no ids
    seen = seen | {descriptor.full_name}
    for fd in descriptor.fields:
        if fd.type == FieldDescriptor.TYPE_BYTES and fd.name in _HEX_ID_FIELDS:
            return True
        if fd.type == FieldDescriptor.TYPE_MESSAGE and _leads_to_id(fd.message_type, seen):
            return True
    return False


def _hex_ids_to_base64(value: dict[str, Any], descriptor: Descriptor, path: str) -> None:
    """Rewrites OTLP/JSON's hex ids in place to the base64 the protobuf JSON parser expects.

    Walks only the fields that can lead to an id (never into attributes), guided by the message's
    descriptor. Values of the wrong JSON type are left for the parser to reject with its own message.
    """
    fields = _id_paths(descriptor)
    for key, item in value.items():
        fd = fields.get(key)
        if fd is None or item is None:
            continue
        where = f"{path}.{key}" if path else key
        if fd.type == FieldDescriptor.TYPE_BYTES:
            if not isinstance(item, str):
                raise InvalidRequest(f"{where}: an id is a hex string, not a JSON {type(item).__name__}")
            if len(item) % 2 or not _HEX.fullmatch(item):
                raise InvalidRequest(f"{where}: {item[:40]!r} is not a hex-encoded id")
            value[key] = base64.b64encode(bytes.fromhex(item)).decode("ascii")
        elif fd.message_type is None:
            continue
        elif fd.is_repeated:
            if isinstance(item, list):
                for i, element in enumerate(item):
                    if isinstance(element, dict):
                        _hex_ids_to_base64(element, fd.message_type, f"{where}[{i}]")
        elif isinstance(item, dict):
            _hex_ids_to_base64(item, fd.message_type, where)


# ---------------------------------------------------------------------------------------------
# What spans and log records share.


def _record_attributes(
    raw: bool, record: Any, rejected: Rejections, kind: str, number: int
) -> dict[str, Any] | None:
    """A span's or log record's attributes: serialized KeyValues (``raw``, the twin requests) or
    KeyValue messages. None, with the record counted in ``rejected``, for one protobuf refuses."""
    if not raw:
        return attributes(record.attributes)
    try:
        return raw_attributes(record.attributes)
    except DecodeError as exc:
        name = record.name if kind == "span" else record.event_name
        problem = f"an attribute is not a valid KeyValue ({original_names(str(exc))})"
        rejected.add(f"{describe(kind, name, number)}: {problem}")
        return None


# ---------------------------------------------------------------------------------------------
# Traces.


def spans_from_proto(request: Message, rejections: Rejections | None = None) -> list[Span]:
    """The spans of a request (an ExportTraceServiceRequest, or its twin that keeps each span's
    attributes serialized); invalid ones are left out and counted in ``rejections``."""
    rejected = rejections if rejections is not None else Rejections()
    raw = isinstance(request, RawExportTraceServiceRequest)
    spans: list[Span] = []
    append = spans.append
    number = 0  # 1-based, across the whole request, for messages
    groups = scope_groups(request.resource_spans, "scope_spans", "spans")  # type: ignore[attr-defined]
    for resource, resource_schema_url, resource_dropped, scope, items in groups:
        for span in items:
            number += 1
            trace_id, span_id, parent_span_id = span.trace_id, span.span_id, span.parent_span_id
            links, events = span.links, span.events
            # The usual span is checked inline; _span_problem says what is wrong with the others.
            if not (
                len(trace_id) == TRACE_ID_BYTES
                and len(span_id) == SPAN_ID_BYTES
                and trace_id != _ZERO_TRACE_ID
                and span_id != _ZERO_SPAN_ID
                and (not parent_span_id or len(parent_span_id) == SPAN_ID_BYTES)
                and not links
            ):
                problem = _span_problem(trace_id, span_id, parent_span_id, links)
                if problem is not None:
                    rejected.add(f"{describe('span', span.name, number)}: {problem}")
                    continue
            span_attributes = _record_attributes(raw, span, rejected, "span", number)
            if span_attributes is None:
                continue
            status = span.status
            # Positional, in Span's field order: measurably cheaper than keywords on this path.
            append(
                Span(
                    trace_id.hex(),
                    span_id.hex(),
                    span.name,
                    span.start_time_unix_nano,
                    span.end_time_unix_nano,
                    parent_span_id.hex(),
                    span.trace_state,
                    span.flags,
                    span.kind,
                    span_attributes,
                    span.dropped_attributes_count,
                    [
                        SpanEvent(
                            event.time_unix_nano,
                            event.name,
                            attributes(event.attributes),
                            event.dropped_attributes_count,
                        )
                        for event in events
                    ]
                    if events
                    else NO_ITEMS,
                    span.dropped_events_count,
                    [
                        SpanLink(
                            link.trace_id.hex(),
                            link.span_id.hex(),
                            link.trace_state,
                            attributes(link.attributes),
                            link.dropped_attributes_count,
                            link.flags,
                        )
                        for link in links
                    ]
                    if links
                    else NO_ITEMS,
                    span.dropped_links_count,
                    status.code,
                    status.message,
                    resource,
                    resource_schema_url,
                    resource_dropped,
                    scope,
                )
            )
    return spans


_ZERO_TRACE_ID = bytes(TRACE_ID_BYTES)
_ZERO_SPAN_ID = bytes(SPAN_ID_BYTES)


def _span_problem(trace_id: bytes, span_id: bytes, parent_span_id: bytes, links: Sequence[Any]) -> str | None:
    problem = id_problem("trace_id", trace_id, TRACE_ID_BYTES, required=True) or id_problem(
        "span_id", span_id, SPAN_ID_BYTES, required=True
    )
    if problem is None:
        problem = id_problem("parent_span_id", parent_span_id, SPAN_ID_BYTES, required=False)
    if problem is None:
        for i, link in enumerate(links):
            problem = id_problem(f"links[{i}].trace_id", link.trace_id, TRACE_ID_BYTES, required=True)
            problem = problem or id_problem(f"links[{i}].span_id", link.span_id, SPAN_ID_BYTES, required=True)
            if problem is not None:
                break
    return problem


# ---------------------------------------------------------------------------------------------
# Logs.


def logs_from_proto(request: Message, rejections: Rejections | None = None) -> list[LogRecord]:
    """The log records of a request (an ExportLogsServiceRequest, or its twin that keeps each
    record's attributes serialized); those with malformed ids or attributes are left out and counted."""
    rejected = rejections if rejections is not None else Rejections()
    raw = isinstance(request, RawExportLogsServiceRequest)
    records: list[LogRecord] = []
    append = records.append
    number = 0  # 1-based, across the whole request, for messages
    groups = scope_groups(request.resource_logs, "scope_logs", "log_records")  # type: ignore[attr-defined]
    for resource, resource_schema_url, resource_dropped, scope, items in groups:
        for log in items:
            number += 1
            # Ids are optional on logs; when present they must have their size.
            problem = id_problem("trace_id", log.trace_id, TRACE_ID_BYTES, required=False) or id_problem(
                "span_id", log.span_id, SPAN_ID_BYTES, required=False
            )
            if problem is not None:
                rejected.add(f"{describe('log record', log.event_name, number)}: {problem}")
                continue
            record_attributes = _record_attributes(raw, log, rejected, "log record", number)
            if record_attributes is None:
                continue
            append(
                LogRecord(
                    time_unix_nano=log.time_unix_nano,
                    body=any_value(log.body) if log.HasField("body") else None,
                    severity_number=log.severity_number,
                    severity_text=log.severity_text,
                    attributes=record_attributes,
                    resource=resource,
                    trace_id=log.trace_id.hex(),
                    span_id=log.span_id.hex(),
                    observed_time_unix_nano=log.observed_time_unix_nano,
                    scope_name=scope.name,
                    scope=scope,
                    flags=log.flags,
                    dropped_attributes_count=log.dropped_attributes_count,
                    event_name=log.event_name,
                    resource_schema_url=resource_schema_url,
                    resource_dropped_attributes_count=resource_dropped,
                )
            )
    return records


# ---------------------------------------------------------------------------------------------
# Metrics.


def metrics_from_proto(
    request: ExportMetricsServiceRequest, rejections: Rejections | None = None
) -> list[MetricPoint]:
    """The data points of a request, flattened; invalid points are left out and counted.

    A metric without data (no gauge/sum/histogram/... set) has no points and yields nothing.
    """
    rejected = rejections if rejections is not None else Rejections()
    points: list[MetricPoint] = []
    groups = scope_groups(request.resource_metrics, "scope_metrics", "metrics")
    for resource, resource_schema_url, resource_dropped, scope, items in groups:
        for metric in items:
            data = metric.WhichOneof("data")
            if data is None:
                continue
            identity = MetricIdentity(
                metric=metric,
                kind=METRIC_KINDS[data],
                metadata=attributes(metric.metadata),
                resource=resource,
                resource_schema_url=resource_schema_url,
                resource_dropped=resource_dropped,
                scope=scope,
            )
            add_points(identity, data, points, rejected)
    return points


# ---------------------------------------------------------------------------------------------
# Any signal.


class RequestClasses(NamedTuple):
    """A signal's OTLP export request: the class OTLP/JSON is parsed into, the class binary protobuf
    is parsed as (the same bytes; for traces and logs the twin that keeps each record's attributes
    serialized, otlp_raw_attributes.py, read without upb's per-attribute objects), and what the data
    model makes of either."""

    json: type[Message]
    binary: type[Message]
    decode: Callable[[Any, Rejections], list[Any]]


REQUESTS: dict[Signal, RequestClasses] = {
    Signal.TRACES: RequestClasses(ExportTraceServiceRequest, RawExportTraceServiceRequest, spans_from_proto),
    Signal.LOGS: RequestClasses(ExportLogsServiceRequest, RawExportLogsServiceRequest, logs_from_proto),
    Signal.METRICS: RequestClasses(
        ExportMetricsServiceRequest, ExportMetricsServiceRequest, metrics_from_proto
    ),
}


def items_from_request(signal: Signal, body: bytes, rejections: Rejections) -> list[Any]:
    """The items of a serialized OTLP export request of ``signal``; the invalid ones are left out
    and counted in ``rejections``. InvalidRequest when ``body`` is not such a request."""
    request = REQUESTS[signal]
    return request.decode(parse_proto_request(body, request.binary), rejections)
