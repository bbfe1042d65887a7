"""Fluent Bit / Fluentd records -> LogRecord (OpenTelemetry semantics).

Both Fluent receivers (Forward, Fluent Bit HTTP) call :func:`normalize_fluent` once per batch. The
mapping (the input records themselves are never modified):

Resource (one dict object shared by every record of a source within a batch):
  * Fluent Bit's ``kubernetes`` map: ``namespace_name`` -> ``k8s.namespace.name``, ``pod_name`` ->
    ``k8s.pod.name``, ``pod_id`` -> ``k8s.pod.uid``, ``container_name`` -> ``k8s.container.name``,
    ``host`` -> ``k8s.node.name``, ``pod_ip`` -> ``k8s.pod.ip``, ``docker_id`` -> ``container.id``,
    ``container_image`` -> ``container.image.name`` + ``container.image.tags`` (or
    ``container.image.id`` when the runtime reports only ``sha256:...``), ``container_hash`` ->
    ``container.image.repo_digests`` (``repo@sha256:...``) or ``container.image.id``;
    ``ownerReferences`` (Fluent Bit ``Owner_References On``) -> ``k8s.replicaset.name`` and
    ``k8s.deployment.name`` (the ReplicaSet name minus its ``pod-template-hash``),
    ``k8s.statefulset.name``, ``k8s.daemonset.name``, ``k8s.job.name``, ``k8s.cronjob.name``.
    Labels -> ``k8s.pod.label.<key>`` (``kubernetes_labels``, on by default), annotations ->
    ``k8s.pod.annotation.<key>`` (``kubernetes_annotations``, off by default: annotations are often
    large, e.g. ``kubectl.kubernetes.io/last-applied-configuration``). The ``kubernetes_namespace``
    map (``Namespace_Labels``/``Namespace_Annotations``) -> ``k8s.namespace.label.<key>`` /
    ``k8s.namespace.annotation.<key>`` under the same two switches. Other keys of the map (Fluent
    Bit internals such as ``aws_entity_*``) are dropped.
  * Pod annotations ``resource.opentelemetry.io/<attribute>`` become ``<attribute>``, whatever the
    switches say (OpenTelemetry's way for a pod to declare its own resource).
  * ``service.name``: the annotation above, else the first set pod label of ``service_name_from``
    (default ``app.kubernetes.io/name``, ``app``, ``k8s-app``; ``[]`` turns label use off), else the
    workload (deployment, statefulset, daemonset, cronjob, job; only with owner references), else
    the container name (stable across restarts, unlike the pod name, which is the last resort).
    ``service.namespace``: annotation, else the Kubernetes namespace. ``service.version``:
    annotation, else label ``app.kubernetes.io/version``, else the image tag. This follows the
    OpenTelemetry "k8s attributes" recommendations, except that it reads ``app.kubernetes.io/name``
    before ``app.kubernetes.io/instance`` (a Helm release name is not a service name).
  * A record's own ``service.name`` (or ``otelServiceName``, from OpenTelemetry's Python logging
    instrumentation), at its top level or in its JSON body, wins over all of the above: the
    application declares its identity, the labels are a heuristic. Values starting with
    ``unknown_service`` (the SDK default) count as unset. A bare ``service`` key is not read: too
    many logs use it for something else (the remote service called).
  * Docker's fluentd logging driver (``container_id``, ``container_name``, ``source``) ->
    ``container.id``, ``container.name`` (no leading ``/``), ``log.iostream``.
  * Other records get an empty resource.

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
from typing import Any, Final, TypeGuard

import orjson
from pydantic import Field

from collector.core.component import ComponentConfig
from collector.core.model import LogRecord
from collector.normalize.record_time import parse_time_ns
from collector.normalize.severity import (
    severity_from_field,
    severity_from_line,
    severity_from_syslog,
)
from collector.normalize.values import clean_map, clean_value

Resource = dict[str, Any]

DEFAULT_TIME_KEYS: Final = ("time", "timestamp", "@timestamp", "ts")


class FluentNormalizeConfig(ComponentConfig):
    """How a receiver of Fluent records maps them (the ``normalize:`` key of forward/fluentbit_http)."""

    # service.name is the first of these pod labels that is set, else the workload or container name.
    service_name_from: list[str] = Field(default_factory=lambda: ["app.kubernetes.io/name", "app", "k8s-app"])
    # Pod and namespace labels -> k8s.pod.label.<key> / k8s.namespace.label.<key>.
    kubernetes_labels: bool = True
    # Pod and namespace annotations -> k8s.pod.annotation.<key> / k8s.namespace.annotation.<key>.
    kubernetes_annotations: bool = False
    # A body that is a JSON object: its message field becomes the body, the rest attributes.
    parse_json_body: bool = True
    # Without a level field, read a level stated at the start of a text body ("ERROR ...").
    severity_from_body: bool = True
    # Record fields holding the event's own time, the first readable one winning (JSON body fields
    # before top-level ones); it becomes the record time, the arrival stays the observed time.
    # [] turns this off: the time the Fluent client sent is kept.
    time_keys: list[str] = Field(default_factory=lambda: list(DEFAULT_TIME_KEYS))
    # Keep the field that gave the time among the attributes (Fluent Bit's Time_Keep).
    keep_time_key: bool = False


def normalize_fluent(
    tag: str,
    entries: Iterable[tuple[int, dict[str, Any]]],
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
        self.resources = _Resources(config)

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
        attributes = dict(clean_map(record))

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


def _hex_id(value: Any, size: int) -> str:
    """``value`` as a lower-case hex id of ``size`` bytes, "" if it is not one (or is all zeros)."""
    if type(value) is not str or len(value) != 2 * size:
        return ""
    try:
        raw = bytes.fromhex(value)  # C speed; the length check above rules out its whitespace
    except ValueError:
        return ""
    return raw.hex() if len(raw) == size and any(raw) else ""


def _trace_id(value: Any) -> str:
    # 64-bit ids (Jaeger, B3) are left-padded with zeros, as Jaeger does for OTLP.
    if type(value) is str and len(value) == 16:
        padded = _hex_id(value, 8)
        return padded.rjust(32, "0") if padded else ""
    return _hex_id(value, 16)


def _gcp_trace_id(value: Any) -> str:
    # Google Cloud Logging: "projects/<project>/traces/<32 hex>".
    if type(value) is not str:
        return ""
    return _trace_id(value[value.rfind("/") + 1 :])


def _span_id(value: Any) -> str:
    return _hex_id(value, 8)


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


def _take_fields(fields: dict[str, Any] | None, attributes: dict[str, Any]) -> _Found:
    """Severity, trace id, span id and service name from the JSON body's fields, then the record's.

    Accepted fields are removed (with their top-level copies); refused values stay as attributes.
    """
    severity: tuple[int, str] | None = None
    trace_id = span_id = service = ""
    for source in (fields, attributes) if fields else (attributes,):
        # Set operations in C find the few special keys a record holds; most hold none.
        present = _FIELD_KEYS.intersection(source)
        if not present:
            continue
        if severity is None and not present.isdisjoint(_SEVERITY_KEYS):
            severity = _first(present & _SEVERITY_KEYS, _SEVERITY_FIELDS, source, attributes)
        if not trace_id and not present.isdisjoint(_TRACE_KEYS):
            trace_id = _first(present & _TRACE_KEYS, _TRACE_FIELDS, source, attributes) or ""
        if not span_id and not present.isdisjoint(_SPAN_KEYS):
            span_id = _first(present & _SPAN_KEYS, _SPAN_FIELDS, source, attributes) or ""
        if not service and not present.isdisjoint(_SERVICE_KEYS):
            service = _first(present & _SERVICE_KEYS, _SERVICE_FIELDS, source, attributes) or ""
        if (not trace_id or not span_id) and "traceparent" in present:
            match = _traceparent(source["traceparent"])  # read, not consumed: its flags have no field
            if match is not None:
                trace_id = trace_id or match[0]
                span_id = span_id or match[1]
    if severity is None:
        return 0, "", trace_id, span_id, service
    return severity[0], severity[1], trace_id, span_id, service


def _first(
    keys: frozenset[str],
    readers: dict[str, tuple[Callable[[Any], Any], bool]],
    source: dict[str, Any],
    attributes: dict[str, Any],
) -> Any:
    """The value of the first of ``keys`` (in ``readers`` order) its reader accepts, consumed."""
    for key in keys if len(keys) == 1 else [key for key in readers if key in keys]:
        read, consumed = readers[key]
        value = source[key]
        result = read(value)
        if result:
            if consumed:
                _consume(source, attributes, key, value)
            return result
    return None


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


# ---- resources ---------------------------------------------------------------------------------

_KUBERNETES_FIELDS: Final = (
    ("namespace_name", "k8s.namespace.name"),
    ("pod_name", "k8s.pod.name"),
    ("pod_id", "k8s.pod.uid"),
    ("container_name", "k8s.container.name"),
    ("host", "k8s.node.name"),
    ("pod_ip", "k8s.pod.ip"),
    ("docker_id", "container.id"),
)
_OWNER_KINDS: Final = {
    "StatefulSet": "k8s.statefulset.name",
    "DaemonSet": "k8s.daemonset.name",
    "Job": "k8s.job.name",
}
# After the labels, as OpenTelemetry orders them: from the workload down to the container.
_SERVICE_NAME_FALLBACKS: Final = (
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
    "k8s.container.name",
    "k8s.pod.name",
)
_RESOURCE_ANNOTATION: Final = "resource.opentelemetry.io/"
_EMPTY_MAP: Final[dict[str, Any]] = {}
# A CronJob names its Jobs <cronjob>-<scheduled minute since the epoch>.
_CRONJOB_SUFFIX_DIGITS: Final = 8


class _Resources:
    """The resource dicts of one batch: every record of one source gets the same dict object.

    Records decoded from msgpack each carry their own copy of the ``kubernetes`` map, so the cache
    is keyed by the map's identity first and by its pod and container second, checked by equality
    (a label changed between two records gives a new resource, not a stale one).
    """

    __slots__ = ("_by_container", "_by_identity", "_config", "_docker", "_service_names", "empty")

    def __init__(self, config: FluentNormalizeConfig) -> None:
        self._config = config
        self.empty: Resource = {}
        self._by_identity: dict[int, tuple[Any, Any, Resource]] = {}
        self._by_container: dict[tuple[Any, ...], tuple[Any, Any, Resource]] = {}
        self._docker: dict[tuple[str, str], Resource] = {}
        self._service_names: dict[tuple[int, str], tuple[Resource, Resource]] = {}

    def kubernetes(self, attributes: dict[str, Any]) -> Resource:
        """The resource of a record with Fluent Bit's kubernetes maps (popped from ``attributes``)."""
        kube = attributes.pop("kubernetes", None)
        if kube is not None and type(kube) is not dict:
            attributes["kubernetes"] = kube
            kube = None
        namespace = attributes.pop("kubernetes_namespace", None)
        if namespace is not None and type(namespace) is not dict:
            attributes["kubernetes_namespace"] = namespace
            namespace = None
        if kube is None and namespace is None:
            return self.empty

        entry = self._by_identity.get(id(kube))
        if entry is not None and entry[0] is kube and entry[1] is namespace:
            return entry[2]
        source = kube or _EMPTY_MAP
        key = (
            source.get("namespace_name"),
            source.get("pod_name"),
            source.get("container_name"),
            source.get("docker_id"),
            None if namespace is None else namespace.get("name"),
        )
        try:
            entry = self._by_container.get(key)
        except TypeError:  # an unhashable value where a name belongs: build, do not cache
            return _kubernetes_resource(source, namespace, self._config)
        if entry is not None and entry[0] == kube and entry[1] == namespace:
            return entry[2]  # an equal copy: maps decoded from msgpack are new objects per record
        entry = (kube, namespace, _kubernetes_resource(source, namespace, self._config))
        self._by_container[key] = entry
        # The entry holds kube, so its id cannot be reused by another map within the batch.
        self._by_identity[id(kube)] = entry
        return entry[2]

    def docker(self, attributes: dict[str, Any]) -> Resource:
        """The resource of a record from Docker's fluentd logging driver (keys popped)."""
        container_id = attributes.get("container_id")
        name = attributes.get("container_name")
        if type(container_id) is not str or type(name) is not str:
            return self.empty
        del attributes["container_id"], attributes["container_name"]
        resource = self._docker.get((container_id, name))
        if resource is None:
            resource = {"container.id": container_id, "container.name": name.lstrip("/")}
            self._docker[(container_id, name)] = resource
        return resource

    def with_service_name(self, resource: Resource, name: str) -> Resource:
        """``resource`` with the record's own service.name, shared by all records naming it."""
        if resource.get("service.name") == name:
            return resource
        key = (id(resource), name)
        entry = self._service_names.get(key)
        if entry is None or entry[0] is not resource:
            entry = (resource, {**resource, "service.name": name})
            self._service_names[key] = entry
        return entry[1]


