"""Fluent Bit / Fluentd records -> LogRecord (OpenTelemetry semantics).

Both Fluent receivers (Forward, Fluent Bit HTTP) call :func:`normalize_fluent` once per batch. The
mapping (the input records themselves are never modified):

Resource (one dict object shared by every record of a source within a batch): Fluent Bit's
Kubernetes maps, Docker's fluentd logging driver fields, a record's own ``service.name``
(:mod:`collector.normalize.fluent_resource`).

Body: the first of ``log`` (tail / CRI / Docker), ``message``, ``msg``, ``MESSAGE`` (journald); the
other top-level keys become attributes, except those consumed: ``kubernetes``,
``kubernetes_namespace``, ``stream`` (-> ``log.iostream``), the CRI ``logtag`` / ``_p`` partial-line
flags, and ``time`` when it is a date-time string (the runtime's timestamp, which the record's time
already is). Trailing newlines are stripped. Bytes are decoded as UTF-8.

JSON bodies (``parse_json_body``, on by default; only strings that start with ``{`` and end with
``}`` are tried): the first of ``message``, ``msg``, ``log`` becomes the body and the other fields
become attributes, nested objects kept as they are (not flattened: OpenTelemetry attributes may be
maps, and the Elasticsearch exporter maps objects natively). Without a message field the body stays
the JSON text. Invalid JSON leaves the body as it is. A map body (Fluentd) with a message field is
spread the same way; without one it stays a map body. Parsed fields override top-level keys of the
same name, and top-level copies of consumed fields (Fluent Bit ``Merge_Log`` with ``Keep_Log On``)
are dropped.

Severity (:mod:`collector.normalize.severity`): the first recognized of ``level``, ``severity``,
``log.level``, ``levelname``, ``lvl``, ``loglevel``, ``log_level`` (names or pino/bunyan/Google
numbers), then journald ``PRIORITY`` and the syslog ``pri`` (syslog numbers), looked up in the JSON
body first, then the record; the field is consumed (``pri`` is kept: it also carries the facility).
Else, with ``severity_from_body`` (on by default), a level stated at the start of a text body:
``ERROR ...``, ``[warn]``, ``WARNING:root:``, klog ``E0102 15:04:05.000000``, logfmt ``level=error``.
Else unspecified: ``stream: stderr`` is deliberately not read as an error, because Python's logging,
Go's log and klog write every level to stderr, and a guess would burn error budgets.

Trace correlation: ``trace_id``, ``traceId``, ``traceID``, ``trace.id``, ``traceid``,
``otelTraceID``, ``dd.trace_id``, ``logging.googleapis.com/trace`` (``projects/*/traces/<id>``) and
``span_id``, ``spanId``, ``spanID``, ``span.id``, ``spanid``, ``otelSpanID``, ``dd.span_id``,
``logging.googleapis.com/spanId`` -> LogRecord.trace_id / span_id, lower-case hex. A trace id is 32
hex digits, or 16 (64-bit Jaeger/B3 ids, left-padded with zeros as Jaeger itself does); a span id is
16; all-zero ids are invalid. Valid ids are consumed; invalid ones stay in the attributes. Datadog's
usual decimal ``dd.trace_id`` is not converted: it holds only the low 64 bits of a possibly 128-bit
id, so the converted id could name the wrong trace. A W3C ``traceparent`` fills in what is still
missing and is kept (its trace flags have no field in the model).

Time: the record's own time, from the first of ``time_keys`` (default ``time``, ``timestamp``,
``@timestamp``, ``ts``; JSON body fields before top-level ones) that holds a time
(:mod:`collector.normalize.record_time`: EventTime, epoch s/ms/us/ns numbers or numeric strings,
RFC 3339); the field is consumed unless ``keep_time_key``. Else the entry's time (what the Fluent
client sent; for Fluent Bit's HTTP JSON formats its ``json_date_key``, else the arrival time). A
value that is no time stays among the attributes. ``observed_time_unix_nano`` is always the arrival.

Values: keys become strings and NaN/±Inf the strings "NaN"/"Infinity"/"-Infinity"
(:mod:`collector.normalize.values`), so every exporter and ``burnline logs --json`` can write them.

Every record also gets ``fluent.tag``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Final

import orjson

from collector.core.model import LogRecord
from collector.core.trace_ids import hex_id
from collector.normalize.fluent_config import FluentNormalizeConfig
from collector.normalize.fluent_resource import Resources
from collector.normalize.record_time import parse_time_ns
from collector.normalize.severity import (
    severity_from_field,
    severity_from_line,
    severity_from_syslog,
)
from collector.normalize.values import clean_map, clean_value, is_clean


def normalize_fluent(
    tag: str,
    entries: Iterable[tuple[int, Any]],
    config: FluentNormalizeConfig,
    observed_time_unix_nano: int,
    rejected: list[tuple[Any, str]] | None = None,
) -> list[LogRecord]:
    """Maps ``(time_unix_nano, record)`` entries that arrived under ``tag`` to log records.

    Record i gets ``observed_time_unix_nano + i``: two equal lines in one receipt stay two records
    (exporters derive idempotency ids from a record's content), and the order of arrival is kept.
    An entry that cannot be mapped (nested too deeply to walk) is appended to ``rejected`` with the
    reason (raised when ``rejected`` is None); the others still are.
    """
    mapper = _Mapper(tag, config)
    out: list[LogRecord] = []
    append = out.append
    observed = observed_time_unix_nano - 1
    for entry_time_ns, record in entries:
        observed += 1
        try:
            append(mapper.record(entry_time_ns, record, observed))
        except RecursionError:
            if rejected is None:
                raise
            rejected.append((record, "the record is nested too deeply to map"))
    return out


class _Mapper:
    """The mapping of one batch's records (its resource cache shared between them)."""

    __slots__ = (
        "body_severity",
        "keep_time_key",
        "parse_json",
        "resources",
        "tag",
        "time_key_set",
        "time_keys",
    )

    def __init__(self, tag: str, config: FluentNormalizeConfig) -> None:
        self.tag = tag
        self.parse_json = config.parse_json_body
        self.body_severity = config.severity_from_body
        self.time_keys = tuple(config.time_keys)
        self.time_key_set = frozenset(config.time_keys)  # most records hold none: a C-speed check first
        self.keep_time_key = config.keep_time_key
        self.resources = Resources(config)

    def record(self, entry_time_ns: int, record: Any, observed: int) -> LogRecord:
        tag = self.tag
        resources = self.resources
        parse_json = self.parse_json
        time_ns = entry_time_ns
        if type(record) is not dict:
            # The receivers hand maps only; anything else is kept whole rather than lost.
            return LogRecord(
                time_unix_nano=time_ns,
                body=clean_value(record),
                attributes={"fluent.tag": tag},
                resource=resources.empty,
                observed_time_unix_nano=observed,
            )
        # String keys, no NaN: what every exporter can write (a copy only when something changes).
        attributes = _clean_fields(record)

        stream = attributes.pop("stream", None)
        if "kubernetes" in attributes or "kubernetes_namespace" in attributes:
            resource = resources.kubernetes(attributes)
        elif "container_id" in attributes and "container_name" in attributes:
            resource = resources.docker(attributes)
            if stream is None and attributes.get("source") in _STREAMS:
                stream = attributes.pop("source")
        else:
            resource = resources.empty
        attributes.pop("logtag", None)
        attributes.pop("_p", None)

        body: Any = None
        for key in _BODY_KEYS:
            body = attributes.pop(key, None)
            if body is not None:
                break
        if type(body) is bytes:
            body = body.decode("utf-8", "replace")
        fields: dict[str, Any] | None = None
        if type(body) is str:
            if body.endswith(_NEWLINES):
                body = body.rstrip("\r\n")
            if parse_json and body.startswith("{") and body.endswith("}"):
                fields = _json_object(body)
                if fields is not None:
                    fields = clean_map(fields)  # integers beyond int64
                    body = _take_message(fields, attributes, body)
        elif type(body) is dict and parse_json and not _MESSAGE_KEYS.isdisjoint(body):
            fields = dict(body)
            body = _take_message(fields, attributes, body)

        severity_number, severity_text, trace_id, span_id, service = _take_fields(fields, attributes)
        if not severity_number and self.body_severity and type(body) is str and body:
            severity_number, severity_text = severity_from_line(body)
        if service:
            resource = resources.with_service_name(resource, service)
        key_set = self.time_key_set
        if not key_set.isdisjoint(attributes) or (fields and not key_set.isdisjoint(fields)):
            own_time = _take_time(self.time_keys, self.keep_time_key, fields, attributes)
            if own_time is not None:
                time_ns = own_time
        if fields:
            attributes.update(fields)
        if stream is not None:
            attributes["log.iostream"] = stream
        attributes["fluent.tag"] = tag
        # Positional (in LogRecord's field order): measurably cheaper than keywords on this path.
        return LogRecord(
            time_ns,
            body,
            severity_number,
            severity_text,
            attributes,
            resource,
            trace_id,
            span_id,
            observed,
        )


# Fluent Bit's Kubernetes maps: every record of a pod repeats them, and they become the pod's shared
# resource, so they are cleaned once per resource built (fluent_resource.py), not once per record.
_RESOURCE_MAPS: Final = frozenset({"kubernetes", "kubernetes_namespace"})


def _clean_fields(record: dict[Any, Any]) -> dict[str, Any]:
    """A copy of ``record`` with string keys and clean values, its Kubernetes maps left as they came."""
    for key, value in record.items():
        if type(key) is not str:
            break
        kind = type(value)
        if kind is str or (kind is dict and key in _RESOURCE_MAPS):
            continue
        if not is_clean(value, 1):  # a field: one level below the record
            break
    else:
        return dict(record)
    return dict(clean_map(record))


_BODY_KEYS: Final = ("log", "message", "msg", "MESSAGE")
_MESSAGE_KEY_ORDER: Final = ("message", "msg", "log")
_MESSAGE_KEYS: Final = frozenset(_MESSAGE_KEY_ORDER)
_NEWLINES: Final = ("\n", "\r")
_STREAMS: Final = ("stdout", "stderr")
_NS_PER_S: Final = 1_000_000_000


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if type(value) is dict else None


def _take_message(fields: dict[str, Any], attributes: dict[str, Any], body: Any) -> Any:
    """Pops the message field of a structured body; returns the new body (``body`` if none)."""
    for key in _MESSAGE_KEY_ORDER:
        if key in fields:
            message = fields.pop(key)
            _drop_copy(attributes, key, message)
            return message.rstrip("\r\n") if type(message) is str else message
    return body


def _drop_copy(attributes: dict[str, Any], key: str, value: Any) -> None:
    # Fluent Bit's Merge_Log with Keep_Log On puts the parsed fields beside the raw line.
    if key in attributes and attributes[key] == value:
        del attributes[key]


# ---- level, trace ids and service name from fields --------------------------------------------

# (severity_number, severity_text, trace_id, span_id, service_name)
_Found = tuple[int, str, str, str, str]
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}", re.ASCII | re.IGNORECASE)


