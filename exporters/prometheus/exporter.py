"""The ``prometheus`` exporter: the pipeline's metrics on a /metrics endpoint for Prometheus to scrape.

Each series' latest point is kept; a scrape renders them through prometheus-client (a custom
collector yielding counter, gauge, histogram, summary, info and unknown families), in the Prometheus
text format or OpenMetrics, whichever the scraper asks for, gzip-compressed when it accepts that.
A series not updated for ``metric_expiration`` disappears, as in the OpenTelemetry Collector.

Translation follows OpenTelemetry's "Prometheus and OpenMetrics compatibility" spec; the functions
here are shared with the ``prometheus_remote_write`` exporter:

- Names: characters outside ``[a-zA-Z0-9_:]`` become ``_``, runs of ``_`` one ``_``, a leading digit
  gets a ``_``. With ``add_metric_suffixes`` (default) the unit is appended in Prometheus words
  (``s`` -> ``_seconds``, ``By/s`` -> ``_bytes_per_second``, ``{packet}`` dropped, ``1`` -> ``_ratio``
  for gauges) unless the name already ends with it, and counters end in ``_total``.
- Types: monotonic cumulative sums are counters; non-monotonic sums and gauges are gauges (unknown
  when ``prometheus.type`` metadata says so, info when it says info); histograms and summaries are
  families of ``_bucket``/``_sum``/``_count`` and quantile series. Delta sums and histograms are
  added up into cumulative ones here (non-monotonic delta sums cannot be, and are dropped).
  Exponential histograms have no text exposition and are dropped. Every drop is counted in
  ``burnline_records_dropped_total{reason}`` and logged once per reason.
- Series that came from Prometheus as parts of a classic histogram or summary (``prometheus.type``
  histogram/summary on a gauge or sum point: the remote_write receiver keeps them apart) are
  exposed under their own names, unknown-typed, without suffixes: their names are final already.
- Labels: attributes (names sanitized like metric names but without ``:``; attributes that collide
  after sanitizing are joined with ``;`` in the order of their original keys; values that are not
  text rendered as the attribute spec says). The resource gives ``job`` (``service.namespace/``
  ``service.name``) and ``instance`` (``service.instance.id``); its other attributes go to one
  ``target_info`` series per job and instance (``target_info``), or onto every series
  (``resource_to_telemetry_conversion``). The scope gives ``otel_scope_name``/``otel_scope_version``
  (``scope_labels``).
- Two kinds of points that would share a family name with different types: the later one is dropped
  (reason ``type_conflict``), as the spec asks, so that a scrape never holds two TYPE lines.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gzip
import math
import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import orjson
from aiohttp import web
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Exemplar as PromExemplar
from prometheus_client.utils import floatToGoString as _float_to_go_string
from pydantic import Field

from collector.config.types import Duration, Endpoint, ServerTLS, split_endpoint
from collector.core.component import ComponentConfig, ComponentContext, Exporter, register
from collector.core.model import Batch, Exemplar, MetricKind, MetricPoint, Signal, Temporality
from collector.exporterhelper.sender import ExporterConfig
from collector.httpserver.server import start_server

FLAG_NO_RECORDED_VALUE = 1

# OpenTelemetry (UCUM) units to Prometheus words, and the "per" units, as the OpenTelemetry
# Collector's translator has them.
UNIT_WORDS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "%": "percent",
}
PER_UNIT_WORDS = {
    "s": "second",
    "min": "minute",
    "m": "minute",
    "h": "hour",
    "d": "day",
    "w": "week",
    "wk": "week",
    "mo": "month",
    "y": "year",
    "a": "year",
}

# Prometheus types of the series that make up a classic histogram or summary.
COMPONENT_TYPES = frozenset({"histogram", "gaugehistogram", "summary"})
RESOURCE_IDENTITY = frozenset({"service.name", "service.namespace", "service.instance.id"})

_INVALID_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_UNDERSCORES = re.compile(r"__+")
_BRACES = re.compile(r"\{[^}]*\}")
# OpenMetrics limits an exemplar's label set to 128 UTF-8 characters (names and values).
_EXEMPLAR_LABEL_CHARS = 128

_RESOURCE_CACHE_SIZE = 4096


class Unsupported(Exception):
    """A point this translation cannot express; ``reason`` labels the dropped counter."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------------------------------------------
# OpenTelemetry -> Prometheus names, types and labels (shared with prometheus_remote_write)


