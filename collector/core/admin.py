"""The admin HTTP server: liveness, readiness, burnline's own metrics, the status pages and their API.

- ``/``: an index of these endpoints (a browser asking for HTML is sent to ``/status``);
- ``/healthz``, ``/readyz``: liveness and readiness (503 naming what is not ready);
- ``/metrics``: burnline's own metrics (Prometheus text), SLO burn rates included;
- ``/status`` and below: the status pages (collector/status/pages.py). Alerts sent to Alertmanager
  link to their SLO's page as their ``generatorURL``;
- ``/api/v1/...``: the JSON API behind them, described at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from collector.config.types import split_endpoint
from collector.core.telemetry import Telemetry
from collector.httpserver.server import start_server
from collector.httpserver.streamed import streamed
from collector.status import StatusSources, add_routes
from collector.status.pipeline import PipelineSampler, ServiceView
from collector.status.sources import SloStatus

ENDPOINTS = (
    ("/healthz", "liveness: 200 while the process runs"),
    ("/readyz", "readiness: 200 once every receiver and exporter is up, else 503 naming what is not"),
    ("/metrics", "burnline's own metrics in Prometheus text format, SLO burn rates included"),
    ("/status", "the status page (HTML): SLOs, alerts, pipeline health; logs and traces of the local store"),
    ("/api/v1/slos", "every SLO: objective, SLI, burn rate per window, error budget, alert states (JSON)"),
    ("/api/v1/slos/{name}", "one SLO, as above"),
    ("/api/v1/pipeline", "receivers, exporters, queues, dead letters and memory (JSON)"),
    ("/api/v1/logs", "recent logs of the local store (JSON; ?service=&namespace=&level=&q=&since=)"),
    ("/api/v1/traces", "recent traces of the local store (JSON); /api/v1/traces/{trace_id}: one trace"),
    ("/api/v1/openapi.json", "the OpenAPI 3.1 description of the JSON API"),
)

__all__ = ["ENDPOINTS", "AdminServer", "SloStatus"]


class AdminServer:
    def __init__(
        self,
        endpoint: str,
        telemetry: Telemetry,
        readiness: Callable[[], list[str]],
        slos: SloStatus | None = None,
        service: ServiceView | None = None,
    ) -> None:
        """``readiness`` returns the names of what is not ready (empty when ready). ``slos`` (the SLO
        engine) and ``service`` (its receivers, exporters and pipelines, for the status pages) may
        also be set later, before or after ``start``: the pages read them at each request."""
        self.host, self.port = split_endpoint(endpoint)
        self._telemetry = telemetry
        self._readiness = readiness
        self.slos = slos
        self.service = service
        self.sampler = PipelineSampler(telemetry)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("0.0.0.0", "::") else "127.0.0.1"
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        add_routes(app, StatusSources(self.sampler, lambda: self.slos, lambda: self.service))
        self._runner, self.port = await start_server(app, self.host, self.port)
        self.sampler.start()

    async def stop(self) -> None:
        await self.sampler.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _index(self, request: web.Request) -> web.StreamResponse:
        if "text/html" in request.headers.get("Accept", ""):
            raise web.HTTPFound("/status")
        width = max(len(path) for path, _ in ENDPOINTS)
        lines = ["burnline admin endpoints:", ""] + [f"  {p:<{width}}  {what}" for p, what in ENDPOINTS]
        return web.Response(text="\n".join(lines) + "\n")

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        waiting = self._readiness()
        if waiting:
            return web.Response(status=503, text="not ready: " + ", ".join(waiting) + "\n")
        return web.Response(text="ready\n")

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        # Written as it is made: with 10,000 SLOs the text is 9MB, which is never held whole.
        return await streamed(request, self._telemetry.exposition_parts(), CONTENT_TYPE_LATEST)
