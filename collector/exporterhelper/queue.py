"""The bounded queue between a pipeline and one exporter, in memory.

A receiver's ``put`` returns once the batch is queued: that is the moment a client is acknowledged.
When the queue is full the policy decides: ``block`` waits up to ``block_timeout`` for room, then
refuses (the receiver answers with its protocol's retryable status); ``drop_newest`` drops the new
batch and counts it. Batches taken by a sender stay counted until their ``release`` is stored so
that a drain knows when everything reached the backend. collector.durable_queue.DurableQueue adds
the disk under the same interface through the ``_store`` / ``_admit`` / ``_load`` / ``_release``
hooks.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from collector.config.types import ByteSize, Duration
from collector.core.component import Refused
from collector.core.model import Batch
from collector.core.telemetry import Telemetry


class QueueConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # disk: acknowledged batches survive a crash (SQLite under <data_dir>/queue/); memory: faster,
    # and what is queued is lost if the process dies.
    storage: Literal["disk", "memory"] = "disk"
    # disk only: fsync before acknowledging (survives power loss). Off, data survives a process crash
    # (SIGKILL, OOM kill) but not the machine's.
    fsync: bool = True
    # disk only: about how much memory the queued batches kept decoded may take (estimated from
    # their queue rows: bench/decoded_size.py); the rest is read back from disk and decoded when the
    # exporter gets to it. 16MiB is some 15,000 Kubernetes log records or 9,000 remote-write samples,
    # seconds of a core's intake.
    memory_bytes: ByteSize = 16 * 1024 * 1024
    max_bytes: ByteSize = 256 * 1024 * 1024
    max_records: int = 1_000_000
    full_policy: Literal["block", "drop_newest"] = "block"
    # How long a receiver may wait for room before it refuses; keep it under clients' timeouts.
    block_timeout: Duration = 5.0


class MemoryQueue:
    durable = False

    def __init__(self, component_id: str, config: QueueConfig, telemetry: Telemetry) -> None:
        self.id = component_id
        self.config = config
        self._t = telemetry
        self._items: deque[Batch] = deque()
        self._records = 0  # reserved + queued + in flight
        self._bytes = 0
        self._in_flight = 0  # batches taken and not yet done
        self._queued = 0  # records in _items
        self._changed = asyncio.Condition()
        self._closed = False
        # Hold a batch's received request (Batch.wire): only for an exporter that sends it (a
        # durable queue stores it for every exporter, see DurableQueue._store).
        self.keep_wire = False
        telemetry.queue_capacity_bytes.labels(component_id).set(config.max_bytes)
        telemetry.queue_capacity_records.labels(component_id).set(config.max_records)

    @property
    def records(self) -> int:
        return self._records

    @property
    def bytes(self) -> int:
        return self._bytes

    # -- hooks for a queue with storage behind it ------------------------------------------------

    async def _store(self, batch: Batch) -> Any:
        """Makes the batch safe (a durable queue writes it as it was received, with its OTLP request
        when it has one, see ``_held``); returns a handle for ``_admit``."""
        return None

    def _held(self, batch: Batch) -> Batch:
        """The batch as the queue holds it: with its received request only for an exporter that
        sends it (``keep_wire``); any other would hold the request's bytes beside the records for
        nothing."""
        if batch.wire is None or self.keep_wire:
            return batch
        return Batch(batch.signal, batch.items, batch.size_bytes)

    def _admit(self, batch: Batch, handle: Any) -> None:
        """Called under the lock once stored: makes the batch available to ``take``."""
        self._items.append(batch)
        self._queued += len(batch)

    def _has_unloaded(self) -> bool:
        """True while stored batches wait outside ``_items`` (a durable queue's disk backlog)."""
        return False

    async def _load(self) -> None:
        """Moves stored batches into ``_items`` (called under the lock when it is empty)."""

    def _release(self, batches: list[Batch]) -> asyncio.Future[None] | None:
        """Starts forgetting delivered batches (a durable queue deletes them): what to wait on until
        they are forgotten for good, or None. Holds no reference to the batches afterwards."""
        return None

    # -- the queue --------------------------------------------------------------------------------

    def _fits(self, batch: Batch) -> bool:
        if self._records == 0:
            return True  # an oversized batch still goes through alone rather than wedge forever
        return (
            self._records + len(batch) <= self.config.max_records
            and self._bytes + batch.size_bytes <= self.config.max_bytes
        )

    def _gauge(self) -> None:
        self._t.queue_records.labels(self.id).set(self._records)
        self._t.queue_bytes.labels(self.id).set(self._bytes)

    def _account(self, records: int, size: int) -> None:
        self._records += records
        self._bytes += size
        self._gauge()

    async def put(self, batch: Batch) -> None:
        """Queues the batch, or raises Refused when there is no room in time (policy ``block``)."""
        if self._closed:
            raise Refused("shutting down", retry_after=5.0)
        received, batch = batch, self._held(batch)
        async with self._changed:
            if not self._fits(batch):
                if self.config.full_policy == "drop_newest":
                    self._t.dropped.labels(self.id, batch.signal.value, "queue_full").inc(len(batch))
                    return
                deadline = time.monotonic() + self.config.block_timeout
                while not self._fits(batch):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._closed:
                        raise Refused("exporter queue full", retry_after=min(5.0, self.config.block_timeout))
                    try:
                        await asyncio.wait_for(self._changed.wait(), remaining)
                    except TimeoutError:
                        continue
            self._account(len(batch), batch.size_bytes)  # reserve the room while storing
        try:
            handle = await self._store(received)
        except BaseException:
            async with self._changed:
                self._account(-len(batch), -batch.size_bytes)
                self._changed.notify_all()
            raise
        async with self._changed:
            self._admit(batch, handle)
            self._changed.notify_all()

    async def take(self, max_records: int, max_bytes: int, linger: float) -> list[Batch] | None:
        """Waits for work, then lingers up to ``linger`` s to fill up to the limits.

        Returns None once the queue is closed and empty: the sender's signal to stop.
        """
        async with self._changed:
            while True:
                while not self._items:
                    if self._has_unloaded():
                        await self._load()
                        continue
                    if self._closed:
                        return None
                    await self._changed.wait()
                fuller_possible = self._queued < max_records and not self._has_unloaded()
                if linger > 0 and not self._closed and fuller_possible:
                    await self._linger(max_records, linger)
                # Another sender may have taken everything while this one lingered: wait again.
                if self._items:
                    break
            taken: list[Batch] = []
            records = size = 0
            while self._items:
                nxt = self._items[0]
                if taken and (records + len(nxt) > max_records or size + nxt.size_bytes > max_bytes):
                    break
                taken.append(self._items.popleft())
                self._queued -= len(nxt)
                records += len(nxt)
                size += nxt.size_bytes
            self._in_flight += len(taken)
            return taken

    async def _linger(self, max_records: int, linger: float) -> None:
        """Waits (holding no items) until ``max_records`` are queued or ``linger`` s passed."""
        deadline = time.monotonic() + linger
        while self._queued < max_records and not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return

    def release(self, batches: list[Batch]) -> Awaitable[None]:
        """Releases what a sender delivered (or dead-lettered); the batches can be freed at once, and
        the awaitable completes when the release is stored (a durable queue's delete committed) and
        counted.

        A sender need not wait for it before taking more: a delete lost in a crash only means a
        redelivery, as when the crash comes just before it.
        """
        taken, records = len(batches), sum(len(b) for b in batches)
        size = sum(b.size_bytes for b in batches)
        stored = self._release(batches)
        return self._released(stored, taken, records, size)

    async def _released(
        self, stored: asyncio.Future[None] | None, taken: int, records: int, size: int
    ) -> None:
        if stored is not None:
            await stored
        async with self._changed:
            self._in_flight -= taken
            self._account(-records, -size)
            self._changed.notify_all()

    def abandon(self, batches: list[Batch]) -> None:
        """At a hard stop: a sender gives up batches it took and did not deliver.

        A durable queue still has them on disk (delivered at the next start); a memory queue loses them.
        """
        self._in_flight -= len(batches)
        self._account(-sum(len(b) for b in batches), -sum(b.size_bytes for b in batches))

    async def close(self) -> None:
        """No more puts; takers get None once the queue is empty."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()

    async def join(self) -> None:
        """Waits until everything put was taken and done."""
        async with self._changed:
            while self._items or self._in_flight or self._has_unloaded():
                await self._changed.wait()

    def drain_remaining(self) -> list[Batch]:
        """At a hard stop: what was never taken and is lost with this queue."""
        rest = list(self._items)
        self._items.clear()
        self._queued = 0
        self._account(-sum(len(b) for b in rest), -sum(b.size_bytes for b in rest))
        return rest

    async def shutdown(self) -> None:
        """Releases the storage (after the senders stopped)."""
