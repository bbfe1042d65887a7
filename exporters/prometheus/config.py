"""The settings of the Prometheus exporters: naming (shared with prometheus_remote_write) and the
pull exporter's endpoint and series store."""

from __future__ import annotations

from pydantic import Field

from collector.config.types import Duration, Endpoint, ServerTLS
from collector.core.component import ComponentConfig
from collector.exporterhelper.sender import ExporterConfig


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
