"""The ``prometheus_remote_write`` exporter: metric points pushed as Prometheus remote-write 1.0.

Each export sends the batch as one or more ``prometheus.WriteRequest``\\s (at most
``max_samples_per_request`` samples each), snappy block-compressed, with the headers the spec
requires (Content-Encoding: snappy, Content-Type: application/x-protobuf, User-Agent,
X-Prometheus-Remote-Write-Version: 0.1.0). Names and labels are translated as the ``prometheus``
exporter does (OpenTelemetry's Prometheus compatibility spec, see exporters/prometheus/translator.py);
label names are sorted, and the samples of a series are sent in time order:

- a batch that needs more than one request is dealt out to up to ``shards`` shards (4) by its
  targets, as Prometheus' own remote-write shards its series: all series with one ``job`` and
  ``instance`` label, and that target's ``target_info``, go to one shard, so two shards never carry
  the same series. The shards send at once; one request round trip no longer bounds the throughput.
- within a shard, points are sorted by time before they are cut into requests, and the requests go
  out one after the other;
- the exporter's ``concurrency`` defaults to 1 so that two batches never race (raise it only for a
  receiver that accepts out-of-order samples).

Answers: 2xx delivered. 5xx and 429 are retried by the sender with backoff, honouring Retry-After.
413 halves the request until it fits. Any other 4xx will never succeed (the spec forbids retrying
it): the request's points go to the dead-letter file with the receiver's message. Connection
failures and timeouts are retried.

How points become requests: encoding.py; the HTTP client and its headers: client.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from collector.core.component import ComponentContext, Exporter, RetryableExportError, register
from collector.core.model import Batch, MetricPoint, Signal
from exporters.prometheus.drops import DropLog
from exporters.prometheus.translator import Translator, Unsupported
from exporters.prometheus_remote_write.client import RemoteWriteClient
from exporters.prometheus_remote_write.config import PrometheusRemoteWriteConfig
from exporters.prometheus_remote_write.encoding import Encoder, sample_count


@dataclass(slots=True)
class _ShardOutcome:
    delivered: int = 0
    rejected: int = 0
    failure: RetryableExportError | None = None
    rest: list[MetricPoint] = field(default_factory=list)  # the points not sent, from the failure on


@register
class PrometheusRemoteWriteExporter(Exporter[PrometheusRemoteWriteConfig]):
    """Pushes metric points to a remote-write endpoint (Prometheus, Mimir, Thanos, VictoriaMetrics)."""

    type_name = "prometheus_remote_write"
    config_model = PrometheusRemoteWriteConfig
    signals = frozenset({Signal.METRICS})

    def __init__(self, config: PrometheusRemoteWriteConfig, ctx: ComponentContext) -> None:
        super().__init__(config, ctx)
        self.translator = Translator(config)
        self.encoder = Encoder(config, self.translator)
        self._drops = DropLog(self)
        self.client = RemoteWriteClient(config)
        self._failing: str | None = None

    async def start(self) -> None:
        await self.client.start()
        self.log.info("remote-writing metrics to %s", self.config.endpoint)

    async def stop(self) -> None:
        await self.client.stop()

    def plan(self, points: Sequence[Any]) -> list[list[list[MetricPoint]]]:
        """The batch cut into shards of requests: each shard's points in time order, each request
        within ``max_samples_per_request`` samples (a point is never split), as many shards as there
        are full requests up to ``shards``. Unsendable points are dropped."""
        sendable: list[MetricPoint] = []
        samples = 0
        for point in points:
            if not isinstance(point, MetricPoint):
                self._drops.drop("not_a_metric", f"{type(point).__name__} is not a metric point")
                continue
            try:
                self.encoder.classify(point)
            except Unsupported as exc:
                self._drops.drop(exc.reason, f"{point.name}: {exc.detail}")
                continue
            sendable.append(point)
            samples += sample_count(point)
        limit = self.config.max_samples_per_request
        count = min(self.config.shards, -(-samples // limit))
        if count <= 1:
            return [self._requests(sendable)] if sendable else []
        shards: list[list[MetricPoint]] = [[] for _ in range(count)]
        job_and_instance = self.translator.job_and_instance
        for point in sendable:
            shards[hash(job_and_instance(point)) % count].append(point)
        return [self._requests(shard) for shard in shards if shard]

    def _requests(self, points: list[MetricPoint]) -> list[list[MetricPoint]]:
        points.sort(key=lambda p: p.time_unix_nano)
        limit = self.config.max_samples_per_request
        requests: list[list[MetricPoint]] = []
        current: list[MetricPoint] = []
        samples = 0
        for point in points:
            n = sample_count(point)
            if current and samples + n > limit:
                requests.append(current)
                current, samples = [], 0
            current.append(point)
            samples += n
        if current:
            requests.append(current)
        return requests

    async def export(self, batch: Batch) -> int:
        # Every shard runs to its end (return_exceptions): none is left sending in the background
        # when another fails.
        outcomes = await asyncio.gather(
            *(self._send_shard(shard) for shard in self.plan(batch.items)), return_exceptions=True
        )
        delivered = rejected = 0
        rest: list[MetricPoint] = []
        failure: RetryableExportError | None = None
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome  # a bug, or a cancellation: the sender retries the whole batch
            delivered += outcome.delivered
            rejected += outcome.rejected
            if outcome.failure is not None:
                rest.extend(outcome.rest)
                if failure is None or (outcome.failure.retry_after or 0) > (failure.retry_after or 0):
                    failure = outcome.failure
        if failure is not None:
            per_point = max(1, batch.size_bytes // max(1, len(batch)))
            raise RetryableExportError(
                failure.reason,
                remaining=Batch(Signal.METRICS, rest, per_point * len(rest)),
                retry_after=failure.retry_after,
                delivered=delivered,
                rejected=rejected,
            ) from failure
        if self._failing is not None:
            self.log.info("remote-write to %s works again", self.config.endpoint)
            self._failing = None
        return delivered

    async def _send_shard(self, requests: list[list[MetricPoint]]) -> _ShardOutcome:
        """Sends a shard's requests one after the other, up to the first that must be retried."""
        outcome = _ShardOutcome()
        for index, points in enumerate(requests):
            try:
                landed, refused = await self._send(points)
            except RetryableExportError as exc:
                outcome.failure = exc
                outcome.rest = [p for chunk in requests[index:] for p in chunk]
                return outcome
            outcome.delivered += landed
            outcome.rejected += refused
        return outcome

    async def _send(self, points: list[MetricPoint]) -> tuple[int, int]:
        """Sends one request; returns (delivered, dead-lettered). Raises RetryableExportError."""
        # Above 200 points in a worker thread, unlike Elasticsearch's bulk items: beside a scrape
        # receiver, which parses in its own thread, encoding on the loop scraped more and delivered
        # less (bench/RESULTS.md, "Elasticsearch's sender encodes on the event loop").
        if len(points) > 200:
            body = await asyncio.to_thread(self.encoder.encode, points)
        else:
            body = self.encoder.encode(points)
        status, text, hint = await self._post(body)
        if 200 <= status < 300:
            return len(points), 0
        if status == 429 or status >= 500:
            self._log_failure(
                f"http_{status}", "remote-write to %s answered %d: %s; will retry", status, text
            )
            raise RetryableExportError(f"http_{status}", retry_after=hint)
        if status == 413 and len(points) > 1:
            half = len(points) // 2
            first = await self._send(points[:half])
            second = await self._send(points[half:])
            return first[0] + second[0], first[1] + second[1]
        self.log.error(
            "remote-write to %s answered %d: %s; %d point(s) go to the dead-letter file",
            self.config.endpoint,
            status,
            text,
            len(points),
        )
        await asyncio.to_thread(
            self.dead_letter.write,
            Signal.METRICS,
            [self.dead_letter_view(p) for p in points],
            f"http_{status}",
            text,
        )
        return 0, len(points)

    async def _post(self, body: bytes) -> tuple[int, str, float | None]:
        try:
            return await self.client.post(body)
        except TimeoutError:
            self._log_failure(
                "timeout", "remote-write to %s timed out after %.0fs; will retry", self.config.timeout
            )
            raise RetryableExportError("timeout") from None
        except aiohttp.ClientError as exc:
            self._log_failure("connection", "remote-write to %s failed: %s; will retry", exc)
            raise RetryableExportError("connection") from None

    def _log_failure(self, reason: str, msg: str, *args: Any) -> None:
        # Once per kind of failure: the sender already logs each retry.
        if self._failing != reason:
            self.log.error(msg, self.config.endpoint, *args)
            self._failing = reason
