"""In-flight admission: how many frames and request bodies the receivers read and hold at once.

A decoded batch is several times its bytes (a Forward frame of 1,000 Kubernetes records: 0.76 MB on
the wire, 5.4 MB decoded, 1.3 MB as records), and under more connections than a core can serve each
of them would otherwise hold one, waiting for the loop or for the queue. With this bound, the
connections past it wait unread: their bytes stay in the kernel's socket buffers and the clients see
TCP backpressure, as when Fluent Bit pauses an input at its ``Mem_Buf_Limit``. One admission is
shared by every receiver of the process (memory is the process'); turns are given in arrival order.
"""

from __future__ import annotations

import asyncio
from collections import deque

from prometheus_client import Gauge


class InFlight:
    """A counting semaphore whose limit a config reload can change; ``limit`` 0 means no bound.
    ``timeout``: how long a request-response receiver (HTTP) waits for a turn before it answers
    that it is busy."""

    def __init__(
        self, limit: int = 0, timeout: float = 5.0, held: Gauge | None = None, waiting: Gauge | None = None
    ) -> None:
        self.limit = limit
        self.timeout = timeout
        self.held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        if held is not None:
            held.set_function(lambda: self.held)
        if waiting is not None:
            waiting.set_function(lambda: sum(1 for waiter in self._waiters if not waiter.done()))

    def _room(self) -> bool:
        return not self.limit or self.held < self.limit

    def configure(self, limit: int, timeout: float) -> None:
        self.limit = limit
        self.timeout = timeout
        self._wake()

    async def acquire(self, timeout: float | None = None) -> None:
        """Takes a turn, waiting up to ``timeout`` seconds (None: as long as it takes); raises
        TimeoutError when the wait ran out. Every successful acquire needs one ``release``."""
        if self._room() and not self._waiters:
            self.held += 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        self._wake()  # waiters that gave up may be all that stood in front
        try:
            async with asyncio.timeout(timeout):
                await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.release()  # the turn came just as the wait was given up: pass it on
            else:
                turn.cancel()
                self._wake()
            raise

    def release(self) -> None:
        self.held -= 1
        self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters and self._room():
            turn = waiters.popleft()
            if not turn.done():
                self.held += 1
                turn.set_result(None)
        # Waiters that gave up are dropped when they reach the front; this keeps the queue from
        # growing with them when no turn comes for a long time.
        while waiters and waiters[0].done():
            waiters.popleft()


class Turn:
    """One connection's turn: taken when bytes of a frame arrive, given back once the connection
    holds no frame (both idempotent), so that an idle connection never keeps a turn."""

    __slots__ = ("_in_flight", "held")

    def __init__(self, in_flight: InFlight) -> None:
        self._in_flight = in_flight
        self.held = False

    async def take(self, timeout: float | None = None) -> None:
        if not self.held:
            await self._in_flight.acquire(timeout)
            self.held = True

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self._in_flight.release()
