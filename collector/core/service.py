"""The service: builds components from a config, starts them in dependency order, stops in reverse,
and applies a new config while running (SIGHUP).

Start: exporters (and their queues and senders), processors, pipelines, receivers, then the admin
server. Stop (SIGTERM, SIGINT): receivers first so nothing new is accepted, then each exporter's
sender drains its queue within the grace period, then exporters stop; a second SIGINT or SIGTERM
cuts the drain short (a disk queue keeps the rest for the next start).

Reload (SIGHUP): the file is read and validated first (SLO files included); on any problem the old
config keeps running. Then only what changed is stopped and started (collector/core/reload.py plans
it, collector/core/service_reload.py carries it out), pipelines are rebuilt, and the SLO engine takes
the new SLO set, keeping the counts of SLOs whose SLI and period did not change.
"""

from __future__ import annotations

import asyncio
import logging
import signal as signals
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from collector.config import ConfigError
from collector.config.model import Config
from collector.core.admin import AdminServer
from collector.core.component import (
    Component,
    ComponentContext,
    Consumer,
    Exporter,
    Processor,
    Receiver,
    component_class,
    type_of,
)
from collector.core.gc_tuning import tune_for_streaming
from collector.core.in_flight import InFlight
from collector.core.loop_lag import LoopLagMonitor
from collector.core.malloc_tuning import tune_allocator
from collector.core.memory_limiter import MemoryLimiter
from collector.core.model import Batch, Signal
from collector.core.pipeline import Pipeline, ReceiverConsumer
from collector.core.reload import (
    ExporterInlet,
    used_components,
)
from collector.core.service_reload import Reloader
from collector.core.startup_errors import (
    StartupError,
    check_data_dir,
    explain,
    variables_by_key,
)
from collector.core.telemetry import Telemetry
from collector.exporterhelper.deadletter import DeadLetter
from collector.exporterhelper.durable_queue import DurableQueue, database_file
from collector.exporterhelper.queue import MemoryQueue
from collector.exporterhelper.queue_adoption import orphan_databases, queued_on_disk
from collector.exporterhelper.sender import ExporterConfig, QueueSender
from collector.slo.alertmanager import AlertmanagerClient
from collector.slo.engine import SloEngine
from collector.slo.metrics import SloMetrics
from collector.slo.persistence import Persister
from collector.slo.spec import SLOSpec, load_slos
from collector.workers.identity import WorkerIdentity
from collector.workers.slo_relay import RecordRelay

log = logging.getLogger("burnline.service")

_START_ERRORS = (OSError, sqlite3.Error)


