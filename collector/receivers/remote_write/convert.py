"""A remote-write ``WriteRequest`` to MetricPoints.

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

import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from collector.core.model import FLAG_NO_RECORDED_VALUE, Exemplar, MetricKind, MetricPoint, Scope, Temporality
from collector.httpserver.answers import Rejected
from collector.prompb import remote_pb2, types_pb2
from collector.receivers.remote_write.families import FamilyTypes, classify, family_of
from collector.translator.prometheus import target_resource

SCOPE_NAME = "burnline/remote_write"
# At most this many problems are named in a 400 answer and its log line (all are counted).
_MAX_REPORTED = 5
# A native histogram whose spans reach further than this many buckets on one side is refused:
# schema 8 spans 2^-30..2^30 in about 15 000 buckets; a wider layout is an attack, not data.
_MAX_DENSE_BUCKETS = 32_768

STALE_NAN_BITS = 0x7FF0000000000002
_DOUBLE = struct.Struct("<d")
_UINT64 = struct.Struct("<Q")


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
    # One string object for each distinct label name and value of the request. Protobuf hands out a
    # new one for every label, and the same names and most values (job, namespace, node, container)
    # repeat in every series: held by the queue and the exporters, they were 870 bytes a series.
    strings: dict[str, str] = field(default_factory=dict)

    def problem(self, series: int, detail: str) -> None:
        self.invalid += 1
        if len(self.problems) < _MAX_REPORTED:
            self.problems.append(f"series {series}: {detail}")

    def resource(self, job: str, instance: str) -> dict[str, Any]:
        resource = self.resources.get((job, instance))
        if resource is None:
            resource = self.resources[(job, instance)] = target_resource(job, instance)
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
        shared = out.strings.setdefault
        for label in series.labels:
            key, value = label.name, label.value
            if not key:
                raise ValueError("a label has an empty name")
            if key in seen:
                raise ValueError(f"label {key!r} is repeated")
            seen.add(key)
            if not value:
                continue  # an empty value is an absent label
            key, value = shared(key, key), shared(value, value)
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
        found = family_of(identity.name, self.families)
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
