"""Pipeline health as the status page shows it, read from burnline's own metrics registry.

The Telemetry registry already counts everything per component (records received, accepted,
refused, exported, failed = dead-lettered, dropped, retries, receiver errors) and gauges queue
depth, bytes, capacity, connections and memory. Rates need two readings: a sampler reads the
counters every ``interval`` and keeps a minute of readings, and a request compares the counters now
with the oldest reading of that minute.

Queue age: the queues do not stamp their batches with an enqueue time, so two honest figures stand
in for it: ``backlog_seconds``, the time since a reading last found the queue empty (an upper bound
of its oldest record's age: every record in it came after that reading), and ``drain_seconds``,
the queue's depth over its export rate (Little's law: the wait of a record that joins now).

Only component ids, signals and numbers are shown: never an endpoint, a path or any other config
value, which can hold credentials.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from collector.core.telemetry import LOOP_LAG, MetricFamilies, Telemetry
from collector.workers.metrics_merge import WORKER_LABEL

RATE_WINDOW = 60.0  # seconds of readings a rate spans (at most)
SAMPLE_INTERVAL = 5.0

# (counter family, extra label) -> the key a component's signal row has.
RECEIVER_COUNTERS = {"burnline_records_received": "received", "burnline_records_accepted": "accepted"}
RECEIVER_REASONED = {"burnline_records_refused": "refused"}
EXPORTER_COUNTERS = {"burnline_records_exported": "exported"}
EXPORTER_REASONED = {
    "burnline_records_failed": "failed",
    "burnline_records_dropped": "dropped",
    "burnline_export_retries": "retries",
}

Counters = dict[tuple[str, str, str], float]  # (key, component, signal) -> value
Gauges = dict[tuple[str, str], float]  # (family, component or label) -> value


class ServiceView(Protocol):
    """What the status pages read from a running Service (duck-typed: Service has these)."""

    exporters: dict[str, Any]
    receivers: dict[str, Any]
    pipelines: dict[str, Any]
    memory_limiter: Any


def read(registry: MetricFamilies) -> tuple[Counters, Gauges, dict[str, dict[str, float]]]:
    """Counters summed over reasons, gauges, and per component the failure reasons' counts."""
    counters: Counters = {}
    gauges: Gauges = {}
    reasons: dict[str, dict[str, float]] = {}
    reasoned = {**RECEIVER_REASONED, **EXPORTER_REASONED}
    plain = {**RECEIVER_COUNTERS, **EXPORTER_COUNTERS}
    for family in registry.collect():
        if family.type == "counter":
            key = plain.get(family.name) or reasoned.get(family.name)
            if family.name == "burnline_receiver_errors":
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        component = sample.labels.get("component", "")
                        k = ("errors", component, "")
                        counters[k] = counters.get(k, 0.0) + sample.value
                        by = reasons.setdefault(f"errors:{component}", {})
                        by[sample.labels.get("reason", "")] = sample.value
                continue
            if key is None:
                continue
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                component = sample.labels.get("component", "")
                signal = sample.labels.get("signal", "")
                k = (key, component, signal)
                counters[k] = counters.get(k, 0.0) + sample.value
                if family.name in reasoned:
                    by = reasons.setdefault(f"{key}:{component}", {})
                    reason = sample.labels.get("reason", "")
                    by[reason] = by.get(reason, 0.0) + sample.value
        elif family.name == LOOP_LAG:
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    # Per process: a supervisor's reading has each worker's (labelled) and its own.
                    k = ("loop_lag", sample.labels.get("le", ""), sample.labels.get(WORKER_LABEL, ""))
                    counters[k] = counters.get(k, 0.0) + sample.value
        elif family.type == "gauge":
            for sample in family.samples:
                label = sample.labels.get("component") or sample.labels.get("limit") or ""
                kind = sample.labels.get("kind")
                gauges[(family.name if kind is None else f"{family.name}:{kind}", label)] = sample.value
    return counters, gauges, reasons


@dataclass(slots=True)
class Reading:
    at: float  # monotonic seconds
    counters: Counters
    gauges: Gauges
    reasons: dict[str, dict[str, float]]


