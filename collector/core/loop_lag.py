"""How late the event loop runs what is due: the sign that a burnline process needs more CPU.

Every receiver, exporter and the SLO engine of a process share one event loop. While the process
has the CPU it needs, a timer fires when it is due; when it needs more, every piece of work waits
for the ones queued before it, and the first to show it is a timer firing late. Receivers then
answer late (acknowledgements, HTTP responses), exporters fall behind and queues grow, all before
any of them fails. CPU use alone does not say this: a process can be at 100 % of its core and
keep up, or at 60 % and stall on one long piece of work.

``LoopLagMonitor`` sleeps ``INTERVAL`` over and over and records how much later than due it woke
in ``burnline_event_loop_lag_seconds`` (Node.js's ``monitorEventLoopDelay`` is the same idea). A
stall longer than the interval is always seen; a shorter one with a chance in proportion to its
length. Ten wake-ups a second cost 2.6 ms of CPU a second on an idle process (0.05 CPU-seconds in
20 s, measured with the monitor alone on a loop), less on a busy one, whose loop is awake anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from prometheus_client import Histogram

INTERVAL: Final = 0.1  # seconds between two wake-ups
# From timer resolution (~1 ms) to a loop that stalls for seconds.
LAG_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LoopLagMonitor:
    def __init__(self, lag: Histogram, interval: float = INTERVAL) -> None:
        self.lag = lag
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        observe = self.lag.observe
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            observe(max(loop.time() - due, 0.0))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
