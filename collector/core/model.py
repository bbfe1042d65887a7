"""The one data model every receiver produces and every exporter consumes.

Semantics follow OpenTelemetry: resource attributes (``service.name``, ``k8s.pod.name``, ...) describe
the source, records carry their own attributes, times are Unix nanoseconds, trace and span ids are
lower-case hex strings ("" when absent). Exporters translate at their edge (ECS for Elasticsearch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Final, NoReturn


class Signal(StrEnum):
    LOGS = "logs"
    TRACES = "traces"
    METRICS = "metrics"


class Severity(IntEnum):
    """The first number of each OpenTelemetry severity range (SeverityNumber)."""

    UNSPECIFIED = 0
    TRACE = 1
    DEBUG = 5
    INFO = 9
    WARN = 13
    ERROR = 17
    FATAL = 21


def severity_name(number: int) -> str:
    """The short OpenTelemetry severity text for a SeverityNumber (1-24), "" when unspecified."""
    if number <= 0:
        return ""
    for level in (Severity.FATAL, Severity.ERROR, Severity.WARN, Severity.INFO, Severity.DEBUG):
        if number >= level:
            return level.name
    return Severity.TRACE.name


class FrozenEmptyList(list[Any]):
    """An empty list that refuses to be filled: the one default of the model's list fields.

    A point or span rarely holds buckets, quantiles, exemplars, events or links, and an empty list of
    its own costs 56 bytes: 336 of the about 1,000 a converted remote-write sample took with six of
    them. Every reader sees a list; whoever wants items assigns a new list instead of filling this one.
    """

    __slots__ = ()
    # dataclasses refuse an unhashable default; this one cannot change, so identity is its hash.
    __hash__ = object.__hash__  # type: ignore[assignment]

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("the model's default empty list is shared: assign a new list instead of filling it")

    append = extend = insert = pop = remove = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse

    def __reduce__(self) -> str:
        # Pickled and copied as the module's one instance, which every protocol can do.
        return "NO_ITEMS"


NO_ITEMS: list[Any] = FrozenEmptyList()


@dataclass(slots=True)
class Scope:
    """The instrumentation scope (OTLP InstrumentationScope plus its container's schema_url).

    Shared by every record of one scope: treat as read-only.
    """

    name: str = ""
    version: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    dropped_attributes_count: int = 0
    schema_url: str = ""


@dataclass(slots=True)
class LogRecord:
    """One log record (OpenTelemetry LogRecord plus its resource).

    ``resource`` is often the same dict object for every record of one source: treat it as read-only
    and copy before changing it.
    """

    time_unix_nano: int
    body: Any = None
    severity_number: int = 0
    severity_text: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    trace_id: str = ""
    span_id: str = ""
    observed_time_unix_nano: int = 0
    scope_name: str = ""
    # What OTLP carries beyond the above; kept so that OTLP in -> OTLP out loses nothing.
    scope: Scope | None = None
    flags: int = 0
    dropped_attributes_count: int = 0
    event_name: str = ""
    resource_schema_url: str = ""
    resource_dropped_attributes_count: int = 0

    @property
    def service_name(self) -> str:
        return _service_name(self.resource)


def _service_name(resource: dict[str, Any]) -> str:
    value = resource.get("service.name", "")
    return value if isinstance(value, str) else str(value)


class SpanKind(IntEnum):
    UNSPECIFIED = 0
    INTERNAL = 1
    SERVER = 2
    CLIENT = 3
    PRODUCER = 4
    CONSUMER = 5


class StatusCode(IntEnum):
    UNSET = 0
    OK = 1
    ERROR = 2


# Plain ints for what every span is checked against: reading an IntEnum member from its class costs
# about 80 ns on CPython 3.11 (a descriptor), a module global a few; is_error runs once per span
# on the way to Elasticsearch and to the local store.
_STATUS_ERROR: Final = int(StatusCode.ERROR)
_SERVER_SIDE_KINDS: Final = frozenset({int(SpanKind.SERVER), int(SpanKind.UNSPECIFIED)})
_HTTP_STATUS_KEYS: Final = ("http.response.status_code", "http.status_code")


@dataclass(slots=True)
class SpanEvent:
    time_unix_nano: int
    name: str
    attributes: dict[str, Any] = field(default_factory=dict)
    dropped_attributes_count: int = 0


@dataclass(slots=True)
class SpanLink:
    trace_id: str
    span_id: str
    trace_state: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    dropped_attributes_count: int = 0
    flags: int = 0


@dataclass(slots=True)
class Span:
    """One span with its resource and scope (OpenTelemetry Span, every OTLP field kept).

    Attribute values keep OTLP's types: str, bool, int, float, bytes, list, dict, None (empty).
    Derived values the SLO engine needs are properties, computed when asked.
    """

    trace_id: str
    span_id: str
    name: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    parent_span_id: str = ""
    trace_state: str = ""
    flags: int = 0
    kind: int = SpanKind.UNSPECIFIED
    attributes: dict[str, Any] = field(default_factory=dict)
    dropped_attributes_count: int = 0
    events: list[SpanEvent] = NO_ITEMS
    dropped_events_count: int = 0
    links: list[SpanLink] = NO_ITEMS
    dropped_links_count: int = 0
    status_code: int = StatusCode.UNSET
    status_message: str = ""
    resource: dict[str, Any] = field(default_factory=dict)
    resource_schema_url: str = ""
    resource_dropped_attributes_count: int = 0
    scope: Scope = field(default_factory=Scope)

    @property
    def service_name(self) -> str:
        return _service_name(self.resource)

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_time_unix_nano - self.start_time_unix_nano)

    @property
    def http_status_code(self) -> int | None:
        """From the stable semantic conventions' name, or the pre-1.21 one."""
        for key in _HTTP_STATUS_KEYS:
            value = self.attributes.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, str) and value.isdigit():
                return int(value)
        return None

    @property
    def is_error(self) -> bool:
        """Status ERROR, or a 5xx answer from a server span (4xx are the client's errors)."""
        if self.status_code == _STATUS_ERROR:
            return True
        if self.kind not in _SERVER_SIDE_KINDS:
            return False
        code = self.http_status_code
        return code is not None and code >= 500


