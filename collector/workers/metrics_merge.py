"""The supervisor's /metrics: its own metrics and every worker's, as one exposition.

Each worker's samples get a ``worker`` label (its index); the supervisor's own have none. Summing
in the supervisor instead would make a counter go down whenever a worker restarts, which
``rate()`` reads as a reset of the whole; with the label each worker's counters stay monotonic and
``sum without (worker)`` (what the dashboards' ``sum by`` already do) gives the whole. Families
are merged by name, so that each appears once, as the text format requires.

The SLO families come from the supervisor's engine only: its counts are the merged ones.

The status page's pipeline section reads a registry (collector/status/pipeline.py): the supervisor
gives it the workers' families with the ``worker`` label summed away (``burnline_component_up``
takes the least: a component is up when it is up in every worker), refreshed in the background.
The event loop's lag is the exception: it is a property of each process, and one saturated worker
must not be averaged away by idle ones, so its samples keep their ``worker`` label and the
supervisor's own (its loop runs the SLO engine) are added unlabelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Iterable

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from collector.core.telemetry import LOOP_LAG, Telemetry

log = logging.getLogger("burnline.workers.metrics")

WORKER_LABEL = "worker"
SCRAPE_TIMEOUT = 5.0


class _Families:
    """A registry collector over already-parsed families."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


# Gauges read as "all workers": the least over workers, not the sum.
_ALL_OF = {"burnline_component_up"}
# Families read per process: their samples keep the worker label instead of being summed.
_PER_PROCESS = {LOOP_LAG}


def summed(workers: dict[int, bytes]) -> list[Metric]:
    """The families of the workers' expositions (by worker index), each sample summed over the
    workers, except those of ``_PER_PROCESS``, which are labelled with their worker instead."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for index, text in workers.items():
        for family in text_string_to_metric_families(text.decode("utf-8", "replace")):
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            cells = values[family.name]
            lowest = family.name in _ALL_OF
            per_process = family.name in _PER_PROCESS
            for sample in family.samples:
                labels = {**sample.labels, WORKER_LABEL: str(index)} if per_process else sample.labels
                key = (sample.name, tuple(sorted(labels.items())))
                old = cells.get(key)
                cells[key] = (
                    sample.value if old is None else min(old, sample.value) if lowest else old + sample.value
                )
    for name, family in families.items():
        family.samples.extend(Sample(n, dict(labels), v) for (n, labels), v in values[name].items())
    return list(families.values())


def merge(own: bytes, workers: dict[int, bytes]) -> bytes:
    """One text exposition of ``own`` (unlabelled) and each worker's (labelled ``worker``)."""
    families: dict[str, Metric] = {}
    sources: list[tuple[str | None, bytes]] = [(None, own), *((str(i), text) for i, text in workers.items())]
    for worker, text in sources:
        for family in text_string_to_metric_families(text.decode("utf-8", "replace")):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type)
            if worker is None:
                merged.samples.extend(family.samples)
            else:
                merged.samples.extend(
                    s._replace(labels={**s.labels, WORKER_LABEL: worker}) for s in family.samples
                )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families.values()))
    return generate_latest(registry)


class MergedTelemetry(Telemetry):
    """The supervisor's telemetry: /metrics shows its own metrics, its SLO engine's, and the workers'.

    ``endpoints`` returns each running worker's admin URL by index (read at every scrape)."""

    def __init__(self, endpoints: Callable[[], dict[int, str]]) -> None:
        super().__init__()
        self._endpoints = endpoints
        self._session: aiohttp.ClientSession | None = None
        self._workers_summed: list[Metric] = []
        self._refresher: asyncio.Task[None] | None = None

    def status_registry(self) -> _Families:
        """The workers' pipeline metrics, summed over workers, as of the last refresh, and the
        event loop lag of each process (see the module docstring)."""
        # Only the lag histogram of its own: collecting the whole registry would read /proc too.
        return _Families([*self._workers_summed, *self.loop_lag.collect()])

    def start_refreshing(self, interval: float) -> None:
        self._refresher = asyncio.create_task(self._refresh(interval), name="worker-metrics")

    async def _refresh(self, interval: float) -> None:
        while True:
            await self._worker_texts()
            await asyncio.sleep(interval)

    async def _scrape(self, session: aiohttp.ClientSession, url: str) -> bytes | None:
        try:
            async with session.get(f"{url}/metrics") as response:
                if response.status == 200:
                    return await response.read()
                log.warning("worker metrics at %s answered %d", url, response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("cannot read a worker's metrics at %s: %s", url, exc or type(exc).__name__)
        return None

    async def _worker_texts(self) -> dict[int, bytes]:
        """Every running worker's exposition (those that answered), and the summed view refreshed."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT))
        endpoints = self._endpoints()
        texts = await asyncio.gather(*(self._scrape(self._session, url) for url in endpoints.values()))
        workers = {i: text for i, text in zip(endpoints, texts, strict=True) if text is not None}
        self.read_workers(workers)
        return workers

    def read_workers(self, workers: dict[int, bytes]) -> None:
        """Makes the workers' expositions (by index) what ``status_registry`` reads."""
        self._workers_summed = summed(workers)

    async def exposition_parts(self) -> AsyncGenerator[bytes, None]:
        workers = await self._worker_texts()
        # The registry's families merge with the workers' (the same names); the SLO engine's are
        # the supervisor's alone and follow as they are.
        yield merge(self.exposition(), workers)
        for write in list(self.extra_expositions):
            async for part in write():
                yield part

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
            self._refresher = None
        if self._session is not None:
            await self._session.close()
            self._session = None
