"""The status pages, server-rendered HTML on the admin port (read-only, nothing loaded from elsewhere).

- ``/status``: firing alerts, every SLO by budget remaining (objective, SLI, burn rate per window
  against its thresholds, budget left, alert states), and pipeline health;
- ``/status/slos/{name}``: one SLO with a burn-rate chart per window and its budget burn-down;
- ``/status/logs``: the local store's newest logs, searchable by service, namespace, level and text;
- ``/status/traces``: recent traces; ``/status/traces/{trace_id}``: a span waterfall and its logs.

A bad search parameter is answered 400 with the form and the problem; nothing here can change state.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from collector.core.model import Severity
from collector.query.format import format_duration, iso_time
from collector.slo.policy import window_seconds
from collector.status import history
from collector.status.api import NO_LOCAL_EXPORTER, by_budget
from collector.status.charts import Bar, Threshold, line_chart, waterfall
from collector.status.html import (
    CONTENT_SECURITY_POLICY,
    byte_size,
    cell,
    duration,
    esc,
    link,
    number,
    page,
    percent,
    table,
)
from collector.status.pipeline import snapshot
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

# The severity ranges by name, but TRACE (the lowest: every record); "" is any level.
LEVEL_CHOICES = ("", *(level.name.lower() for level in Severity if level > Severity.TRACE))


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


# -- SLOs -------------------------------------------------------------------------------------------


def _window_factors(slo: Mapping[str, Any]) -> dict[str, list[tuple[str, float]]]:
    """Per window, the (severity, factor) of every alert condition that reads it."""
    out: dict[str, list[tuple[str, float]]] = {}
    for cond in slo.get("conditions", []):
        for key in ("long_window", "short_window"):
            out.setdefault(cond[key], []).append((cond["severity"], float(cond["factor"])))
    return dict(sorted(out.items(), key=lambda item: window_seconds(item[0])))


def _objective(slo: Mapping[str, Any]) -> str:
    return f"{float(slo['objective']):g}% / {slo['period']}"


def _up_cell(up: bool) -> str:
    return cell("up", "ok") if up else cell("down", "over")


def _budget_css(remaining: float) -> str:
    return "num budget-bad" if remaining <= 0 else ("num budget-low" if remaining < 0.25 else "num")


def _alert_cells(slo: Mapping[str, Any]) -> str:
    parts = []
    for severity in ("page", "ticket"):
        info = slo.get("alerts", {}).get(severity, {})
        state = str(info.get("state", "inactive"))
        text = state if info.get("enabled", True) else "disabled"
        parts.append(f'<td class="state-{esc(state)}" data-severity="{esc(severity)}">{esc(text)}</td>')
    return "".join(parts)


def slo_table(slos: list[dict[str, Any]]) -> str:
    if not slos:
        return '<p class="empty">No SLOs are configured (<code>slos:</code> or <code>slo_files:</code>).</p>'
    windows = sorted({w for slo in slos for w in _window_factors(slo)}, key=window_seconds)
    headers: list[str | tuple[str, str]] = [
        "SLO",
        "service",
        "SLI",
        ("objective", "num"),
        ("SLI (5m)", "num"),
        ("budget left", "num"),
        *[(f"burn {w}", "num") for w in windows],
        "page",
        "ticket",
    ]
    rows = []
    for slo in slos:
        factors = _window_factors(slo)
        burn_cells = []
        for window in windows:
            rate = slo.get("windows", {}).get(window, {}).get("burn_rate")
            applies = factors.get(window, [])
            over = [f"{sev} > {factor:.4g}" for sev, factor in applies if rate is not None and rate > factor]
            title = "; ".join(f"{sev} above {factor:.4g}" for sev, factor in applies)
            css = "num over" if over else "num"
            burn_cells.append(f'<td class="{css}" title="{esc(title)}">{esc(number(rate))}</td>')
        remaining = float(slo["error_budget_remaining"])
        rows.append(
            f'<tr data-slo="{esc(slo["name"])}">'
            f"<td>{link('/status/slos/' + str(slo['name']), slo['name'])}</td>"
            f"{cell(slo['service'])}{cell(slo.get('kind', ''))}"
            f"{cell(_objective(slo), 'num')}"
            f"{cell(percent(slo.get('sli'), 3), 'num')}"
            f"{cell(percent(remaining, 1), _budget_css(remaining))}"
            f"{''.join(burn_cells)}{_alert_cells(slo)}</tr>"
        )
    return table(headers, rows, css="slos")


def firing_list(slos: list[dict[str, Any]]) -> str:
    firing = [
        (slo, severity, info)
        for slo in slos
        for severity, info in slo.get("alerts", {}).items()
        if info.get("state") == "firing"
    ]
    if not firing:
        return '<p class="ok" id="alerts">No SLO alert is firing.</p>'
    items = "".join(
        f'<li class="state-firing" data-slo="{esc(slo["name"])}" data-severity="{esc(severity)}">'
        f"FIRING {esc(severity)}: {link('/status/slos/' + str(slo['name']), slo['name'])} "
        f"({esc(slo['service'])}), since {esc(info.get('since') or '')}, budget left "
        f"{esc(percent(float(slo['error_budget_remaining']), 1))}</li>"
        for slo, severity, info in firing
    )
    return f'<ul id="alerts" class="alerts">{items}</ul>'


# -- pipeline ---------------------------------------------------------------------------------------


def _rate_text(row: Mapping[str, Any], key: str) -> str:
    total = row.get(key) or 0.0
    rate = row.get(f"{key}_per_second")
    return f"{number(total, 0)} ({number(rate, 1)}/s)" if rate is not None else number(total, 0)


def pipeline_section(health: dict[str, Any]) -> str:
    receiver_rows = []
    for r in health["receivers"]:
        signals = r["signals"] or {"-": {}}
        for signal, row in signals.items():
            receiver_rows.append(
                f"<tr>{cell(r['id'])}{cell(signal)}{_up_cell(r['up'])}"
                f"{cell(_rate_text(row, 'received'), 'num')}{cell(_rate_text(row, 'accepted'), 'num')}"
                f"{cell(_rate_text(row, 'refused'), 'num' + (' over' if row.get('refused') else ''))}"
                f"{cell(number(r['errors'], 0), 'num' + (' over' if r['errors'] else ''))}"
                f"{cell(r.get('connections', 0), 'num')}</tr>"
            )
    exporter_rows = []
    for e in health["exporters"]:
        q = e["queue"]
        signals = e["signals"] or {"-": {}}
        for signal, row in signals.items():
            depth = f"{q['records']:,} / {q['capacity_records']:,}"
            exporter_rows.append(
                f"<tr>{cell(e['id'])}{cell(signal)}{_up_cell(e['up'])}"
                f"{cell(_rate_text(row, 'exported'), 'num')}"
                f"{cell(_rate_text(row, 'retries'), 'num')}"
                f"{cell(_rate_text(row, 'dropped'), 'num' + (' over' if row.get('dropped') else ''))}"
                f"{cell(number(row.get('failed') or 0.0, 0), 'num' + (' over' if row.get('failed') else ''))}"
                f"{cell(depth, 'num')}{cell(byte_size(q['bytes']), 'num')}"
                f"{cell(duration(q['backlog_seconds']), 'num')}"
                f"{cell(duration(q['drain_seconds']), 'num')}</tr>"
            )
    mem = health["memory"]
    limits = " / ".join(
        f"{name} {byte_size(mem[key])}"
        for name, key in (("soft limit", "soft_limit_bytes"), ("hard limit", "hard_limit_bytes"))
        if mem.get(key)
    )
    memory = (
        f"<p>Memory: resident {esc(byte_size(mem['resident_bytes']))}"
        + (f", {esc(limits)}" if limits else "")
        + ('; <span class="over">refusing new data</span>' if mem.get("refusing") else "")
        + "</p>"
    )
    window = health.get("rate_window_seconds")
    note = (
        f'<p class="muted">Rates over the last {window:.0f} s.</p>'
        if window
        else '<p class="muted">Rates appear once the sampler has a second reading (seconds after start).</p>'
    )
    return (
        '<h2 id="pipeline">Pipeline health</h2>'
        + note
        + table(
            [
                "receiver",
                "signal",
                "state",
                ("received", "num"),
                ("accepted", "num"),
                ("refused", "num"),
                ("errors", "num"),
                ("connections", "num"),
            ],
            receiver_rows,
            css="receivers",
        )
        + table(
            [
                "exporter",
                "signal",
                "state",
                ("exported", "num"),
                ("retries", "num"),
                ("dropped", "num"),
                ("dead letters", "num"),
                ("queue records", "num"),
                ("queue bytes", "num"),
                ("backlog for", "num"),
                ("drain in", "num"),
            ],
            exporter_rows,
            css="exporters",
        )
        + memory
    )


# -- logs and traces --------------------------------------------------------------------------------


def _input(name: str, label: str, params: Mapping[str, str], placeholder: str = "") -> str:
    value = params.get(name, "")
    return (
        f'<label>{esc(label)}<input name="{esc(name)}" value="{esc(value)}" placeholder="{esc(placeholder)}">'
        "</label>"
    )


def _select(name: str, label: str, choices: tuple[str, ...], params: Mapping[str, str]) -> str:
    current = params.get(name, "")
    options = "".join(
        f'<option value="{esc(c)}"{" selected" if c == current else ""}>{esc(c or "any")}</option>'
        for c in choices
    )
    return f'<label>{esc(label)}<select name="{esc(name)}">{options}</select></label>'


def log_form(params: Mapping[str, str]) -> str:
    return (
        '<form class="search" method="get" action="/status/logs">'
        + _input("service", "service", params)
        + _input("namespace", "namespace", params)
        + _select("level", "level ≥", LEVEL_CHOICES, params)
        + _input("q", "text", params, "body contains")
        + _input("since", "since", params, "1h")
        + _input("limit", "limit", params, "100")
        + '<button type="submit">Search</button></form>'
    )


def trace_form(params: Mapping[str, str]) -> str:
    return (
        '<form class="search" method="get" action="/status/traces">'
        + _input("service", "service", params)
        + _input("namespace", "namespace", params)
        + _select("errors", "errors", ("", "true"), params)
        + _input("min_duration", "min duration", params, "250ms")
        + _input("since", "since", params, "1h")
        + _input("limit", "limit", params, "20")
        + '<button type="submit">Search</button></form>'
    )


def _body_text(body: Any) -> str:
    if isinstance(body, str):
        return body
    return orjson.dumps(body).decode()


def _where(resource: Mapping[str, Any]) -> str:
    return " ".join(
        str(resource[k]) for k in ("k8s.namespace.name", "k8s.pod.name") if isinstance(resource.get(k), str)
    )


def log_table(logs: list[dict[str, Any]]) -> str:
    if not logs:
        return '<p class="empty">No log record matches.</p>'
    rows = []
    for rec in logs:
        level = str(rec.get("level", ""))
        level_css = "error-level" if rec.get("severity_number", 0) >= Severity.ERROR else ""
        trace = rec.get("trace_id") or ""
        trace_cell = f"<td>{link('/status/traces/' + trace, trace[:16])}</td>" if trace else "<td></td>"
        rows.append(
            f'<tr class="log">{cell(rec.get("time", ""), "mono")}{cell(level, level_css)}'
            f"{cell(rec.get('service', ''))}{cell(_where(rec.get('resource') or {}))}"
            f'<td><pre class="body">{esc(_body_text(rec.get("body")))}</pre></td>{trace_cell}</tr>'
        )
    return table(["time (UTC)", "level", "service", "where", "message", "trace"], rows, css="logs")


def trace_table(traces: list[dict[str, Any]]) -> str:
    if not traces:
        return '<p class="empty">No trace matches.</p>'
    rows = []
    for t in traces:
        errors = int(t["error_count"])
        rows.append(
            f'<tr class="trace">{cell(iso_time(int(t["start_time_unix_nano"])), "mono")}'
            f"<td class=mono>{link('/status/traces/' + str(t['trace_id']), t['trace_id'])}</td>"
            f"{cell(t['root_service'])}{cell(t['root_name'])}"
            f"{cell(format_duration(int(t['duration_ns'])), 'num')}{cell(t['span_count'], 'num')}"
            f"{cell(errors or '', 'num over' if errors else 'num')}</tr>"
        )
    return table(
        [
            "start (UTC)",
            "trace",
            "root service",
            "root span",
            ("duration", "num"),
            ("spans", "num"),
            ("errors", "num"),
        ],
        rows,
        css="traces",
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

    async def status(self, _: web.Request) -> web.Response:
        engine = self.sources.slo_status()
        slos = by_budget(await engine.status_async()) if engine is not None else []
        health = snapshot(self.sources.sampler, self.sources.service())
        body = (
            "<h1>Service level objectives</h1>"
            + firing_list(slos)
            + slo_table(slos)
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
        factors = _window_factors(slo)
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
                    f"{cell(_objective(slo), 'num')}"
                    f"{cell(percent(slo.get('sli'), 3), 'num')}"
                    f"{cell(percent(remaining, 1), _budget_css(remaining))}"
                    f"{_alert_cells(slo)}</tr>"
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
        return html_response(page(f"Trace {trace_id}", _trace_body(found), active="/status/traces"))


def _trace_body(found: dict[str, Any]) -> str:
    spans = found["spans"]
    bars = [
        Bar(
            label=f"{s['service']}: {s['name']}",
            start_ns=int(s["start_time_unix_nano"]),
            end_ns=int(s["end_time_unix_nano"]),
            depth=int(s["depth"]),
            error=bool(s.get("error")),
            tooltip=f"{s['service']} {s['name']} "
            f"{format_duration(int(s.get('duration_ns', 0)))} {s.get('status', '')}",
            anchor=f"span-{s['span_id']}",
        )
        for s in spans
    ]
    start = min((b.start_ns for b in bars), default=0)
    end = max((b.end_ns for b in bars), default=0)
    rows = [
        f'<tr id="span-{esc(s["span_id"])}" class="span">'
        f"{cell(format_duration(int(s['start_time_unix_nano']) - start), 'num')}"
        f"{cell(format_duration(int(s.get('duration_ns', 0))), 'num')}"
        f"<td>{'&nbsp;' * 2 * min(int(s['depth']), 20)}{esc(s['name'])}</td>"
        f"{cell(s['service'])}{cell(s.get('kind', ''))}"
        f"{cell(s.get('status', ''), 'over' if s.get('error') else '')}{cell(s.get('status_message', ''))}"
        f"{cell(s['span_id'], 'mono')}</tr>"
        for s in spans
    ]
    errors = sum(1 for s in spans if s.get("error"))
    return (
        f'<h1>Trace <span class="mono">{esc(found["trace_id"])}</span></h1>'
        f"<p>{len(spans)} span(s), {errors} with an error, {esc(format_duration(max(end - start, 0)))}. "
        + (
            f"The trace has {esc(found['span_count'])} spans; the first {len(spans)} are shown. "
            if found.get("truncated")
            else ""
        )
        + f"{link('/api/v1/traces/' + str(found['trace_id']), 'as JSON')}</p>"
        + waterfall(bars, format_duration(max(end - start, 0)))
        + "<h2>Spans</h2>"
        + table(
            [
                ("offset", "num"),
                ("duration", "num"),
                "name",
                "service",
                "kind",
                "status",
                "message",
                "span id",
            ],
            rows,
            css="spans",
        )
        + "<h2>Logs of this trace</h2>"
        + log_table(found["logs"])
    )
