"""Kubernetes pod discovery: pods annotated for scraping, kept current with list + watch.

Which pods are targets, and how: collector/discovery/pod_targets.py; the list + watch of each
namespace: collector/discovery/pod_watch.py; the API client: collector/discovery/kubernetes_api.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from kubernetes_asyncio.client import ApiClient, CoreV1Api

from collector.core.tasks import cancel_and_wait
from collector.discovery import TargetSpec
from collector.discovery.kubernetes_api import DiscoveryError, api_client
from collector.discovery.kubernetes_config import PodDiscoveryConfig, PodLabels
from collector.discovery.pod_targets import pod_targets
from collector.discovery.pod_watch import PodWatch

# Importers (the prometheus_scrape receiver, tests) find these here, as before the split.
__all__ = [
    "DiscoveryError",
    "KubernetesPodDiscovery",
    "PodDiscoveryConfig",
    "PodLabels",
    "api_client",
    "pod_targets",
]


class KubernetesPodDiscovery:
    """Discovers annotated pods; ``updates()`` yields the whole target set after each change."""

    def __init__(
        self,
        config: PodDiscoveryConfig,
        log: logging.Logger,
        on_error: Callable[[str], None] | None = None,
        coalesce: float = 0.5,
    ) -> None:
        self.config = config
        self.log = log
        self._on_error = on_error
        # Changes this close together are reported as one (pods of a rollout come and go in bursts).
        self._coalesce = coalesce
        self._changed = asyncio.Event()
        namespaces: list[str | None] = list(config.namespaces) or [None]
        self._watches = [PodWatch(self, ns) for ns in namespaces]
        self._tasks: list[asyncio.Task[None]] = []
        self._client: ApiClient | None = None
        self.core: Any = None
        # How many lists and established watches so far (all namespaces): for tests and debugging.
        self.lists = 0
        self.watches = 0

    async def start(self) -> None:
        self._client = await api_client(self.config)
        self.core = CoreV1Api(self._client)
        for watch in self._watches:
            self._tasks.append(asyncio.create_task(watch.run(), name=f"k8s-pods-{watch.where}"))
        where = ", ".join(w.where for w in self._watches)
        self.log.info("discovering annotated pods in %s from %s", where, self._client.configuration.host)

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks, self.log)
        if self._client is not None:
            await self._client.close()
            self._client = None

    def report_error(self, reason: str) -> None:
        if self._on_error is not None:
            self._on_error(reason)

    def changed(self) -> None:
        self._changed.set()

    def targets(self) -> list[TargetSpec]:
        found: dict[TargetSpec, None] = {}
        for watch in self._watches:
            for targets in watch.pods.values():
                found.update(dict.fromkeys(targets))
        return list(found)

    async def updates(self) -> AsyncIterator[list[TargetSpec]]:
        while True:
            await self._changed.wait()
            if self._coalesce > 0:
                await asyncio.sleep(self._coalesce)
            self._changed.clear()
            yield self.targets()
