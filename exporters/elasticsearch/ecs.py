"""OpenTelemetry log records and spans -> Elastic Common Schema (ECS) documents, data stream names and
``_id``s.

Log document layout (what an operator sees in Kibana):

* Fields the record itself defines: ``@timestamp`` (nanosecond RFC 3339 string; the record's time,
  else its observed time, else the encoding time), ``message`` (a string body as is; a map or list
  body as compact JSON; bytes decoded as UTF-8), ``log.level`` (severity text, else the lower-case
  OpenTelemetry short name of the severity number), ``event.severity`` (severity number),
  ``event.created`` (observed time), ``log.logger`` (scope name), ``trace.id``, ``span.id``,
  ``data_stream.type/dataset/namespace`` and ``event.dataset`` (= ``data_stream.dataset``).
* OpenTelemetry semantic-convention attributes that have an ECS name are renamed (``k8s.pod.name`` ->
  ``kubernetes.pod.name``, ``service.instance.id`` -> ``service.node.name``, see ``_SEMCONV_TO_ECS``).
  Pod labels and annotations (``k8s.pod.label.<key>``, ``k8s.pod.annotation.<key>``) become
  ``kubernetes.labels.<key>`` / ``kubernetes.annotations.<key>`` (namespace ones
  ``kubernetes.namespace_labels.<key>`` / ``kubernetes.namespace_annotations.<key>``) with the dots of
  the key replaced by ``_``, as Filebeat does, so that ``app`` and ``app.kubernetes.io/name`` cannot
  collide. A record
  attribute wins over a resource attribute of the same meaning.
* Every other attribute keeps its own name at the top level (nested maps are flattened to dotted
  names). Where that name would clash with a field above (same name, or one is an object prefix of
  the other: ``trace`` vs ``trace.id``, ``message.x`` vs ``message``) or would give an ECS field set
  a value (``host`` = "web-1", ``error`` = "boom": ECS keeps ``host``, ``error``, ``user``, ... as
  objects), the attribute moves under ``attributes.<name>`` (record) or
  ``resource.attributes.<name>`` (resource) instead, so an ECS field is never overwritten and
  Elasticsearch never sees one name as both a value and an object. A record attribute also takes a
  name before a resource attribute does. When two attributes conflict with
  each other (``a`` = 1 and ``a.b`` = 2), the value moves to ``a.value``, as the OpenTelemetry
  Collector's exporter does. Empty name segments are dropped (``a..b`` -> ``a.b``), ``None`` values are
  left out, bytes become base64, integers beyond 64 bits become strings.
* ``data_stream.dataset`` / ``data_stream.namespace`` attributes choose the data stream (record over
  resource over the configured default) and are not copied as attributes.

Span documents (``traces-<dataset>-<namespace>``) follow the OpenTelemetry Collector's
elasticsearch exporter in its ECS mapping mode, with what it leaves out added under ECS or Elastic APM
names:

* ``@timestamp`` (start time, nanoseconds), ``trace.id``, ``span.id``, ``parent.id`` (absent for a
  root span), ``span.name``, ``span.kind`` (``SERVER``, ``CLIENT``, ... as Elastic APM spells it;
  absent when unspecified), ``span.links`` (``[{trace: {id}, span: {id}, attributes?}]``).
* ``event.duration`` (nanoseconds, as ECS defines it) and ``event.outcome``: ``failure`` when the span
  is an error by burnline's one definition (``Span.is_error``: status ERROR, or a 5xx answer of a
  server span), ``success`` when its status is OK or it carries an HTTP status that is not an error,
  else ``unknown``. ``span.status.message`` keeps the status description.
* ``span.events``: ``[{time, name, attributes}]`` in span order, ``time`` a nanosecond timestamp and
  ``attributes`` the event's attributes under their own (dotted) names. burnline's traces index
  template maps ``attributes`` of events and links as ``flattened``, so no event attribute can add a
  mapping or conflict with another.
* The instrumentation scope name and version become ``service.framework.name`` /
  ``service.framework.version`` (as Elastic APM maps them).
* Attributes are placed as for logs (span, then scope, then resource attributes; clashes move under
  ``attributes.``, ``scope.attributes.``, ``resource.attributes.``), with the database and messaging
  conventions renamed as the Collector does: ``db.system`` -> ``span.db.type``, ``db.namespace``
  (and the older ``db.name``) -> ``span.db.instance``, ``db.query.text`` (``db.statement``) ->
  ``span.db.statement``, ``messaging.destination.name`` -> ``span.message.queue.name``,
  ``messaging.operation.name`` -> ``span.action``, ``http.response.body.size`` ->
  ``http.response.encoded_body_size``.

A span's ``_id`` is its trace id and span id (48 hex digits): unique per span, the same on every
retry, so a span that already landed answers 409.

The document ``_id`` of a log record is a hash of the record's identity (time, observed time, severity, body,
attributes, resource, trace and span ids, scope), so that a bulk item retried after it already
landed answers 409 instead of indexing a duplicate. Two equal log lines in the same instant are
still two events: receivers give every record of a receipt its own observed time (receipt time +
its index), which enters the hash. The id must not depend on which other records share a bulk
request: a retry resends a subset, and a position-dependent id would make a retried record collide
with a different one that landed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

from collector.core.model import (
    LogRecord,
    Scope,
    Span,
    SpanEvent,
    SpanKind,
    SpanLink,
    StatusCode,
    severity_name,
)
from collector.core.trace_ids import SPAN_ID_BYTES, TRACE_ID_BYTES, require_hex_id
from exporters.elasticsearch.ecs_fields import (
    DATASET_ATTRIBUTE,
    NAMESPACE_ATTRIBUTE,
    AttributeFields,
    attribute_fields,
    flat_items,
    json_value,
    message_text,
    nest,
    place_attributes,
    resolve_object_conflicts,
    utf8_safe,
)

LOGS = "logs"
TRACES = "traces"
DEFAULT_DATASET = "generic"
DEFAULT_NAMESPACE = "default"

# Elasticsearch's own sanitizer (the reroute processor, DataStreamNamingUtils): lower case, at most
# 100 characters, these characters replaced by "_". Datasets may not contain "-" (it separates the
# name's parts); namespaces may. We also cap each part at 100 UTF-8 bytes so that the whole index
# name stays within Elasticsearch's 255-byte limit whatever the alphabet.
_DISALLOWED_IN_NAMESPACE = '\\/*?"<>| ,#:'
_DISALLOWED_IN_DATASET = _DISALLOWED_IN_NAMESPACE + "-"
_MAX_PART = 100

# Span attributes whose Elastic APM name is not the convention's own (the OpenTelemetry Collector's
# ECS mode maps these; the older db.name and db.statement are still what most instrumentations send).
SPAN_SEMCONV_TO_ECS = {
    "db.system": "span.db.type",
    "db.namespace": "span.db.instance",
    "db.name": "span.db.instance",
    "db.query.text": "span.db.statement",
    "db.statement": "span.db.statement",
    "messaging.destination.name": "span.message.queue.name",
    "messaging.operation.name": "span.action",
    "http.response.body.size": "http.response.encoded_body_size",
}

RECORD_NAMESPACE = "attributes."
SCOPE_NAMESPACE = "scope.attributes."
RESOURCE_NAMESPACE = "resource.attributes."

# ---------------------------------------------------------------------------------------------------
# Data stream names


def _sanitize(value: str, disallowed: str) -> str:
    text = str(utf8_safe(value)).lower()[:_MAX_PART]
    for ch in disallowed:
        if ch in text:
            text = text.replace(ch, "_")
    if len(text.encode()) > _MAX_PART:
        text = text.encode()[:_MAX_PART].decode("utf-8", "ignore")
    return text


@functools.lru_cache(maxsize=4096)
def sanitize_dataset(value: str) -> str:
    """A ``data_stream.dataset`` value as Elasticsearch accepts it ("" stays "")."""
    return _sanitize(value, _DISALLOWED_IN_DATASET)


@functools.lru_cache(maxsize=4096)
def sanitize_namespace(value: str) -> str:
    """A ``data_stream.namespace`` value as Elasticsearch accepts it ("" stays "")."""
    return _sanitize(value, _DISALLOWED_IN_NAMESPACE)


def data_stream_name(kind: str, dataset: str, namespace: str) -> str:
    """``logs-nginx.access-prod``: the data stream naming scheme ``<type>-<dataset>-<namespace>``."""
    return f"{kind}-{dataset}-{namespace}"


def _lookup(attributes: Mapping[str, Any], dotted: str) -> Any:
    if dotted in attributes:
        return attributes[dotted]
    head, _, tail = dotted.partition(".")
    nested = attributes.get(head)
    return nested.get(tail) if isinstance(nested, Mapping) else None


def route(
    attributes: Mapping[str, Any], resource: Mapping[str, Any], dataset: str, namespace: str
) -> tuple[str, str]:
    """The (dataset, namespace) of a record: its attributes, else its resource's, else the defaults.

    The defaults must already be valid; a value that sanitizes to nothing falls back to them.
    """
    out = []
    for key, default, clean in (
        (DATASET_ATTRIBUTE, dataset, sanitize_dataset),
        (NAMESPACE_ATTRIBUTE, namespace, sanitize_namespace),
    ):
        value = _lookup(attributes, key)
        if value is None or value == "":
            value = _lookup(resource, key)
        chosen = clean(value if isinstance(value, str) else str(value)) if value not in (None, "") else ""
        out.append(chosen or default)
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------------
# Timestamps


# Seconds -> "2024-05-01T12:00:00." (two per log record: @timestamp and event.created; a batch's
# records share a few seconds). A dict and string concatenation: half the time of lru_cache and
# an f-string's {:09d} on this path (0.35 against 0.48-0.65 us a call, timeit).
_MAX_PREFIXES: Final = 4096
_second_prefixes: dict[int, str] = {}


def format_timestamp(unix_nano: int) -> str:
    """Unix nanoseconds -> ``2024-05-01T12:00:00.123456789Z`` (what a ``date_nanos`` field keeps)."""
    seconds, nanos = divmod(unix_nano, 1_000_000_000)
    prefix = _second_prefixes.get(seconds)
    if prefix is None:
        if len(_second_prefixes) >= _MAX_PREFIXES:
            _second_prefixes.clear()
        prefix = _second_prefixes[seconds] = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(seconds))
    # 1,000,000,000 + nanos has ten digits: the last nine are nanos, zero-padded.
    return prefix + str(1_000_000_000 + nanos)[1:] + "Z"


# ---------------------------------------------------------------------------------------------------
# Documents


def own_log_fields(
    record: LogRecord, dataset: str, namespace: str, now_unix_nano: int | None = None
) -> dict[str, Any]:
    """The fields a log record defines itself (see the module docstring), flat, in document order."""
    flat: dict[str, Any] = {}
    ts = record.time_unix_nano if record.time_unix_nano > 0 else record.observed_time_unix_nano
    if ts <= 0:
        ts = now_unix_nano if now_unix_nano is not None else time.time_ns()
    flat["@timestamp"] = format_timestamp(ts)
    message = message_text(record.body)
    if message is not None:
        flat["message"] = message
    level = record.severity_text or severity_name(record.severity_number).lower()
    if level:
        flat["log.level"] = level
    if record.severity_number > 0:
        flat["event.severity"] = record.severity_number
    if record.observed_time_unix_nano > 0:
        flat["event.created"] = format_timestamp(record.observed_time_unix_nano)
    if record.scope_name:
        flat["log.logger"] = record.scope_name
    if record.trace_id:
        flat["trace.id"] = record.trace_id
    if record.span_id:
        flat["span.id"] = record.span_id
    flat["data_stream.type"] = LOGS
    flat["data_stream.dataset"] = dataset
    flat["data_stream.namespace"] = namespace
    flat["event.dataset"] = dataset
    return flat


def log_document(
    record: LogRecord,
    dataset: str,
    namespace: str,
    now_unix_nano: int | None = None,
    resource_fields: AttributeFields | None = None,
) -> dict[str, Any]:
    """The ECS document for one log record routed to ``logs-<dataset>-<namespace>``.

    ``resource_fields`` is ``attribute_fields(record.resource)``, when the caller has it already.
    """
    flat = own_log_fields(record, dataset, namespace, now_unix_nano)
    if resource_fields is None:
        resource_fields = attribute_fields(record.resource)
    place_attributes(
        flat,
        ((RECORD_NAMESPACE, attribute_fields(record.attributes)), (RESOURCE_NAMESPACE, resource_fields)),
    )
    return nest(flat)


ECS_SPAN_KINDS: dict[int, str] = {
    SpanKind.INTERNAL: "INTERNAL",
    SpanKind.SERVER: "SERVER",
    SpanKind.CLIENT: "CLIENT",
    SpanKind.PRODUCER: "PRODUCER",
    SpanKind.CONSUMER: "CONSUMER",
}


_STATUS_OK: Final = int(StatusCode.OK)  # a plain int: an IntEnum member read per span costs ~80 ns


def event_outcome(span: Span) -> str:
    """ECS ``event.outcome`` of a span: failure, success or unknown (see the module docstring)."""
    if span.is_error:
        return "failure"
    if span.status_code == _STATUS_OK or span.http_status_code is not None:
        return "success"
    return "unknown"


def _flat_attributes(attributes: Mapping[Any, Any]) -> dict[str, Any]:
    """Attributes under their dotted names, JSON-able, ``a`` beside ``a.b`` moved to ``a.value``."""
    flat: dict[str, Any] = {}
    for dotted, value in flat_items(attributes):
        key = dotted
        if key in flat:  # "a.b" and {"a": {"b": ...}} flatten alike: keep both, the later one renamed
            n = 2
            while f"{dotted}_{n}" in flat:
                n += 1
            key = f"{dotted}_{n}"
        flat[key] = json_value(value)
    resolve_object_conflicts(flat)
    return flat


def span_events(events: Iterable[SpanEvent]) -> list[dict[str, Any]]:
    """A span's ``span.events`` (see the module docstring)."""
    out = []
    for event in events:
        entry: dict[str, Any] = {"time": format_timestamp(event.time_unix_nano), "name": event.name}
        if event.attributes:
            entry["attributes"] = _flat_attributes(event.attributes)
        out.append(entry)
    return out