def _kubernetes_resource(
    kube: dict[str, Any], namespace: dict[str, Any] | None, config: FluentNormalizeConfig
) -> Resource:
    resource: Resource = {}
    for field, attribute in _KUBERNETES_FIELDS:
        value = kube.get(field)
        if value is not None:
            resource[attribute] = value
    if namespace is not None and "k8s.namespace.name" not in resource:
        name = namespace.get("name")
        if name is not None:
            resource["k8s.namespace.name"] = name

    labels = _map(kube.get("labels"))
    annotations = _map(kube.get("annotations"))
    image_tag = None
    image = kube.get("container_image")
    if type(image) is str and image:
        image_tag = _add_image(resource, image)
    digest = kube.get("container_hash")
    if type(digest) is str and digest:
        if "@" in digest:
            resource["container.image.repo_digests"] = [digest]
        elif digest.startswith("sha256:"):
            resource["container.image.id"] = digest
    owners = kube.get("ownerReferences")
    if type(owners) is list:
        _add_workload(resource, owners, labels)

    namespace_labels = _map(namespace.get("labels")) if namespace is not None else _EMPTY_MAP
    namespace_annotations = _map(namespace.get("annotations")) if namespace is not None else _EMPTY_MAP
    if config.kubernetes_labels:
        for key, value in labels.items():
            resource[f"k8s.pod.label.{key}"] = value
        for key, value in namespace_labels.items():
            resource[f"k8s.namespace.label.{key}"] = value
    if config.kubernetes_annotations:
        for key, value in annotations.items():
            resource[f"k8s.pod.annotation.{key}"] = value
        for key, value in namespace_annotations.items():
            resource[f"k8s.namespace.annotation.{key}"] = value
    for key, value in annotations.items():
        if type(key) is str and key.startswith(_RESOURCE_ANNOTATION) and len(key) > len(_RESOURCE_ANNOTATION):
            resource[key[len(_RESOURCE_ANNOTATION) :]] = value

    if not _is_name(resource.get("service.name")):
        name = next((labels[k] for k in config.service_name_from if _is_name(labels.get(k))), None)
        if name is None:
            name = next((resource[k] for k in _SERVICE_NAME_FALLBACKS if _is_name(resource.get(k))), None)
        if name is not None:
            resource["service.name"] = name
    if "service.namespace" not in resource and _is_name(resource.get("k8s.namespace.name")):
        resource["service.namespace"] = resource["k8s.namespace.name"]
    if "service.version" not in resource:
        version = labels.get("app.kubernetes.io/version")
        if _is_name(version):
            resource["service.version"] = version
        elif image_tag:
            resource["service.version"] = image_tag
    return resource


