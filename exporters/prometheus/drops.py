"""Points the Prometheus exporters cannot send: counted, and logged once per reason per interval."""

from __future__ import annotations

from typing import Any

from collector.core.component import Exporter
from collector.core.model import Signal
from collector.core.problem_log import RateLimitedLog


class DropLog:
    """Counts dropped points by reason and logs each reason once per interval."""

    def __init__(self, exporter: Exporter[Any], interval: float = 60.0) -> None:
        self._exporter = exporter
        self._limit = RateLimitedLog(interval)

    def drop(self, reason: str, detail: str, n: int = 1) -> None:
        self._exporter.ctx.telemetry.dropped.labels(self._exporter.id, Signal.METRICS.value, reason).inc(n)
        due, _ = self._limit.due(reason)
        if due:
            self._exporter.log.warning("dropped %d point(s): %s (reason %s)", n, detail, reason)