def span_links(links: Iterable[SpanLink]) -> list[dict[str, Any]]:
    """A span's ``span.links`` (see the module docstring)."""
    out = []
    for link in links:
        linked: dict[str, Any] = {"trace": {"id": link.trace_id}, "span": {"id": link.span_id}}
        if link.attributes:
            linked["attributes"] = _flat_attributes(link.attributes)
        out.append(linked)
    return out


def span_document(
    span: Span,
    dataset: str,
    namespace: str,
    now_unix_nano: int | None = None,
    resource_fields: AttributeFields | None = None,
) -> dict[str, Any]:
    """The ECS document for one span routed to ``traces-<dataset>-<namespace>``.

    ``resource_fields`` is ``attribute_fields(span.resource)``, when the caller has it already.
    """
    flat: dict[str, Any] = {}
    ts = span.start_time_unix_nano if span.start_time_unix_nano > 0 else span.end_time_unix_nano
    if ts <= 0:
        ts = now_unix_nano if now_unix_nano is not None else time.time_ns()
    flat["@timestamp"] = format_timestamp(ts)
    flat["trace.id"] = span.trace_id
    flat["span.id"] = span.span_id
    if span.parent_span_id:
        flat["parent.id"] = span.parent_span_id
    flat["span.name"] = span.name
    kind = ECS_SPAN_KINDS.get(span.kind)
    if kind is not None:
        flat["span.kind"] = kind
    flat["event.duration"] = span.duration_ns
    flat["event.outcome"] = event_outcome(span)
    if span.status_message:
        flat["span.status.message"] = span.status_message
    if span.events:
        flat["span.events"] = span_events(span.events)
    if span.links:
        flat["span.links"] = span_links(span.links)
    scope: Scope | None = span.scope
    if scope is not None and scope.name:
        flat["service.framework.name"] = scope.name
        if scope.version:
            flat["service.framework.version"] = scope.version
    flat["data_stream.type"] = TRACES
    flat["data_stream.dataset"] = dataset
    flat["data_stream.namespace"] = namespace

    if resource_fields is None:
        resource_fields = attribute_fields(span.resource)
    sources = [(RECORD_NAMESPACE, attribute_fields(span.attributes, SPAN_SEMCONV_TO_ECS))]
    if scope is not None and scope.attributes:
        sources.append((SCOPE_NAMESPACE, attribute_fields(scope.attributes)))
    sources.append((RESOURCE_NAMESPACE, resource_fields))
    place_attributes(flat, sources)
    return nest(flat)