class MetricKind(StrEnum):
    GAUGE = "gauge"
    SUM = "sum"
    HISTOGRAM = "histogram"
    EXPONENTIAL_HISTOGRAM = "exponential_histogram"
    SUMMARY = "summary"


class Temporality(IntEnum):
    UNSPECIFIED = 0
    DELTA = 1
    CUMULATIVE = 2


@dataclass(slots=True)
class Exemplar:
    time_unix_nano: int
    value: float | int
    filtered_attributes: dict[str, Any] = field(default_factory=dict)
    trace_id: str = ""
    span_id: str = ""


# OpenTelemetry's DataPointFlags.NO_RECORDED_VALUE in MetricPoint.flags: the series ended (what a
# Prometheus stale marker says).
FLAG_NO_RECORDED_VALUE = 1


@dataclass(slots=True)
class MetricPoint:
    """One data point of one metric series, with the metric's identity, resource and scope.

    OTLP's Metric -> data points nesting is flattened: exporters group points back by
    (resource, scope, name). Prometheus samples map here too: a counter is a monotonic cumulative SUM,
    a histogram's cumulative ``le`` buckets become per-bucket ``bucket_counts``.
    """

    name: str
    kind: MetricKind
    time_unix_nano: int
    attributes: dict[str, Any] = field(default_factory=dict)
    start_time_unix_nano: int = 0
    description: str = ""
    unit: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    # gauge and sum
    value: float | int | None = None
    temporality: int = Temporality.UNSPECIFIED  # sum, histogram, exponential histogram
    monotonic: bool = False  # sum
    # histogram, exponential histogram and summary
    count: int = 0
    sum: float | None = None
    min: float | None = None
    max: float | None = None
    bucket_counts: list[int] = NO_ITEMS  # histogram: one more than bounds
    explicit_bounds: list[float] = NO_ITEMS
    scale: int = 0  # exponential histogram
    zero_count: int = 0
    zero_threshold: float = 0.0
    positive_offset: int = 0
    positive_bucket_counts: list[int] = NO_ITEMS
    negative_offset: int = 0
    negative_bucket_counts: list[int] = NO_ITEMS
    quantiles: list[tuple[float, float]] = NO_ITEMS  # summary: (quantile, value)
    exemplars: list[Exemplar] = NO_ITEMS
    flags: int = 0
    resource: dict[str, Any] = field(default_factory=dict)
    resource_schema_url: str = ""
    resource_dropped_attributes_count: int = 0
    scope: Scope = field(default_factory=Scope)


@dataclass(slots=True)
class Batch:
    """A batch of items of one signal, the unit that moves through pipelines.

    ``size_bytes`` is an estimate of the batch's size (usually its size on the wire), used to bound
    queues and bulk requests without serializing twice.

    ``wire`` is the serialized OTLP export request the items were read from, while it still holds
    exactly them: the OTLP receiver sets it when it kept every item of a request, and any step that
    changes, drops or adds items makes a new batch without it (a pipeline whose processors change
    records, a split). The otlp exporter sends it as it is instead of encoding the items again;
    every durable queue stores it instead of the items' rows, and only the otlp exporter's queue
    holds it in memory.
    Serialized OTLP requests concatenate into their merged request.
    """

    signal: Signal
    items: list[Any]
    size_bytes: int = 0
    wire: bytes | None = None

    def __len__(self) -> int:
        return len(self.items)
