"""The ``remote_write`` receiver: Prometheus remote-write 1.0 (snappy-compressed protobuf over HTTP).

A sender (Prometheus, Grafana Agent/Alloy, vmagent, the OpenTelemetry Collector) POSTs a
``prometheus.WriteRequest`` compressed with snappy's *block* format to ``path``. One request is one
batch: decoded whole, converted once, handed to the pipeline once, and answered 204 only when the
pipeline took it.

Answers, as the specification and Prometheus' own receiver give them (a sender retries 5xx, drops
the request on any other 4xx, and retries 429 only when configured to):

- 204: written.
- 400: the body is not snappy, not a WriteRequest, or holds invalid series (no ``__name__``, an
  empty or repeated label name, a native histogram this receiver cannot read). The valid series of
  such a request are still ingested, as the spec allows; the message names the first problems.
- 401: Basic or bearer authentication is configured and the request does not pass it.
- 413: the body, or what it inflates to, is over the configured limit.
- 415: not snappy, not protobuf, or a protobuf message other than ``prometheus.WriteRequest``
  (remote-write 2.0's ``io.prometheus.write.v2.Request`` included, as the 2.0 spec asks of a
  receiver that does not support it).
- 503 + Retry-After (default) or 429 + Retry-After (``refused_status: 429``): the pipeline refused
  the batch (backpressure). 503 is the default because Prometheus retries every 5xx but drops a
  request answered 429 unless ``queue_config.retry_on_http_429`` is set (it is off by default):
  refusing with 429 would lose data with a stock Prometheus.

A missing Content-Type (or a generic ``application/octet-stream``), Content-Encoding or
``X-Prometheus-Remote-Write-Version`` is taken as remote-write 1.0, as Prometheus' own receiver
does. Labels need not be sorted: attributes are a map,
and Prometheus' receiver sorts them too. A label with an empty value is absent (Prometheus' data
model). Metric and label names may use any UTF-8, as Prometheus 3 allows.

From samples to points (OpenTelemetry's Prometheus compatibility spec):

- ``__name__`` is the metric name, unaltered; the other labels are attributes, except ``job`` and
  ``instance``, which identify the target and become the resource's ``service.name`` and
  ``service.instance.id``, and ``otel_scope_name``/``otel_scope_version``, which become the scope.
  Series without them get the scope ``burnline/remote_write`` (no version: a version label would
  change every series' identity on each upgrade).
- Types come from the request's ``metadata`` (type, help, unit), remembered per metric family
  across requests because Prometheus sends metadata in requests of its own, about once a minute.
  Counters become monotonic cumulative sums; gauges and unknown-typed series gauges; info and
  stateset series non-monotonic sums. Every point carries the Prometheus type in
  ``metadata["prometheus.type"]``.
- Before a family's metadata is known (or when the sender sends none) ``infer_types`` applies the
  naming conventions: ``*_total`` is a counter, ``*_bucket`` with an ``le`` label a histogram
  bucket, a series with a ``quantile`` label a summary quantile; ``*_count``/``*_sum`` are counted as
  histogram/summary parts once their family is known that way; anything else is an unknown-typed
  gauge. ``*_count`` alone is not enough: gauges are named like that too.
- A classic histogram or summary stays a set of separate series, as it is on the wire: ``_bucket``
  (with ``le``) and ``_count`` are monotonic cumulative sums, ``_sum`` a non-monotonic cumulative
  sum, quantiles gauges. Putting a histogram's series back together would need all of them in one
  request, which remote-write does not promise (Prometheus shards series across requests).
- Samples keep their millisecond timestamps; start times are unknown (0). A stale marker (the NaN
  0x7ff0000000000002) becomes a point with value NaN and the NO_RECORDED_VALUE flag.
- Native histograms become exponential histograms (schema = scale, buckets re-indexed: Prometheus
  indexes a bucket by its upper bound, OpenTelemetry by its lower one). Float histograms are taken
  when their counts are whole numbers; gauge histograms are dropped (OpenTelemetry has no such
  point; the spec drops them) and counted in ``burnline_records_dropped_total``.
- Exemplars go on the last point of their series, ``trace_id``/``span_id`` labels as its ids.
"""

