"""The status pages, server-rendered HTML on the admin port (read-only, nothing loaded from elsewhere).

- ``/status``: every firing alert, the SLOs with the least budget left (objective, SLI, burn rate per
  window against its thresholds, budget left, alert states; 100 unless asked, narrowed by a form:
  collector/status/slo_query.py), and pipeline health;
- ``/status/slos/{name}``: one SLO with a burn-rate chart per window and its budget burn-down;
- ``/status/logs``: the local store's newest logs, searchable by service, namespace, level and text;
- ``/status/traces``: recent traces; ``/status/traces/{trace_id}``: a span waterfall and its logs.

A bad search parameter is answered 400 with the form and the problem; nothing here can change state.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from collector.status import history
from collector.status.api import NO_LOCAL_EXPORTER
from collector.status.charts import Threshold, line_chart
from collector.status.html import (
    CONTENT_SECURITY_POLICY,
    cell,
    esc,
    link,
    number,
    page,
    percent,
    table,
)
from collector.status.pipeline import snapshot
from collector.status.pipeline_html import pipeline_section
from collector.status.slo_html import (
    MAX_STATUS_ROWS,
    STATUS_ROWS,
    alert_cells,
    budget_css,
    firing_list,
    objective,
    shown_note,
    slo_form,
    slo_table,
    window_factors,
)
from collector.status.slo_query import SLO_PARAMS, SloQuery, select, slo_query
from collector.status.sources import StatusSources
from collector.status.store import (
    LOG_PARAMS,
    TRACE_PARAMS,
    LocalStore,
    ParamError,
    StoreUnavailable,
    log_query,
    parse_trace_id,
    trace_query,
)
from collector.status.store_html import log_form, log_table, trace_body, trace_form, trace_table


def html_response(body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )


class StatusPages:
    def __init__(self, sources: StatusSources) -> None:
        self.sources = sources

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/status", self.status)
        app.router.add_get("/status/", self.status)
        app.router.add_get("/status/slos/{name}", self.slo)
        app.router.add_get("/status/logs", self.logs)
        app.router.add_get("/status/traces", self.traces)
        app.router.add_get("/status/traces/{trace_id}", self.trace)

    async def status(self, request: web.Request) -> web.Response:
        params = {k: v for k, v in request.query.items() if k in SLO_PARAMS and v != ""}
        try:
            q = slo_query(params, sort="budget", limit=STATUS_ROWS, max_limit=MAX_STATUS_ROWS)
        except ParamError as exc:
            body = f'<h1>Service level objectives</h1>{slo_form(params)}<p class="notice over">{esc(exc)}</p>'
            return html_response(page("Status", body, active="/status"), 400)
        engine = self.sources.slo_status()
        slos: list[dict[str, Any]] = []
        firing: list[dict[str, Any]] = []
        total = matched = firing_matched = 0
        if engine is not None:
            states, now = engine.states, engine.clock()
            total = len(states)
            # Every firing SLO is listed on top, whatever the table shows: a filter narrows the
            # table, never hides a page.
            firing_states, firing_matched = await select(
                states, SloQuery(firing=True, sort="budget", limit=MAX_STATUS_ROWS), now
            )
            selected, matched = await select(states, q, now)
            firing = [s async for part in engine.status_chunks(firing_states) for s in part]
            slos = [s async for part in engine.status_chunks(selected) for s in part]
        health = snapshot(self.sources.sampler, self.sources.service())
        body = (
            "<h1>Service level objectives</h1>"
            + firing_list(firing, firing_matched - len(firing))
            + (slo_form(params) if total > 0 else "")
            + shown_note(len(slos), matched, total, q.narrowed(), q.sort == "budget")
            + slo_table(slos, narrowed=q.narrowed())
            + '<p class="muted">Burn rates in red are above an alert condition\'s factor '
            "(hover for the factors); "
            "an alert fires when both windows of a condition are above it.</p>" + pipeline_section(health)
        )
        return html_response(page("Status", body, active="/status"))

    async def slo(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        engine = self.sources.slo_status()
        if engine is None or name not in engine.slos:
            body = f"<h1>No SLO named {esc(name)}</h1><p>{link('/status', 'All SLOs')}</p>"
            return html_response(page("Unknown SLO", body), 404)
        slo = engine.status(name)[0]
        state = self.sources.slo_state(name)
        factors = window_factors(slo)
        charts = []
        for window, applies in factors.items():
            series = history.burn_rate_series(state, window, time.time()) if state is not None else None
            thresholds = [Threshold(f, f"{sev} {f:.4g}x", sev) for sev, f in dict.fromkeys(applies)]
            charts.append(
                f"<figure><figcaption>burn rate over {esc(window)}</figcaption>"
                + line_chart(f"burn rate over {window}", series.points if series else [], thresholds)
                + "</figure>"
            )
        budget = history.budget_series(state, time.time()) if state is not None else None
        budget_chart = line_chart(
            f"error budget remaining over {slo['period']}",
            budget.points if budget else [],
            [Threshold(0.0, "budget spent", "zero")],
            percent=True,
            floor=None,
        )
        events = slo.get("events", {})
        remaining = float(slo["error_budget_remaining"])
        conditions = [
            f"<tr>{cell(c['severity'])}{cell(c['long_window'])}"
            f"{cell(number(slo['windows'][c['long_window']]['burn_rate']), 'num')}"
            f"{cell(c['short_window'])}{cell(number(slo['windows'][c['short_window']]['burn_rate']), 'num')}"
            f"{cell(format(c['factor'], '.4g'), 'num')}"
            f"{cell('holds' if c['holds'] else 'no', 'state-firing' if c['holds'] else '')}</tr>"
            for c in slo.get("conditions", [])
        ]
        body = (
            f"<h1>SLO {esc(name)}</h1>"
            f"<p>{esc(slo.get('description') or '')}</p>"
            + table(
                [
                    "service",
                    "SLI",
                    ("objective", "num"),
                    ("SLI (5m)", "num"),
                    ("budget left", "num"),
                    "page",
                    "ticket",
                ],
                [
                    f"<tr>{cell(slo['service'])}{cell(slo.get('kind', ''))}"
                    f"{cell(objective(slo), 'num')}"
                    f"{cell(percent(slo.get('sli'), 3), 'num')}"
                    f"{cell(percent(remaining, 1), budget_css(remaining))}"
                    f"{alert_cells(slo)}</tr>"
                ],
                css="slo",
            )
            + f"<p>Events: {esc(number(events.get('good'), 0))} good, "
            f"{esc(number(events.get('bad'), 0))} bad, "
            f"{esc(number(events.get('late'), 0))} too late to count.</p>"
            + (
                ""
                if slo.get("in_stream", True)
                else '<p class="notice">This SLO\'s SLI is PromQL: the generated Prometheus rules '
                "evaluate it, not burnline's stream.</p>"
            )
            + "<h2>Alert conditions</h2>"
            + table(
                [
                    "severity",
                    "long window",
                    ("burn", "num"),
                    "short window",
                    ("burn", "num"),
                    ("factor", "num"),
                    "condition",
                ],
                conditions,
                css="conditions",
            )
            + f"<h2>Error budget burn-down over {esc(slo['period'])}</h2>"
            + f'<figure class="budget">{budget_chart}</figure>'
            + "<h2>Burn rate per window</h2>"
            + f'<div class="charts">{"".join(charts)}</div>'
        )
        return html_response(page(f"SLO {name}", body, active="/status"))

    def _no_store(self, title: str, active: str) -> web.Response:
        body = f"<h1>{esc(title)}</h1><p class=notice>{esc(NO_LOCAL_EXPORTER)}.</p>"
        return html_response(page(title, body, active=active))

    def _store(self) -> LocalStore | None:
        return self.sources.local_store()

    async def logs(self, request: web.Request) -> web.Response:
        params = {k: v for k, v in request.query.items() if k in LOG_PARAMS and v != ""}
        store = self._store()
        if store is None:
            return self._no_store("Logs", "/status/logs")
        try:
            q = log_query(params, time.time_ns())
        except ParamError as exc:
            body = "<h1>Logs</h1>" + log_form(params) + f'<p class="notice over">{esc(exc)}</p>'
            return html_response(page("Logs", body, active="/status/logs"), 400)
        try:
            logs = await store.logs(q)
            result = log_table(logs)
        except StoreUnavailable as exc:
            result = f'<p class="notice">{esc(exc)}</p>'
        body = "<h1>Logs</h1>" + log_form(params) + result
        return html_response(page("Logs", body, active="/status/logs"))

    async def traces(self, request: web.Request) -> web.Response:
        params = {k: v for k, v in request.query.items() if k in TRACE_PARAMS and v != ""}
        store = self._store()
        if store is None:
            return self._no_store("Traces", "/status/traces")
        try:
            q = trace_query(params, time.time_ns())
        except ParamError as exc:
            body = "<h1>Traces</h1>" + trace_form(params) + f'<p class="notice over">{esc(exc)}</p>'
            return html_response(page("Traces", body, active="/status/traces"), 400)
        try:
            result = trace_table(await store.traces(q))
        except StoreUnavailable as exc:
            result = f'<p class="notice">{esc(exc)}</p>'
        body = "<h1>Traces</h1>" + trace_form(params) + result
        return html_response(page("Traces", body, active="/status/traces"))

    async def trace(self, request: web.Request) -> web.Response:
        store = self._store()
        if store is None:
            return self._no_store("Trace", "/status/traces")
        try:
            trace_id = parse_trace_id(request.match_info["trace_id"])
        except ParamError as exc:
            return html_response(page("Trace", f'<h1>Trace</h1><p class="notice over">{esc(exc)}</p>'), 400)
        try:
            found = await store.trace(trace_id)
        except StoreUnavailable as exc:
            return html_response(page("Trace", f'<h1>Trace</h1><p class="notice">{esc(exc)}</p>'), 503)
        if found is None:
            body = (
                f"<h1>Trace {esc(trace_id)}</h1>"
                "<p class=notice>The store has no span or log record of this trace.</p>"
            )
            return html_response(page("Trace", body, active="/status/traces"), 404)
        return html_response(page(f"Trace {trace_id}", trace_body(found), active="/status/traces"))
