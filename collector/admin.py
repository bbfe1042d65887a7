"""The admin HTTP server: liveness, readiness, burnline's own metrics and the SLO status API.

- ``/``: an index of these endpoints;
- ``/healthz``, ``/readyz``: liveness and readiness (503 naming what is not ready);
- ``/metrics``: burnline's own metrics (Prometheus text), SLO burn rates included;
- ``/api/v1/slos`` and ``/api/v1/slos/{name}``: every SLO's objective, SLI, burn rates per window,
  error budget and alert states as JSON (what ``burnline slo status`` shows). Alerts sent to
  Alertmanager link here as their ``generatorURL``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from collector.config.types import split_endpoint
from collector.http_server import start_server
from collector.telemetry import Telemetry

ENDPOINTS = (
    ("/healthz", "liveness: 200 while the process runs"),
    ("/readyz", "readiness: 200 once every receiver and exporter is up, else 503 naming what is not"),
    ("/metrics", "burnline's own metrics in Prometheus text format, SLO burn rates included"),
    ("/api/v1/slos", "every SLO: objective, SLI, burn rate per window, error budget, alert states (JSON)"),
    ("/api/v1/slos/{name}", "one SLO, as above"),
)


class SloStatus(Protocol):
    def status(self, name: str | None = None) -> list[dict[str, Any]]: ...

    async def status_async(self) -> list[dict[str, Any]]: ...

    @property
    def slos(self) -> dict[str, Any]: ...


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE),
        status=status,
        content_type="application/json",
    )


class AdminServer:
    def __init__(
        self,
        endpoint: str,
        telemetry: Telemetry,
        readiness: Callable[[], list[str]],
        slos: SloStatus | None = None,
    ) -> None:
        """``readiness`` returns the names of what is not ready (empty when ready)."""
        self.host, self.port = split_endpoint(endpoint)
        self._telemetry = telemetry
        self._readiness = readiness
        self.slos = slos
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
        app.router.add_get("/api/v1/slos", self._slos)
        app.router.add_get("/api/v1/slos/{name}", self._slo)
        self._runner, self.port = await start_server(app, self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _index(self, _: web.Request) -> web.Response:
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

    async def _metrics(self, _: web.Request) -> web.Response:
        body = await self._telemetry.full_exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _slos(self, _: web.Request) -> web.Response:
        return _json({"slos": await self.slos.status_async() if self.slos is not None else []})

    async def _slo(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if self.slos is None or name not in self.slos.slos:
            return _json({"error": f"no SLO named {name!r}"}, status=404)
        return _json(self.slos.status(name)[0])
