"""The memory limiter: refuse new data before the process runs out of memory.

Every ``check_interval`` the limiter reads the process' resident memory (/proc/self/statm). Above the
soft limit receivers refuse new batches with their protocol's retryable answer (Forward withholds
the ack, HTTP 503 + Retry-After, gRPC UNAVAILABLE); above the hard limit it also forces a garbage
collection. Nothing already acknowledged is touched: it sits in the exporters' queues. Limits are
bytes, or a percentage of the memory available to the process (the cgroup limit in a container,
else the machine's memory), as the OpenTelemetry Collector's memory_limiter does.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from pathlib import Path

from collector.config.model import MemoryLimiterConfig
from collector.core.telemetry import Telemetry

log = logging.getLogger("burnline.memory_limiter")

_PAGE = os.sysconf("SC_PAGE_SIZE")


def available_memory() -> int:
    """The cgroup (v2 or v1) memory limit when there is one, else the machine's total memory."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # v1 reports "no limit" as a huge number
            return int(text)
    return int(os.sysconf("SC_PHYS_PAGES") * _PAGE)


def resident_memory() -> int:
    """This process' resident set size in bytes."""
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * _PAGE


class MemoryLimiter:
    def __init__(self, config: MemoryLimiterConfig, telemetry: Telemetry, share: int = 1) -> None:
        """``share``: the processes the limits are split between (``service.workers``): each worker
        gets its part of the limits, so that together they stay within them."""
        self.config = config
        total = available_memory() // share
        hard_limit = config.hard_limit // share if config.hard_limit else None
        soft_limit = config.soft_limit // share if config.soft_limit else None
        self.hard = hard_limit or int(total * config.limit_percentage / 100)
        default_soft = int(total * (config.limit_percentage - config.spike_percentage) / 100)
        self.soft = soft_limit or (default_soft if hard_limit is None else int(self.hard * 0.8))
        self.refusing = False
        self._t = telemetry
        self._task: asyncio.Task[None] | None = None
        telemetry.memory_limit.labels("soft").set(self.soft)
        telemetry.memory_limit.labels("hard").set(self.hard)

    def check(self) -> int:
        """Reads memory once and updates ``refusing``; returns the resident bytes."""
        rss = resident_memory()
        if rss >= self.hard:
            gc.collect()  # free what cycles hold before deciding; refusing keeps new data out meanwhile
            rss = resident_memory()
        self._t.memory_resident.set(rss)
        over = rss >= self.soft
        if over != self.refusing:
            self.refusing = over
            if over:
                log.warning(
                    "memory %d MiB is over the soft limit %d MiB: refusing new data",
                    rss >> 20,
                    self.soft >> 20,
                )
            else:
                log.info("memory %d MiB is back under the soft limit: accepting data", rss >> 20)
        return rss

    def start(self) -> None:
        if self.config.enabled:
            self.check()
            self._task = asyncio.create_task(self._run(), name="memory-limiter")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.check_interval)
            try:
                self.check()
            except OSError as exc:  # /proc unreadable: keep serving, say so once a minute at most
                log.warning("cannot read memory usage: %s", exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
