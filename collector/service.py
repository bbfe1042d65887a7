"""The service: builds components from a config, starts them in dependency order, stops in reverse.

Start: exporters (and their queues and senders), processors, pipelines, receivers, then the admin
server. Stop (SIGTERM): receivers first so nothing new is accepted, then each exporter's sender
drains its queue within the grace period, then exporters stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal as signals
import time
from pathlib import Path
from typing import Any

from collector.admin import AdminServer
from collector.component import (
    Component,
    ComponentContext,
    Consumer,
    Exporter,
    Processor,
    Receiver,
    registered,
    type_of,
)
from collector.config import ConfigError
from collector.config.model import Config
from collector.deadletter import DeadLetter
from collector.durable_queue import DurableQueue
from collector.memory_limiter import MemoryLimiter
from collector.model import Signal
from collector.pipeline import Pipeline, ReceiverConsumer
from collector.queue import MemoryQueue
from collector.sender import ExporterConfig, QueueSender
from collector.slo.alertmanager import AlertmanagerClient
from collector.slo.engine import SloEngine
from collector.slo.metrics import SloMetrics
from collector.slo.persistence import Persister
from collector.slo.spec import load_slos
from collector.telemetry import Telemetry

log = logging.getLogger("burnline.service")


class Service:
    def __init__(self, config: Config, telemetry: Telemetry | None = None) -> None:
        self.config = config
        self.telemetry = telemetry or Telemetry()
        self.data_dir = Path(config.service.data_dir)
        self.exporters: dict[str, Exporter] = {}
        self.senders: dict[str, QueueSender] = {}
        self.processors: dict[str, Processor] = {}
        self.receivers: dict[str, Receiver] = {}
        self.consumers: list[ReceiverConsumer] = []
        self.pipelines: dict[str, Pipeline] = {}
        self.memory_limiter = MemoryLimiter(config.service.memory_limiter, self.telemetry)
        self.admin = AdminServer(config.service.admin.endpoint, self.telemetry, self.not_ready)
        self.slo_engine: SloEngine | None = None
        self._slo_persister: Persister | None = None
        self._alertmanagers: AlertmanagerClient | None = None
        self._started: list[Component] = []
        self._exporters_started = False
        self._stopped = asyncio.Event()
        self._stop_lock = asyncio.Lock()

    def _ctx(self, component_id: str, kind: str) -> ComponentContext:
        return ComponentContext(
            id=component_id,
            telemetry=self.telemetry,
            data_dir=str(self.data_dir),
            logger=logging.getLogger(f"burnline.{kind}.{component_id}"),
        )

    def _used(self, section: str) -> list[str]:
        """Component ids that some pipeline uses, in config order (unused ones are not started)."""
        used = {cid for p in self.config.service.pipelines.values() for cid in getattr(p, section)}
        defined: dict[str, Any] = getattr(self.config, section)
        for cid in defined:
            if cid not in used:
                log.warning("%s %r is defined but no pipeline uses it; not started", section[:-1], cid)
        return [cid for cid in defined if cid in used]

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.memory_limiter.start()
            await self._start_exporters()
            await self._start_slo_engine()
            await self._start_processors()
            self._build_pipelines()
            await self._start_receivers()
            await self.admin.start()
            if self.slo_engine is not None:
                if not self.slo_engine.generator_url:
                    self.slo_engine.generator_url = self.admin.url
                self.slo_engine.start()
        except BaseException:
            await self._stop_started(grace=0.0)
            await self._stop_slo_engine()
            await self.memory_limiter.stop()
            raise
        log.info(
            "burnline started: %d receiver(s), %d exporter(s), %d pipeline(s); admin on %s:%d",
            len(self.receivers),
            len(self.exporters),
            len(self.pipelines),
            self.admin.host,
            self.admin.port,
        )

    async def _start_exporters(self) -> None:
        for cid in self._used("exporters"):
            cfg = self.config.exporters[cid]
            cls = registered("exporter")[type_of(cid)]
            exporter = cls(cfg, self._ctx(cid, "exporter"))
            assert isinstance(exporter, Exporter)
            exporter.dead_letter = DeadLetter(cid, self.data_dir / "deadletter", self.telemetry)
            await exporter.start()
            self._started.append(exporter)
            self.telemetry.up.labels(cid, "exporter").set(1)
            self.exporters[cid] = exporter
            sending: ExporterConfig = cfg if isinstance(cfg, ExporterConfig) else ExporterConfig()
            queue: MemoryQueue
            if sending.queue.storage == "disk":
                durable = DurableQueue(cid, sending.queue, self.telemetry, self.data_dir / "queue")
                await durable.open()
                queue = durable
            else:
                queue = MemoryQueue(cid, sending.queue, self.telemetry)
            sender = QueueSender(exporter, sending, queue, self.telemetry)
            sender.start()
            self.senders[cid] = sender
        self._exporters_started = True

    async def _start_slo_engine(self) -> None:
        """The SLO engine, when the config has SLOs: counts restored, Alertmanager client started.
        Its evaluations begin once the admin server (its generatorURL) is up."""
        slos = load_slos(self.config)
        if not slos:
            return
        alerting = self.config.alerting
        if alerting.alertmanagers:
            self._alertmanagers = AlertmanagerClient(alerting.alertmanagers, self.telemetry)
            await self._alertmanagers.start()
        else:
            log.warning(
                "%d SLO(s) but no alerting.alertmanagers: alerts show only on /metrics and the API", len(slos)
            )
        engine = SloEngine(slos, alerting, sink=self._alertmanagers, generator_url=alerting.external_url)
        self._slo_persister = Persister(engine, self.data_dir / "slo", alerting.persist_interval)
        await self._slo_persister.start()
        self.telemetry.extra_expositions.append(SloMetrics(engine).exposition_async)
        self.admin.slos = engine
        self.slo_engine = engine
        log.info("SLO engine: %d SLO(s), evaluated every %gs", len(slos), alerting.evaluation_interval)

    async def _stop_slo_engine(self) -> None:
        """Evaluation stops, counts are saved, pending alerts get a moment to go out."""
        if self.slo_engine is not None:
            await self.slo_engine.stop()
        if self._slo_persister is not None:
            await self._slo_persister.stop()
            self._slo_persister = None
        if self._alertmanagers is not None:
            await self._alertmanagers.stop()
            self._alertmanagers = None

    async def _start_processors(self) -> None:
        for cid in self._used("processors"):
            cls = registered("processor")[type_of(cid)]
            processor = cls(self.config.processors[cid], self._ctx(cid, "processor"))
            assert isinstance(processor, Processor)
            await processor.start()
            self._started.append(processor)
            self.processors[cid] = processor

    def _build_pipelines(self) -> None:
        for pid, pcfg in self.config.service.pipelines.items():
            signal = Signal(type_of(pid))
            engine = self.slo_engine
            observe = engine is not None and signal in engine.signals()
            self.pipelines[pid] = Pipeline(
                pid,
                signal,
                [self.processors[p] for p in pcfg.processors],
                [self.senders[e].queue for e in pcfg.exporters],
                observers=[engine.observe] if engine is not None and observe else [],
            )

    async def _start_receivers(self) -> None:
        for cid in self._used("receivers"):
            by_signal: dict[Signal, list[Pipeline]] = {}
            for pid, pcfg in self.config.service.pipelines.items():
                if cid in pcfg.receivers:
                    by_signal.setdefault(Signal(type_of(pid)), []).append(self.pipelines[pid])
            consumers: dict[Signal, Consumer] = {}
            for sig, pipelines in by_signal.items():
                consumer = ReceiverConsumer(cid, sig, pipelines, self.telemetry, self.memory_limiter)
                self.consumers.append(consumer)
                consumers[sig] = consumer
            cls = registered("receiver")[type_of(cid)]
            receiver = cls(self.config.receivers[cid], self._ctx(cid, "receiver"), consumers)  # type: ignore[call-arg]
            assert isinstance(receiver, Receiver)
            await receiver.start()
            self._started.append(receiver)
            self.telemetry.up.labels(cid, "receiver").set(1)
            self.receivers[cid] = receiver

    def not_ready(self) -> list[str]:
        if not self._exporters_started:
            return ["exporters"]
        waiting = [cid for cid, r in self.receivers.items() if not r.ready()]
        if len(self.receivers) < len(self._used_ids("receivers")):
            waiting.append("receivers starting")
        return waiting

    def _used_ids(self, section: str) -> set[str]:
        return {cid for p in self.config.service.pipelines.values() for cid in getattr(p, section)}

    async def stop(self, grace: float | None = None) -> int:
        """Stops accepting, drains the exporter queues (within ``grace`` s), stops everything.

        Returns the number of records left undelivered (0 after a complete drain).
        """
        async with self._stop_lock:
            if self._stopped.is_set():
                return 0
            lost = await self._stop_started(
                self.config.service.shutdown_grace_period if grace is None else grace
            )
            await self._stop_slo_engine()
            await self.admin.stop()
            self._stopped.set()
            return lost

    async def _stop_started(self, grace: float) -> int:
        for consumer in self.consumers:
            consumer.closed = True
        for component in reversed(self._started):
            if isinstance(component, Receiver):
                await self._stop_one(component)
        deadline = time.monotonic() + grace
        drains = [s.drain(deadline - time.monotonic()) for s in self.senders.values()]
        lost = sum(await asyncio.gather(*drains))
        for component in reversed(self._started):
            if not isinstance(component, Receiver):
                await self._stop_one(component)
        self._started.clear()
        return lost

    async def _stop_one(self, component: Component) -> None:
        try:
            await component.stop()
        except Exception:
            log.exception("%s %s failed to stop cleanly", component.kind, component.id)
        self.telemetry.up.labels(component.id, component.kind).set(0)

    async def run(self) -> int:
        """Starts, then runs until SIGTERM or SIGINT; returns the process exit code."""
        try:
            await self.start()
        except ConfigError as exc:  # SLO files are read at start: a broken one stops it, clearly
            log.error("%s", exc)
            return 1
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for sig in (signals.SIGTERM, signals.SIGINT):
            loop.add_signal_handler(sig, stop_requested.set)
        await stop_requested.wait()
        log.info(
            "stop requested: no longer accepting; draining exporters for up to %.0fs",
            self.config.service.shutdown_grace_period,
        )
        lost = await self.stop()
        kept = sum(s.queue.records for s in self.senders.values() if s.queue.durable)
        if lost:
            log.error("stopped; %d accepted record(s) were lost (memory queues)", lost)
        elif kept:
            log.warning("stopped; %d accepted record(s) stay queued on disk for the next start", kept)
        else:
            log.info("stopped; every accepted record was delivered")
        return 0
