"""Moves batches from an exporter's queue to the exporter: bulking, concurrency, retries.

Each merged batch becomes the exporter's request once (``Exporter.to_request``); the sender cuts
requests to the bulk limits, retries what a request leaves (``RetryableExportError.remaining``, a
request of the same type) and dead-letters requests it gives up on.

Every exporter config extends ``ExporterConfig`` and so carries the same ``queue``, ``batch`` and
``retry`` settings, as the OpenTelemetry Collector's ``sending_queue`` and ``retry_on_failure`` do.
Retries use exponential backoff with jitter and honour the backend's Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from pydantic import Field

from collector.config.types import ByteSize, Duration
from collector.core.component import ComponentConfig, Exporter, PermanentExportError, RetryableExportError
from collector.core.model import Batch, Signal
from collector.core.telemetry import Telemetry
from collector.exporterhelper.queue import MemoryQueue, QueueConfig
from collector.exporterhelper.request import BatchRequest, ExportRequest

log = logging.getLogger("burnline.sender")

MAX_RETRY_AFTER = 300.0


class RetryConfig(ComponentConfig):
    enabled: bool = True
    initial_interval: Duration = 1.0
    max_interval: Duration = 30.0
    multiplier: float = Field(default=1.5, ge=1.0)
    randomization_factor: float = Field(default=0.5, ge=0.0, le=1.0)
    # 0 retries until delivered: with a bounded queue, a long outage turns into backpressure on
    # the receivers rather than loss. Set a limit to dead-letter instead.
    max_elapsed_time: Duration = 0.0


class BatchConfig(ComponentConfig):
    max_records: int = Field(default=1000, ge=1)
    max_bytes: ByteSize = 5 * 1024 * 1024
    # How long a sender waits for a fuller batch once it has at least one record.
    flush_interval: Duration = 1.0


class ExporterConfig(ComponentConfig):
    queue: QueueConfig = QueueConfig()
    batch: BatchConfig = BatchConfig()
    retry: RetryConfig = RetryConfig()
    # Export calls in flight at once (concurrent bulk requests).
    concurrency: int = Field(default=2, ge=1, le=64)


def backoff_delay(config: RetryConfig, attempt: int, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based): exponential, capped, jittered by
    ``randomization_factor`` around the base so that many senders do not retry in step."""
    base = min(config.max_interval, config.initial_interval * config.multiplier ** (attempt - 1))
    spread = base * config.randomization_factor
    return max(0.0, base - spread + (rng or random).random() * 2 * spread)


def merge(batches: list[Batch]) -> list[Batch]:
    """One batch per signal (in order of first appearance): an exporter in a logs and a traces
    pipeline gets both through one queue, and each export call must carry one signal."""
    if len(batches) == 1:
        return batches
    by_signal: dict[Signal, list[Batch]] = {}
    for b in batches:
        by_signal.setdefault(b.signal, []).append(b)
    return [
        Batch(
            signal,
            [item for b in group for item in b.items],
            sum(b.size_bytes for b in group),
            _merged_wire(group),
        )
        for signal, group in by_signal.items()
    ]


def _merged_wire(group: list[Batch]) -> bytes | None:
    """The batches' OTLP requests as one: serialized protobuf messages concatenate into their merge
    (the requests' repeated ``resource_*`` fields, in order). None unless every batch has one."""
    wires = [b.wire for b in group if b.wire is not None]
    return b"".join(wires) if len(wires) == len(group) else None


def split(batch: Batch, max_records: int, max_bytes: int) -> list[Batch]:
    """Cuts a batch into pieces within both limits (by the batch's average record size)."""
    return [piece.batch for piece in BatchRequest(batch).pieces(max_records, max_bytes)]


