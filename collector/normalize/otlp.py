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

OTLP/JSON (:func:`parse_json_request`) is the protobuf JSON mapping with OTLP's deviations: trace and
span ids are hex, not base64; enums are integers (names are accepted too, as the protobuf mapping
allows); 64-bit integers are strings or numbers; unknown fields are ignored; keys are lowerCamelCase
(the original snake_case names are accepted, as the protobuf JSON parser does).
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Exemplar as ExemplarProto
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric

from collector.core.model import (
    Exemplar,
    LogRecord,
    MetricKind,
    MetricPoint,
    Scope,
    Span,
    SpanEvent,
    SpanLink,
)
from collector.normalize.values import nonfinite_text

M = TypeVar("M", bound=Message)

TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8

# How many rejection messages a Rejections keeps word for word; the rest are only counted.
_KEPT_MESSAGES = 5

# The bytes fields OTLP/JSON writes as hex (in Span, Span.Link, LogRecord and Exemplar).
_HEX_ID_FIELDS = frozenset({"trace_id", "span_id", "parent_span_id"})
_HEX = re.compile(r"[0-9A-Fa-f]*")

_METRIC_KINDS = {
    "gauge": MetricKind.GAUGE,
    "sum": MetricKind.SUM,
    "histogram": MetricKind.HISTOGRAM,
    "exponential_histogram": MetricKind.EXPONENTIAL_HISTOGRAM,
    "summary": MetricKind.SUMMARY,
}


class InvalidRequest(ValueError):
    """The request body cannot be decoded at all (answered 400 / INVALID_ARGUMENT)."""


@dataclass(slots=True)
class Rejections:
    """Items of one request rejected as invalid: a count and the first few reasons."""

    count: int = 0
    messages: list[str] = field(default_factory=list)

    def add(self, message: str, count: int = 1) -> None:
        self.count += count
        if len(self.messages) < _KEPT_MESSAGES:
            self.messages.append(message)

    def summary(self, what: str) -> str:
        """A human-readable English sentence for partial_success.error_message."""
        if not self.count:
            return ""
        more = self.count - len(self.messages)
        tail = f"; and {more} more" if more > 0 else ""
        return f"rejected {self.count} invalid {what}: " + "; ".join(self.messages) + tail


# ---------------------------------------------------------------------------------------------
# Binary protobuf and OTLP/JSON request parsing.


def parse_proto_request(body: bytes, message_class: type[M]) -> M:
    """Parses a binary protobuf Export*ServiceRequest; InvalidRequest when it is not one."""
    try:
        return message_class.FromString(body)
    except DecodeError as exc:
        raise InvalidRequest(f"invalid protobuf {message_class.DESCRIPTOR.name}: {exc}") from None
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
# Common pieces.


