"""The supervisor of ``service.workers: N``: starts N worker processes that share the listening
ports (SO_REUSEPORT: the kernel spreads connections between them), restarts one that dies, and
runs what must be one per installation (collector/workers/control.py): the SLO engine over the
counts of all workers, alerting, and the admin endpoint whose /metrics shows every worker.

- Each worker is ``python -m collector run`` with the same config, ``BURNLINE_WORKER=i/N`` and its
  end of a socket pair; it owns ``<data_dir>/queue/worker-i/`` and ``<data_dir>/deadletter/worker-i/``.
- A worker that fails before it first started (a port taken, a bad setting) fails the whole start,
  as one process would: exit 1. One that dies later is restarted after 1 s, doubling up to 30 s
  while it keeps dying within a minute of its start; ``burnline_worker_restarts_total`` counts them.
- SIGTERM/SIGINT: each worker gets one SIGTERM and drains; a second signal is passed on too, which
  cuts their drains short. The SLO counts are saved once every worker has exited. SIGHUP: the
  supervisor applies the SLO part of the config and passes the signal on.
- Workers run in their own session, so a terminal's Ctrl-C reaches them once, through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal as signals
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge

from collector.config import ConfigError
from collector.config.model import Config
from collector.core.reload import used_components
from collector.core.service import signal_events
from collector.core.startup_errors import BUILT_IN_SOURCE, StartupError
from collector.workers import channel as messages
from collector.workers.channel import Channel, ChannelError
from collector.workers.control import ControlService
from collector.workers.slo_relay import apply
from collector.workers.worker import FD_VARIABLE, WORKER_VARIABLE

log = logging.getLogger("burnline.workers")

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0  # a worker that ran this long before dying starts over at FIRST_BACKOFF
READY_POLL = 1.0
# Exporters that serve what they hold on a port of their own: N processes cannot share that.
UNSHAREABLE_EXPORTERS = {"prometheus": "it serves one /metrics; use prometheus_remote_write, or workers: 1"}


@dataclass
class Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    channel: Channel | None = None
    listener: asyncio.Task[None] | None = None
    admin_url: str | None = None
    ready: bool = False
    started_once: bool = False  # said hello at least once
    started_at: float = 0.0
    failures: int = 0  # deaths in a row, each within STABLE_AFTER of its start
    hello: asyncio.Event = field(default_factory=asyncio.Event)


def unshareable(config: Config) -> list[str]:
    """Problems of a config that N workers cannot run (each names the component)."""
    out = []
    for cid in used_components(config, "exporters"):
        why = UNSHAREABLE_EXPORTERS.get(cid.split("/", 1)[0])
        if why:
            out.append(f"exporters.{cid}: cannot run in several workers (service.workers): {why}")
    return out


class Supervisor:
    def __init__(self, config: Config, count: int, log_level: str | None = None) -> None:
        self.config = config
        self.count = count
        self.log_level = log_level
        self.workers = [Worker(i) for i in range(count)]
        self.control = ControlService(config, self._admin_urls, self._waiting)
        registry = self.control.telemetry.registry
        self._configured = Gauge(
            "burnline_workers", "Worker processes configured (service.workers).", registry=registry
        )
        self._configured.set(count)
        self._up = Gauge(
            "burnline_worker_up", "1 while a worker process runs and is ready.", ["worker"], registry=registry
        )
        self._restarts = Counter(
            "burnline_worker_restarts",
            "Worker processes started again after they died.",
            ["worker"],
            registry=registry,
        )
        self._stopping = False
        self._failed_start = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- what the control service reads

    def _admin_urls(self) -> dict[int, str]:
        return {
            w.index: w.admin_url
            for w in self.workers
            if w.admin_url and w.process and w.process.returncode is None
        }

    def _waiting(self) -> list[str]:
        return [f"worker {w.index}" for w in self.workers if not w.ready]

    # -- workers

    def _command(self) -> list[str]:
        args = [sys.executable, "-m", "collector", "run"]
        if self.config.source != BUILT_IN_SOURCE:
            args += ["-c", self.config.source]
        if self.log_level:
            args += ["--log-level", self.log_level]
        return args

    async def _spawn(self, worker: Worker) -> None:
        ours, theirs = messages.pair()
        env = {
            **os.environ,
            WORKER_VARIABLE: f"{worker.index}/{self.count}",
            FD_VARIABLE: str(theirs.fileno()),
        }
        try:
            worker.process = await asyncio.create_subprocess_exec(
                *self._command(), env=env, pass_fds=(theirs.fileno(),), start_new_session=True
            )
        finally:
            theirs.close()
        worker.channel = await Channel.open(ours)
        worker.admin_url, worker.ready, worker.started_at = None, False, time.monotonic()
        worker.hello.clear()
        worker.listener = asyncio.create_task(self._listen(worker), name=f"worker-{worker.index}-channel")
        log.info("worker %d started (pid %d)", worker.index, worker.process.pid)

    async def _listen(self, worker: Worker) -> None:
        """The worker's messages: its hello, then SLO counts, until it exits."""
        channel = worker.channel
        assert channel is not None
        try:
            async for message in channel.messages():
                kind = message.get("t")
                if kind == messages.HELLO:
                    worker.admin_url = str(message["admin"])
                    worker.started_once = True
                    worker.hello.set()
                elif kind in (messages.COUNTS, messages.POINTS):
                    engine = self.control.slo_engine
                    if engine is not None:
                        apply(engine, message)
        except ChannelError as exc:
            log.error("worker %d sent something unreadable: %s", worker.index, exc)
        except Exception:
            log.exception("worker %d: a message could not be applied", worker.index)
        finally:
            await channel.close()

    async def _watch(self, worker: Worker) -> None:
        """Waits for the worker to exit and starts it again, unless burnline is stopping."""
        while True:
            process = worker.process
            assert process is not None
            code = await process.wait()
            worker.ready = False
            self._up.labels(str(worker.index)).set(0)
            if worker.listener is not None:
                await worker.listener  # counts it sent before dying are applied first
            if self._stopping:
                return
            how = f"signal {-code}" if code < 0 else f"code {code}"
            if not worker.started_once:
                log.error("worker %d exited with %s before it started; stopping", worker.index, how)
                self._failed_start.set()
                return
            ran = time.monotonic() - worker.started_at
            worker.failures = 1 if ran >= STABLE_AFTER else worker.failures + 1
            delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (worker.failures - 1))
            log.error(
                "worker %d (pid %d) exited with %s after %.0fs; starting it again in %.0fs",
                worker.index,
                process.pid,
                how,
                ran,
                delay,
            )
            await asyncio.sleep(delay)
            if self.stopping:  # a stop came during the delay
                return
            await self._spawn(worker)
            self._restarts.labels(str(worker.index)).inc()

    async def _poll_readiness(self) -> None:
        """Each worker's /readyz, every second: the supervisor's /readyz is ready when all are."""
        import aiohttp

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:
            while True:
                for worker in self.workers:
                    ready = False
                    if worker.admin_url and worker.process and worker.process.returncode is None:
                        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                            async with session.get(f"{worker.admin_url}/readyz") as response:
                                ready = response.status == 200
                    worker.ready = ready
                    self._up.labels(str(worker.index)).set(1 if ready else 0)
                await asyncio.sleep(READY_POLL)

    def _signal_workers(self, sig: int) -> None:
        for worker in self.workers:
            process = worker.process
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)

    # -- the process

    async def run(self) -> int:
        problems = unshareable(self.config)
        if problems:
            log.error("cannot start: %s", "; ".join(problems))
            return 1
        loop = asyncio.get_running_loop()
        reload_requested, stop_requested = signal_events()
        try:
            await self.control.start()
        except (ConfigError, StartupError) as exc:
            log.error("cannot start: %s", exc)
            return 1
        code = 0
        try:
            for worker in self.workers:
                await self._spawn(worker)
                self._tasks.append(asyncio.create_task(self._watch(worker), name=f"worker-{worker.index}"))
            started = asyncio.gather(*(w.hello.wait() for w in self.workers))
            failed = asyncio.ensure_future(self._failed_start.wait())
            stopped = asyncio.ensure_future(stop_requested.wait())
            first: list[asyncio.Future[Any]] = [started, failed, stopped]
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            if failed.done():
                code = 1
            else:
                if started.done():
                    log.info(
                        "burnline started: %d workers sharing the listening ports; admin on %s:%d",
                        self.count,
                        self.control.admin.host,
                        self.control.admin.port,
                    )
                self._tasks.append(asyncio.create_task(self._poll_readiness(), name="worker-readiness"))
                await self._serve(stop_requested, reload_requested, failed)
                code = 1 if failed.done() else 0
            for future in (started, failed, stopped):
                future.cancel()
        finally:
            await self._stop_workers(loop)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.control.stop()
        return code

    async def _serve(self, stop: asyncio.Event, reload: asyncio.Event, failed: asyncio.Future[Any]) -> None:
        stop_wait = asyncio.ensure_future(stop.wait())
        while not stop.is_set() and not failed.done():
            reload_wait = asyncio.ensure_future(reload.wait())
            either: list[asyncio.Future[Any]] = [stop_wait, reload_wait, failed]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            reload_wait.cancel()
            if reload.is_set() and not stop.is_set():
                reload.clear()
                log.info("SIGHUP: reloading %s in the supervisor and the workers", self.config.source)
                await self.control.reload()
                self._signal_workers(signals.SIGHUP)
        stop_wait.cancel()

    async def _stop_workers(self, loop: asyncio.AbstractEventLoop) -> None:
        self._stopping = True
        grace = self.config.service.shutdown_grace_period
        log.info(
            "stopping %d workers: each drains its exporters for up to %.0fs (signal again to stop at once)",
            self.count,
            grace,
        )
        # A second SIGTERM or SIGINT is passed on: the workers cut their drains short.
        for sig in (signals.SIGTERM, signals.SIGINT):
            loop.add_signal_handler(sig, self._signal_workers, signals.SIGTERM)
        loop.add_signal_handler(signals.SIGHUP, lambda: log.warning("SIGHUP ignored: stopping"))
        self._signal_workers(signals.SIGTERM)
        processes = [w.process for w in self.workers if w.process is not None]
        waits = [asyncio.ensure_future(p.wait()) for p in processes]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=grace + 15.0)
            if pending:
                log.error("%d worker(s) did not stop in time; killing them", len(pending))
                self._signal_workers(signals.SIGKILL)
                await asyncio.wait(pending, timeout=10.0)
        listeners = [w.listener for w in self.workers if w.listener is not None]
        await asyncio.gather(*listeners, return_exceptions=True)  # their last counts, before saving
        codes = [p.returncode for p in processes]
        log.info("all %d workers stopped (exit codes %s)", len(processes), ", ".join(map(str, codes)))
