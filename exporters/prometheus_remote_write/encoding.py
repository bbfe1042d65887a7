"""Metric points -> remote-write 1.0 ``WriteRequest`` bodies (protobuf, snappy block-compressed).

- Counters are ``<name>_total``; gauges, unknown-typed and info series (``<name>_info``) one series
  each; histograms ``_bucket`` (``le``, cumulative, up to ``+Inf``), ``_count`` and ``_sum``;
  summaries one series per ``quantile`` plus ``_count`` and ``_sum``. Stale markers (points flagged
  NO_RECORDED_VALUE) are sent as Prometheus' stale NaN on every series of the point.
- Resource attributes besides job/instance go to a ``target_info`` series per job/instance and
  request; metadata (type, help, unit per family) is sent along (``send_metadata``).
- Exemplars of counters and histogram buckets are sent (all of them, each on the bucket its value
  falls in); Prometheus keeps them only with ``--enable-feature=exemplar-storage`` and ignores them
  otherwise.
- Exponential histograms: ``exponential_histograms: native`` sends them as native histograms (scale
  above 8 downscaled, below -4 dropped; the receiver must accept native histograms: Prometheus
  needs ``--enable-feature=native-histograms``), ``drop`` (default) drops them, counted: a Prometheus
  without that feature answers 400 and the whole request would be dead-lettered.
- Delta-temporality points have no remote-write form without a state of running totals, and are
  dropped (counted, reason ``delta_temporality``); use cumulative sources.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cramjam

from collector.core.model import FLAG_NO_RECORDED_VALUE, Exemplar, MetricKind, MetricPoint, Temporality
from collector.prompb import remote_pb2, types_pb2
from exporters.prometheus.naming import go_float, label_value, sanitize_label_name, sanitize_metric_name
from exporters.prometheus.translator import (
    Target,
    Translator,
    Unsupported,
    bucket_exemplars,
    reserved_label,
)
from exporters.prometheus_remote_write.config import PrometheusRemoteWriteConfig

STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
# The spec's default zero threshold for exponential histograms that carry none.
DEFAULT_ZERO_THRESHOLD = 1e-128

_METADATA_TYPES = {
    "counter": types_pb2.MetricMetadata.COUNTER,
    "gauge": types_pb2.MetricMetadata.GAUGE,
    "histogram": types_pb2.MetricMetadata.HISTOGRAM,
    "summary": types_pb2.MetricMetadata.SUMMARY,
    "info": types_pb2.MetricMetadata.INFO,
    "unknown": types_pb2.MetricMetadata.UNKNOWN,
}


@dataclass(slots=True)
class _SeriesBuffer:
    labels: list[tuple[str, str]]
    samples: list[tuple[int, float]] = field(default_factory=list)
    histograms: list[types_pb2.Histogram] = field(default_factory=list)
    exemplars: list[types_pb2.Exemplar] = field(default_factory=list)


def sample_count(point: MetricPoint) -> int:
    """How many samples a point becomes (to cut batches into requests)."""
    if point.kind == MetricKind.HISTOGRAM:
        return len(point.explicit_bounds) + 3
    if point.kind == MetricKind.SUMMARY:
        return len(point.quantiles) + 2
    return 1


def _exemplar(e: Exemplar) -> types_pb2.Exemplar:
    out = types_pb2.Exemplar(value=float(e.value), timestamp=e.time_unix_nano // 1_000_000)
    labels: dict[str, str] = {}
    for key, raw in e.filtered_attributes.items():
        value = label_value(raw)
        if value:
            labels[sanitize_label_name(key)] = value
    if e.trace_id:
        labels["trace_id"] = e.trace_id
    if e.span_id:
        labels["span_id"] = e.span_id
    for name, value in sorted(labels.items()):
        out.labels.add(name=name, value=value)
    return out


def _downscale(offset: int, counts: Sequence[int], by: int) -> tuple[int, list[int]]:
    if by <= 0 or not counts:
        return offset, list(counts)
    merged: dict[int, int] = {}
    for i, c in enumerate(counts):
        j = (offset + i) >> by
        merged[j] = merged.get(j, 0) + c
    first = min(merged)
    return first, [merged.get(first + k, 0) for k in range(max(merged) - first + 1)]


def _spans(offset: int, counts: Sequence[int]) -> tuple[list[tuple[int, int]], list[int]]:
    """Dense OpenTelemetry buckets -> Prometheus (offset, length) spans and count deltas, non-empty
    buckets only; a bucket's Prometheus index is one more than its OpenTelemetry one."""
    spans: list[list[int]] = []
    deltas: list[int] = []
    previous_count = 0
    end: int | None = None  # the Prometheus index just past the current span
    for i, c in enumerate(counts):
        if not c:
            continue
        index = offset + i + 1
        if end == index:
            spans[-1][1] += 1
        else:
            spans.append([index if end is None else index - end, 1])
        end = index + 1
        deltas.append(c - previous_count)
        previous_count = c
    return [(o, n) for o, n in spans], deltas


