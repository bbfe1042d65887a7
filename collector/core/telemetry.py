"""burnline's own metrics, in Prometheus format on the admin port's /metrics.

Every service instance has its own registry, so several services (tests) can share a process.
Counters are per component and signal, as the OpenTelemetry Collector's ``otelcol_receiver_*`` and
``otelcol_exporter_*`` are.
"""

from __future__ import annotations

import platform
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.metrics_core import Metric

from collector import __version__
from collector.core.loop_lag import LAG_BUCKETS

LOOP_LAG = "burnline_event_loop_lag_seconds"  # the family, read per process by the status page

# Export round trips range from a local SQLite commit (~1 ms) to a slow remote bulk (tens of s).
EXPORT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class MetricFamilies(Protocol):
    """Anything with a registry's ``collect()``."""

    def collect(self) -> Iterable[Metric]: ...


class Telemetry:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        cs = ["component", "signal"]
        self.received = Counter("burnline_records_received", "Records decoded by a receiver.", cs, registry=r)
        self.accepted = Counter(
            "burnline_records_accepted",
            "Records a receiver handed to its pipelines and acknowledged to the client.",
            cs,
            registry=r,
        )
        self.refused = Counter(
            "burnline_records_refused",
            "Records a receiver refused with a retryable answer (backpressure, memory, shutdown).",
            [*cs, "reason"],
            registry=r,
        )
        self.exported = Counter(
            "burnline_records_exported", "Records an exporter delivered to its backend.", cs, registry=r
        )
        self.failed = Counter(
            "burnline_records_failed",
            "Records an exporter could never deliver: written to the dead-letter file, except those an OTLP"
            " backend rejected in a partial success (reason partial_success), which it does not name.",
            [*cs, "reason"],
            registry=r,
        )
        self.dropped = Counter(
            "burnline_records_dropped",
            "Records dropped on purpose (filter processors, drop_newest queues, lost at hard stop).",
            [*cs, "reason"],
            registry=r,
        )
        self.retries = Counter(
            "burnline_export_retries",
            "Export attempts that failed with a retryable error and were scheduled again.",
            [*cs, "reason"],
            registry=r,
        )
        self.protocol_errors = Counter(
            "burnline_receiver_errors",
            "Requests, frames or connections a receiver rejected as bad input or failed authentication.",
            ["component", "reason"],
            registry=r,
        )
        self.scrapes_missed = Counter(
            "burnline_scrapes_missed",
            "Scheduled scrapes a prometheus_scrape receiver skipped: the target's previous scrape (waiting"
            " for a slot, fetching, parsing, handing over) ran past its next tick.",
            ["component", "scrape_job"],
            registry=r,
        )
        self.queue_records = Gauge(
            "burnline_queue_records",
            "Records waiting in an exporter's queue (in flight included).",
            ["component"],
            registry=r,
        )
        self.queue_bytes = Gauge(
            "burnline_queue_bytes",
            "Estimated bytes waiting in an exporter's queue.",
            ["component"],
            registry=r,
        )
        self.queue_capacity_bytes = Gauge(
            "burnline_queue_capacity_bytes",
            "The byte bound of an exporter's queue.",
            ["component"],
            registry=r,
        )
        self.queue_capacity_records = Gauge(
            "burnline_queue_capacity_records",
            "The record bound of an exporter's queue.",
            ["component"],
            registry=r,
        )
        self.export_duration = Histogram(
            "burnline_export_duration_seconds",
            "Time of one export call (one bulk request or store commit), success or failure.",
            cs,
            buckets=EXPORT_BUCKETS,
            registry=r,
        )
        self.connections = Gauge(
            "burnline_receiver_connections",
            "Open client connections of a receiver.",
            ["component"],
            registry=r,
        )
        self.in_flight = Gauge(
            "burnline_receivers_in_flight",
            "Frames and request bodies the receivers are reading, decoding or handing on "
            "(at most service.memory_limiter.max_in_flight).",
            registry=r,
        )
        self.in_flight_waiting = Gauge(
            "burnline_receivers_waiting",
            "Connections and requests waiting, unread, for an in-flight turn.",
            registry=r,
        )
        self.memory_resident = Gauge(
            "burnline_memory_resident_bytes",
            "The process' resident memory, as the memory limiter last read it.",
            registry=r,
        )
        self.memory_limit = Gauge(
            "burnline_memory_limit_bytes",
            "The memory limiter's limits (soft: refuse new data; hard: also GC).",
            ["limit"],
            registry=r,
        )
        self.up = Gauge(
            "burnline_component_up",
            "1 while a component is started and healthy.",
            ["component", "kind"],
            registry=r,
        )
        # The SLO engine's own operation (its SLO values come from collector.slo.metrics at scrape time).
        self.slo_alertmanager_sends = Counter(
            "burnline_slo_alertmanager_sends",
            "POSTs of SLO alerts to an Alertmanager, by outcome (success, retry, error).",
            ["alertmanager", "outcome"],
            registry=r,
        )
        self.slo_alerts_sent = Counter(
            "burnline_slo_alerts_sent",
            "SLO alerts (firing and resolved, re-sends included) an Alertmanager accepted.",
            ["alertmanager"],
            registry=r,
        )
        self.slo_alerts_dropped = Counter(
            "burnline_slo_alerts_dropped",
            "SLO alerts dropped because too many distinct alerts were waiting for an Alertmanager.",
            ["alertmanager"],
            registry=r,
        )

        # As Prometheus' own: whether the last SIGHUP reload applied, and when one last did.
        self.build_info = Gauge(
            "burnline_build_info",
            "Always 1; the labels say which burnline and which Python run.",
            ["version", "python"],
            registry=r,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.config_reload_successful = Gauge(
            "burnline_config_last_reload_successful",
            "1 when the last configuration reload (SIGHUP) applied, 0 when it failed.",
            registry=r,
        )
        self.config_reload_successful.set(1)
        self.config_reload_success_timestamp = Gauge(
            "burnline_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully (start or reload), Unix seconds.",
            registry=r,
        )
        self.config_reload_success_timestamp.set_to_current_time()

        # Saturation (collector/core/loop_lag.py): how late the event loop ran what was due, and
        # the standard process_* series (CPU seconds, resident memory, open file descriptors).
        self.loop_lag = Histogram(
            LOOP_LAG,
            "How much later than due the event loop ran a timer, sampled every 100ms: rising when the"
            " process needs more CPU than it gets.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        ProcessCollector(registry=r)

        # Writers of further text-format families (the SLO engine's, computed at scrape time), each
        # in parts.
        self.extra_expositions: list[Callable[[], AsyncIterator[bytes]]] = []

    def status_registry(self) -> MetricFamilies:
        """What the status page's pipeline section reads (a supervisor's: its workers' metrics)."""
        return self.registry

    def exposition(self) -> bytes:
        """The registry's metrics (without the extra writers'; see ``full_exposition``)."""
        return generate_latest(self.registry)

    async def exposition_parts(self) -> AsyncGenerator[bytes, None]:
        """Everything /metrics serves, in parts: the registry, then each extra writer's families."""
        yield self.exposition()
        for write in list(self.extra_expositions):
            async for part in write():
                yield part

    async def full_exposition(self) -> bytes:
        """``exposition_parts``, whole."""
        return b"".join([part async for part in self.exposition_parts()])