from __future__ import annotations

import asyncio
import math
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import cramjam
from aiohttp import web
from google.protobuf.message import DecodeError
from pydantic import Field, SecretStr, model_validator

from collector.config.types import ByteSize, Endpoint, ServerTLS, split_endpoint
from collector.core.component import ComponentConfig, ComponentContext, Consumer, Receiver, Refused, register
from collector.core.model import Batch, Exemplar, MetricKind, MetricPoint, Scope, Signal, Temporality
from collector.httpserver.receiving import HTTPAuth, ProblemLog, Rejected, read_body, rejection_response
from collector.httpserver.server import start_server
from collector.prompb import remote_pb2, types_pb2
from collector.receivers.protocol_sniff import ProtocolGuard, WrongProtocolLog

MiB = 1024 * 1024

PROTOCOL_VERSION = "0.1.0"
WRITE_REQUEST_V1 = "prometheus.WriteRequest"
SCOPE_NAME = "burnline/remote_write"

# Bodies at least this big are decoded in a worker thread so that one large request does not stall
# every other connection's I/O (Prometheus' default 2000-sample request is well under this).
_THREAD_DECODE_BYTES = 128 * 1024
_SHUTDOWN_TIMEOUT = 10.0
# At most this many problems are named in a 400 answer and its log line (all are counted).
_MAX_REPORTED = 5
# A native histogram whose spans reach further than this many buckets on one side is refused:
# schema 8 spans 2^-30..2^30 in about 15 000 buckets; a wider layout is an attack, not data.
_MAX_DENSE_BUCKETS = 32_768

STALE_NAN_BITS = 0x7FF0000000000002
FLAG_NO_RECORDED_VALUE = 1
_DOUBLE = struct.Struct("<d")
_UINT64 = struct.Struct("<Q")

# Content types that say nothing about the payload: taken as remote-write 1.0, as a missing one is.
_GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_PROTOBUF_TYPES = frozenset(
    {"application/x-protobuf", "application/protobuf", "application/vnd.google.protobuf"}
)

# Prometheus unit words to UCUM (OpenTelemetry's units), per the compatibility spec.
_UNIT_WORDS = {
    "days": "d",
    "hours": "h",
    "minutes": "min",
    "seconds": "s",
    "milliseconds": "ms",
    "microseconds": "us",
    "nanoseconds": "ns",
    "bytes": "By",
    "kibibytes": "KiBy",
    "mebibytes": "MiBy",
    "gibibytes": "GiBy",
    "tibibytes": "TiBy",
    "kilobytes": "KBy",
    "megabytes": "MBy",
    "gigabytes": "GBy",
    "terabytes": "TBy",
    "meters": "m",
    "volts": "V",
    "amperes": "A",
    "joules": "J",
    "watts": "W",
    "grams": "g",
    "celsius": "Cel",
    "hertz": "Hz",
    "ratio": "1",
    "percent": "%",
}
_PER_UNIT_WORDS = {
    "second": "s",
    "minute": "min",
    "hour": "h",
    "day": "d",
    "week": "wk",
    "month": "mo",
    "year": "a",
}

_METADATA_TYPES = {
    types_pb2.MetricMetadata.COUNTER: "counter",
    types_pb2.MetricMetadata.GAUGE: "gauge",
    types_pb2.MetricMetadata.HISTOGRAM: "histogram",
    types_pb2.MetricMetadata.GAUGEHISTOGRAM: "gaugehistogram",
    types_pb2.MetricMetadata.SUMMARY: "summary",
    types_pb2.MetricMetadata.INFO: "info",
    types_pb2.MetricMetadata.STATESET: "stateset",
    types_pb2.MetricMetadata.UNKNOWN: "unknown",
}
# The suffixes that join a series' name to its family's (OpenMetrics' full set).
_SUFFIXES = ("_created", "_bucket", "_gcount", "_total", "_count", "_gsum", "_info", "_sum")