# ---------------------------------------------------------------------------------------------------
# Identity


def _canonical_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, set | frozenset):
        return sorted((json_value(v) for v in value), key=repr)
    return str(value)


_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _canonical(value: Any) -> bytes:
    try:
        # String keys (nearly every record) serialize the same without OPT_NON_STR_KEYS, and faster.
        return orjson.dumps(value, default=_canonical_default, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError
        pass
    try:
        return orjson.dumps(value, default=_canonical_default, option=_CANONICAL)
    except TypeError:
        # Integers beyond 64 bits, lone surrogates, keys orjson cannot order: the sanitized form is
        # as deterministic.
        return orjson.dumps(utf8_safe(json_value(value)), default=_canonical_default, option=_CANONICAL)


def record_digest(record: LogRecord, resource_digest: bytes) -> bytes:
    """A 16-byte hash of everything that makes a record the record it is."""
    h = hashlib.blake2b(resource_digest, digest_size=16)
    h.update(
        _canonical(
            [
                record.time_unix_nano,
                record.observed_time_unix_nano,
                record.severity_number,
                record.severity_text,
                record.body,
                record.attributes,
                record.trace_id,
                record.span_id,
                record.scope_name,
            ]
        )
    )
    return h.digest()


def resource_digest(resource: Mapping[str, Any]) -> bytes:
    return hashlib.blake2b(_canonical(resource), digest_size=16).digest()


class DocumentIds:
    """Assigns deterministic ``_id``s, each a function of its record alone.

    Resources are usually shared by many records, so each distinct resource object is hashed once.
    """

    def __init__(self) -> None:
        self._resources: dict[int, tuple[Mapping[str, Any], bytes]] = {}

    def __call__(self, record: LogRecord) -> str:
        held = self._resources.get(id(record.resource))
        if held is None or held[0] is not record.resource:
            held = self._resources[id(record.resource)] = (record.resource, resource_digest(record.resource))
        return document_id(record, held[1])


_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def document_id(record: LogRecord, resource_digest: bytes) -> str:
    """A record's ``_id`` given its resource's ``resource_digest``: ``record_digest`` in URL-safe
    base64 without padding (as ``base64.urlsafe_b64encode``, in fewer calls per record)."""
    encoded = binascii.b2a_base64(record_digest(record, resource_digest), newline=False)
    return encoded.rstrip(b"=").translate(_URL_SAFE).decode("ascii")


def span_document_id(span: Span) -> str:
    """A span's ``_id``: its trace id and span id, lower-case hex (ValueError for invalid ids).

    Unique per span and the same however often the span is sent, so a retry answers 409.
    """
    return require_hex_id(span.trace_id, TRACE_ID_BYTES, "trace id") + require_hex_id(
        span.span_id, SPAN_ID_BYTES, "span id"
    )


def document_ids(records: Iterable[LogRecord]) -> list[str]:
    """The ``_id``s of a batch of records, in order (see ``DocumentIds``)."""
    assign = DocumentIds()
    return [assign(record) for record in records]
