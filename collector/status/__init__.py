"""burnline's built-in status pages and their JSON API, served by the admin server.

- pages.py: server-rendered HTML (``/status`` ...) from slo_html.py, pipeline_html.py and
  store_html.py (logs and traces); html.py its frame, charts.py its inline SVG;
- api.py: the JSON API (``/api/v1/...``), openapi.py its OpenAPI 3.1 description;
- pipeline.py: pipeline health from the metrics registry; history.py: SLO charts from the engine's
  bucket rings; store.py: the local store's logs and traces and the query parameters' validation;
- sources.py: where each of them reads from.
"""

from __future__ import annotations

from aiohttp import web

from collector.status.api import StatusApi
from collector.status.pages import StatusPages
from collector.status.sources import StatusSources


def add_routes(app: web.Application, sources: StatusSources) -> None:
    """Registers the pages and the API on the admin server's application."""
    StatusPages(sources).routes(app)
    StatusApi(sources).routes(app)


__all__ = ["StatusSources", "add_routes"]