def prometheus_unit_to_ucum(unit: str) -> str:
    """``seconds`` -> ``s``, ``bytes_per_second`` -> ``By/s``, ``ratio`` -> ``1``; others unchanged."""
    if not unit:
        return ""
    main, sep, per = unit.partition("_per_")
    out = _UNIT_WORDS.get(main, main)
    if sep and per:
        out += "/" + _PER_UNIT_WORDS.get(per, per)
    return out


class RemoteWriteConfig(ComponentConfig):
    """Where to listen and how to read what remote-write senders POST."""

    # Not 9090, Prometheus' own port (its receiver's too): 19291 is where Thanos Receive takes
    # remote-write, so senders set up for a standalone receiver find this one at the usual place.
    endpoint: Endpoint = "0.0.0.0:19291"
    path: str = "/api/v1/write"
    tls: ServerTLS | None = None
    # The request body as sent (snappy-compressed); larger requests get 413.
    max_body_size: ByteSize = 16 * MiB
    # What the body may inflate to (snappy says so in its first bytes, checked before inflating).
    max_decompressed_size: ByteSize = 64 * MiB
    # Basic auth (Prometheus' basic_auth) and/or a bearer token (its authorization/credentials).
    # When both are set, either is accepted.
    username: str | None = None
    password: SecretStr | None = None
    bearer_token: SecretStr | None = None
    # Naming conventions type series whose family's metadata has not arrived (see the module doc).
    infer_types: bool = True
    # Metric families whose metadata (type, help, unit) is remembered, least recently told first out.
    metadata_cache_size: int = Field(default=100_000, ge=1)
    # The answer when the pipeline refuses (backpressure). 503 is retried by every sender; 429 only
    # by senders set to (Prometheus: queue_config.retry_on_http_429), others drop the request.
    refused_status: Literal[429, 503] = 503

    @model_validator(mode="after")
    def _check(self) -> RemoteWriteConfig:
        if not self.path.startswith("/"):
            raise ValueError(f"path {self.path!r} must start with '/'")
        if self.password is not None and not self.username:
            raise ValueError("password needs a username")
        if self.bearer_token is not None and not self.bearer_token.get_secret_value():
            raise ValueError("bearer_token must not be empty")
        if self.max_body_size < 1 or self.max_decompressed_size < 1:
            raise ValueError("max_body_size and max_decompressed_size must be at least 1 byte")
        return self


# ---------------------------------------------------------------------------------------------------
# Metric family types, remembered across requests


@dataclass(frozen=True, slots=True)
class Family:
    """What is known of a metric family: its Prometheus type, help and unit (UCUM)."""

    type: str
    help: str = ""
    unit: str = ""
    # False when only naming conventions said so (a ``_bucket`` or ``quantile`` series was seen).
    from_metadata: bool = True


class FamilyTypes:
    """A bounded map of metric family name -> Family, safe to use from decode threads."""

    def __init__(self, max_families: int) -> None:
        self.max_families = max_families
        self._families: OrderedDict[str, Family] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._families)

    def get(self, name: str) -> Family | None:
        return self._families.get(name)

    def _put(self, name: str, family: Family) -> None:
        families = self._families
        families[name] = family
        families.move_to_end(name)
        while len(families) > self.max_families:
            families.popitem(last=False)

    def learn(self, metadata: Iterable[types_pb2.MetricMetadata]) -> int:
        """Takes a request's metadata; returns how many entries it held."""
        n = 0
        with self._lock:
            for md in metadata:
                if not md.metric_family_name:
                    continue
                family = Family(
                    _METADATA_TYPES.get(md.type, "unknown"), md.help, prometheus_unit_to_ucum(md.unit)
                )
                self._put(md.metric_family_name, family)
                n += 1
        return n

    def infer(self, name: str, type_: str) -> None:
        """Remembers a family type seen from its series' shape, unless metadata already told it."""
        known = self._families.get(name)
        if known is not None and (known.from_metadata or known.type == type_):
            return
        with self._lock:
            self._put(name, Family(type_, from_metadata=False))


