"""The log and trace pages' pieces: search forms, the log table, the trace list, one trace's waterfall."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from collector.core.model import Severity
from collector.query.format import format_duration, iso_time
from collector.status.charts import Bar, waterfall
from collector.status.html import (
    cell,
    esc,
    link,
    table,
)

# The severity ranges by name, but TRACE (the lowest: every record); "" is any level.
LEVEL_CHOICES = ("", *(level.name.lower() for level in Severity if level > Severity.TRACE))


def text_input(name: str, label: str, params: Mapping[str, str], placeholder: str = "") -> str:
    value = params.get(name, "")
    return (
        f'<label>{esc(label)}<input name="{esc(name)}" value="{esc(value)}" placeholder="{esc(placeholder)}">'
        "</label>"
    )


def choice_input(name: str, label: str, choices: tuple[str, ...], params: Mapping[str, str]) -> str:
    current = params.get(name, "")
    options = "".join(
        f'<option value="{esc(c)}"{" selected" if c == current else ""}>{esc(c or "any")}</option>'
        for c in choices
    )
    return f'<label>{esc(label)}<select name="{esc(name)}">{options}</select></label>'


def log_form(params: Mapping[str, str]) -> str:
    return (
        '<form class="search" method="get" action="/status/logs">'
        + text_input("service", "service", params)
        + text_input("namespace", "namespace", params)
        + choice_input("level", "level ≥", LEVEL_CHOICES, params)
        + text_input("q", "text", params, "body contains")
        + text_input("since", "since", params, "1h")
        + text_input("limit", "limit", params, "100")
        + '<button type="submit">Search</button></form>'
    )


def trace_form(params: Mapping[str, str]) -> str:
    return (
        '<form class="search" method="get" action="/status/traces">'
        + text_input("service", "service", params)
        + text_input("namespace", "namespace", params)
        + choice_input("errors", "errors", ("", "true"), params)
        + text_input("min_duration", "min duration", params, "250ms")
        + text_input("since", "since", params, "1h")
        + text_input("limit", "limit", params, "20")
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


def trace_body(found: dict[str, Any]) -> str:
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