@functools.lru_cache(maxsize=16384)
def sanitize_metric_name(name: str) -> str:
    out = _UNDERSCORES.sub("_", _INVALID_METRIC_CHARS.sub("_", name))
    if not out:
        return "_"
    return "_" + out if out[0].isdigit() else out


@functools.lru_cache(maxsize=16384)
def sanitize_label_name(name: str) -> str:
    out = _UNDERSCORES.sub("_", _INVALID_LABEL_CHARS.sub("_", name))
    if not out:
        return "_"
    return "key_" + out if out[0].isdigit() else out


def go_float(value: float) -> str:
    """A float as Prometheus writes label values like ``le`` and ``quantile`` (``0.5``, ``+Inf``)."""
    text: str = _float_to_go_string(value)  # type: ignore[no-untyped-call]
    return text


def _clean_word(text: str) -> str:
    return _UNDERSCORES.sub("_", _INVALID_LABEL_CHARS.sub("_", text)).strip("_")


@functools.lru_cache(maxsize=1024)
def unit_word(unit: str, gauge: bool) -> str:
    """An OpenTelemetry unit in Prometheus words: ``ms`` -> ``milliseconds``, ``By/s`` ->
    ``bytes_per_second``, ``{request}`` -> "", ``1`` -> ``ratio`` (gauges; "" otherwise)."""
    main, _, per = unit.partition("/")
    main = _BRACES.sub("", main).strip()
    per = _BRACES.sub("", per).strip()
    if main == "1":
        # Some receivers use "1" for counts of things; a ratio only makes sense for a gauge.
        main_word = "ratio" if gauge and not per else ""
    else:
        main_word = _clean_word(UNIT_WORDS.get(main, main))
    per_word = _clean_word(PER_UNIT_WORDS.get(per, per)) if per else ""
    if per_word:
        return f"{main_word}_per_{per_word}" if main_word else f"per_{per_word}"
    return main_word