def any_value(value: AnyValue) -> Any:
    """An OTLP AnyValue as the Python value it holds (None when empty)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        number = value.double_value
        # NaN/±Inf as "NaN"/"Infinity"/"-Infinity": JSON (store, CLI, Elasticsearch) cannot hold them.
        return number if number - number == 0.0 else nonfinite_text(number)
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value
    # Empty, or string_value_strindex: a reference into a profiles dictionary, which the OTLP spec
    # tells receivers of other signals to treat as absent.
    return None


def attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    """Repeated KeyValue as a dict (a repeated key, which OTLP forbids, keeps its last value)."""
    return {kv.key: any_value(kv.value) for kv in pairs}


def _scope(scope: InstrumentationScope, schema_url: str) -> Scope:
    return Scope(
        name=scope.name,
        version=scope.version,
        attributes=attributes(scope.attributes),
        dropped_attributes_count=scope.dropped_attributes_count,
        schema_url=schema_url,
    )


def _id_problem(what: str, raw: bytes, size: int, *, required: bool) -> str | None:
    """Why ``raw`` is not a valid id of ``size`` bytes, or None when it is."""
    if not raw:
        return f"{what} is missing" if required else None
    if len(raw) != size:
        return f"{what} is {len(raw)} bytes, expected {size}"
    if required and not any(raw):
        return f"{what} is all zeros"
    return None


def _describe(kind: str, name: str, number: int) -> str:
    return f"{kind} #{number} ({name!r})" if name else f"{kind} #{number}"


# ---------------------------------------------------------------------------------------------
# Traces.


def spans_from_proto(request: ExportTraceServiceRequest, rejections: Rejections | None = None) -> list[Span]:
    """The spans of a request; invalid ones are left out and counted in ``rejections``."""
    rejected = rejections if rejections is not None else Rejections()
    spans: list[Span] = []
    append = spans.append
    number = 0  # 1-based, across the whole request, for messages
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        resource_schema_url = resource_spans.schema_url
        resource_dropped = resource_spans.resource.dropped_attributes_count
        for scope_spans in resource_spans.scope_spans:
            scope = _scope(scope_spans.scope, scope_spans.schema_url)
            for span in scope_spans.spans:
                number += 1
                problem = _span_problem(span.trace_id, span.span_id, span.parent_span_id, span.links)
                if problem is not None:
                    rejected.add(f"{_describe('span', span.name, number)}: {problem}")
                    continue
                status = span.status
                append(
                    Span(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        name=span.name,
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                        parent_span_id=span.parent_span_id.hex(),
                        trace_state=span.trace_state,
                        flags=span.flags,
                        kind=span.kind,
                        attributes=attributes(span.attributes),
                        dropped_attributes_count=span.dropped_attributes_count,
                        events=[
                            SpanEvent(
                                time_unix_nano=event.time_unix_nano,
                                name=event.name,
                                attributes=attributes(event.attributes),
                                dropped_attributes_count=event.dropped_attributes_count,
                            )
                            for event in span.events
                        ],
                        dropped_events_count=span.dropped_events_count,
                        links=[
                            SpanLink(
                                trace_id=link.trace_id.hex(),
                                span_id=link.span_id.hex(),
                                trace_state=link.trace_state,
                                attributes=attributes(link.attributes),
                                dropped_attributes_count=link.dropped_attributes_count,
                                flags=link.flags,
                            )
                            for link in span.links
                        ],
                        dropped_links_count=span.dropped_links_count,
                        status_code=status.code,
                        status_message=status.message,
                        resource=resource,
                        resource_schema_url=resource_schema_url,
                        resource_dropped_attributes_count=resource_dropped,
                        scope=scope,
                    )
                )
    return spans


def _span_problem(trace_id: bytes, span_id: bytes, parent_span_id: bytes, links: Sequence[Any]) -> str | None:
    problem = _id_problem("trace_id", trace_id, TRACE_ID_BYTES, required=True) or _id_problem(
        "span_id", span_id, SPAN_ID_BYTES, required=True
    )
    if problem is None:
        problem = _id_problem("parent_span_id", parent_span_id, SPAN_ID_BYTES, required=False)
    if problem is None:
        for i, link in enumerate(links):
            problem = _id_problem(f"links[{i}].trace_id", link.trace_id, TRACE_ID_BYTES, required=True)
            problem = problem or _id_problem(
                f"links[{i}].span_id", link.span_id, SPAN_ID_BYTES, required=True
            )
            if problem is not None:
                break
    return problem


# ---------------------------------------------------------------------------------------------
# Logs.


def logs_from_proto(
    request: ExportLogsServiceRequest, rejections: Rejections | None = None
) -> list[LogRecord]:
    """The log records of a request; those with malformed ids are left out and counted."""
    rejected = rejections if rejections is not None else Rejections()
    records: list[LogRecord] = []
    append = records.append
    number = 0  # 1-based, across the whole request, for messages
    for resource_logs in request.resource_logs:
        resource = attributes(resource_logs.resource.attributes)
        resource_schema_url = resource_logs.schema_url
        resource_dropped = resource_logs.resource.dropped_attributes_count
        for scope_logs in resource_logs.scope_logs:
            scope = _scope(scope_logs.scope, scope_logs.schema_url)
            for log in scope_logs.log_records:
                number += 1
                # Ids are optional on logs; when present they must have their size.
                problem = _id_problem(
                    "trace_id", log.trace_id, TRACE_ID_BYTES, required=False
                ) or _id_problem("span_id", log.span_id, SPAN_ID_BYTES, required=False)
                if problem is not None:
                    rejected.add(f"{_describe('log record', log.event_name, number)}: {problem}")
                    continue
                append(
                    LogRecord(
                        time_unix_nano=log.time_unix_nano,
                        body=any_value(log.body) if log.HasField("body") else None,
                        severity_number=log.severity_number,
                        severity_text=log.severity_text,
                        attributes=attributes(log.attributes),
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
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        resource_schema_url = resource_metrics.schema_url
        resource_dropped = resource_metrics.resource.dropped_attributes_count
        for scope_metrics in resource_metrics.scope_metrics:
            scope = _scope(scope_metrics.scope, scope_metrics.schema_url)
            for metric in scope_metrics.metrics:
                data = metric.WhichOneof("data")
                if data is None:
                    continue
                identity = _MetricIdentity(
                    metric=metric,
                    kind=_METRIC_KINDS[data],
                    metadata=attributes(metric.metadata),
                    resource=resource,
                    resource_schema_url=resource_schema_url,
                    resource_dropped=resource_dropped,
                    scope=scope,
                )
                if data in ("gauge", "sum"):
                    _number_points(identity, data, points, rejected)
                elif data == "histogram":
                    _histogram_points(identity, points, rejected)
                elif data == "exponential_histogram":
                    _exponential_points(identity, points, rejected)
                else:
                    _summary_points(identity, points, rejected)
    return points


@dataclass(slots=True)
class _MetricIdentity:
    """What every point of one Metric shares."""

    metric: Metric
    kind: MetricKind
    metadata: dict[str, Any]
    resource: dict[str, Any]
    resource_schema_url: str
    resource_dropped: int
    scope: Scope

    def point(self, dp: Any, exemplars: list[Exemplar], **values: Any) -> MetricPoint:
        metric = self.metric
        return MetricPoint(
            name=metric.name,
            kind=self.kind,
            time_unix_nano=dp.time_unix_nano,
            attributes=attributes(dp.attributes),
            start_time_unix_nano=dp.start_time_unix_nano,
            description=metric.description,
            unit=metric.unit,
            metadata=self.metadata,
            exemplars=exemplars,
            flags=dp.flags,
            resource=self.resource,
            resource_schema_url=self.resource_schema_url,
            resource_dropped_attributes_count=self.resource_dropped,
            scope=self.scope,
            **values,
        )

    def reject(self, rejected: Rejections, index: int, problem: str) -> None:
        rejected.add(f"{self.kind.value} {self.metric.name!r} data point #{index + 1}: {problem}")


def _exemplars(exemplars: Iterable[ExemplarProto]) -> tuple[list[Exemplar], str | None]:
    out: list[Exemplar] = []
    for i, ex in enumerate(exemplars):
        problem = _id_problem(f"exemplars[{i}].trace_id", ex.trace_id, TRACE_ID_BYTES, required=False)
        problem = problem or _id_problem(f"exemplars[{i}].span_id", ex.span_id, SPAN_ID_BYTES, required=False)
        if problem is not None:
            return [], problem
        which = ex.WhichOneof("value")
        # An exemplar without a value is malformed but harmless; 0.0 keeps the model's type.
        value: float | int = ex.as_int if which == "as_int" else ex.as_double
        out.append(
            Exemplar(
                time_unix_nano=ex.time_unix_nano,
                value=value,
                filtered_attributes=attributes(ex.filtered_attributes),
                trace_id=ex.trace_id.hex(),
                span_id=ex.span_id.hex(),
            )
        )
    return out, None


def _number_points(
    identity: _MetricIdentity, data: str, points: list[MetricPoint], rejected: Rejections
) -> None:
    metric = identity.metric
    temporality, monotonic = 0, False
    if data == "sum":
        temporality, monotonic = int(metric.sum.aggregation_temporality), metric.sum.is_monotonic
    dps = metric.sum.data_points if data == "sum" else metric.gauge.data_points
    for i, dp in enumerate(dps):
        exemplars, problem = _exemplars(dp.exemplars)
        if problem is not None:
            identity.reject(rejected, i, problem)
            continue
        which = dp.WhichOneof("value")
        value = dp.as_int if which == "as_int" else dp.as_double if which == "as_double" else None
        points.append(
            identity.point(dp, exemplars, value=value, temporality=temporality, monotonic=monotonic)
        )


def _optional(dp: Any, name: str) -> float | None:
    return float(getattr(dp, name)) if dp.HasField(name) else None


def _histogram_points(identity: _MetricIdentity, points: list[MetricPoint], rejected: Rejections) -> None:
    histogram = identity.metric.histogram
    for i, dp in enumerate(histogram.data_points):
        exemplars, problem = _exemplars(dp.exemplars)
        bounds, counts = list(dp.explicit_bounds), list(dp.bucket_counts)
        if problem is None and counts and len(counts) != len(bounds) + 1:
            problem = (
                f"{len(counts)} bucket counts for {len(bounds)} explicit bounds, expected {len(bounds) + 1}"
            )
        if problem is not None:
            identity.reject(rejected, i, problem)
            continue
        points.append(
            identity.point(
                dp,
                exemplars,
                temporality=histogram.aggregation_temporality,
                count=dp.count,
                sum=_optional(dp, "sum"),
                min=_optional(dp, "min"),
                max=_optional(dp, "max"),
                bucket_counts=counts,
                explicit_bounds=bounds,
            )
        )


def _exponential_points(identity: _MetricIdentity, points: list[MetricPoint], rejected: Rejections) -> None:
    histogram = identity.metric.exponential_histogram
    for i, dp in enumerate(histogram.data_points):
        exemplars, problem = _exemplars(dp.exemplars)
        if problem is not None:
            identity.reject(rejected, i, problem)
            continue
        points.append(
            identity.point(
                dp,
                exemplars,
                temporality=histogram.aggregation_temporality,
                count=dp.count,
                sum=_optional(dp, "sum"),
                min=_optional(dp, "min"),
                max=_optional(dp, "max"),
                scale=dp.scale,
                zero_count=dp.zero_count,
                zero_threshold=dp.zero_threshold,
                positive_offset=dp.positive.offset,
                positive_bucket_counts=list(dp.positive.bucket_counts),
                negative_offset=dp.negative.offset,
                negative_bucket_counts=list(dp.negative.bucket_counts),
            )
        )


def _summary_points(identity: _MetricIdentity, points: list[MetricPoint], rejected: Rejections) -> None:
    del rejected  # summaries carry no ids and nothing that can disagree with itself
    for dp in identity.metric.summary.data_points:
        points.append(
            identity.point(
                dp,
                [],
                count=dp.count,
                sum=dp.sum,
                quantiles=[(q.quantile, q.value) for q in dp.quantile_values],
            )
        )
