"""A worker process of ``service.workers``: a whole burnline pipeline (receivers on the shared
ports, exporters with their own queues), started by the supervisor with ``BURNLINE_WORKER=i/N``
and its end of the supervisor's socket pair in ``BURNLINE_WORKER_FD``.

It says hello (its pid and admin port) once started, sends its SLO counts as it goes, and stops as
on SIGTERM when the supervisor goes away (the socket closes), so no worker outlives it for long.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket

from collector.config.model import Config
from collector.core.service import Service
from collector.workers.channel import HELLO, Channel
from collector.workers.identity import WorkerIdentity
from collector.workers.slo_relay import RecordRelay

log = logging.getLogger("burnline.workers.worker")

WORKER_VARIABLE = "BURNLINE_WORKER"
FD_VARIABLE = "BURNLINE_WORKER_FD"


def worker_from_environment(environ: dict[str, str] | None = None) -> tuple[WorkerIdentity, int] | None:
    """(identity, channel fd) when this process was started as a worker, else None."""
    env = os.environ if environ is None else environ
    text, fd = env.get(WORKER_VARIABLE), env.get(FD_VARIABLE)
    if not text or not fd:
        return None
    index, _, count = text.partition("/")
    return WorkerIdentity(int(index), int(count)), int(fd)


async def _watch_supervisor(channel: Channel) -> None:
    async for _ in channel.messages():  # the supervisor sends nothing yet; EOF is what matters
        pass
    log.warning("the supervisor is gone; stopping this worker")
    os.kill(os.getpid(), signal.SIGTERM)


async def run_worker(config: Config, worker: WorkerIdentity, fd: int) -> int:
    channel = await Channel.open(socket.socket(fileno=fd))
    service = Service(config, worker=worker, relay=RecordRelay(channel))
    watch: asyncio.Task[None] | None = None

    def started() -> None:
        nonlocal watch
        channel.send({"t": HELLO, "pid": os.getpid(), "admin": service.admin.url})
        watch = asyncio.create_task(_watch_supervisor(channel), name="watch-supervisor")

    try:
        return await service.run(started)
    finally:
        if watch is not None:
            watch.cancel()
        try:
            await asyncio.wait_for(channel.drain(), 5.0)
        except (TimeoutError, ConnectionError):
            pass
        await channel.close()
