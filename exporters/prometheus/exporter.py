"""The ``prometheus`` exporter: the pipeline's metrics on a /metrics endpoint for Prometheus to scrape.

Each series' latest point is kept; a scrape renders them through prometheus-client (a custom
collector yielding counter, gauge, histogram, summary, info and unknown families), in the Prometheus
text format or OpenMetrics, whichever the scraper asks for, gzip-compressed when it accepts that.
A series not updated for ``metric_expiration`` disappears, as in the OpenTelemetry Collector.

Two kinds of points that would share a family name with different types: the later one is dropped
(reason ``type_conflict``), as the spec asks, so that a scrape never holds two TYPE lines.

How points are named and labelled: translator.py; the rendering of a scrape: exposition.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from aiohttp import web

from collector.config.types import split_endpoint
from collector.core.component import ComponentContext, Exporter, register
from collector.core.gzip_body import gzip_compress
from collector.core.model import FLAG_NO_RECORDED_VALUE, Batch, MetricKind, MetricPoint, Signal, Temporality
from collector.httpserver.server import start_server
from exporters.prometheus.config import PrometheusExporterConfig
from exporters.prometheus.drops import DropLog
from exporters.prometheus.exposition import Series, render
from exporters.prometheus.translator import Translator, Unsupported, reserved_label


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


@register
class PrometheusExporter(Exporter[PrometheusExporterConfig]):
    """Keeps the latest point of each series and serves them on ``endpoint`` + ``path``."""

    type_name = "prometheus"
    config_model = PrometheusExporterConfig
    signals = frozenset({Signal.METRICS})

    def __init__(self, config: PrometheusExporterConfig, ctx: ComponentContext) -> None:
        super().__init__(config, ctx)
        self.host, self.port = split_endpoint(config.endpoint)
        self.translator = Translator(config)
        self._series: OrderedDict[tuple[str, ...], Series] = OrderedDict()
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
        # Flat (name, label, value, label, value, ...): one tuple per series instead of one per label
        # pair too, about 600 bytes less a series with a dozen labels (bench/RESULTS.md).
        key = (family.name, *[part for pair in sorted(labels.items()) for part in pair])
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
        series[key] = Series(key, family, point, target, now)
        known = self._family_types.get(family.name)  # the eviction may have ended the family
        if known is None:
            self._family_types[family.name] = [ptype, 1]
        else:
            known[1] += 1
        return True

    def _remove(self, key: tuple[str, ...], held: Series) -> None:
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

    def _render(self, snapshot: list[Series], accept: str, gzipped: bool) -> tuple[bytes, str]:
        body, content_type = render(snapshot, accept, self.config.send_timestamps)
        return (gzip_compress(body, 1) if gzipped else body), content_type
