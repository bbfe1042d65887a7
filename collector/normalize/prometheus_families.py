"""Prometheus metric families (as prometheus-client's parsers read them) -> MetricPoints.

Each family is mapped to the data model as the OpenTelemetry Collector's Prometheus receiver does:

- counter -> monotonic cumulative SUM named as exposed (``http_requests_total``);
- gauge, untyped/unknown and OpenMetrics gaugehistogram -> one GAUGE per sample, named as exposed
  (these are plain series in Prometheus too);
- OpenMetrics info and stateset -> one non-monotonic cumulative SUM per sample;
- histogram -> cumulative HISTOGRAM: the cumulative ``le`` buckets become per-bucket counts over the
  finite bounds (+Inf is the last bucket, not a bound), with count and sum;
- summary -> SUMMARY with its quantiles, count and sum;
- an OpenMetrics native histogram -> EXPONENTIAL_HISTOGRAM.

OpenMetrics ``_created`` samples give the start time of their series and are not series themselves.
Exemplars are left out (Prometheus itself keeps them only behind a feature flag). Types other than
counter, gauge, histogram and summary are named in ``metadata["prometheus.type"]`` (``unknown``,
``info``, ``stateset``, ``gaugehistogram``), so that exporters to Prometheus can restore them.

Every series gets the target's labels as Prometheus attaches them (``honor_labels``: on a conflict the
exposed label wins, else the target's wins and the exposed one is kept as ``exported_<name>``); labels
with empty values are dropped, since Prometheus treats an empty label as an absent one. Then, as the
OpenTelemetry Collector's Prometheus receiver (and burnline's remote_write receiver) do, ``job`` and
``instance`` leave the attributes: they identify the source, as the resource's ``service.name`` and
``service.instance.id``. Exporters to Prometheus put them back as labels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import NativeHistogram, Sample, Timestamp

from collector.core.model import MetricKind, MetricPoint, Scope, Temporality

_STATE_TYPES = frozenset({"info", "stateset"})


class ExpositionError(ValueError):
    """The body is not a valid exposition: the scrape as a whole fails (Prometheus does the same)."""


@dataclass(slots=True)
class Exposition:
    """What one scrape's body held."""

    points: list[MetricPoint] = field(default_factory=list)
    # Samples exposed (every bucket, quantile, _sum and _count counts; _created lines do not), as
    # Prometheus' ``scrape_samples_scraped`` counts them.
    samples: int = 0
    # Samples of series that could not be mapped (a histogram whose buckets go down, a quantile label
    # that is not a number, ...): left out, the rest of the scrape kept. ``problem`` names the first.
    invalid: int = 0
    problem: str = ""


def timestamp_ns(value: float | Timestamp, *, milliseconds: bool) -> int:
    """A sample timestamp (prometheus-client's Timestamp or float seconds) as Unix ns.

    The 0.0.4 text format carries integer milliseconds, which the parser divides by 1000: rounding to
    the millisecond undoes the float's error.
    """
    if isinstance(value, Timestamp):
        return value.sec * 1_000_000_000 + value.nsec
    seconds = float(value)
    if not math.isfinite(seconds):
        raise ExpositionError(f"not a Prometheus exposition: timestamp {value!r} is not a number")
    if milliseconds:
        return round(seconds * 1000) * 1_000_000
    return round(seconds * 1e9)


def merge_labels(exposed: dict[str, str], target: Mapping[str, str], honor_labels: bool) -> dict[str, str]:
    """A series' labels with its target's, as Prometheus' ``mutateSampleLabels`` sets them.

    ``exposed`` is the parser's own dict and is changed in place.
    """
    if honor_labels:
        for name, value in target.items():
            if name not in exposed:
                exposed[name] = value
    else:
        conflicts: list[tuple[str, str]] = []
        for name, value in target.items():
            existing = exposed.get(name)
            if existing:
                conflicts.append((name, existing))
            exposed[name] = value
        if conflicts:
            # Shorter names first, so that ``exported_x`` is settled before ``exported_exported_x``.
            conflicts.sort(key=lambda item: len(item[0]))
            for name, value in conflicts:
                new_name = "exported_" + name
                while exposed.get(new_name):
                    new_name = "exported_" + new_name
                exposed[new_name] = value
    if "" in exposed.values():
        return {name: value for name, value in exposed.items() if value != ""}
    return exposed