def native_histogram(point: MetricPoint) -> types_pb2.Histogram:
    """An exponential histogram point as a Prometheus native histogram (raises Unsupported)."""
    scale = point.scale
    pos_offset, pos = point.positive_offset, list(point.positive_bucket_counts)
    neg_offset, neg = point.negative_offset, list(point.negative_bucket_counts)
    if scale > 8:
        pos_offset, pos = _downscale(pos_offset, pos, scale - 8)
        neg_offset, neg = _downscale(neg_offset, neg, scale - 8)
        scale = 8
    if scale < -4:
        raise Unsupported("histogram_scale", f"scale {point.scale} is below Prometheus' -4")
    h = types_pb2.Histogram(
        schema=scale,
        zero_threshold=point.zero_threshold or DEFAULT_ZERO_THRESHOLD,
        zero_count_int=point.zero_count,
        timestamp=point.time_unix_nano // 1_000_000,
    )
    if point.flags & FLAG_NO_RECORDED_VALUE:
        h.count_float = STALE_NAN
        h.sum = STALE_NAN
        return h
    h.count_int = point.count
    h.sum = point.sum if point.sum is not None else 0.0
    for spans, deltas, offset, counts in (
        (h.positive_spans, h.positive_deltas, pos_offset, pos),
        (h.negative_spans, h.negative_deltas, neg_offset, neg),
    ):
        layout, changes = _spans(offset, counts)
        for gap, length in layout:
            spans.add(offset=gap, length=length)
        deltas.extend(changes)
    return h


# Adds one sample to a series of the point being encoded: (name, extra labels, value) -> its series.
_Add = Callable[[str, dict[str, str] | None, float], _SeriesBuffer]