def _map(value: Any) -> dict[Any, Any]:
    return value if type(value) is dict else _EMPTY_MAP


def _is_name(value: Any) -> TypeGuard[str]:
    return type(value) is str and value != ""


def _add_image(resource: Resource, image: str) -> str | None:
    """container.image.* from an image reference (``registry:5000/repo:tag@sha256:...``); its tag."""
    if image.startswith("sha256:"):  # the runtime knows the image only by its id
        resource["container.image.id"] = image
        return None
    name, _, digest = image.partition("@")
    tag = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
    if name:
        resource["container.image.name"] = name
    if tag:
        resource["container.image.tags"] = [tag]
    if digest and name:
        resource["container.image.repo_digests"] = [f"{name}@{digest}"]
    return tag or None


def _add_workload(resource: Resource, owners: list[Any], labels: dict[Any, Any]) -> None:
    """k8s.<workload>.name from the pod's controller owner reference."""
    candidates = [owner for owner in owners if type(owner) is dict]
    owner = next((o for o in candidates if o.get("controller") is True), None)
    if owner is None:
        if not candidates:
            return
        owner = candidates[0]
    kind, name = owner.get("kind"), owner.get("name")
    if type(kind) is not str or not _is_name(name):
        return
    if kind == "ReplicaSet":
        resource["k8s.replicaset.name"] = name
        template_hash = labels.get("pod-template-hash")
        if _is_name(template_hash) and name.endswith("-" + template_hash):
            resource["k8s.deployment.name"] = name[: -len(template_hash) - 1]
    elif kind in _OWNER_KINDS:
        resource[_OWNER_KINDS[kind]] = name
        if kind == "Job":
            base, _, suffix = name.rpartition("-")
            if base and len(suffix) >= _CRONJOB_SUFFIX_DIGITS and suffix.isascii() and suffix.isdigit():
                resource["k8s.cronjob.name"] = base