def label_value(value: Any) -> str:
    """A non-text attribute value as text, as OpenTelemetry's attribute spec renders it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else {"inf": "+Inf", "-inf": "-Inf"}.get(str(value), "NaN")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if value is None:
        return ""
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def attribute_labels(attributes: dict[str, Any]) -> dict[str, str]:
    """Attributes as labels; keys that collide once sanitized have their values joined with ';'
    in the order of the original keys. Empty values are left out (Prometheus: an absent label)."""
    labels: dict[str, str] = {}
    collided = False
    for key, raw in attributes.items():
        value = label_value(raw)
        if not value:
            continue
        name = sanitize_label_name(key)
        collided = collided or name in labels
        labels[name] = value
    if not collided:
        return labels
    grouped: dict[str, list[str]] = {}
    for key, raw in sorted(attributes.items()):
        value = label_value(raw)
        if value:
            grouped.setdefault(sanitize_label_name(key), []).append(value)
    return {name: ";".join(values) for name, values in grouped.items()}


def job_instance(resource: dict[str, Any]) -> tuple[str, str]:
    """``job`` and ``instance`` from ``service.namespace``/``service.name`` and ``service.instance.id``."""
    name = label_value(resource.get("service.name", ""))
    namespace = label_value(resource.get("service.namespace", ""))
    job = f"{namespace}/{name}" if name and namespace else name
    return job, label_value(resource.get("service.instance.id", ""))


class NamingConfig(ComponentConfig):
    """How OpenTelemetry names become Prometheus ones (both Prometheus exporters)."""

    # A prefix for every metric name (``<namespace>_<name>``).
    namespace: str = ""
    # Unit and ``_total`` suffixes, as the OpenTelemetry compatibility spec asks by default. (The
    # pull exposition names counter samples ``_total`` regardless: its formats require it.)
    add_metric_suffixes: bool = True
    # Every resource attribute as a label on every series (besides job and instance).
    resource_to_telemetry_conversion: bool = False
    # One target_info series per job/instance holding the other resource attributes.
    target_info: bool = True
    # otel_scope_name / otel_scope_version labels from each point's instrumentation scope.
    scope_labels: bool = True


@dataclass(frozen=True, slots=True)
class Family:
    """A point's Prometheus family: ``name`` as prometheus-client takes it (a counter's without
    ``_total``), ``type`` in OpenMetrics words, ``unit`` in Prometheus words ("" if none)."""

    name: str
    type: str
    unit: str
    help: str


@dataclass(frozen=True, slots=True)
class Target:
    job: str
    instance: str
    labels: dict[str, str]  # job, instance and the other resource attributes: target_info's


class Translator:
    """Points to Prometheus families and label sets, with per-resource work done once."""

    def __init__(self, config: NamingConfig) -> None:
        self.config = config
        prefix = sanitize_metric_name(config.namespace) if config.namespace else ""
        self._prefix = prefix + "_" if prefix and not prefix.endswith("_") else prefix
        # id(resource) -> (resource, labels it adds to every series, its target): resource maps are
        # shared by all points of a source, so this is worked out once per source.
        self._resources: dict[int, tuple[dict[str, Any], dict[str, str], Target | None]] = {}

    def prometheus_type(self, point: MetricPoint) -> str:
        """The OpenMetrics type a point becomes; raises Unsupported when it becomes nothing."""
        declared = point.metadata.get("prometheus.type") if point.metadata else None
        kind = point.kind
        if kind in (MetricKind.GAUGE, MetricKind.SUM) and declared in COMPONENT_TYPES:
            return "unknown"
        if kind == MetricKind.GAUGE:
            return "unknown" if declared == "unknown" else "gauge"
        if kind == MetricKind.SUM:
            if point.temporality == Temporality.DELTA and not point.monotonic:
                raise Unsupported("delta_non_monotonic", "a non-monotonic delta sum has no Prometheus form")
            if point.monotonic:
                return "counter"
            return "info" if declared == "info" else "gauge"
        if kind == MetricKind.HISTOGRAM:
            return "histogram"
        if kind == MetricKind.SUMMARY:
            return "summary"
        raise Unsupported("exponential_histogram", "exponential histograms have no Prometheus text form")

    def family(self, point: MetricPoint, prometheus_type: str) -> Family:
        name = sanitize_metric_name(point.name)
        unit = ""
        declared = point.metadata.get("prometheus.type") if point.metadata else None
        verbatim = declared in COMPONENT_TYPES and prometheus_type == "unknown"
        if prometheus_type == "counter" and name.endswith("_total"):
            name = name[: -len("_total")]
        elif prometheus_type == "info" and name.endswith("_info"):
            name = name[: -len("_info")]
        if self.config.add_metric_suffixes and not verbatim and point.unit:
            unit = unit_word(point.unit, prometheus_type == "gauge")
            if unit and not name.endswith("_" + unit) and name != unit:
                name = f"{name}_{unit}"
        elif point.unit and not verbatim:
            candidate = unit_word(point.unit, prometheus_type == "gauge")
            unit = candidate if candidate and name.endswith("_" + candidate) else ""
        return Family(self._prefix + name if self._prefix else name, prometheus_type, unit, point.description)

    def _resource(self, resource: dict[str, Any]) -> tuple[dict[str, str], Target | None]:
        held = self._resources.get(id(resource))
        if held is not None and held[0] is resource:
            return held[1], held[2]
        job, instance = job_instance(resource)
        added: dict[str, str] = {}
        others = {k: v for k, v in resource.items() if k not in RESOURCE_IDENTITY}
        if self.config.resource_to_telemetry_conversion:
            added.update(attribute_labels(resource))
        if job:
            added["job"] = job
        if instance:
            added["instance"] = instance
        target = None
        if self.config.target_info and others and (job or instance):
            labels = attribute_labels(others)
            labels.pop("job", None)
            labels.pop("instance", None)
            if job:
                labels["job"] = job
            if instance:
                labels["instance"] = instance
            target = Target(job, instance, labels)
        if len(self._resources) >= _RESOURCE_CACHE_SIZE:
            self._resources.clear()
        self._resources[id(resource)] = (resource, added, target)
        return added, target

    def labels(self, point: MetricPoint, reserved: str = "") -> tuple[dict[str, str], Target | None]:
        """A point's labels (without ``reserved``: ``le`` or ``quantile``) and its target."""
        labels = attribute_labels(point.attributes) if point.attributes else {}
        if reserved:
            labels.pop(reserved, None)
        added, target = self._resource(point.resource)
        if added:
            labels.update(added)
        if self.config.scope_labels and point.scope.name:
            labels["otel_scope_name"] = point.scope.name
            if point.scope.version:
                labels["otel_scope_version"] = point.scope.version
        return labels, target


def reserved_label(prometheus_type: str) -> str:
    if prometheus_type == "histogram":
        return "le"
    if prometheus_type == "summary":
        return "quantile"
    return ""