class Encoder:
    """Points -> WriteRequest bodies. Runs in a worker thread; touches only its own state."""

    def __init__(self, config: PrometheusRemoteWriteConfig, translator: Translator) -> None:
        self.config = config
        self.translator = translator

    def classify(self, point: MetricPoint) -> str:
        """The OpenMetrics type of a point this exporter can send; raises Unsupported."""
        if point.temporality == Temporality.DELTA and point.kind != MetricKind.GAUGE:
            raise Unsupported("delta_temporality", "delta points need a running total remote-write lacks")
        if point.kind == MetricKind.EXPONENTIAL_HISTOGRAM:
            if self.config.exponential_histograms == "native":
                return "histogram"
            raise Unsupported(
                "exponential_histogram", "exponential histograms are dropped (exponential_histograms: drop)"
            )
        return self.translator.prometheus_type(point)

    def encode(self, points: list[MetricPoint]) -> bytes:
        request = remote_pb2.WriteRequest()
        series: dict[tuple[tuple[str, str], ...], _SeriesBuffer] = {}
        families: dict[str, tuple[str, str, str]] = {}
        targets: dict[tuple[str, str], tuple[Target, int]] = {}
        for point in points:
            self._point(point, series, families, targets)
        for target, ts in targets.values():
            labels = sorted({**target.labels, "__name__": "target_info"}.items())
            buffer = series.setdefault(tuple(labels), _SeriesBuffer(labels))
            buffer.samples.append((ts, 1.0))
        for buffer in series.values():
            ts_proto = request.timeseries.add()
            for name, value in buffer.labels:
                ts_proto.labels.add(name=name, value=value)
            buffer.samples.sort(key=lambda s: s[0])
            for t, v in buffer.samples:
                ts_proto.samples.add(value=v, timestamp=t)
            if buffer.histograms:
                buffer.histograms.sort(key=lambda h: h.timestamp)
                ts_proto.histograms.extend(buffer.histograms)
            if buffer.exemplars:
                ts_proto.exemplars.extend(buffer.exemplars)
        if self.config.send_metadata:
            for name, (ptype, help_text, unit) in families.items():
                request.metadata.add(
                    type=_METADATA_TYPES.get(ptype, types_pb2.MetricMetadata.UNKNOWN),
                    metric_family_name=name,
                    help=help_text,
                    unit=unit,
                )
        return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))

    def _point(
        self,
        point: MetricPoint,
        series: dict[tuple[tuple[str, str], ...], _SeriesBuffer],
        families: dict[str, tuple[str, str, str]],
        targets: dict[tuple[str, str], tuple[Target, int]],
    ) -> None:
        ptype = self.classify(point)
        family = self.translator.family(point, ptype)
        labels, target = self.translator.labels(point, reserved_label(ptype))
        ts = point.time_unix_nano // 1_000_000
        stale = bool(point.flags & FLAG_NO_RECORDED_VALUE)

        def add(name: str, extra: dict[str, str] | None, value: float) -> _SeriesBuffer:
            pairs = sorted({**labels, **(extra or {}), "__name__": name}.items())
            key = tuple(pairs)
            buffer = series.get(key)
            if buffer is None:
                buffer = series[key] = _SeriesBuffer(pairs)
            buffer.samples.append((ts, STALE_NAN if stale else value))
            return buffer

        name = family.name
        if ptype == "counter":
            if self.config.add_metric_suffixes or sanitize_metric_name(point.name).endswith("_total"):
                name += "_total"
            buffer = add(name, None, float(point.value or 0))
            buffer.exemplars.extend(_exemplar(e) for e in point.exemplars)
        elif point.kind == MetricKind.HISTOGRAM:
            self._histogram(point, name, add)
        elif point.kind == MetricKind.EXPONENTIAL_HISTOGRAM:
            pairs = sorted({**labels, "__name__": name}.items())
            buffer = series.setdefault(tuple(pairs), _SeriesBuffer(pairs))
            buffer.histograms.append(native_histogram(point))
            buffer.exemplars.extend(_exemplar(e) for e in point.exemplars)
        elif point.kind == MetricKind.SUMMARY:
            for quantile, value in sorted(point.quantiles):
                add(name, {"quantile": go_float(quantile)}, float(value))
            add(name + "_count", None, float(point.count))
            add(name + "_sum", None, float(point.sum or 0.0))
        elif ptype == "info":
            name += "_info"
            add(name, None, float(point.value if point.value is not None else 1.0))
        else:
            add(name, None, float(point.value if point.value is not None else math.nan))
        family_key = name if ptype in ("counter", "info") else family.name
        if family_key not in families:
            families[family_key] = (ptype, family.help, family.unit)
        if target is not None:
            held = targets.get((target.job, target.instance))
            if held is None or held[1] < ts:
                targets[(target.job, target.instance)] = (target, ts)

    @staticmethod
    def _histogram(point: MetricPoint, name: str, add: _Add) -> None:
        bounds = [go_float(b) for b in point.explicit_bounds] + ["+Inf"]
        counts = point.bucket_counts if len(point.bucket_counts) == len(bounds) else None
        exemplars = bucket_exemplars(point) if point.exemplars else None
        cumulative = 0
        for i, le in enumerate(bounds):
            if counts is not None:
                cumulative += counts[i]
            elif le != "+Inf":
                continue  # no per-bucket counts: only the +Inf bucket (the count) is known
            else:
                cumulative = point.count
            buffer = add(name + "_bucket", {"le": le}, float(cumulative))
            if exemplars is not None:
                held = exemplars[i]
                if held is not None:
                    buffer.exemplars.append(_exemplar(held))
        add(name + "_count", None, float(point.count))
        if point.sum is not None:
            add(name + "_sum", None, float(point.sum))