# How each family type's series map to points: suffix -> (kind, monotonic); "" is the bare name.
_CUMULATIVE_COUNTER = (MetricKind.SUM, True)
_CUMULATIVE_NON_MONOTONIC = (MetricKind.SUM, False)
_GAUGE = (MetricKind.GAUGE, False)
_SERIES_KINDS: dict[str, dict[str, tuple[MetricKind, bool]]] = {
    "counter": {"": _CUMULATIVE_COUNTER, "_total": _CUMULATIVE_COUNTER, "_created": _GAUGE},
    "gauge": {"": _GAUGE},
    "histogram": {
        "_bucket": _CUMULATIVE_COUNTER,
        "_count": _CUMULATIVE_COUNTER,
        "_sum": _CUMULATIVE_NON_MONOTONIC,
        "_created": _GAUGE,
    },
    "gaugehistogram": {"_bucket": _GAUGE, "_gcount": _GAUGE, "_gsum": _GAUGE},
    "summary": {
        "": _GAUGE,
        "_count": _CUMULATIVE_COUNTER,
        "_sum": _CUMULATIVE_NON_MONOTONIC,
        "_created": _GAUGE,
    },
    "info": {"": _CUMULATIVE_NON_MONOTONIC, "_info": _CUMULATIVE_NON_MONOTONIC},
    "stateset": {"": _CUMULATIVE_NON_MONOTONIC},
    "unknown": {"": _GAUGE},
}


def _family_of(name: str, families: FamilyTypes) -> tuple[Family, str] | None:
    """The known family a series name belongs to, and the suffix that joins them."""
    family = families.get(name)
    if family is not None and (family.from_metadata or family.type == "summary"):
        return family, ""
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            family = families.get(name[: -len(suffix)])
            if family is not None and suffix in _SERIES_KINDS[family.type]:
                return family, suffix
    return None


def classify(
    name: str, attributes: dict[str, Any], families: FamilyTypes, infer: bool
) -> tuple[MetricKind, bool, Family | None, str]:
    """(kind, monotonic, family or None, Prometheus type) of one series."""
    found = _family_of(name, families)
    if found is not None:
        family, suffix = found
        kind, monotonic = _SERIES_KINDS[family.type].get(suffix, _GAUGE)
        return kind, monotonic, family, family.type
    if infer:
        if name.endswith("_total"):
            return MetricKind.SUM, True, None, "counter"
        if name.endswith("_bucket") and "le" in attributes:
            families.infer(name[: -len("_bucket")], "histogram")
            return MetricKind.SUM, True, None, "histogram"
        if "quantile" in attributes:
            families.infer(name, "summary")
            return MetricKind.GAUGE, False, None, "summary"
    return MetricKind.GAUGE, False, None, "unknown"


# ---------------------------------------------------------------------------------------------------
# Decoding


