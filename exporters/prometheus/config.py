"""The settings of the Prometheus exporters: naming (shared with prometheus_remote_write) and the
pull exporter's endpoint and series store."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from collector.config.types import ByteSize, Duration, Endpoint, ServerTLS
from collector.core.component import ComponentConfig
from collector.exporterhelper.queue import QueueConfig
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


class PullQueueConfig(QueueConfig):
    """The pull exporter's queue: in memory unless configured otherwise.

    What this exporter delivers to is its own memory (each series' latest point, for the next
    scrape), which a restart loses whatever the queue: a disk queue would only carry the last
    moment's points into an empty exposition, and it costs every batch a disk write and a row encode
    (a sixth to a third of the remote_write -> prometheus path's CPU; at ten times that load the
    backlog went to disk and was read back; bench/RESULTS.md, "The pull exporter's queue in
    memory"). The OpenTelemetry Collector's prometheus exporter has no queue at all.
    ``storage: disk`` still gives the durable queue.

    ``max_bytes`` counts what was received (a remote-write request decompressed), which decodes to
    about six times its size: 16MiB keeps a full queue near 100MiB and is a couple of seconds of a
    core's work, after which receivers wait (``block_timeout``) and then refuse, retryably. Measured
    at ten times the load, full and with 40 connections waiting: 198MiB peak RSS. 64MiB had not
    filled after 40 s of that load (151MiB), but full it would hold some 380MiB decoded.
    """

    storage: Literal["disk", "memory"] = "memory"
    max_bytes: ByteSize = 16 * 1024 * 1024


class PrometheusExporterConfig(ExporterConfig, NamingConfig):
    queue: PullQueueConfig = PullQueueConfig()
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
