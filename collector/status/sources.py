"""What the status pages and API read: the SLO engine, the service's components, the local store.

The admin server learns of the SLO engine and the service after it is built (the engine is created
during start), so each source is a function asked at request time, never a reference kept from
construction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from collector.slo.engine import SloEngine, SloState
from collector.status.pipeline import PipelineSampler, ServiceView
from collector.status.store import LocalStore
from exporters.local.exporter import LocalExporter


class SloStatus(Protocol):
    clock: Callable[[], float]

    def status(self, name: str | None = None) -> list[dict[str, Any]]: ...

    def status_chunks(
        self, states: list[SloState], chunk: int = ...
    ) -> AsyncIterator[list[dict[str, Any]]]: ...

    @property
    def slos(self) -> dict[str, Any]: ...

    @property
    def states(self) -> list[SloState]: ...


@dataclass(slots=True)
class StatusSources:
    sampler: PipelineSampler
    slo_status: Callable[[], SloStatus | None]
    service: Callable[[], ServiceView | None]

    def local_store(self) -> LocalStore | None:
        """The first local exporter's store, None when the service has no local exporter."""
        service = self.service()
        if service is None:
            return None
        for exporter in service.exporters.values():
            if isinstance(exporter, LocalExporter):
                return LocalStore(exporter.path)
        return None

    def slo_state(self, name: str) -> SloState | None:
        """The engine's own state of an SLO (its bucket rings draw the charts); None without one."""
        engine = self.slo_status()
        if isinstance(engine, SloEngine):
            return engine.slos.get(name)
        return None