def signal_events() -> tuple[asyncio.Event, asyncio.Event]:
    """(reload requested: SIGHUP, stop requested: SIGTERM or SIGINT), handled from now on: SIGHUP's
    default would end the process, SIGINT's raise a traceback. A signal during the start is acted
    on once it is complete."""
    loop = asyncio.get_running_loop()
    reload_requested, stop_requested = asyncio.Event(), asyncio.Event()
    loop.add_signal_handler(signals.SIGHUP, reload_requested.set)
    for sig in (signals.SIGTERM, signals.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    return reload_requested, stop_requested


def _class_of(kind: str, cid: str) -> type[Component[Any]]:
    """The class of a configured component (importing only its own module)."""
    cls = component_class(kind, type_of(cid))
    if cls is None:  # the configuration was validated against the same registry
        raise KeyError(f"unknown {kind} type {type_of(cid)!r}")
    return cls


class Service:
    def __init__(
        self,
        config: Config,
        telemetry: Telemetry | None = None,
        *,
        worker: WorkerIdentity | None = None,
        relay: RecordRelay | None = None,
    ) -> None:
        """``worker`` and ``relay``: this is one of several worker processes (collector/workers/):
        it owns its queue and dead-letter directories, binds the shared ports with SO_REUSEPORT,
        serves its admin endpoint on a loopback port for the supervisor only, and sends its SLO
        counts to the supervisor through ``relay`` instead of evaluating them itself."""
        self.config = config
        self.telemetry = telemetry or Telemetry()
        self.worker = worker or WorkerIdentity()
        self.relay = relay
        self.data_dir = Path(config.service.data_dir)
        self.exporters: dict[str, Exporter[Any]] = {}
        self.senders: dict[str, QueueSender] = {}
        self.inlets: dict[str, ExporterInlet] = {}
        self.processors: dict[str, Processor[Any]] = {}
        self.receivers: dict[str, Receiver[Any]] = {}
        self.consumers: dict[str, dict[Signal, ReceiverConsumer]] = {}
        self.pipelines: dict[str, Pipeline] = {}
        # What each running component was started with: a reload compares the new config to this.
        self.running: dict[str, dict[str, Any]] = {"receivers": {}, "processors": {}, "exporters": {}}
        self.memory_limiter = MemoryLimiter(
            config.service.memory_limiter, self.telemetry, share=self.worker.count
        )
        self.loop_lag = LoopLagMonitor(self.telemetry.loop_lag)
        limits = config.service.memory_limiter
        self.in_flight = InFlight(
            limits.max_in_flight,
            limits.in_flight_timeout,
            held=self.telemetry.in_flight,
            waiting=self.telemetry.in_flight_waiting,
        )
        admin_endpoint = "127.0.0.1:0" if relay is not None else config.service.admin.endpoint
        self.admin = AdminServer(admin_endpoint, self.telemetry, self.not_ready, service=self)
        self.slo_engine: SloEngine | None = None
        self._slo_persister: Persister | None = None
        self._slo_exposition: Any = None
        self._alertmanagers: AlertmanagerClient | None = None
        self._started: list[Component[Any]] = []
        self._exporters_started = False
        self._stopped = asyncio.Event()
        self._stop_lock = asyncio.Lock()
        self._reload_lock = asyncio.Lock()
        self._stopping = False
        self._hurry = asyncio.Event()
        self._variables: dict[str, str] | None = None
        self._reloader = Reloader(self)

    # -- naming settings in errors

    @property
    def variables(self) -> dict[str, str]:
        """Key path -> the variable it comes from in the config's file (for start-up errors)."""
        if self._variables is None:
            self._variables = variables_by_key(self.config)
        return self._variables

    def _explain(self, section: str, cid: str, settings: Any, exc: BaseException) -> StartupError:
        files: dict[str, Path] = {}
        path = getattr(settings, "path", None)
        if isinstance(path, str | Path):
            files[f"{section}.{cid}.path"] = Path(path)
        files["service.data_dir"] = self.data_dir / "x"
        return explain(f"{section}.{cid}", settings, exc, self.variables, files=files)

    def _ctx(self, component_id: str, kind: str) -> ComponentContext:
        return ComponentContext(
            id=component_id,
            telemetry=self.telemetry,
            data_dir=str(self.data_dir),
            logger=logging.getLogger(f"burnline.{kind}.{component_id}"),
            worker=self.worker,
            in_flight=self.in_flight,
        )

    def _used(self, section: str) -> list[str]:
        """Component ids that some pipeline uses, in config order (unused ones are not started)."""
        used = used_components(self.config, section)
        for cid in getattr(self.config, section):
            if cid not in used:
                log.warning("%s %r is defined but no pipeline uses it; not started", section[:-1], cid)
        return list(used)

    # -- start

    async def start(self) -> None:
        check_data_dir(self.data_dir, self.variables)
        try:
            self.memory_limiter.start()
            self.loop_lag.start()
            await self._start_exporters()
            await self._start_slo_engine(load_slos(self.config))
            await self._start_processors()
            self._build_pipelines()
            await self._start_receivers()
            try:
                await self.admin.start()
            except _START_ERRORS as exc:
                raise explain("service.admin", self.config.service.admin, exc, self.variables) from exc
            if self.slo_engine is not None:
                self._start_slo_evaluation()
        except BaseException:
            await self._stop_started(grace=0.0)
            await self._stop_slo_engine()
            await self.memory_limiter.stop()
            await self.loop_lag.stop()
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
            await self._start_exporter(cid, self.config.exporters[cid])
            self.inlets[cid] = ExporterInlet(self.senders[cid].queue)
        self._exporters_started = True

    async def _start_exporter(self, cid: str, cfg: Any) -> None:
        """One exporter with its queue and sender; StartupError naming it when it cannot start."""
        cls = _class_of("exporter", cid)
        exporter = cls(cfg, self._ctx(cid, "exporter"))
        assert isinstance(exporter, Exporter)
        exporter.dead_letter = DeadLetter(
            cid, self.worker.directory(self.data_dir / "deadletter"), self.telemetry
        )
        try:
            await exporter.start()
        except _START_ERRORS as exc:
            raise self._explain("exporters", cid, cfg, exc) from exc
        self._started.append(exporter)
        self.telemetry.up.labels(cid, "exporter").set(1)
        self.exporters[cid] = exporter
        sending: ExporterConfig = cfg if isinstance(cfg, ExporterConfig) else ExporterConfig()
        queue: MemoryQueue
        if sending.queue.storage == "disk":
            root = self.data_dir / "queue"
            # Queues of workers that no longer exist (service.workers changed) are taken over, so
            # that what they acknowledged is still delivered.
            orphans = orphan_databases(root, database_file(cid), self.worker)
            durable = DurableQueue(
                cid, sending.queue, self.telemetry, self.worker.directory(root), adopt=orphans
            )
            try:
                await durable.open()
            except _START_ERRORS as exc:
                files = {"service.data_dir": durable.path}
                raise explain(f"exporters.{cid}", {}, exc, self.variables, files=files) from exc
            queue = durable
        else:
            queue = MemoryQueue(cid, sending.queue, self.telemetry)
            await self._report_disk_backlog(cid)
        queue.keep_wire = exporter.sends_wire
        sender = QueueSender(exporter, sending, queue, self.telemetry)
        sender.start()
        self.senders[cid] = sender
        self.running["exporters"][cid] = cfg

    async def _report_disk_backlog(self, cid: str) -> None:
        """Warns about batches a disk queue of an earlier run left for an exporter whose queue is now
        in memory: they are not delivered, and nothing else would say so."""
        root = self.data_dir / "queue"
        own = self.worker.directory(root) / database_file(cid)
        for path in [own, *orphan_databases(root, database_file(cid), self.worker)]:
            if not path.is_file():
                continue
            try:
                records = await asyncio.to_thread(queued_on_disk, path)
            except sqlite3.Error as exc:
                log.warning(
                    "exporter %s: cannot read the disk queue %s left by an earlier run: %s", cid, path, exc
                )
                continue
            if records:
                log.warning(
                    "exporter %s: its queue.storage is memory, but the disk queue %s of an earlier run holds"
                    " %d record(s), which are not delivered; set queue.storage: disk to deliver them",
                    cid,
                    path,
                    records,
                )

    async def _start_slo_engine(self, slos: list[SLOSpec]) -> None:
        """The SLO engine, when the config has SLOs: counts restored, Alertmanager client started.
        Its evaluations begin once the admin server (its generatorURL) is up."""
        if not slos:
            return
        alerting = self.config.alerting
        if self.relay is not None:
            # A worker only matches; the supervisor's engine counts, evaluates, alerts and persists.
            self.slo_engine = self.relay.engine = SloEngine(slos, alerting)
            return
        await self._start_alertmanagers(len(slos))
        engine = SloEngine(slos, alerting, sink=self._alertmanagers, generator_url=alerting.external_url)
        self._slo_persister = Persister(engine, self.data_dir / "slo", alerting.persist_interval)
        try:
            await self._slo_persister.start()
        except _START_ERRORS as exc:
            files = {"service.data_dir": self.data_dir / "slo" / "counts.sqlite"}
            raise explain("slos", {}, exc, self.variables, files=files) from exc
        self._show_slo_engine(engine)
        log.info("SLO engine: %d SLO(s), evaluated every %gs", len(slos), alerting.evaluation_interval)

    async def _start_alertmanagers(self, slo_count: int) -> None:
        alerting = self.config.alerting
        if alerting.alertmanagers:
            self._alertmanagers = AlertmanagerClient(alerting.alertmanagers, self.telemetry)
            await self._alertmanagers.start()
        else:
            log.warning(
                "%d SLO(s) but no alerting.alertmanagers: alerts show only on /metrics and the API", slo_count
            )

    def _show_slo_engine(self, engine: SloEngine) -> None:
        """Makes ``engine`` the one /metrics and the status API show."""
        if self._slo_exposition in self.telemetry.extra_expositions:
            self.telemetry.extra_expositions.remove(self._slo_exposition)
        self._slo_exposition = SloMetrics(engine).exposition_parts
        self.telemetry.extra_expositions.append(self._slo_exposition)
        self.admin.slos = engine
        self.slo_engine = engine

    def _start_slo_evaluation(self) -> None:
        engine = self.slo_engine
        assert engine is not None
        if self.relay is not None:
            return
        if not engine.generator_url:
            engine.generator_url = self.admin.url
        engine.start()

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
            self.processors[cid] = await self._start_processor(cid, self.config.processors[cid])

    async def _start_processor(self, cid: str, cfg: Any) -> Processor[Any]:
        cls = _class_of("processor", cid)
        processor = cls(cfg, self._ctx(cid, "processor"))
        assert isinstance(processor, Processor)
        try:
            await processor.start()
        except _START_ERRORS as exc:
            raise self._explain("processors", cid, cfg, exc) from exc
        self._started.append(processor)
        self.running["processors"][cid] = cfg
        return processor

    def _build_pipelines(self) -> None:
        pipelines = {}
        for pid, pcfg in self.config.service.pipelines.items():
            signal = Signal(type_of(pid))
            engine = self.slo_engine
            observe = engine is not None and signal in engine.signals()
            # Pipelines only put into their queues: an inlet stands in for the queue so that an
            # exporter can be swapped by a reload under a running pipeline.
            inlets = cast(list[MemoryQueue], [self.inlets[e] for e in pcfg.exporters])
            pipelines[pid] = Pipeline(
                pid,
                signal,
                [self.processors[p] for p in pcfg.processors],
                inlets,
                observers=[self._slo_observer(engine)] if engine is not None and observe else [],
            )
        self.pipelines = pipelines

    def _slo_observer(self, engine: SloEngine) -> Callable[[Batch], None]:
        return self.relay.observe if self.relay is not None else engine.observe

    def _pipelines_of(self, receiver_id: str) -> dict[Signal, list[Pipeline]]:
        by_signal: dict[Signal, list[Pipeline]] = {}
        for pid, pcfg in self.config.service.pipelines.items():
            if receiver_id in pcfg.receivers:
                by_signal.setdefault(Signal(type_of(pid)), []).append(self.pipelines[pid])
        return by_signal

    async def _start_receivers(self) -> None:
        for cid in self._used("receivers"):
            await self._start_receiver(cid, self.config.receivers[cid])

    async def _start_receiver(self, cid: str, cfg: Any) -> None:
        consumers: dict[Signal, ReceiverConsumer] = {}
        for sig, pipelines in self._pipelines_of(cid).items():
            consumers[sig] = ReceiverConsumer(cid, sig, pipelines, self.telemetry, self.memory_limiter)
        cls = _class_of("receiver", cid)
        receiver = cls(cfg, self._ctx(cid, "receiver"), cast(dict[Signal, Consumer], consumers))  # type: ignore[call-arg]
        assert isinstance(receiver, Receiver)
        try:
            await receiver.start()
        except _START_ERRORS as exc:
            await self._stop_one(receiver)  # a half-started receiver lets go of what it bound
            raise self._explain("receivers", cid, cfg, exc) from exc
        self._started.append(receiver)
        self.telemetry.up.labels(cid, "receiver").set(1)
        self.receivers[cid] = receiver
        self.consumers[cid] = consumers
        self.running["receivers"][cid] = cfg

    # -- readiness

    def not_ready(self) -> list[str]:
        if not self._exporters_started:
            return ["exporters"]
        waiting = [cid for cid, r in self.receivers.items() if not r.ready()]
        missing = [cid for cid in used_components(self.config, "receivers") if cid not in self.receivers]
        waiting += [f"receivers.{cid} not running" for cid in missing]
        return waiting

    # -- reload

    async def reload(self, config: Config | None = None) -> bool:
        """Applies ``config`` (None: the config's file read again, or the built-in default); see
        collector/core/service_reload.py. Returns whether it applied in full."""
        return await self._reloader.reload(config)

    # -- stop

    async def stop(self, grace: float | None = None) -> int:
        """Stops accepting, drains the exporter queues (within ``grace`` s), stops everything.

        Returns the number of records left undelivered (0 after a complete drain).
        """
        self._stopping = True
        async with self._stop_lock:
            if self._stopped.is_set():
                return 0
            lost = await self._stop_started(
                self.config.service.shutdown_grace_period if grace is None else grace
            )
            await self._stop_slo_engine()
            await self.admin.stop()
            await self.memory_limiter.stop()
            await self.loop_lag.stop()
            self._stopped.set()
            return lost

    def hurry(self) -> None:
        """Cuts a running drain short: exports in flight are abandoned (a disk queue keeps them and
        the rest; a memory queue's are lost and counted)."""
        self._hurry.set()

    async def _stop_started(self, grace: float) -> int:
        for consumers in self.consumers.values():
            for consumer in consumers.values():
                consumer.closed = True
        for component in reversed(self._started):
            if isinstance(component, Receiver):
                await self._stop_one(component)
        deadline = time.monotonic() + grace
        drains: asyncio.Future[list[int]] = asyncio.gather(
            *(s.drain(deadline - time.monotonic()) for s in self.senders.values())
        )
        hurried: asyncio.Future[bool] = asyncio.ensure_future(self._hurry.wait())
        either: list[asyncio.Future[Any]] = [drains, hurried]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not drains.done():
            log.warning("second stop signal: no longer waiting for the exporters to drain")
            for sender in self.senders.values():
                # The workers' cancellation ends each drain at once, with its accounting done.
                for worker in sender._workers:  # the sender has no public "give up"
                    worker.cancel()
        lost = sum(await drains)
        hurried.cancel()
        for component in reversed(self._started):
            if not isinstance(component, Receiver):
                await self._stop_one(component)
        self._started.clear()
        return lost

    async def _stop_one(self, component: Component[Any]) -> None:
        try:
            await component.stop()
        except Exception:
            log.exception("%s %s failed to stop cleanly", component.kind, component.id)
        self.telemetry.up.labels(component.id, component.kind).set(0)

    # -- the process

    async def run(self, started: Callable[[], None] | None = None) -> int:
        """Starts, then runs until SIGTERM or SIGINT, reloading on SIGHUP; returns the exit code.
        ``started`` is called once the service runs (a worker tells its supervisor so)."""
        loop = asyncio.get_running_loop()
        reload_requested, stop_requested = signal_events()
        log.info("allocator: %s", tune_allocator())  # before start, so every batch's buffers follow it
        try:
            await self.start()
        except (ConfigError, StartupError) as exc:  # one line naming what to fix, no traceback
            log.error("cannot start: %s", exc)
            return 1
        tune_for_streaming()
        if started is not None:
            started()
        stop_wait = asyncio.create_task(stop_requested.wait())
        while not stop_requested.is_set():
            reload_wait = asyncio.create_task(reload_requested.wait())
            await asyncio.wait([stop_wait, reload_wait], return_when=asyncio.FIRST_COMPLETED)
            reload_wait.cancel()
            if reload_requested.is_set() and not stop_requested.is_set():
                reload_requested.clear()
                log.info("SIGHUP: reloading %s", self.config.source)
                await self.reload()
                tune_for_streaming()  # what the reload retired was frozen at start: let it go
        # A second SIGTERM or SIGINT during the drain cuts it short.
        for sig in (signals.SIGTERM, signals.SIGINT):
            loop.add_signal_handler(sig, self.hurry)
        loop.add_signal_handler(signals.SIGHUP, lambda: log.warning("SIGHUP ignored: stopping"))
        log.info(
            "stop requested: no longer accepting; draining exporters for up to %.0fs "
            "(send the signal again to stop at once)",
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
