"""OpenTelemetry -> Prometheus names, types and labels.

Translation follows OpenTelemetry's "Prometheus and OpenMetrics compatibility" spec; the functions
here and in naming.py are shared with the ``prometheus_remote_write`` exporter:

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collector.core.model import Exemplar, MetricKind, MetricPoint, Temporality
from exporters.prometheus.config import NamingConfig
from exporters.prometheus.naming import (
    attribute_labels,
    job_instance,
    label_value,
    sanitize_metric_name,
    unit_word,
)

# Prometheus types of the series that make up a classic histogram or summary.
COMPONENT_TYPES = frozenset({"histogram", "gaugehistogram", "summary"})
RESOURCE_IDENTITY = frozenset({"service.name", "service.namespace", "service.instance.id"})

_RESOURCE_CACHE_SIZE = 4096
# Families are few; one Family a family, not one a series, is a hundred bytes less a series.
_FAMILY_CACHE_SIZE = 4096


class Unsupported(Exception):
    """A point this translation cannot express; ``reason`` labels the dropped counter."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


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
        # (point name, type, unit, description, verbatim) -> its Family
        self._families: dict[tuple[str, str, str, str, bool], Family] = {}

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
        declared = point.metadata.get("prometheus.type") if point.metadata else None
        verbatim = declared in COMPONENT_TYPES and prometheus_type == "unknown"
        key = (point.name, prometheus_type, point.unit, point.description, verbatim)
        family = self._families.get(key)
        if family is None:
            if len(self._families) >= _FAMILY_CACHE_SIZE:
                self._families.clear()
            family = self._families[key] = self._family(point, prometheus_type, verbatim)
        return family

    def _family(self, point: MetricPoint, prometheus_type: str, verbatim: bool) -> Family:
        name = sanitize_metric_name(point.name)
        unit = ""
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

    def job_and_instance(self, point: MetricPoint) -> tuple[str, str]:
        """The ``job`` and ``instance`` labels of the point's series ("" when absent), as ``labels``
        gives them, without building the rest: every series of one target, and its target_info,
        share them."""
        added, _ = self._resource(point.resource)
        job, instance = added.get("job"), added.get("instance")
        attributes = point.attributes
        if job is None:  # no job from the resource: an attribute named job is the label then
            job = label_value(attributes.get("job")) if attributes else ""
        if instance is None:
            instance = label_value(attributes.get("instance")) if attributes else ""
        return job, instance


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
