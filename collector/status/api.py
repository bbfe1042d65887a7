"""The admin JSON API: SLOs, pipeline health, the local store's logs and traces, and its OpenAPI
description (collector/status/openapi.py).

Errors are JSON ``{"error": ..., "parameter": ...}``: 400 for a bad query parameter (named), 404 for
an unknown SLO or trace or when there is no local exporter, 503 when the store cannot be read now.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

import orjson
from aiohttp import web

from collector.httpserver.streamed import streamed
from collector.slo.engine import SloState
from collector.status.openapi import document
from collector.status.pipeline import snapshot
from collector.status.slo_query import MAX_SLO_LIMIT, select, slo_query
from collector.status.sources import SloStatus, StatusSources
from collector.status.store import (
    LocalStore,
    ParamError,
    StoreUnavailable,
    log_query,
    parse_trace_id,
    trace_query,
)

NO_LOCAL_EXPORTER = (
    "this burnline has no local exporter, so no logs or traces are stored here "
    "(add `local` to a pipeline's exporters)"
)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE),
        status=status,
        content_type="application/json",
    )


def error(message: str, status: int, parameter: str | None = None) -> web.Response:
    body: dict[str, str] = {"error": message}
    if parameter is not None:
        body["parameter"] = parameter
    return json_response(body, status)


_INDENT = b"    "  # an SLO's depth in the list document


async def _slo_list(
    engine: SloStatus | None, selected: list[SloState], total: int, matched: int
) -> AsyncGenerator[bytes, None]:
    """The document json_response would write, in parts of a hundred SLOs: 10,000 SLOs are 24MB of
    JSON, which is neither held whole nor encoded in one go while every receiver waits."""
    yield b'{\n  "total": %d,\n  "matched": %d,\n  "slos": [' % (total, matched)
    first = True
    if engine is not None and selected:
        async for part in engine.status_chunks(selected):
            items = b",\n".join(
                _INDENT + orjson.dumps(s, option=orjson.OPT_INDENT_2).replace(b"\n", b"\n" + _INDENT)
                for s in part
            )
            yield (b"\n" if first else b",\n") + items
            first = False
    yield b"]\n}\n" if first else b"\n  ]\n}\n"


class StatusApi:
    def __init__(self, sources: StatusSources) -> None:
        self.sources = sources
        self._openapi = orjson.dumps(document(), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/openapi.json", self.openapi)
        app.router.add_get("/api/v1/slos", self.slos)
        app.router.add_get("/api/v1/slos/{name}", self.slo)
        app.router.add_get("/api/v1/pipeline", self.pipeline)
        app.router.add_get("/api/v1/logs", self.logs)
        app.router.add_get("/api/v1/traces", self.traces)
        app.router.add_get("/api/v1/traces/{trace_id}", self.trace)

    async def openapi(self, _: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")

    async def slos(self, request: web.Request) -> web.StreamResponse:
        try:
            # Config order and every SLO unless asked, as `burnline slo status` prints them.
            q = slo_query(request.query, sort="config", limit=None, max_limit=MAX_SLO_LIMIT)
        except ParamError as exc:
            return error(str(exc), 400, exc.name)
        engine = self.sources.slo_status()
        states = engine.states if engine is not None else []
        selected, matched = await select(states, q, engine.clock() if engine is not None else 0.0)
        return await streamed(request, _slo_list(engine, selected, len(states), matched), "application/json")

    async def slo(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        engine = self.sources.slo_status()
        if engine is None or name not in engine.slos:
            return error(f"no SLO named {name!r}", 404)
        return json_response(engine.status(name)[0])

    async def pipeline(self, _: web.Request) -> web.Response:
        return json_response(snapshot(self.sources.sampler, self.sources.service()))

    def _store(self) -> LocalStore | web.Response:
        store = self.sources.local_store()
        return error(NO_LOCAL_EXPORTER, 404) if store is None else store

    async def logs(self, request: web.Request) -> web.Response:
        try:
            q = log_query(request.query, time.time_ns())
        except ParamError as exc:
            return error(str(exc), 400, exc.name)
        store = self._store()
        if isinstance(store, web.Response):
            return store
        try:
            return json_response({"logs": await store.logs(q)})
        except StoreUnavailable as exc:
            return error(str(exc), 503)

    async def traces(self, request: web.Request) -> web.Response:
        try:
            q = trace_query(request.query, time.time_ns())
        except ParamError as exc:
            return error(str(exc), 400, exc.name)
        store = self._store()
        if isinstance(store, web.Response):
            return store
        try:
            return json_response({"traces": await store.traces(q)})
        except StoreUnavailable as exc:
            return error(str(exc), 503)

    async def trace(self, request: web.Request) -> web.Response:
        try:
            trace_id = parse_trace_id(request.match_info["trace_id"])
        except ParamError as exc:
            return error(str(exc), 400, exc.name)
        store = self._store()
        if isinstance(store, web.Response):
            return store
        try:
            found = await store.trace(trace_id)
        except StoreUnavailable as exc:
            return error(str(exc), 503)
        if found is None:
            return error(f"the store has no span or log record of trace {trace_id}", 404)
        return json_response(found)
