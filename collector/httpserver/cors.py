"""Cross-origin requests from browsers (OpenTelemetry JS web instrumentation): preflight and headers."""

from __future__ import annotations

import fnmatch
from typing import Final

from aiohttp import web
from pydantic import Field

from collector.config.types import Duration
from collector.core.component import ComponentConfig

# Headers a browser may send cross-origin without them being listed in cors.allowed_headers.
_CORS_DEFAULT_HEADERS: Final = frozenset({"accept", "content-type", "content-encoding", "x-requested-with"})


class CORSConfig(ComponentConfig):
    """Cross-origin requests from browsers (OpenTelemetry JS web instrumentation)."""

    # Exact origins (https://app.example.com), wildcard patterns (https://*.example.com) or "*".
    allowed_origins: list[str] = Field(min_length=1)
    # Request headers allowed beyond Accept, Content-Type, Content-Encoding and X-Requested-With
    # (add Authorization when a bearer token is configured); "*" allows any.
    allowed_headers: list[str] = []
    # How long browsers may cache a preflight answer; None leaves it to the browser.
    max_age: Duration | None = None


class CORS:
    """Answers preflights and adds Access-Control-Allow-Origin to the answers of allowed origins.
    Only POST is ever allowed cross-origin."""

    def __init__(self, config: CORSConfig) -> None:
        self.config = config

    def install(self, app: web.Application) -> None:
        """Every answer of ``app`` gets the CORS headers its request's Origin allows."""
        app.on_response_prepare.append(self._cors_headers)

    def allowed_origin(self, origin: str) -> str | None:
        """The Access-Control-Allow-Origin value for a request's Origin, None if not allowed."""
        if not origin:
            return None
        for pattern in self.config.allowed_origins:
            if pattern == "*":
                return "*"
            if pattern == origin or ("*" in pattern and fnmatch.fnmatchcase(origin, pattern)):
                return origin
        return None

    def preflight(self, request: web.Request) -> web.Response:
        cors = self.config
        origin = self.allowed_origin(request.headers.get("Origin", ""))
        method = request.headers.get("Access-Control-Request-Method", "")
        if origin is None or method.upper() != "POST":
            # No CORS headers: the browser does not send the request.
            return web.Response(status=204)
        allowed = {h.lower() for h in cors.allowed_headers} | _CORS_DEFAULT_HEADERS
        requested = [h.strip() for h in request.headers.get("Access-Control-Request-Headers", "").split(",")]
        granted = [h for h in requested if h and ("*" in allowed or h.lower() in allowed)]
        headers = {"Access-Control-Allow-Methods": "POST"}
        if granted:
            headers["Access-Control-Allow-Headers"] = ", ".join(granted)
        if cors.max_age is not None:
            headers["Access-Control-Max-Age"] = str(int(cors.max_age))
        return web.Response(status=204, headers=headers)

    async def _cors_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = self.allowed_origin(request.headers.get("Origin", ""))
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            if origin != "*":
                response.headers.add("Vary", "Origin")
