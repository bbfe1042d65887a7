"""burnline's metric points -> OTLP ``Metric`` messages and their data points, one kind each (see
exporters/otlp/encode.py for the grouping).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry.proto.metrics.v1 import metrics_pb2

from collector.core.model import Exemplar, MetricKind, MetricPoint
from exporters.otlp.encode_values import put_attributes, span_id_bytes, trace_id_bytes


def metric_key(point: MetricPoint) -> tuple[str, str, str, str, int, bool]:
    kind = point.kind
    temporality, monotonic = 0, False
    if kind == MetricKind.SUM:
        temporality, monotonic = int(point.temporality), bool(point.monotonic)
    elif kind in (MetricKind.HISTOGRAM, MetricKind.EXPONENTIAL_HISTOGRAM):
        temporality = int(point.temporality)
    return (point.name, str(kind), point.unit, point.description, temporality, monotonic)


def _put_number(pb: Any, value: float | int | None) -> None:
    if value is None:
        return
    if isinstance(value, int):  # bool too: a boolean gauge is 0 or 1
        pb.as_int = int(value)
    else:
        pb.as_double = value


def _put_exemplars(target: Any, exemplars: list[Exemplar]) -> None:
    add = target.add
    for exemplar in exemplars:
        ex = add()
        if exemplar.filtered_attributes:
            put_attributes(ex.filtered_attributes, exemplar.filtered_attributes)
        ex.time_unix_nano = exemplar.time_unix_nano
        _put_number(ex, exemplar.value)
        if exemplar.span_id:
            ex.span_id = span_id_bytes(exemplar.span_id)
        if exemplar.trace_id:
            ex.trace_id = trace_id_bytes(exemplar.trace_id)


def _put_point_common(pb: Any, point: MetricPoint) -> None:
    if point.attributes:
        put_attributes(pb.attributes, point.attributes)
    if point.start_time_unix_nano:
        pb.start_time_unix_nano = point.start_time_unix_nano
    pb.time_unix_nano = point.time_unix_nano
    if point.flags:
        pb.flags = point.flags


def _fill_number(pb: Any, point: MetricPoint) -> None:
    _put_point_common(pb, point)
    _put_number(pb, point.value)
    if point.exemplars:
        _put_exemplars(pb.exemplars, point.exemplars)


def _fill_histogram(pb: Any, point: MetricPoint) -> None:
    _put_point_common(pb, point)
    pb.count = point.count
    if point.sum is not None:
        pb.sum = point.sum
    pb.bucket_counts.extend(point.bucket_counts)
    pb.explicit_bounds.extend(point.explicit_bounds)
    if point.exemplars:
        _put_exemplars(pb.exemplars, point.exemplars)
    if point.min is not None:
        pb.min = point.min
    if point.max is not None:
        pb.max = point.max


def _fill_exponential_histogram(pb: Any, point: MetricPoint) -> None:
    _put_point_common(pb, point)
    pb.count = point.count
    if point.sum is not None:
        pb.sum = point.sum
    pb.scale = point.scale
    pb.zero_count = point.zero_count
    positive, negative = pb.positive, pb.negative
    positive.SetInParent()
    negative.SetInParent()
    positive.offset = point.positive_offset
    positive.bucket_counts.extend(point.positive_bucket_counts)
    negative.offset = point.negative_offset
    negative.bucket_counts.extend(point.negative_bucket_counts)
    if point.exemplars:
        _put_exemplars(pb.exemplars, point.exemplars)
    if point.min is not None:
        pb.min = point.min
    if point.max is not None:
        pb.max = point.max
    if point.zero_threshold:
        pb.zero_threshold = point.zero_threshold


def _fill_summary(pb: Any, point: MetricPoint) -> None:
    _put_point_common(pb, point)
    pb.count = point.count
    pb.sum = point.sum if point.sum is not None else 0.0
    add = pb.quantile_values.add
    for quantile, value in point.quantiles:
        q = add()
        q.quantile = quantile
        q.value = value


# kind -> (Metric's oneof field, data point filler)
METRIC_KINDS: dict[str, tuple[str, Callable[[Any, MetricPoint], None]]] = {
    MetricKind.GAUGE: ("gauge", _fill_number),
    MetricKind.SUM: ("sum", _fill_number),
    MetricKind.HISTOGRAM: ("histogram", _fill_histogram),
    MetricKind.EXPONENTIAL_HISTOGRAM: ("exponential_histogram", _fill_exponential_histogram),
    MetricKind.SUMMARY: ("summary", _fill_summary),
}


def new_metric(container: Any, point: MetricPoint, field: str) -> Any:
    """The Metric message for the first point of a series group, its kind's data container."""
    metric: metrics_pb2.Metric = container.metrics.add()
    metric.name = point.name
    if point.description:
        metric.description = point.description
    if point.unit:
        metric.unit = point.unit
    if point.metadata:
        put_attributes(metric.metadata, point.metadata)
    data = getattr(metric, field)
    data.SetInParent()
    if field == "sum":
        data.aggregation_temporality = point.temporality
        data.is_monotonic = bool(point.monotonic)
    elif field in ("histogram", "exponential_histogram"):
        data.aggregation_temporality = point.temporality
    return data
