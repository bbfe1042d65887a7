"""Reload (SIGHUP) of a running service: the file is read and validated first (SLO files included);
on any problem the old config keeps running. Then only what changed is stopped and started
(collector/core/reload.py plans it), pipelines are rebuilt, and the SLO engine takes the new SLO set,
keeping the counts of SLOs whose SLI and period did not change.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from collector.config import ConfigError, load_config
from collector.config.model import Config
from collector.core.component import Processor
from collector.core.memory_limiter import MemoryLimiter
from collector.core.reload import ExporterInlet, ReloadPlan, check_fixed_settings, receiver_signals
from collector.core.startup_errors import BUILT_IN_SOURCE, StartupError
from collector.slo.engine import SloEngine
from collector.slo.persistence import fingerprint, restore
from collector.slo.spec import SLOSpec, load_slos

if TYPE_CHECKING:
    from collector.core.service import Service

log = logging.getLogger("burnline.service")

# A reload drains a changed exporter's disk queue only this long: what is left stays on disk and the
# new exporter delivers it, while receivers wait for the swap.
RELOAD_DISK_DRAIN = 2.0


class Reloader:
    """Carries reloads out on a service, one at a time."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def reload(self, config: Config | None = None) -> bool:
        """Applies ``config`` (None: the config's file read again, or the built-in default).

        Returns whether it applied in full. On a problem the previous config keeps running and one
        error line says why; ``burnline_config_last_reload_successful`` follows the outcome.
        """
        async with self.service._reload_lock:
            if self.service._stopping:
                return False
            source = self.service.config.source
            try:
                if config is None:
                    config = load_config(None if source == BUILT_IN_SOURCE else source)
                slos = load_slos(config)
                check_fixed_settings(self.service.config, config)
            except ConfigError as exc:
                problems = "; ".join(exc.problems)
                log.error("reload failed, still running the previous config: %s: %s", exc.source, problems)
                self.service.telemetry.config_reload_successful.set(0)
                return False
            try:
                failures = await self._apply(config, slos)
            except StartupError as exc:
                failures = [str(exc)]
            if failures:
                log.error(
                    "reload of %s failed, still running the previous settings of: %s",
                    config.source,
                    "; ".join(failures),
                )
                self.service.telemetry.config_reload_successful.set(0)
                return False
            self.service.telemetry.config_reload_successful.set(1)
            self.service.telemetry.config_reload_success_timestamp.set_to_current_time()
            return True

    async def _apply(self, new: Config, slos: list[SLOSpec]) -> list[str]:
        """Carries a reload out; returns the problems of components that kept their old settings.

        A StartupError before anything running was touched (an added exporter or processor that
        cannot start) leaves the old config running as it was."""
        running_signals = {cid: receiver_signals(self.service.config, cid) for cid in self.service.receivers}
        plan = ReloadPlan.between(self.service.running, running_signals, new)
        old_config, failures = self.service.config, []

        # 1. What is new and may fail, before anything running changes.
        started: list[str] = []
        new_processors: dict[str, Processor[Any]] = {}
        running_processors = dict(self.service.running["processors"])
        try:
            for cid in plan["exporters"].added:
                await self.service._start_exporter(cid, new.exporters[cid])
                self.service.inlets[cid] = ExporterInlet(self.service.senders[cid].queue)
                started.append(cid)
            for cid in plan["processors"].added + plan["processors"].changed:
                new_processors[cid] = await self.service._start_processor(cid, new.processors[cid])
        except StartupError:
            for cid in started:
                await self._remove_exporter(cid, grace=0.0)
            for processor in new_processors.values():
                await self.service._stop_one(processor)
                self.service._started.remove(processor)
            self.service.running["processors"] = running_processors
            raise
        self.service.config = new
        self.service._variables = None
        if new.service.log_level != old_config.service.log_level:
            logging.getLogger().setLevel(new.service.log_level.upper())
        if new.service.log_format != old_config.service.log_format:
            log.warning("service.log_format: the new format applies at the next start")
        if new.service.memory_limiter != old_config.service.memory_limiter:
            limits = new.service.memory_limiter
            self.service.in_flight.configure(limits.max_in_flight, limits.in_flight_timeout)
            await self.service.memory_limiter.stop()
            self.service.memory_limiter = MemoryLimiter(
                new.service.memory_limiter, self.service.telemetry, share=self.service.worker.count
            )
            self.service.memory_limiter.start()
            for consumers in self.service.consumers.values():
                for consumer in consumers.values():
                    consumer.limiter = self.service.memory_limiter

        # 2. Receivers that change or go take nothing more.
        for cid in plan["receivers"].removed + plan["receivers"].changed:
            await self._remove_receiver(cid)

        # 3. Changed exporters: receivers wait at the inlet while the old one drains and the new starts.
        for cid in plan["exporters"].changed:
            problem = await self._swap_exporter(cid, old_config.exporters[cid], new.exporters[cid])
            if problem:
                failures.append(problem)

        # 4. The SLO engine takes the new SLO set (before pipelines: they observe through it).
        try:
            await self._refresh_slo_engine(old_config, slos)
        except StartupError as exc:  # its counts database: the rest of the reload still applies
            failures.append(str(exc))

        # 5. New pipelines; kept receivers feed them from now on.
        old_processors = {
            cid: self.service.processors[cid] for cid in new_processors if cid in self.service.processors
        }
        old_processors.update({cid: self.service.processors[cid] for cid in plan["processors"].removed})
        for cid in plan["processors"].removed:
            del self.service.processors[cid]
            del self.service.running["processors"][cid]
        self.service.processors.update(new_processors)
        self.service._build_pipelines()
        for cid, consumers in self.service.consumers.items():
            by_signal = self.service._pipelines_of(cid)
            for sig, consumer in consumers.items():
                consumer.pipelines = by_signal[sig]

        # 6. Receivers that are new or changed start on the new pipelines.
        for cid in plan["receivers"].added + plan["receivers"].changed:
            try:
                await self.service._start_receiver(cid, new.receivers[cid])
            except StartupError as exc:
                failures.append(str(exc))
                if cid in old_config.receivers and cid in plan["receivers"].changed:
                    await self._restart_receiver_as_before(cid, old_config.receivers[cid])

        # 7. Removed exporters drain as at stop; replaced processors stop.
        for cid in plan["exporters"].removed:
            await self._remove_exporter(cid, grace=new.service.shutdown_grace_period)
        for processor in old_processors.values():
            await self.service._stop_one(processor)
            self.service._started.remove(processor)

        changes = plan.changes()
        log.info(
            "reloaded %s: %s",
            new.source,
            ", ".join(changes) if changes else "no component changed",
        )
        return failures

    async def _restart_receiver_as_before(self, cid: str, cfg: Any) -> None:
        try:
            await self.service._start_receiver(cid, cfg)
        except StartupError as exc:
            log.error("%s (its previous settings do not start either)", exc)
            return
        log.warning("receivers.%s runs on with its previous settings", cid)

    async def _remove_receiver(self, cid: str) -> None:
        receiver = self.service.receivers.pop(cid)
        for consumer in self.service.consumers.pop(cid).values():
            consumer.closed = True
        await self.service._stop_one(receiver)
        self.service._started.remove(receiver)
        del self.service.running["receivers"][cid]

    async def _remove_exporter(self, cid: str, grace: float) -> int:
        """Stops feeding an exporter, drains its queue within ``grace`` s, stops it; returns the
        records lost (a memory queue's left at the deadline; a disk queue keeps them)."""
        inlet = self.service.inlets.pop(cid)
        await inlet.hold()
        sender = self.service.senders.pop(cid)
        lost = await sender.drain(grace)
        exporter = self.service.exporters.pop(cid)
        await self.service._stop_one(exporter)
        self.service._started.remove(exporter)
        del self.service.running["exporters"][cid]
        return lost

    async def _swap_exporter(self, cid: str, old_cfg: Any, new_cfg: Any) -> str | None:
        """Replaces a running exporter by one with new settings, under running pipelines. Returns the
        problem when the new settings do not start (the old ones run on then)."""
        inlet = self.service.inlets[cid]
        await inlet.hold()
        sender = self.service.senders.pop(cid)
        grace = self.service.config.service.shutdown_grace_period
        lost = await sender.drain(min(grace, RELOAD_DISK_DRAIN) if sender.queue.durable else grace)
        if lost:
            log.error("exporters.%s: %d record(s) of its memory queue were lost in the swap", cid, lost)
        exporter = self.service.exporters.pop(cid)
        await self.service._stop_one(exporter)
        self.service._started.remove(exporter)
        del self.service.running["exporters"][cid]
        problem = None
        try:
            await self.service._start_exporter(cid, new_cfg)
        except StartupError as exc:
            problem = str(exc)
            try:
                await self.service._start_exporter(cid, old_cfg)
            except StartupError as again:
                # The inlet stays held: its pipelines' puts are refused (retryable) until a reload
                # starts the exporter again (it counts as added then).
                log.error("%s (its previous settings do not start either)", again)
                return problem
        inlet.release(self.service.senders[cid].queue)
        return problem

    async def _refresh_slo_engine(self, old_config: Config, slos: list[SLOSpec]) -> None:
        """The new SLO set: SLOs whose SLI and period are unchanged keep their counts and alert states;
        added ones get their saved counts back; removed ones' counts stay saved."""
        old = self.service.slo_engine
        relay = self.service.relay
        if relay is not None:  # a worker: its engine only matches (collector/workers/slo_relay.py)
            self.service.slo_engine = relay.engine = (
                SloEngine(slos, self.service.config.alerting) if slos else None
            )
            return
        if old is None:
            await self.service._start_slo_engine(slos)
            if self.service.slo_engine is not None:
                self.service._start_slo_evaluation()
            return
        if not slos:
            await self.service._stop_slo_engine()
            if self.service._slo_exposition in self.service.telemetry.extra_expositions:
                self.service.telemetry.extra_expositions.remove(self.service._slo_exposition)
            self.service.slo_engine = None
            self.service.admin.slos = None
            return
        alerting = self.service.config.alerting
        if alerting.alertmanagers != old_config.alerting.alertmanagers:
            if self.service._alertmanagers is not None:
                await self.service._alertmanagers.stop()
                self.service._alertmanagers = None
            await self.service._start_alertmanagers(len(slos))
        engine = SloEngine(
            slos,
            alerting,
            sink=self.service._alertmanagers,
            generator_url=alerting.external_url or self.service.admin.url,
        )
        persister = self.service._slo_persister
        if persister is not None:
            await persister.flush()
            if persister.store is not None:
                await asyncio.to_thread(restore, engine, persister.store, engine.clock())
        kept = 0
        for name, state in engine.slos.items():
            before = old.slos.get(name)
            if before is None or fingerprint(before) != fingerprint(state):
                continue
            state.windows, state.late, state.dirty = before.windows, before.late, before.dirty
            state.alerts = before.alerts
            kept += 1
        engine.deltas = old.deltas
        await old.stop()
        if persister is not None:
            persister.engine = engine
        self.service._show_slo_engine(engine)
        engine.start()
        log.info("SLO engine: %d SLO(s), the counts of %d unchanged one(s) kept", len(slos), kept)
