"""burnline's data model -> OTLP protobuf export requests (opentelemetry-proto messages).

Every field of the model is mapped; the flattened records are nested back the way OTLP carries them:

* Records are grouped into one ``Resource*`` per resource (its attributes, dropped-attributes count
  and schema url) and, inside it, one ``Scope*`` per instrumentation scope (name, version,
  attributes, dropped count, schema url), in the order each group is first seen. Grouping is by
  content: two equal resource dicts that are different objects still share one ``ResourceSpans``.
  Resources and scopes are shared objects, so each distinct object is converted (and its content
  key computed) once per request, looked up by ``id()`` afterwards.
* Metric points are grouped back into one ``Metric`` per (resource, scope, name, kind, unit,
  description, temporality, monotonic), each point one data point of it; the metric's ``metadata``
  is the first point's.
* Attribute values keep their type: str, bool (tested before int: a bool is an int in Python), int,
  float, bytes, list (also tuple and set), dict (``kvlist_value``), None (an empty ``AnyValue``).
  Values OTLP has no type for never fail a record: an int outside int64 becomes its decimal string,
  other objects their ``str()``, text with lone surrogates (undecodable input) its UTF-8-safe form.
* Hex trace and span ids become bytes; an id that is not 32 (trace) or 16 (span) hex digits, or
  empty, makes that record unencodable: OTLP receivers reject a whole request for one bad id, so the
  record is set aside (``rejected``) and the rest of the batch goes on.
* Message fields that OpenTelemetry's own encoders always send are always present (resource, scope,
  span status, an attribute's value, exponential histogram buckets); a log body that is None is
  left out.

Encoding sets fields in place on messages created inside their parent (``add()``): with the upb
protobuf runtime that is several times faster than building sub-messages and copying them in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from collector.core.model import LogRecord, MetricPoint, Scope, Span, SpanLink
from exporters.otlp.encode_metrics import METRIC_KINDS, metric_key, new_metric
from exporters.otlp.encode_values import EncodeError, put_attributes, put_value, span_id_bytes, trace_id_bytes

T = TypeVar("T")
Rejected = list[tuple[Any, str]]


# ---------------------------------------------------------------------------------------------------
# Grouping records back under their resource and scope


class _Groups:
    """Finds, creating on first sight, the scope-level container of a record's resource and scope.

    ``resources`` is the request's repeated ``Resource*`` field, ``scopes_field`` the name of the
    repeated ``Scope*`` field inside each. Lookups go by object identity first (the objects are held
    by the batch for the whole encoding, so an id cannot be reused meanwhile), then by content.
    """

    def __init__(self, resources: Any, scopes_field: str) -> None:
        self._resources = resources
        self._scopes_field = scopes_field
        # (id(resource), schema url, dropped, id(scope) or scope name) -> scope container
        self._by_identity: dict[tuple[int, str, int, int | str], Any] = {}
        # resource content key -> (resource container, scope content key -> scope container)
        self._by_content: dict[tuple[bytes, str], tuple[Any, dict[tuple[bytes, str], Any]]] = {}
        self._resource_keys: dict[tuple[int, int], tuple[bytes, Resource]] = {}
        self._scope_keys: dict[int | str, tuple[tuple[bytes, str], InstrumentationScope]] = {}

    def container(
        self,
        resource: dict[str, Any],
        schema_url: str,
        dropped: int,
        scope: Scope | None,
        scope_name: str = "",
    ) -> Any:
        scope_ref: int | str = id(scope) if scope is not None else scope_name
        key = (id(resource), schema_url, dropped, scope_ref)
        found = self._by_identity.get(key)
        if found is not None:
            return found
        res_bytes, res_pb = self._resource(resource, dropped)
        res_key = (res_bytes, schema_url)
        held = self._by_content.get(res_key)
        if held is None:
            parent = self._resources.add()
            parent.resource.CopyFrom(res_pb)
            parent.schema_url = schema_url
            held = self._by_content[res_key] = (parent, {})
        parent, scopes = held
        scope_key, scope_pb = self._scope(scope, scope_name, scope_ref)
        found = scopes.get(scope_key)
        if found is None:
            found = getattr(parent, self._scopes_field).add()
            found.scope.CopyFrom(scope_pb)
            found.schema_url = scope_key[1]
            scopes[scope_key] = found
        self._by_identity[key] = found
        return found

    def _resource(self, resource: dict[str, Any], dropped: int) -> tuple[bytes, Resource]:
        key = (id(resource), dropped)
        held = self._resource_keys.get(key)
        if held is None:
            pb = Resource()
            put_attributes(pb.attributes, resource)
            pb.dropped_attributes_count = dropped
            held = self._resource_keys[key] = (pb.SerializeToString(deterministic=True), pb)
        return held

    def _scope(
        self, scope: Scope | None, scope_name: str, ref: int | str
    ) -> tuple[tuple[bytes, str], InstrumentationScope]:
        held = self._scope_keys.get(ref)
        if held is None:
            pb = InstrumentationScope()
            schema_url = ""
            if scope is not None:
                pb.name = scope.name
                pb.version = scope.version
                put_attributes(pb.attributes, scope.attributes)
                pb.dropped_attributes_count = scope.dropped_attributes_count
                schema_url = scope.schema_url
            else:
                pb.name = scope_name
            held = self._scope_keys[ref] = ((pb.SerializeToString(deterministic=True), schema_url), pb)
        return held

    def prune_empty(self, items_field: str) -> None:
        """Removes scope and resource containers left empty by records that failed to encode."""
        resources = self._resources
        for i in range(len(resources) - 1, -1, -1):
            scopes = getattr(resources[i], self._scopes_field)
            for j in range(len(scopes) - 1, -1, -1):
                if not len(getattr(scopes[j], items_field)):
                    del scopes[j]
            if not len(scopes):
                del resources[i]


def _encode_each(items: Sequence[T], rejected: Rejected | None, encode_one: Callable[[T], None]) -> bool:
    """Runs ``encode_one`` on each item; returns whether any failed.

    A failing item goes to ``rejected`` with the reason, or raises EncodeError when the caller
    passed no list.
    """
    failed = False
    for item in items:
        try:
            encode_one(item)
        except _Partial as partial:
            partial.undo()
            failed = True
            _reject(rejected, item, partial.cause)
        except (ValueError, TypeError, OverflowError, AttributeError, RecursionError) as exc:
            failed = True
            _reject(rejected, item, exc)
    return failed


class _Partial(Exception):
    """An item failed after its message was added: ``undo`` removes the half-built message."""

    def __init__(self, cause: Exception, undo: Callable[[], None]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.undo = undo


def _reject(rejected: Rejected | None, item: Any, exc: Exception) -> None:
    reason = str(exc) if isinstance(exc, EncodeError) else f"{type(exc).__name__}: {exc}"
    if rejected is None:
        raise EncodeError(f"cannot encode {type(item).__name__}: {reason}") from exc
    rejected.append((item, reason))


def _filled(repeated: Any, fill: Callable[..., None], *args: Any) -> None:
    """Adds a message to ``repeated`` and runs ``fill(message, *args)``; if that fails, raises
    _Partial whose undo removes the message again."""
    message = repeated.add()
    try:
        fill(message, *args)
    except (ValueError, TypeError, OverflowError, AttributeError, RecursionError) as exc:

        def undo() -> None:
            del repeated[-1]

        raise _Partial(exc, undo) from exc


# ---------------------------------------------------------------------------------------------------
# Traces


def _fill_span(
    pb: Any,
    span: Span,
    ids: tuple[bytes, bytes, bytes],
    links: list[tuple[bytes, bytes, SpanLink]],
) -> None:
    trace_id, span_id, parent_id = ids
    pb.trace_id = trace_id
    pb.span_id = span_id
    if span.trace_state:
        pb.trace_state = span.trace_state
    if parent_id:
        pb.parent_span_id = parent_id
    if span.flags:
        pb.flags = span.flags
    pb.name = span.name
    pb.kind = span.kind
    pb.start_time_unix_nano = span.start_time_unix_nano
    pb.end_time_unix_nano = span.end_time_unix_nano
    if span.attributes:
        put_attributes(pb.attributes, span.attributes)
    if span.dropped_attributes_count:
        pb.dropped_attributes_count = span.dropped_attributes_count
    if span.events:
        add_event = pb.events.add
        for event in span.events:
            ev = add_event()
            ev.time_unix_nano = event.time_unix_nano
            ev.name = event.name
            if event.attributes:
                put_attributes(ev.attributes, event.attributes)
            if event.dropped_attributes_count:
                ev.dropped_attributes_count = event.dropped_attributes_count
    if span.dropped_events_count:
        pb.dropped_events_count = span.dropped_events_count
    if links:
        add_link = pb.links.add
        for link_trace, link_span, link in links:
            lk = add_link()
            lk.trace_id = link_trace
            lk.span_id = link_span
            if link.trace_state:
                lk.trace_state = link.trace_state
            if link.attributes:
                put_attributes(lk.attributes, link.attributes)
            if link.dropped_attributes_count:
                lk.dropped_attributes_count = link.dropped_attributes_count
            if link.flags:
                lk.flags = link.flags
    if span.dropped_links_count:
        pb.dropped_links_count = span.dropped_links_count
    status = pb.status
    status.SetInParent()
    if span.status_code:
        status.code = span.status_code
    if span.status_message:
        status.message = span.status_message


def spans_to_proto(spans: Sequence[Span], rejected: Rejected | None = None) -> ExportTraceServiceRequest:
    """Spans -> one export request. Spans that cannot be encoded go to ``rejected`` (with the
    reason) when a list is given; without one, the first such span raises EncodeError."""
    request = ExportTraceServiceRequest()
    groups = _Groups(request.resource_spans, "scope_spans")

    def encode_one(span: Span) -> None:
        # Ids first: a span with a bad id must not leave an empty group behind.
        trace_id = trace_id_bytes(span.trace_id)
        span_id = span_id_bytes(span.span_id)
        parent_id = span_id_bytes(span.parent_span_id, required=False)
        links = [(trace_id_bytes(lk.trace_id), span_id_bytes(lk.span_id), lk) for lk in span.links]
        container = groups.container(
            span.resource, span.resource_schema_url, span.resource_dropped_attributes_count, span.scope
        )
        _filled(container.spans, _fill_span, span, (trace_id, span_id, parent_id), links)

    if _encode_each(spans, rejected, encode_one):
        groups.prune_empty("spans")
    return request


# ---------------------------------------------------------------------------------------------------
# Logs


def _fill_log(pb: Any, rec: LogRecord, trace_id: bytes, span_id: bytes) -> None:
    if rec.time_unix_nano:
        pb.time_unix_nano = rec.time_unix_nano
    if rec.observed_time_unix_nano:
        pb.observed_time_unix_nano = rec.observed_time_unix_nano
    if rec.severity_number:
        pb.severity_number = rec.severity_number
    if rec.severity_text:
        pb.severity_text = rec.severity_text
    if rec.body is not None:
        put_value(pb.body, rec.body)
    if rec.attributes:
        put_attributes(pb.attributes, rec.attributes)
    if rec.dropped_attributes_count:
        pb.dropped_attributes_count = rec.dropped_attributes_count
    if rec.flags:
        pb.flags = rec.flags
    if trace_id:
        pb.trace_id = trace_id
    if span_id:
        pb.span_id = span_id
    if rec.event_name:
        pb.event_name = rec.event_name


def logs_to_proto(records: Sequence[LogRecord], rejected: Rejected | None = None) -> ExportLogsServiceRequest:
    """Log records -> one export request (``rejected`` as for spans_to_proto). A record without a
    ``scope`` gets an InstrumentationScope named by its ``scope_name``."""
    request = ExportLogsServiceRequest()
    groups = _Groups(request.resource_logs, "scope_logs")

    def encode_one(rec: LogRecord) -> None:
        trace_id = trace_id_bytes(rec.trace_id, required=False)
        span_id = span_id_bytes(rec.span_id, required=False)
        container = groups.container(
            rec.resource,
            rec.resource_schema_url,
            rec.resource_dropped_attributes_count,
            rec.scope,
            rec.scope_name,
        )
        _filled(container.log_records, _fill_log, rec, trace_id, span_id)

    if _encode_each(records, rejected, encode_one):
        groups.prune_empty("log_records")
    return request


# ---------------------------------------------------------------------------------------------------
# Metrics


def metrics_to_proto(
    points: Sequence[MetricPoint], rejected: Rejected | None = None
) -> ExportMetricsServiceRequest:
    """Metric points -> one export request, points of one series group under one Metric
    (``rejected`` as for spans_to_proto)."""
    request = ExportMetricsServiceRequest()
    groups = _Groups(request.resource_metrics, "scope_metrics")
    # (id(scope container), metric key) -> the metric's data message (Gauge, Sum, ...). The groups
    # hold every container for the whole encoding, so an id() is not reused meanwhile.
    metrics: dict[tuple[int, tuple[str, str, str, str, int, bool]], Any] = {}

    def encode_one(point: MetricPoint) -> None:
        known = METRIC_KINDS.get(point.kind)
        if known is None:
            raise EncodeError(f"unknown metric kind {point.kind!r}")
        field, fill = known
        container = groups.container(
            point.resource,
            point.resource_schema_url,
            point.resource_dropped_attributes_count,
            point.scope,
        )
        key = (id(container), metric_key(point))
        data = metrics.get(key)
        created = data is None
        try:
            if data is None:
                data = new_metric(container, point, field)
            _filled(data.data_points, fill, point)
        except (_Partial, ValueError, TypeError, OverflowError, AttributeError, RecursionError):
            if created:  # the metric was made for this point alone (added last): it goes too
                del container.metrics[-1]
            raise
        if created:
            metrics[key] = data

    if _encode_each(points, rejected, encode_one):
        groups.prune_empty("metrics")
    return request