class PipelineSampler:
    """Reads the counters every ``interval`` and keeps RATE_WINDOW seconds of readings."""

    def __init__(
        self,
        telemetry: Telemetry,
        interval: float = SAMPLE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.telemetry = telemetry
        self.interval = interval
        self.clock = clock
        self.readings: deque[Reading] = deque()
        self.started = clock()
        # component -> when a reading last found its queue empty: every record in it now came later.
        self.last_seen_empty: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def read_now(self) -> Reading:
        """The registry as it is now (not kept: requests must not grow the history)."""
        counters, gauges, reasons = read(self.telemetry.status_registry())
        return Reading(self.clock(), counters, gauges, reasons)

    def sample(self) -> Reading:
        """A reading kept for rates, and the queues' last-seen-empty times updated."""
        reading = self.read_now()
        now = reading.at
        for (name, component), depth in reading.gauges.items():
            if name != "burnline_queue_records":
                continue
            if depth <= 0:
                self.last_seen_empty[component] = now
            else:  # never seen empty: it may have held records since the sampler began
                self.last_seen_empty.setdefault(component, self.started)
        self.readings.append(reading)
        while len(self.readings) > 1 and now - self.readings[0].at > RATE_WINDOW + self.interval:
            self.readings.popleft()
        return reading

    def baseline(self, now: float) -> Reading | None:
        """The oldest reading within the rate window, if it is at least one interval old."""
        for reading in self.readings:
            if now - reading.at <= RATE_WINDOW + self.interval:
                return reading if now - reading.at >= min(1.0, self.interval) else None
        return None

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="status-pipeline-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


def _rate(now: Reading, base: Reading | None, key: tuple[str, str, str]) -> float | None:
    if base is None or now.at <= base.at:
        return None
    return max(now.counters.get(key, 0.0) - base.counters.get(key, 0.0), 0.0) / (now.at - base.at)


def _signal_rows(
    now: Reading, base: Reading | None, component: str, keys: Iterable[str]
) -> dict[str, dict[str, float | None]]:
    keys = list(keys)
    signals = sorted({s for (k, c, s) in now.counters if c == component and k in keys and s})
    out: dict[str, dict[str, float | None]] = {}
    for signal in signals:
        row: dict[str, float | None] = {}
        for key in keys:
            row[key] = now.counters.get((key, component, signal), 0.0)
            row[f"{key}_per_second"] = _rate(now, base, (key, component, signal))
        out[signal] = row
    return out


def snapshot(sampler: PipelineSampler, service: ServiceView | None) -> dict[str, Any]:
    """The ``/api/v1/pipeline`` document: receivers, exporters (with queues), memory."""
    now = sampler.read_now()
    base = sampler.baseline(now.at)
    gauges, reasons = now.gauges, now.reasons
    receiver_ids = sorted(
        set(service.receivers)
        if service is not None
        else {c for (k, c, _) in now.counters if k == "received"}
    )
    exporter_ids = sorted(
        set(service.exporters)
        if service is not None
        else {c for (name, c) in gauges if name == "burnline_queue_capacity_bytes"}
    )
    receivers = []
    for cid in receiver_ids:
        receivers.append(
            {
                "id": cid,
                "up": gauges.get(("burnline_component_up:receiver", cid), 0.0) >= 1,
                "connections": int(gauges.get(("burnline_receiver_connections", cid), 0.0)),
                "signals": _signal_rows(now, base, cid, ("received", "accepted", "refused")),
                "refused_by_reason": reasons.get(f"refused:{cid}", {}),
                "errors": now.counters.get(("errors", cid, ""), 0.0),
                "errors_per_second": _rate(now, base, ("errors", cid, "")),
                "errors_by_reason": reasons.get(f"errors:{cid}", {}),
            }
        )
    exporters = []
    for cid in exporter_ids:
        depth = gauges.get(("burnline_queue_records", cid), 0.0)
        signals = _signal_rows(now, base, cid, ("exported", "failed", "dropped", "retries"))
        rates = [r["exported_per_second"] for r in signals.values() if r["exported_per_second"] is not None]
        export_rate = sum(rates) if rates else None
        empty_at = sampler.last_seen_empty.get(cid)
        exporter = service.exporters.get(cid) if service is not None else None
        exporters.append(
            {
                "id": cid,
                "type": cid.split("/", 1)[0],
                "up": gauges.get(("burnline_component_up:exporter", cid), 0.0) >= 1,
                "signals": signals,
                "queue": {
                    "records": int(depth),
                    "bytes": int(gauges.get(("burnline_queue_bytes", cid), 0.0)),
                    "capacity_records": int(gauges.get(("burnline_queue_capacity_records", cid), 0.0)),
                    "capacity_bytes": int(gauges.get(("burnline_queue_capacity_bytes", cid), 0.0)),
                    "backlog_seconds": (
                        max(now.at - empty_at, 0.0) if depth > 0 and empty_at is not None else None
                    ),
                    "drain_seconds": (depth / export_rate) if depth > 0 and export_rate else None,
                },
                "dead_letters": sum(r["failed"] or 0.0 for r in signals.values()),
                "dead_letters_by_reason": reasons.get(f"failed:{cid}", {}),
                "dead_letter_file_bytes": _dead_letter_size(exporter),
            }
        )
    limiter = service.memory_limiter if service is not None else None
    memory = {
        "resident_bytes": int(gauges.get(("burnline_memory_resident_bytes", ""), 0.0)),
        "soft_limit_bytes": int(gauges.get(("burnline_memory_limit_bytes", "soft"), 0.0)) or None,
        "hard_limit_bytes": int(gauges.get(("burnline_memory_limit_bytes", "hard"), 0.0)) or None,
        "refusing": bool(getattr(limiter, "refusing", False)),
    }
    pipelines = sorted(service.pipelines) if service is not None else []
    return {
        "rate_window_seconds": None if base is None else round(now.at - base.at, 3),
        "pipelines": pipelines,
        "receivers": receivers,
        "exporters": exporters,
        "memory": memory,
        "event_loop": _loop_lag(now, base),
    }


def _loop_lag(now: Reading, base: Reading | None) -> dict[str, Any]:
    """The event loop's lag (collector/core/loop_lag.py) over the rate window (since start before
    there is one): its median and 99th percentile, as Prometheus' histogram_quantile reads them.

    Each process has its own loop, so each is read alone: ``processes`` lists them (``worker``
    null for the supervisor, or the only process), and the top-level figures are those of the
    process with the highest p99, the first to run out of CPU, which an idle one must not hide.
    """
    per_process: dict[str, list[tuple[float, float, float]]] = {}
    for (key, le, worker), count in now.counters.items():
        if key == "loop_lag":
            before = base.counters.get((key, le, worker), 0.0) if base is not None else 0.0
            per_process.setdefault(worker, []).append((float(le), count, before))
    measured: list[tuple[str, float | None, float | None]] = []
    for worker, counts in sorted(per_process.items(), key=lambda item: (item[0] != "", _index(item[0]))):
        # A worker restarted within the window counts from zero again: its counts since are all
        # there is (as rate() reads a counter reset).
        restarted = any(count < before for _, count, before in counts)
        buckets = sorted((le, count if restarted else count - before) for le, count, before in counts)
        measured.append((worker, bucket_quantile(0.5, buckets), bucket_quantile(0.99, buckets)))
    busiest = max(
        (m for m in measured if m[2] is not None), key=lambda m: m[2] or 0.0, default=(None, None, None)
    )
    return {
        "lag_p50_seconds": busiest[1],
        "lag_p99_seconds": busiest[2],
        "busiest_worker": busiest[0] or None,
        "processes": [
            {"worker": worker or None, "lag_p50_seconds": p50, "lag_p99_seconds": p99}
            for worker, p50, p99 in measured
        ],
    }


def _index(worker: str) -> int:
    return int(worker) if worker.isdigit() else -1


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of cumulative histogram ``buckets`` ((upper bound, count), by bound, +Inf
    last), interpolated linearly within its bucket as histogram_quantile does; None without
    observations. In the +Inf bucket it is the highest finite bound."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == math.inf:
                return lower
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 0.0)
        lower, below = bound, count
    return lower


def _dead_letter_size(exporter: Any) -> int:
    """Bytes in the exporter's dead-letter file (and its rotated predecessor); 0 without one."""
    dead_letter = getattr(exporter, "dead_letter", None)
    path = getattr(dead_letter, "path", None)
    size = 0
    if path is not None:
        for candidate in (path, path.with_suffix(".ndjson.1")):
            try:
                size += candidate.stat().st_size
            except OSError:
                continue
    return size
