"""Pipelines: processors in order, then fan-out to every exporter's queue.

A receiver holds one ``ReceiverConsumer`` per signal. It counts what the receiver got, accepted and
had refused, and hands the batch to each pipeline the receiver belongs to. ``consume`` returns only
once every exporter queue of every pipeline took the batch: the receiver acknowledges after that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from collector.core.component import Processor, Refused
from collector.core.memory_limiter import MemoryLimiter
from collector.core.model import Batch, Signal
from collector.core.telemetry import Telemetry
from collector.exporterhelper.queue import MemoryQueue

log = logging.getLogger("burnline.pipeline")


# Sees every batch a pipeline delivered to its queues (the SLO engine): must not change or keep it.
Observer = Callable[[Batch], None]


class Pipeline:
    def __init__(
        self,
        pipeline_id: str,
        signal: Signal,
        processors: list[Processor[Any]],
        queues: list[MemoryQueue],
        observers: list[Observer] | None = None,
    ):
        self.id = pipeline_id
        self.signal = signal
        self.processors = processors
        self.queues = queues
        self.observers = observers or []

    @property
    def mutates(self) -> bool:
        return any(getattr(p, "mutates_data", True) for p in self.processors)

    async def consume(self, batch: Batch, observe: bool = True) -> None:
        """``observe``: show the batch to the observers once accepted (a receiver in several pipelines
        of one signal has only its first one observe, so that no event is counted twice)."""
        for processor in self.processors:
            result = processor.process(batch)
            if result is None or not result.items:
                return
            batch = result
        if batch.wire is not None and self.mutates:
            # The records may have changed in place: the request they were read from no longer says
            # what they hold.
            batch = Batch(batch.signal, batch.items, batch.size_bytes)
        if len(self.queues) == 1:
            await self.queues[0].put(batch)
        else:
            outcomes = await asyncio.gather(*(q.put(batch) for q in self.queues), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    # Some queues may have taken the batch: the client's retry duplicates it there, which
                    # the exporters' deterministic ids absorb. Refusing is still right: one queue did not.
                    raise outcome
        # Observed only once accepted: a refused batch comes again with the client's retry and
        # would otherwise be counted twice.
        if not observe:
            return
        for observer in self.observers:
            try:
                observer(batch)
            except Exception:
                log.exception("pipeline %s: an observer failed on a batch of %d", self.id, len(batch))


def clone(batch: Batch) -> Batch:
    """A copy safe to mutate: records and their attribute maps are new, values are shared."""
    items = []
    for item in batch.items:
        changes = {}
        for name in ("attributes", "resource"):
            value = getattr(item, name, None)
            if isinstance(value, dict):
                changes[name] = dict(value)
        items.append(dataclasses.replace(item, **changes) if changes else item)
    return Batch(batch.signal, items, batch.size_bytes)


class ReceiverConsumer:
    """The consumer one receiver sees for one signal."""

    def __init__(
        self,
        receiver_id: str,
        signal: Signal,
        pipelines: list[Pipeline],
        telemetry: Telemetry,
        limiter: MemoryLimiter | None = None,
    ):
        self.receiver_id = receiver_id
        self.signal = signal
        self.pipelines = pipelines
        self._received = telemetry.received.labels(receiver_id, signal.value)
        self._accepted = telemetry.accepted.labels(receiver_id, signal.value)
        self._refused = telemetry.refused
        self.closed = False
        self.limiter = limiter

    async def consume(self, batch: Batch) -> None:
        n = len(batch)
        self._received.inc(n)
        try:
            if self.closed:
                raise Refused("shutting down", retry_after=5.0)
            if self.limiter is not None and self.limiter.refusing:
                raise Refused("memory limit", retry_after=5.0)
            if len(self.pipelines) == 1:
                await self.pipelines[0].consume(batch)
            else:
                # A pipeline whose processors change records gets its own copy, so that the
                # other pipelines see the records as received.
                await asyncio.gather(
                    *(
                        p.consume(clone(batch) if p.mutates else batch, observe=i == 0)
                        for i, p in enumerate(self.pipelines)
                    )
                )
        except Refused as exc:
            self._refused.labels(self.receiver_id, self.signal.value, exc.reason).inc(n)
            raise
        self._accepted.inc(n)