def _trace_id(value: Any) -> str:
    # 64-bit ids (Jaeger, B3) are left-padded with zeros, as Jaeger does for OTLP.
    if type(value) is str and len(value) == 16:
        padded = hex_id(value, 8)
        return padded.rjust(32, "0") if padded else ""
    return hex_id(value, 16)


def _gcp_trace_id(value: Any) -> str:
    # Google Cloud Logging: "projects/<project>/traces/<32 hex>".
    if type(value) is not str:
        return ""
    return _trace_id(value[value.rfind("/") + 1 :])


def _span_id(value: Any) -> str:
    return hex_id(value, 8)


def _service_name(value: Any) -> str:
    if type(value) is not str or not value or value.startswith("unknown_service"):
        return ""
    return value


def _level(value: Any) -> tuple[int, str] | None:
    found = severity_from_field(value)
    return found if found[0] else None


def _syslog_severity(value: Any) -> tuple[int, str] | None:
    found = severity_from_syslog(value)
    return found if found[0] else None


def _syslog_priority(value: Any) -> tuple[int, str] | None:
    found = severity_from_syslog(value, priority=True)
    return found if found[0] else None


# Per kind, field -> (reader, consumed), the earlier field winning. A reader returns a falsy value for
# values it refuses; those stay as attributes.
_SEVERITY_FIELDS: Final[dict[str, tuple[Callable[[Any], Any], bool]]] = {
    "level": (_level, True),
    "severity": (_level, True),
    "log.level": (_level, True),
    "levelname": (_level, True),
    "lvl": (_level, True),
    "loglevel": (_level, True),
    "log_level": (_level, True),
    "PRIORITY": (_syslog_severity, True),
    "pri": (_syslog_priority, False),  # kept: it carries the facility too
}
_TRACE_FIELDS: Final[dict[str, tuple[Callable[[Any], Any], bool]]] = {
    "trace_id": (_trace_id, True),
    "traceId": (_trace_id, True),
    "traceID": (_trace_id, True),
    "trace.id": (_trace_id, True),
    "traceid": (_trace_id, True),
    "otelTraceID": (_trace_id, True),
    "dd.trace_id": (_trace_id, True),
    "logging.googleapis.com/trace": (_gcp_trace_id, True),
}
_SPAN_FIELDS: Final[dict[str, tuple[Callable[[Any], Any], bool]]] = {
    "span_id": (_span_id, True),
    "spanId": (_span_id, True),
    "spanID": (_span_id, True),
    "span.id": (_span_id, True),
    "spanid": (_span_id, True),
    "otelSpanID": (_span_id, True),
    "dd.span_id": (_span_id, True),
    "logging.googleapis.com/spanId": (_span_id, True),
}
_SERVICE_FIELDS: Final[dict[str, tuple[Callable[[Any], Any], bool]]] = {
    "service.name": (_service_name, True),
    "otelServiceName": (_service_name, True),
}
_SEVERITY_KEYS: Final = frozenset(_SEVERITY_FIELDS)
_TRACE_KEYS: Final = frozenset(_TRACE_FIELDS)
_SPAN_KEYS: Final = frozenset(_SPAN_FIELDS)
_SERVICE_KEYS: Final = frozenset(_SERVICE_FIELDS)
_FIELD_KEYS: Final = _SEVERITY_KEYS | _TRACE_KEYS | _SPAN_KEYS | _SERVICE_KEYS | {"traceparent"}


