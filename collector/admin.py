"""The admin HTTP server: liveness, readiness and burnline's own metrics."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from collector.config.types import split_endpoint
from collector.http_server import start_server
from collector.telemetry import Telemetry


class AdminServer:
    def __init__(self, endpoint: str, telemetry: Telemetry, readiness: Callable[[], list[str]]) -> None:
        """``readiness`` returns the names of what is not ready (empty when ready)."""
        self.host, self.port = split_endpoint(endpoint)
        self._telemetry = telemetry
        self._readiness = readiness
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner, self.port = await start_server(app, self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        waiting = self._readiness()
        if waiting:
            return web.Response(status=503, text="not ready: " + ", ".join(waiting) + "\n")
        return web.Response(text="ready\n")

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=self._telemetry.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})