class _Invalid(Exception):
    """One series cannot be mapped; the others of the scrape still are."""


class FamilyMapper:
    """Maps the families of one scrape to points, gathering them in ``result``."""

    def __init__(
        self,
        *,
        scrape_time_ns: int,
        target_labels: dict[str, str],
        honor_labels: bool,
        honor_timestamps: bool,
        resource: dict[str, Any],
        scope: Scope,
        openmetrics: bool,
    ) -> None:
        self.scrape_time_ns = scrape_time_ns
        self.target_labels = target_labels
        self.honor_labels = honor_labels
        self.honor_timestamps = honor_timestamps
        self.resource = resource
        self.scope = scope
        self.openmetrics = openmetrics
        self.declared_counters: frozenset[str] = frozenset()
        self.result = Exposition()
        self._metadata: dict[str, dict[str, Any]] = {}
        # (job, instance) -> the resource of the series that have them; the target's own is given.
        self._resources = {(target_labels.get("job", ""), target_labels.get("instance", "")): resource}

    # -- helpers

    def _identify(self, exposed: dict[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
        """A series' attributes and resource: its labels with the target's, ``job`` and ``instance``
        moved to the resource."""
        labels = merge_labels(exposed, self.target_labels, self.honor_labels)
        identity = (labels.pop("job", ""), labels.pop("instance", ""))
        resource = self._resources.get(identity)
        if resource is None:
            # Only with honor_labels (or without target labels): another job/instance than the target's.
            resource = dict(self.resource)
            for key, value in zip(("service.name", "service.instance.id"), identity, strict=True):
                if value:
                    resource[key] = value
                else:
                    resource.pop(key, None)
            self._resources[identity] = resource
        return labels, resource

    def _time(self, timestamp: float | Timestamp | None) -> int:
        if timestamp is None or not self.honor_timestamps:
            return self.scrape_time_ns
        return timestamp_ns(timestamp, milliseconds=not self.openmetrics)

    def _created_ns(self, value: float) -> int:
        # A float of Unix seconds holds microseconds faithfully, not nanoseconds.
        if not math.isfinite(value) or value <= 0:
            return 0
        return round(value * 1e6) * 1000

    def _type_metadata(self, typ: str) -> dict[str, Any]:
        # One shared dict per type: points treat metadata as read-only.
        meta = self._metadata.get(typ)
        if meta is None:
            meta = self._metadata[typ] = {"prometheus.type": typ}
        return meta

    def _point(
        self, family: Metric, name: str, kind: MetricKind, labels: dict[str, str], time_ns: int
    ) -> MetricPoint:
        attributes, resource = self._identify(labels)
        return MetricPoint(
            name=name,
            kind=kind,
            time_unix_nano=time_ns,
            attributes=attributes,
            description=family.documentation,
            unit=family.unit,
            resource=resource,
            scope=self.scope,
        )

    def _invalid(self, family: Metric, samples: int, problem: str) -> None:
        self.result.invalid += samples
        if not self.result.problem:
            self.result.problem = f"{family.name}: {problem}"

    # -- families

    def add(self, family: Metric) -> None:
        typ = family.type
        if typ == "counter":
            self._counter(family)
        elif typ == "histogram":
            self._grouped(family, "le", self._histogram)
        elif typ == "summary":
            self._grouped(family, "quantile", self._summary)
        else:
            self._gauges(family, typ)

    def _gauges(self, family: Metric, typ: str) -> None:
        """One point per sample: a GAUGE, or for info and stateset a non-monotonic SUM (as the
        OpenTelemetry Collector maps them)."""
        metadata = self._type_metadata(typ) if typ != "gauge" else None
        kind = MetricKind.SUM if typ in _STATE_TYPES else MetricKind.GAUGE
        points = self.result.points
        for sample in family.samples:
            point = self._point(family, sample.name, kind, sample.labels, self._time(sample.timestamp))
            point.value = sample.value
            if kind is MetricKind.SUM:
                point.temporality = Temporality.CUMULATIVE
            if metadata is not None:
                point.metadata = metadata
            points.append(point)
        self.result.samples += len(family.samples)

    def _counter(self, family: Metric) -> None:
        samples: list[Sample] = family.samples
        created_name = family.name + "_created"
        created: dict[frozenset[tuple[str, str]], float] = {}
        if self.openmetrics:
            created = {frozenset(s.labels.items()): s.value for s in samples if s.name == created_name}
        # The text parser renamed the samples of ``# TYPE foo counter`` to foo_total: undo that.
        exposed_name = family.name if family.name in self.declared_counters else None
        points = self.result.points
        for sample in samples:
            if sample.name == created_name:
                continue
            start_ns = 0
            if created:
                value = created.get(frozenset(sample.labels.items()))
                if value is not None:
                    start_ns = self._created_ns(value)
            point = self._point(
                family,
                exposed_name or sample.name,
                MetricKind.SUM,
                sample.labels,
                self._time(sample.timestamp),
            )
            point.value = sample.value
            point.monotonic = True
            point.temporality = Temporality.CUMULATIVE
            point.start_time_unix_nano = start_ns
            points.append(point)
            self.result.samples += 1

    def _grouped(
        self,
        family: Metric,
        special: str,
        build: Callable[[Metric, list[Sample]], MetricPoint],
    ) -> None:
        """Groups a histogram's or summary's samples by their labels without ``le``/``quantile``,
        in order of first appearance, and builds one point per group."""
        name = family.name
        groups: dict[frozenset[tuple[str, str]], list[Sample]] = {}
        native: list[Sample] = []
        for sample in family.samples:
            if sample.native_histogram is not None:
                native.append(sample)
                continue
            labels = sample.labels
            if special in labels and sample.name == (name + "_bucket" if special == "le" else name):
                key = frozenset(item for item in labels.items() if item[0] != special)
            else:
                key = frozenset(labels.items())
            groups.setdefault(key, []).append(sample)
        for group in groups.values():
            counted = sum(1 for s in group if s.name != name + "_created")
            self.result.samples += counted
            try:
                point = build(family, group)
            except _Invalid as exc:
                self._invalid(family, counted, str(exc))
                continue
            self.result.points.append(point)
        for sample in native:
            self.result.samples += 1
            try:
                self.result.points.append(self._native_histogram(family, sample))
            except _Invalid as exc:
                self._invalid(family, 1, str(exc))

    def _group_parts(
        self, family: Metric, group: list[Sample], special: str, main_name: str
    ) -> tuple[list[tuple[float, float]], float | None, float | None, int, dict[str, str], int]:
        """(special value, sample value) pairs, count, sum, start time, labels, time of one group."""
        name = family.name
        pairs: list[tuple[float, float]] = []
        count: float | None = None
        total: float | None = None
        start_ns = 0
        labels: dict[str, str] | None = None
        timestamp: float | Timestamp | None = None
        for sample in group:
            suffix = sample.name[len(name) :]
            if timestamp is None and suffix != "_created":
                timestamp = sample.timestamp
            if sample.name == main_name:
                raw = sample.labels.get(special)
                if raw is None:
                    raise _Invalid(f"a {sample.name} sample has no {special!r} label")
                try:
                    bound = float(raw)
                except ValueError:
                    raise _Invalid(f"{special}={raw!r} is not a number") from None
                if math.isnan(bound):
                    raise _Invalid(f"{special}={raw!r} is not a number")
                pairs.append((bound, sample.value))
                if labels is None:
                    labels = {k: v for k, v in sample.labels.items() if k != special}
            elif suffix == "_count":
                count = sample.value
                labels = dict(sample.labels) if labels is None else labels
            elif suffix == "_sum":
                total = sample.value
                labels = dict(sample.labels) if labels is None else labels
            elif suffix == "_created":
                start_ns = self._created_ns(sample.value)
        if labels is None:  # only a _created sample: nothing to report
            raise _Invalid("only a _created sample")
        return pairs, count, total, start_ns, labels, self._time(timestamp)

    def _histogram(self, family: Metric, group: list[Sample]) -> MetricPoint:
        pairs, count, total, start_ns, labels, time_ns = self._group_parts(
            family, group, "le", family.name + "_bucket"
        )
        pairs.sort(key=lambda pair: pair[0])
        bounds: list[float] = []
        cumulative: list[float] = []
        inf_count: float | None = None
        for bound, value in pairs:
            if not math.isfinite(value) or value < 0:
                raise _Invalid(f"bucket le={bound:g} has count {value!r}")
            if inf_count is not None:
                raise _Invalid("bucket le=+Inf appears twice")
            if cumulative and value < cumulative[-1]:
                raise _Invalid("bucket counts are not cumulative (a higher bucket holds fewer)")
            if bound == math.inf:
                inf_count = value
                continue
            if bounds and bound == bounds[-1]:
                raise _Invalid(f"bucket le={bound:g} appears twice")
            bounds.append(bound)
            cumulative.append(value)
        if count is not None and (not math.isfinite(count) or count < 0):
            raise _Invalid(f"_count is {count!r}")
        total_count = count if count is not None else inf_count
        if total_count is None:
            total_count = cumulative[-1] if cumulative else 0
        if cumulative and total_count < cumulative[-1]:
            raise _Invalid("_count is less than a bucket's count")
        point = self._point(family, family.name, MetricKind.HISTOGRAM, labels, time_ns)
        point.temporality = Temporality.CUMULATIVE
        point.start_time_unix_nano = start_ns
        point.count = round(total_count)
        point.sum = None if total is None else float(total)
        if pairs:
            previous = 0.0
            counts: list[int] = []
            for value in cumulative:
                counts.append(round(value - previous))
                previous = value
            upper = inf_count if inf_count is not None else total_count
            counts.append(round(upper - previous))
            point.bucket_counts = counts
            point.explicit_bounds = bounds
        return point

    def _summary(self, family: Metric, group: list[Sample]) -> MetricPoint:
        pairs, count, total, start_ns, labels, time_ns = self._group_parts(
            family, group, "quantile", family.name
        )
        if count is not None and (not math.isfinite(count) or count < 0):
            raise _Invalid(f"_count is {count!r}")
        point = self._point(family, family.name, MetricKind.SUMMARY, labels, time_ns)
        point.start_time_unix_nano = start_ns
        point.count = round(count) if count is not None else 0
        point.sum = None if total is None else float(total)
        point.quantiles = sorted((q, float(v)) for q, v in pairs)
        return point

    def _native_histogram(self, family: Metric, sample: Sample) -> MetricPoint:
        nh: NativeHistogram = sample.native_histogram  # type: ignore[assignment]
        if not -4 <= nh.schema <= 8:
            raise _Invalid(f"native histogram schema {nh.schema} is not one of -4..8")
        point = self._point(
            family,
            family.name,
            MetricKind.EXPONENTIAL_HISTOGRAM,
            dict(sample.labels or {}),
            self._time(sample.timestamp),
        )
        point.temporality = Temporality.CUMULATIVE
        point.count = round(nh.count_value)
        point.sum = float(nh.sum_value)
        point.scale = nh.schema
        point.zero_count = round(nh.zero_count)
        point.zero_threshold = float(nh.zero_threshold)
        point.positive_offset, point.positive_bucket_counts = _native_buckets(nh.pos_spans, nh.pos_deltas)
        point.negative_offset, point.negative_bucket_counts = _native_buckets(nh.neg_spans, nh.neg_deltas)
        return point


def _native_buckets(spans: Any, deltas: Any) -> tuple[int, list[int]]:
    """Prometheus' spans + delta-encoded counts to OTLP's offset + dense counts.

    Prometheus bucket ``i`` holds (base^(i-1), base^i], OTLP's bucket ``i`` holds (base^i, base^(i+1)]:
    the same bucket is one index lower in OTLP.
    """
    if not spans:
        return 0, []
    counts: list[int] = []
    deltas = list(deltas or ())
    first_index: int | None = None
    index = 0
    position = 0
    current = 0
    for span in spans:
        if (span.offset < 0 and first_index is not None) or span.length < 0:
            raise _Invalid("native histogram spans overlap")
        index += span.offset
        if first_index is None:
            first_index = index
        elif span.offset:
            counts.extend([0] * span.offset)
        for _ in range(span.length):
            if position >= len(deltas):
                raise _Invalid("native histogram has fewer deltas than its spans say")
            current += deltas[position]
            position += 1
            if current < 0:
                raise _Invalid("native histogram bucket count is negative")
            counts.append(current)
            index += 1
    if position != len(deltas):
        raise _Invalid("native histogram has more deltas than its spans say")
    return (first_index or 0) - 1, counts