# The kinds of special field, in the order they are read (the index into _take_fields' findings).
_SEVERITY, _TRACE, _SPAN, _SERVICE = range(4)
_KINDS: Final = (
    (_SEVERITY, _SEVERITY_FIELDS),
    (_TRACE, _TRACE_FIELDS),
    (_SPAN, _SPAN_FIELDS),
    (_SERVICE, _SERVICE_FIELDS),
)
# (kind, field, reader, consumed), in reading order
_Step = tuple[int, str, Callable[[Any], Any], bool]
_MAX_PLANS = 1024
_plans: dict[frozenset[str], tuple[_Step, ...]] = {}


def _plan(present: frozenset[str]) -> tuple[_Step, ...]:
    """The fields of ``present`` to try, kind by kind, each kind's fields in their order of
    precedence; kept in ``_plans``, since the records of a workload repeat their special fields."""
    plan = tuple(
        (kind, key, read, consumed)
        for kind, readers in _KINDS
        for key, (read, consumed) in readers.items()
        if key in present
    )
    if len(_plans) >= _MAX_PLANS:
        _plans.clear()  # ever-new combinations (there are at most a few thousand): start over
    _plans[present] = plan
    return plan


def _take_fields(fields: dict[str, Any] | None, attributes: dict[str, Any]) -> _Found:
    """Severity, trace id, span id and service name from the JSON body's fields, then the record's.

    Per kind, the first field (in the order of the tables above) whose reader accepts its value
    wins and is removed (with its top-level copy); refused values stay as attributes.
    """
    found: list[Any] = [None, "", "", ""]
    for source in (fields, attributes) if fields else (attributes,):
        # A set operation in C finds the few special keys a record holds; most hold none.
        present = _FIELD_KEYS.intersection(source)
        if not present:
            continue
        plan = _plans.get(present)
        for kind, key, read, consumed in plan if plan is not None else _plan(present):
            if found[kind]:
                continue
            value = source[key]
            result = read(value)
            if result:
                found[kind] = result
                if consumed:
                    _consume(source, attributes, key, value)
        if (not found[_TRACE] or not found[_SPAN]) and "traceparent" in present:
            match = _traceparent(source["traceparent"])  # read, not consumed: its flags have no field
            if match is not None:
                found[_TRACE] = found[_TRACE] or match[0]
                found[_SPAN] = found[_SPAN] or match[1]
    severity, trace_id, span_id, service = found
    if severity is None:
        return 0, "", trace_id, span_id, service
    return severity[0], severity[1], trace_id, span_id, service


def _traceparent(value: Any) -> tuple[str, str] | None:
    match = _TRACEPARENT.fullmatch(value) if type(value) is str else None
    if match is None:
        return None
    return _trace_id(match.group(1)), _span_id(match.group(2))


def _consume(source: dict[str, Any], attributes: dict[str, Any], key: str, value: Any) -> None:
    del source[key]
    if source is not attributes:
        _drop_copy(attributes, key, value)


# ---- time --------------------------------------------------------------------------------------


def _take_time(
    keys: tuple[str, ...], keep: bool, fields: dict[str, Any] | None, attributes: dict[str, Any]
) -> int | None:
    """The first readable time among ``keys`` (JSON body fields first). Unless ``keep``, every
    readable time field is consumed: the others are the same event's time as a runtime or a
    shipper wrote it (CRI's ``time`` beside the application's ``ts``). A value that is no time
    stays where it is, so the raw value is never lost.
    """
    found: int | None = None
    for source in (fields, attributes) if fields else (attributes,):
        for key in keys:
            if key in source:
                value = source[key]
                parsed = parse_time_ns(value)
                if parsed is None:
                    continue
                if found is None:
                    found = parsed
                    if keep:
                        return found
                _consume(source, attributes, key, value)
    return found