def bucket_exemplars(point: MetricPoint) -> list[Exemplar | None]:
    """Per bucket (the +Inf one last), the largest exemplar whose value falls in it."""
    bounds = point.explicit_bounds
    out: list[Exemplar | None] = [None] * (len(bounds) + 1)
    for e in point.exemplars:
        value = float(e.value)
        i = 0
        while i < len(bounds) and value > bounds[i]:
            i += 1
        held = out[i]
        if held is None or value > float(held.value):
            out[i] = e
    return out


def accumulate(previous: MetricPoint | None, point: MetricPoint) -> MetricPoint:
    """A delta sum or histogram point added onto the running cumulative one (OpenTelemetry's
    delta-to-cumulative: a histogram whose buckets changed starts over)."""
    if previous is None:
        return replace(point, temporality=Temporality.CUMULATIVE)
    if point.kind == MetricKind.SUM:
        total = (previous.value or 0) + (point.value or 0)
        return replace(
            point,
            value=total,
            temporality=Temporality.CUMULATIVE,
            start_time_unix_nano=previous.start_time_unix_nano,
        )
    if point.explicit_bounds != previous.explicit_bounds or len(point.bucket_counts) != len(
        previous.bucket_counts
    ):
        return replace(point, temporality=Temporality.CUMULATIVE)
    total_sum = None if point.sum is None or previous.sum is None else previous.sum + point.sum
    mins = [m for m in (previous.min, point.min) if m is not None]
    maxes = [m for m in (previous.max, point.max) if m is not None]
    return replace(
        point,
        temporality=Temporality.CUMULATIVE,
        start_time_unix_nano=previous.start_time_unix_nano,
        count=previous.count + point.count,
        sum=total_sum,
        min=min(mins) if mins else None,
        max=max(maxes) if maxes else None,
        bucket_counts=[a + b for a, b in zip(previous.bucket_counts, point.bucket_counts, strict=True)],
    )


class DropLog:
    """Counts dropped points by reason and logs each reason once per interval."""

    def __init__(self, exporter: Exporter, interval: float = 60.0) -> None:
        self._exporter = exporter
        self._interval = interval
        self._last: dict[str, float] = {}

    def drop(self, reason: str, detail: str, n: int = 1) -> None:
        self._exporter.ctx.telemetry.dropped.labels(self._exporter.id, Signal.METRICS.value, reason).inc(n)
        now = time.monotonic()
        if now - self._last.get(reason, -math.inf) >= self._interval:
            self._last[reason] = now
            self._exporter.log.warning("dropped %d point(s): %s (reason %s)", n, detail, reason)


# ---------------------------------------------------------------------------------------------------
# The pull exporter


class PrometheusExporterConfig(ExporterConfig, NamingConfig):
    endpoint: Endpoint = "0.0.0.0:9464"
    path: str = "/metrics"
    tls: ServerTLS | None = None
    # A series not updated for this long is no longer exposed (0: never expires).
    metric_expiration: Duration = 300.0
    # A bound on the series kept; past it the least recently updated one is dropped.
    max_series: int = Field(default=200_000, ge=1)
    # Expose each point's own time. Off by default: Prometheus then stamps samples with the scrape
    # time and its staleness handling works as for any exporter.
    send_timestamps: bool = False


@dataclass(slots=True)
class _Series:
    family: Family
    labels: dict[str, str]
    point: MetricPoint
    target: Target | None
    updated: float


class _Snapshot:
    """A prometheus-client collector over a copy of the series taken on the event loop, so the
    rendering can run in a worker thread while exports go on."""

    def __init__(self, series: list[_Series], send_timestamps: bool) -> None:
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


def _add_samples(metric: Metric, s: _Series, send_timestamps: bool) -> None:
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


def render(series: list[_Series], accept: str, send_timestamps: bool) -> tuple[bytes, str]:
    """The exposition a scraper asked for (Accept header) and its Content-Type."""
    encoder, content_type = choose_encoder(accept)
    return encoder(_Snapshot(series, send_timestamps)), content_type