def decompress(body: bytes, max_size: int) -> bytes:
    """Snappy block format, its announced length checked against ``max_size`` before inflating."""
    try:
        announced = int(cramjam.snappy.decompress_raw_len(body))
    except cramjam.DecompressionError as exc:
        raise Rejected(400, "invalid_snappy", f"the body is not snappy block-compressed: {exc}") from None
    if announced > max_size:
        raise Rejected(
            413, "too_large", f"the body inflates to {announced} bytes, over the {max_size}-byte limit"
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise Rejected(400, "invalid_snappy", f"the body is not snappy block-compressed: {exc}") from None


def parse_write_request(data: bytes) -> remote_pb2.WriteRequest:
    request = remote_pb2.WriteRequest()
    try:
        request.ParseFromString(data)
    except (DecodeError, RecursionError) as exc:
        raise Rejected(400, "invalid_protobuf", f"the body is not a prometheus.WriteRequest: {exc}") from None
    return request


def _is_stale(value: float) -> bool:
    return math.isnan(value) and _UINT64.unpack(_DOUBLE.pack(value))[0] == STALE_NAN_BITS


def _whole(value: float, what: str) -> int:
    if not math.isfinite(value) or value < 0 or value != math.floor(value):
        raise ValueError(f"float histogram {what} {value} is not a whole number")
    return int(value)


def _dense(
    spans: Iterable[types_pb2.BucketSpan], deltas: list[int], counts: list[float]
) -> tuple[int, list[int]]:
    """Prometheus sparse buckets (spans + deltas or absolute counts) -> OpenTelemetry's dense
    (offset, counts). Prometheus bucket i is (b^(i-1), b^i]; OpenTelemetry's index is one lower."""
    indexed: list[tuple[int, int]] = []
    absolute = [_whole(c, "bucket count") for c in counts] if counts else None
    values = absolute if absolute is not None else deltas
    index = 0
    position = 0
    running = 0
    for n, span in enumerate(spans):
        if n and span.offset < 0:
            raise ValueError(f"native histogram span {n} has a negative gap ({span.offset})")
        index = span.offset if n == 0 else index + span.offset
        for _ in range(span.length):
            if position >= len(values):
                raise ValueError("native histogram spans cover more buckets than it has counts")
            if absolute is None:
                running += values[position]
                if running < 0:
                    raise ValueError("native histogram bucket deltas add up to a negative count")
                indexed.append((index, running))
            else:
                indexed.append((index, values[position]))
            position += 1
            index += 1
    if position != len(values):
        raise ValueError(f"native histogram has {len(values)} bucket counts but its spans cover {position}")
    if not indexed:
        return 0, []
    first, last = indexed[0][0], indexed[-1][0]
    if last - first + 1 > _MAX_DENSE_BUCKETS:
        raise ValueError(f"native histogram spans {last - first + 1} buckets, over {_MAX_DENSE_BUCKETS}")
    dense = [0] * (last - first + 1)
    for i, count in indexed:
        dense[i - first] += count
    return first - 1, dense


@dataclass(slots=True)
class Conversion:
    """A request's points and what could not be taken, to answer and count."""

    points: list[MetricPoint] = field(default_factory=list)
    invalid: int = 0  # series refused (the answer is 400)
    problems: list[str] = field(default_factory=list)  # the first few, for the answer and the log
    dropped: dict[str, int] = field(default_factory=dict)  # valid but unsupported, by reason
    metadata: int = 0
    size: int = 0  # the decompressed request: the batch's size estimate for queue bounds
    # Shared by the points of one request: one resource per target, one scope, one metadata map.
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    scopes: dict[tuple[str, str], Scope] = field(default_factory=dict)
    metadata_maps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def problem(self, series: int, detail: str) -> None:
        self.invalid += 1
        if len(self.problems) < _MAX_REPORTED:
            self.problems.append(f"series {series}: {detail}")

    def resource(self, job: str, instance: str) -> dict[str, Any]:
        resource = self.resources.get((job, instance))
        if resource is None:
            resource = self.resources[(job, instance)] = {}
            if job:
                resource["service.name"] = job
            if instance:
                resource["service.instance.id"] = instance
        return resource

    def scope(self, name: str, version: str) -> Scope:
        scope = self.scopes.get((name, version))
        if scope is None:
            scope = self.scopes[(name, version)] = Scope(name, version) if name else Scope(SCOPE_NAME)
        return scope

    def type_metadata(self, prometheus_type: str) -> dict[str, Any]:
        metadata = self.metadata_maps.get(prometheus_type)
        if metadata is None:
            metadata = self.metadata_maps[prometheus_type] = {"prometheus.type": prometheus_type}
        return metadata


@dataclass(slots=True)
class _Series:
    """One TimeSeries' identity, as points carry it."""

    name: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: Scope


class Converter:
    """WriteRequest -> MetricPoints, with the family types remembered between requests."""

    def __init__(self, families: FamilyTypes, infer_types: bool) -> None:
        self.families = families
        self.infer_types = infer_types

    def convert(self, request: remote_pb2.WriteRequest) -> Conversion:
        out = Conversion()
        if request.metadata:
            out.metadata = self.families.learn(request.metadata)
        for index, series in enumerate(request.timeseries):
            try:
                self._series(series, out)
            except ValueError as exc:
                out.problem(index, str(exc))
        return out

    def _series(self, series: types_pb2.TimeSeries, out: Conversion) -> None:
        name = ""
        job = instance = scope_name = scope_version = ""
        attributes: dict[str, Any] = {}
        seen: set[str] = set()
        for label in series.labels:
            key, value = label.name, label.value
            if not key:
                raise ValueError("a label has an empty name")
            if key in seen:
                raise ValueError(f"label {key!r} is repeated")
            seen.add(key)
            if not value:
                continue  # an empty value is an absent label
            if key == "__name__":
                name = value
            elif key == "job":
                job = value
            elif key == "instance":
                instance = value
            elif key == "otel_scope_name":
                scope_name = value
            elif key == "otel_scope_version":
                scope_version = value
            else:
                attributes[key] = value
        if not name:
            raise ValueError("no __name__ label")
        if not series.samples and not series.histograms:
            return
        identity = _Series(
            name, attributes, out.resource(job, instance), out.scope(scope_name, scope_version)
        )
        first = len(out.points)
        if series.samples:
            self._samples(identity, series, out)
        if series.histograms:
            self._native(identity, series, out)
        if series.exemplars and len(out.points) > first:
            out.points[-1].exemplars = [_exemplar(e) for e in series.exemplars]

    def _samples(self, identity: _Series, series: types_pb2.TimeSeries, out: Conversion) -> None:
        name, attributes = identity.name, identity.attributes
        kind, monotonic, family, ptype = classify(name, attributes, self.families, self.infer_types)
        metadata = out.type_metadata(ptype)
        temporality = Temporality.CUMULATIVE if kind == MetricKind.SUM else Temporality.UNSPECIFIED
        description = family.help if family is not None else ""
        unit = family.unit if family is not None else ""
        points = out.points
        for i, sample in enumerate(series.samples):
            value = sample.value
            flags = 0
            if math.isnan(value) and _is_stale(value):
                flags = FLAG_NO_RECORDED_VALUE
            points.append(
                MetricPoint(
                    name=name,
                    kind=kind,
                    time_unix_nano=sample.timestamp * 1_000_000,
                    # Each point owns its attributes: processors change them in place.
                    attributes=attributes if i == 0 else dict(attributes),
                    description=description,
                    unit=unit,
                    metadata=metadata,
                    value=value,
                    temporality=temporality,
                    monotonic=monotonic,
                    flags=flags,
                    resource=identity.resource,
                    scope=identity.scope,
                )
            )

    def _native(self, identity: _Series, series: types_pb2.TimeSeries, out: Conversion) -> None:
        metadata = out.type_metadata("histogram")
        found = _family_of(identity.name, self.families)
        family = found[0] if found is not None else None
        for h in series.histograms:
            if h.reset_hint == types_pb2.Histogram.GAUGE:
                out.dropped["gauge_histogram"] = out.dropped.get("gauge_histogram", 0) + 1
                continue
            if not -4 <= h.schema <= 8:
                raise ValueError(f"native histogram schema {h.schema} is not one of -4..8")
            stale = _is_stale(h.sum)
            if h.WhichOneof("count") == "count_float":
                count = 0 if stale else _whole(h.count_float, "count")
                zero = _whole(h.zero_count_float, "zero count")
                positive = _dense(h.positive_spans, [], list(h.positive_counts))
                negative = _dense(h.negative_spans, [], list(h.negative_counts))
            else:
                count, zero = h.count_int, h.zero_count_int
                positive = _dense(h.positive_spans, list(h.positive_deltas), [])
                negative = _dense(h.negative_spans, list(h.negative_deltas), [])
            out.points.append(
                MetricPoint(
                    name=identity.name,
                    kind=MetricKind.EXPONENTIAL_HISTOGRAM,
                    time_unix_nano=h.timestamp * 1_000_000,
                    attributes=dict(identity.attributes),
                    description=family.help if family is not None else "",
                    unit=family.unit if family is not None else "",
                    metadata=metadata,
                    temporality=Temporality.CUMULATIVE,
                    count=count,
                    sum=math.nan if stale else h.sum,
                    scale=h.schema,
                    zero_count=zero,
                    zero_threshold=h.zero_threshold,
                    positive_offset=positive[0],
                    positive_bucket_counts=positive[1],
                    negative_offset=negative[0],
                    negative_bucket_counts=negative[1],
                    flags=FLAG_NO_RECORDED_VALUE if stale else 0,
                    resource=identity.resource,
                    scope=identity.scope,
                )
            )


def _exemplar(e: types_pb2.Exemplar) -> Exemplar:
    trace_id = span_id = ""
    filtered: dict[str, Any] = {}
    for label in e.labels:
        if label.name == "trace_id" and _is_hex(label.value, 32):
            trace_id = label.value.lower()
        elif label.name == "span_id" and _is_hex(label.value, 16):
            span_id = label.value.lower()
        elif label.name:
            filtered[label.name] = label.value
    return Exemplar(e.timestamp * 1_000_000, e.value, filtered, trace_id, span_id)


def _is_hex(text: str, length: int) -> bool:
    if len(text) != length:
        return False
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------
# The receiver


def _message_type(content_type: str) -> str:
    """The protobuf message a Content-Type names; "" for one that is not protobuf at all."""
    mime, _, params = content_type.partition(";")
    mime = mime.strip().lower()
    if mime in _GENERIC_TYPES:
        return WRITE_REQUEST_V1
    if mime not in _PROTOBUF_TYPES:
        return ""
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "proto":
            return value.strip().strip('"')
    return WRITE_REQUEST_V1


@register
class RemoteWriteReceiver(Receiver):
    """Receives Prometheus remote-write 1.0 requests."""

    type_name = "remote_write"
    config_model = RemoteWriteConfig
    signals = frozenset({Signal.METRICS})

    config: RemoteWriteConfig

    def __init__(self, config: RemoteWriteConfig, ctx: ComponentContext, consumers: dict[Signal, Consumer]):
        super().__init__(config, ctx, consumers)
        self.host, self.port = split_endpoint(config.endpoint)
        self.families = FamilyTypes(config.metadata_cache_size)
        self.converter = Converter(self.families, config.infer_types)
        self._runner: web.AppRunner | None = None
        self._serving = False
        self._problems = ProblemLog(self.log)
        self._auth = HTTPAuth(config.username, config.password, config.bearer_token)

    async def start(self) -> None:
        app = web.Application(client_max_size=self.config.max_body_size)
        app.router.add_route("*", self.config.path, self._handle)
        ssl_context = self.config.tls.context() if self.config.tls else None
        # auto_decompress off: the body is snappy, which aiohttp does not know, and must stay raw.
        guard = ProtocolGuard(
            WrongProtocolLog(self.id, self.log, self.ctx.telemetry.protocol_errors),
            "http1",
            f"the remote_write port :{self.port}",
            tls=ssl_context,
            advice={"http2": "remote_write is HTTP/1.1; send OTLP/gRPC to the OTLP port (:4317)"},
        )
        self._runner, self.port = await start_server(
            app,
            self.host,
            self.port,
            guard=guard,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
            auto_decompress=False,
            connections=self.ctx.telemetry.connections.labels(self.id),
        )
        guard.port_name = f"the remote_write port :{self.port}"
        self._serving = True
        scheme = "https" if ssl_context else "http"
        self.log.info(
            "listening for Prometheus remote-write on %s://%s:%d%s",
            scheme,
            self.host,
            self.port,
            self.config.path,
        )

    async def stop(self) -> None:
        self._serving = False
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.ctx.telemetry.connections.labels(self.id).set_function(lambda: 0)

    def ready(self) -> bool:
        return self._serving

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            if request.method != "POST":
                raise Rejected(405, "method_not_allowed", f"method {request.method} is not allowed; POST")
            return await self._ingest(request)
        except Rejected as exc:
            return self._reject(request, exc)
        except Exception:
            # A bug, not the sender's fault: 500 makes it retry rather than drop the samples.
            self.log.exception("failed to handle a remote-write request from %s", request.remote)
            return web.Response(status=500, text="internal error\n")

    def _reject(self, request: web.Request, exc: Rejected) -> web.Response:
        self.ctx.telemetry.protocol_errors.labels(self.id, exc.reason).inc()
        self._problems.warn_request(request, exc.reason, exc.status, exc.detail)
        return rejection_response(exc, self._auth.challenge, allow="POST")

    async def _ingest(self, request: web.Request) -> web.Response:
        self._auth.check(request.headers.get("Authorization", ""))
        encoding = request.headers.get("Content-Encoding", "").strip().lower() or "snappy"
        if encoding != "snappy":
            raise Rejected(
                415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported; use snappy"
            )
        content_type = request.headers.get("Content-Type", "")
        message = _message_type(content_type)
        if message != WRITE_REQUEST_V1:
            what = f"protobuf message {message!r}" if message else f"Content-Type {content_type!r}"
            raise Rejected(
                415,
                "unsupported_media_type",
                f"{what} is not supported; this receiver takes remote-write 1.0: "
                f"application/x-protobuf (proto={WRITE_REQUEST_V1})",
            )
        version = request.headers.get("X-Prometheus-Remote-Write-Version", "")
        if version and not version.startswith(("0.", "1.")):
            self.log.debug("remote-write version %r with a 1.0 message from %s", version, request.remote)
        body = await read_body(request, self.config.max_body_size)
        if not body:
            raise Rejected(400, "empty_body", "the request has no body")
        if len(body) >= _THREAD_DECODE_BYTES:
            conversion = await asyncio.to_thread(self._decode, body)
        else:
            conversion = self._decode(body)
        telemetry = self.ctx.telemetry
        for reason, n in conversion.dropped.items():
            telemetry.dropped.labels(self.id, Signal.METRICS.value, reason).inc(n)
        points = conversion.points
        if points:
            try:
                await self.consumers[Signal.METRICS].consume(Batch(Signal.METRICS, points, conversion.size))
            except Refused as exc:
                return self._refused(request, exc, len(points))
        headers = {"X-Prometheus-Remote-Write-Version": PROTOCOL_VERSION}
        if conversion.invalid:
            detail = (
                f"{conversion.invalid} invalid series not written ({len(points)} points written): "
                + "; ".join(conversion.problems)
            )
            telemetry.protocol_errors.labels(self.id, "invalid_series").inc()
            self._problems.warn_request(request, "invalid_series", 400, detail)
            return web.Response(status=400, text=detail + "\n", headers=headers)
        return web.Response(status=204, headers=headers)

    def _refused(self, request: web.Request, exc: Refused, n: int) -> web.Response:
        status = self.config.refused_status
        retry_after = max(1, math.ceil(exc.retry_after))
        detail = f"the pipeline refused {n} points: {exc.reason}"
        self._problems.warn_request(request, "refused", status, detail)
        return web.Response(
            status=status,
            text=f"not accepted now: {exc.reason}; retry later\n",
            headers={"Retry-After": str(retry_after)},
        )

    def _decode(self, body: bytes) -> Conversion:
        data = decompress(body, self.config.max_decompressed_size)
        conversion = self.converter.convert(parse_write_request(data))
        conversion.size = len(data)
        return conversion