class QueueSender:
    """Runs ``concurrency`` workers that take from the queue and export with retries."""

    def __init__(
        self, exporter: Exporter[Any], config: ExporterConfig, queue: MemoryQueue, telemetry: Telemetry
    ):
        self.exporter = exporter
        self.config = config
        self.queue = queue
        self._t = telemetry
        self._workers: list[asyncio.Task[None]] = []
        self._in_flight_lost = 0  # records taken by a worker cancelled at hard stop
        # Releases of delivered batches not stored yet (see _work).
        self._releasing: set[asyncio.Future[None]] = set()

    def start(self) -> None:
        for i in range(self.config.concurrency):
            self._workers.append(asyncio.create_task(self._work(), name=f"{self.exporter.id}-sender-{i}"))

    async def drain(self, timeout: float) -> int:
        """Closes the queue and lets the workers finish it within ``timeout`` s.

        Returns how many records were left undelivered and lost (a memory queue's; counted as
        dropped at shutdown). A durable queue keeps what is left on disk for the next start.
        """
        await self.queue.close()
        pending: set[asyncio.Task[None]] = set()
        if self._workers:
            _, pending = await asyncio.wait(self._workers, timeout=max(timeout, 0.001))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(*self._releasing, return_exceptions=True)
        left = self.queue.records
        lost = self.queue.drain_remaining() if not self.queue.durable else []
        lost_records = sum(len(b) for b in lost) + self._in_flight_lost
        await self.queue.shutdown()
        if lost_records:
            signal = lost[0].signal.value if lost else "logs"
            self._t.dropped.labels(self.exporter.id, signal, "shutdown").inc(lost_records)
            log.error("%s: %d record(s) lost at shutdown", self.exporter.id, lost_records)
        elif left:
            log.warning("%s: %d record(s) stay queued on disk for the next start", self.exporter.id, left)
        return lost_records

    async def _work(self) -> None:
        b = self.config.batch
        while True:
            taken = await self.queue.take(b.max_records, b.max_bytes, b.flush_interval)
            if taken is None:
                return
            if not taken:
                continue
            try:
                await self._export(taken)
            except asyncio.CancelledError:
                # Hard stop mid-export: a durable queue keeps these for the next start.
                if not self.queue.durable:
                    self._in_flight_lost += sum(len(x) for x in taken)
                self.queue.abandon(taken)
                raise
            # The next batch is taken without waiting for this release to be stored: under load every
            # wait on the event loop queues behind the receivers' work, and a sender that waited
            # on its delete's commit delivered a batch per several of those turns.
            release = asyncio.ensure_future(self.queue.release(taken))
            self._releasing.add(release)
            release.add_done_callback(self._releasing.discard)
            del taken  # nothing of the batch stays referenced while the next take waits

    async def _export(self, taken: list[Batch]) -> None:
        b = self.config.batch
        for merged in merge(taken):
            if not merged.items:
                continue
            request = await self.exporter.to_request(merged)
            for piece in request.pieces(b.max_records, b.max_bytes):
                await self._deliver(piece)

    async def _deliver(self, request: ExportRequest) -> None:
        exporter, signal = self.exporter, request.signal.value
        retry = self.config.retry
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            t0 = time.monotonic()
            try:
                delivered = await exporter.export_request(request)
                self._t.export_duration.labels(exporter.id, signal).observe(time.monotonic() - t0)
                self._t.exported.labels(exporter.id, signal).inc(delivered)
                return
            except RetryableExportError as exc:
                self._t.export_duration.labels(exporter.id, signal).observe(time.monotonic() - t0)
                self._t.exported.labels(exporter.id, signal).inc(exc.delivered)
                if isinstance(exc.remaining, ExportRequest):
                    request = exc.remaining
                elif exc.remaining is not None:  # a Batch from an export_request() that forgot to wrap it
                    request = BatchRequest(exc.remaining, exporter.dead_letter_view)
                if not request.items_count:
                    return
                reason, hint = exc.reason, exc.retry_after
            except PermanentExportError as exc:
                exporter.dead_letter.write(
                    request.signal, request.dead_letter_records(), "permanent", exc.reason
                )
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an exporter bug must not lose the batch: retry it, loudly
                log.exception("%s: export failed unexpectedly; will retry", exporter.id)
                reason, hint = f"unexpected_{type(exc).__name__}", None
            elapsed = time.monotonic() - started
            if not retry.enabled or (retry.max_elapsed_time and elapsed >= retry.max_elapsed_time):
                exporter.dead_letter.write(
                    request.signal, request.dead_letter_records(), "retries_exhausted", reason
                )
                return
            self._t.retries.labels(exporter.id, signal, reason).inc()
            delay = backoff_delay(retry, attempt)
            if hint is not None:
                # The backend knows its recovery best; the cap only guards against absurd hints.
                delay = max(delay, min(hint, MAX_RETRY_AFTER))
            log.warning(
                "%s: %d record(s) not delivered (%s); retry %d in %.2fs",
                exporter.id,
                request.items_count,
                reason,
                attempt,
                delay,
            )
            await asyncio.sleep(delay)
