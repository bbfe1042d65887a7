"""OTLP metrics -> MetricPoints: the data points of one Metric, per kind, with their exemplars."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.metrics.v1.metrics_pb2 import Exemplar as ExemplarProto
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric

from collector.core.model import NO_ITEMS, Exemplar, MetricKind, MetricPoint, Scope
from collector.core.trace_ids import SPAN_ID_BYTES, TRACE_ID_BYTES
from collector.normalize.otlp_values import Rejections, attributes, id_problem

METRIC_KINDS = {
    "gauge": MetricKind.GAUGE,
    "sum": MetricKind.SUM,
    "histogram": MetricKind.HISTOGRAM,
    "exponential_histogram": MetricKind.EXPONENTIAL_HISTOGRAM,
    "summary": MetricKind.SUMMARY,
}


@dataclass(slots=True)
class MetricIdentity:
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
        problem = id_problem(f"exemplars[{i}].trace_id", ex.trace_id, TRACE_ID_BYTES, required=False)
        problem = problem or id_problem(f"exemplars[{i}].span_id", ex.span_id, SPAN_ID_BYTES, required=False)
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
    return (out if out else NO_ITEMS), None


def _number_points(
    identity: MetricIdentity, data: str, points: list[MetricPoint], rejected: Rejections
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


def _histogram_points(identity: MetricIdentity, points: list[MetricPoint], rejected: Rejections) -> None:
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


def _exponential_points(identity: MetricIdentity, points: list[MetricPoint], rejected: Rejections) -> None:
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


def _summary_points(identity: MetricIdentity, points: list[MetricPoint], rejected: Rejections) -> None:
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


def add_points(identity: MetricIdentity, data: str, points: list[MetricPoint], rejected: Rejections) -> None:
    """Appends the data points of the metric ``identity`` names (its ``data`` oneof set) to ``points``."""
    if data in ("gauge", "sum"):
        _number_points(identity, data, points, rejected)
    elif data == "histogram":
        _histogram_points(identity, points, rejected)
    elif data == "exponential_histogram":
        _exponential_points(identity, points, rejected)
    else:
        _summary_points(identity, points, rejected)
