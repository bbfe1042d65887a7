"""The series kept by the pull exporter, rendered through prometheus-client for a scrape."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Exemplar as PromExemplar

from collector.core.model import Exemplar, MetricPoint
from exporters.prometheus.naming import go_float, label_value, sanitize_label_name
from exporters.prometheus.translator import Family, Target, bucket_exemplars

# OpenMetrics limits an exemplar's label set to 128 UTF-8 characters (names and values).
_EXEMPLAR_LABEL_CHARS = 128


@dataclass(slots=True)
class Series:
    # The family's name, then label, value, label, value, ... in label order: the series' identity,
    # and its labels, rebuilt only for a scrape rather than held twice.
    key: tuple[str, ...]
    family: Family
    point: MetricPoint
    target: Target | None
    updated: float

    @property
    def labels(self) -> dict[str, str]:
        key = self.key
        return dict(zip(key[1::2], key[2::2], strict=True))


class _Snapshot:
    """A prometheus-client collector over a copy of the series taken on the event loop, so the
    rendering can run in a worker thread while exports go on."""

    def __init__(self, series: list[Series], send_timestamps: bool) -> None:
        self.series = series
        self.send_timestamps = send_timestamps

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        targets: dict[tuple[str, str], dict[str, str]] = {}
        for s in self.series:
            fam = s.family
            metric = families.get(fam.name)
            if metric is None:
                metric = families[fam.name] = Metric(fam.name, fam.help, fam.type, fam.unit)
            elif metric.type != fam.type:
                continue  # the exporter refuses such points; a family renamed meanwhile may remain
            _add_samples(metric, s, self.send_timestamps)
            if s.target is not None:
                targets.setdefault((s.target.job, s.target.instance), s.target.labels)
        yield from families.values()
        if targets:
            info = Metric("target", "Target metadata", "info")
            for labels in targets.values():
                info.add_sample("target_info", labels, 1.0)
            yield info


def _prom_exemplar(e: Exemplar | None) -> PromExemplar | None:
    if e is None:
        return None
    labels: dict[str, str] = {}
    if e.trace_id:
        labels["trace_id"] = e.trace_id
    if e.span_id:
        labels["span_id"] = e.span_id
    size = sum(len(k) + len(v) for k, v in labels.items())
    for key, raw in e.filtered_attributes.items():
        name, value = sanitize_label_name(key), label_value(raw)
        if name in labels or size + len(name) + len(value) > _EXEMPLAR_LABEL_CHARS:
            continue
        labels[name] = value
        size += len(name) + len(value)
    return PromExemplar(labels, float(e.value), e.time_unix_nano / 1e9 if e.time_unix_nano else None)


def _add_samples(metric: Metric, s: Series, send_timestamps: bool) -> None:
    p, name, labels = s.point, metric.name, s.labels
    ts = p.time_unix_nano / 1e9 if send_timestamps else None
    kind = metric.type
    if kind == "counter":
        exemplar = _prom_exemplar(max(p.exemplars, key=lambda e: e.time_unix_nano)) if p.exemplars else None
        metric.add_sample(name + "_total", labels, float(p.value or 0), ts, exemplar)
        if p.start_time_unix_nano:
            metric.add_sample(name + "_created", labels, p.start_time_unix_nano / 1e9, ts)
    elif kind == "histogram":
        exemplars = bucket_exemplars(p) if p.exemplars else None
        cumulative = 0
        bounds = [go_float(b) for b in p.explicit_bounds] + ["+Inf"]
        counts = p.bucket_counts if len(p.bucket_counts) == len(bounds) else None
        for i, le in enumerate(bounds):
            if counts is not None:
                cumulative += counts[i]
            else:  # no per-bucket counts: only the +Inf bucket (the count) is known
                if le != "+Inf":
                    continue
                cumulative = p.count
            ex = _prom_exemplar(exemplars[i]) if exemplars else None
            metric.add_sample(name + "_bucket", {**labels, "le": le}, float(cumulative), ts, ex)
        metric.add_sample(name + "_count", labels, float(p.count), ts)
        if p.sum is not None:
            metric.add_sample(name + "_sum", labels, float(p.sum), ts)
        if p.start_time_unix_nano:
            metric.add_sample(name + "_created", labels, p.start_time_unix_nano / 1e9, ts)
    elif kind == "summary":
        for quantile, value in sorted(p.quantiles):
            metric.add_sample(name, {**labels, "quantile": go_float(quantile)}, float(value), ts)
        metric.add_sample(name + "_count", labels, float(p.count), ts)
        metric.add_sample(name + "_sum", labels, float(p.sum or 0.0), ts)
        if p.start_time_unix_nano:
            metric.add_sample(name + "_created", labels, p.start_time_unix_nano / 1e9, ts)
    elif kind == "info":
        metric.add_sample(name + "_info", labels, float(p.value if p.value is not None else 1), ts)
    else:
        metric.add_sample(name, labels, float(p.value if p.value is not None else math.nan), ts)


def render(series: list[Series], accept: str, send_timestamps: bool) -> tuple[bytes, str]:
    """The exposition a scraper asked for (Accept header) and its Content-Type."""
    encoder, content_type = choose_encoder(accept)
    return encoder(_Snapshot(series, send_timestamps)), content_type
