"""What the supervisor of several workers runs itself: the SLO engine over every worker's counts,
its Alertmanager client and persistence, and the admin endpoint (health, readiness of every
worker, /metrics of all of them, the status pages and API of the SLOs).

It is a :class:`Service` without receivers, processors, exporters or pipelines: those run in the
workers. A reload (SIGHUP) applies the SLO set, alerting and log level here; the supervisor passes
the signal on to the workers, which apply the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from collector.config import ConfigError, load_config
from collector.config.model import Config
from collector.core.reload import check_fixed_settings
from collector.core.service import Service
from collector.core.startup_errors import BUILT_IN_SOURCE, StartupError, check_data_dir, explain
from collector.slo.spec import load_slos
from collector.status.pipeline import SAMPLE_INTERVAL
from collector.workers.metrics_merge import MergedTelemetry

log = logging.getLogger("burnline.workers.control")


class ControlService(Service):
    def __init__(
        self, config: Config, endpoints: Callable[[], dict[int, str]], waiting: Callable[[], list[str]]
    ) -> None:
        """``endpoints``: the running workers' admin URLs by index; ``waiting``: what is not ready
        among the workers (empty when all are)."""
        self.merged = MergedTelemetry(endpoints)
        super().__init__(config, self.merged)
        self._waiting = waiting
        # No receivers or exporters of its own: the status page finds them in the workers' metrics.
        self.admin.service = None

    async def start(self) -> None:
        check_data_dir(self.data_dir, self.variables)
        try:
            self.loop_lag.start()  # its loop runs the SLO engine and merges every worker's metrics
            await self._start_slo_engine(load_slos(self.config))
            try:
                await self.admin.start()
            except (OSError, StartupError) as exc:
                raise explain("service.admin", self.config.service.admin, exc, self.variables) from exc
            if self.slo_engine is not None:
                self._start_slo_evaluation()
            self.merged.start_refreshing(SAMPLE_INTERVAL)
        except BaseException:
            await self._stop_slo_engine()
            await self.admin.stop()
            await self.merged.close()
            await self.loop_lag.stop()
            raise
        self._exporters_started = True

    def not_ready(self) -> list[str]:
        return self._waiting()

    async def reload(self, config: Config | None = None) -> bool:
        async with self._reload_lock:
            if self._stopping:
                return False
            source = self.config.source
            try:
                if config is None:
                    config = load_config(None if source == BUILT_IN_SOURCE else source)
                slos = load_slos(config)
                check_fixed_settings(self.config, config)
            except ConfigError as exc:
                log.error(
                    "reload failed, still running the previous config: %s: %s",
                    exc.source,
                    "; ".join(exc.problems),
                )
                self.telemetry.config_reload_successful.set(0)
                return False
            old, self.config = self.config, config
            self._variables = None
            if config.service.log_level != old.service.log_level:
                logging.getLogger().setLevel(config.service.log_level.upper())
            try:
                await self._reloader._refresh_slo_engine(old, slos)
            except StartupError as exc:
                log.error("reload of %s failed for the SLO engine: %s", config.source, exc)
                self.telemetry.config_reload_successful.set(0)
                return False
            self.telemetry.config_reload_successful.set(1)
            self.telemetry.config_reload_success_timestamp.set_to_current_time()
            return True

    async def stop(self, grace: float | None = None) -> int:
        lost = await super().stop(grace)
        await self.merged.close()
        return lost