@register
class PrometheusExporter(Exporter):
    """Keeps the latest point of each series and serves them on ``endpoint`` + ``path``."""

    type_name = "prometheus"
    config_model = PrometheusExporterConfig
    signals = frozenset({Signal.METRICS})

    config: PrometheusExporterConfig

    def __init__(self, config: PrometheusExporterConfig, ctx: ComponentContext) -> None:
        super().__init__(config, ctx)
        self.host, self.port = split_endpoint(config.endpoint)
        self.translator = Translator(config)
        self._series: OrderedDict[tuple[str, tuple[tuple[str, str], ...]], _Series] = OrderedDict()
        # family name -> (type, number of series): a family keeps one type while it has series.
        self._family_types: dict[str, list[Any]] = {}
        self._drops = DropLog(self)
        self._runner: web.AppRunner | None = None
        self._last_sweep = 0.0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        ssl_context = self.config.tls.context() if self.config.tls else None
        self._runner, self.port = await start_server(app, self.host, self.port, ssl_context=ssl_context)
        scheme = "https" if ssl_context else "http"
        self.log.info("serving metrics on %s://%s:%d%s", scheme, self.host, self.port, self.config.path)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def series_count(self) -> int:
        return len(self._series)

    async def export(self, batch: Batch) -> int:
        return self.store(batch.items)

    def store(self, points: Iterable[MetricPoint]) -> int:
        """Keeps each point as its series' latest; returns how many were taken."""
        now = time.monotonic()
        kept = sum(1 for point in points if self._store(point, now))
        if now - self._last_sweep >= 1.0:
            self.expire(now)
        return kept

    def _store(self, point: MetricPoint, now: float) -> bool:
        translator = self.translator
        try:
            ptype = translator.prometheus_type(point)
        except Unsupported as exc:
            self._drops.drop(exc.reason, f"{point.name}: {exc.detail}")
            return False
        family = translator.family(point, ptype)
        labels, target = translator.labels(point, reserved_label(ptype))
        key = (family.name, tuple(sorted(labels.items())))
        known = self._family_types.get(family.name)
        if known is not None and known[0] != ptype:
            # Until the family's series expire, it keeps its type: a scrape never holds two TYPEs.
            detail = f"{point.name} would be a {ptype} named {family.name!r}, already a {known[0]}"
            self._drops.drop("type_conflict", detail)
            return False
        series = self._series
        held = series.get(key)
        if point.flags & FLAG_NO_RECORDED_VALUE:  # a stale marker: the series ended
            if held is not None:
                self._remove(key, held)
            return True
        if held is not None:
            if point.temporality == Temporality.DELTA:
                point = accumulate(held.point, point)
            elif point.time_unix_nano < held.point.time_unix_nano:
                return True  # older than the point shown, which stays
            held.point, held.family, held.target, held.updated = point, family, target, now
            series.move_to_end(key)
            return True
        if point.temporality == Temporality.DELTA:
            point = accumulate(None, point)
        if len(series) >= self.config.max_series:
            oldest_key, oldest = next(iter(series.items()))
            self._remove(oldest_key, oldest)
            self._drops.drop("series_limit", f"over max_series {self.config.max_series}")
        series[key] = _Series(family, labels, point, target, now)
        known = self._family_types.get(family.name)  # the eviction may have ended the family
        if known is None:
            self._family_types[family.name] = [ptype, 1]
        else:
            known[1] += 1
        return True

    def _remove(self, key: tuple[str, tuple[tuple[str, str], ...]], held: _Series) -> None:
        del self._series[key]
        known = self._family_types.get(held.family.name)
        if known is not None:
            known[1] -= 1
            if known[1] <= 0:
                del self._family_types[held.family.name]

    def expire(self, now: float | None = None) -> int:
        """Forgets series not updated for ``metric_expiration``; returns how many."""
        now = time.monotonic() if now is None else now
        self._last_sweep = now
        ttl = self.config.metric_expiration
        if ttl <= 0:
            return 0
        cutoff = now - ttl
        n = 0
        series = self._series
        while series:
            key, held = next(iter(series.items()))
            if held.updated >= cutoff:
                break
            self._remove(key, held)
            n += 1
        return n

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path != self.config.path:
            return web.Response(status=404, text=f"not found; metrics are at {self.config.path}\n")
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        self.expire()
        snapshot = list(self._series.values())
        accept = request.headers.get("Accept", "")
        gzipped = "gzip" in request.headers.get("Accept-Encoding", "").lower()
        body, content_type = await asyncio.to_thread(self._render, snapshot, accept, gzipped)
        headers = {"Content-Type": content_type}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    def _render(self, snapshot: list[_Series], accept: str, gzipped: bool) -> tuple[bytes, str]:
        body, content_type = render(snapshot, accept, self.config.send_timestamps)
        return (gzip.compress(body, 1) if gzipped else body), content_type
