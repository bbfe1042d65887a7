"""The status pages' HTML frame: escaping, the page layout with its inline stylesheet, small helpers.

Every value that reaches a page goes through :func:`esc` (``html.escape`` with quotes), so a log
body or a span name is shown as text, never interpreted. The stylesheet is inline and the pages load
nothing else: no script, font, image or stylesheet from anywhere (they work air-gapped), and the
Content-Security-Policy the server sends forbids loading any.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from urllib.parse import urlencode

# default-src 'none': nothing external, no scripts at all; inline styles and same-page images only.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'"

NAV = (
    ("/status", "SLOs & pipeline"),
    ("/status/logs", "Logs"),
    ("/status/traces", "Traces"),
    ("/api/v1/openapi.json", "API"),
)

STYLE = """
:root { color-scheme: light dark; --fg:#1d2330; --muted:#667; --bg:#fff; --line:#d8dce3; --head:#f3f5f8;
  --ok:#1f7a3a; --warn:#a86b00; --bad:#c0262d; --series:#2f6fd6; }
@media (prefers-color-scheme: dark) { :root { --fg:#e3e6eb; --muted:#9aa; --bg:#15181e; --line:#333a46;
  --head:#1e232b; --series:#6aa0ff; } }
body { font: 14px/1.4 system-ui, sans-serif; color: var(--fg); background: var(--bg); margin: 0; }
header { display: flex; gap: 1.5em; align-items: baseline; padding: .6em 1.2em;
  border-bottom: 1px solid var(--line); }
header strong { font-size: 1.1em; }
header a { color: inherit; text-decoration: none; } header a:hover { text-decoration: underline; }
main { padding: 0 1.2em 2em; }
h1 { font-size: 1.3em; margin: .8em 0 .4em; } h2 { font-size: 1.1em; margin: 1.2em 0 .4em; }
table { border-collapse: collapse; width: 100%; margin: .3em 0 1em; }
th, td { text-align: left; padding: .25em .5em; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--head); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .mono { font-family: ui-monospace, monospace; font-size: .95em; }
.muted, .empty { color: var(--muted); }
.state-firing, .over, .error-level { color: var(--bad); font-weight: 600; }
.state-resolved { color: var(--warn); } .state-inactive, .ok { color: var(--ok); }
.budget-bad { color: var(--bad); font-weight: 600; } .budget-low { color: var(--warn); }
.notice { padding: .6em .8em; border: 1px solid var(--line); background: var(--head); }
form.search { display: flex; flex-wrap: wrap; gap: .5em; align-items: end; margin: .6em 0; }
form.search label { display: flex; flex-direction: column; font-size: .85em; color: var(--muted); }
input, select, button { font: inherit; padding: .15em .3em; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 1em; }
figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: .2em; }
figure.budget { max-width: 760px; }
svg.chart, svg.waterfall { width: 100%; height: auto; }
svg .frame { fill: none; stroke: var(--line); }
svg .series { fill: none; stroke: var(--series); stroke-width: 1.5; }
svg .threshold { stroke-dasharray: 4 3; stroke-width: 1; }
svg .threshold.page { stroke: var(--bad); } svg .threshold.ticket { stroke: var(--warn); }
svg .threshold.zero { stroke: var(--muted); }
svg text { fill: var(--fg); font-size: 11px; } svg text.axis { fill: var(--muted); }
svg text.page { fill: var(--bad); } svg text.ticket { fill: var(--warn); }
svg .bar { fill: var(--series); } svg .bar.error { fill: var(--bad); }
svg .span-row:hover rect { opacity: .7; }
pre.body { white-space: pre-wrap; word-break: break-word; margin: 0; }
"""


def esc(value: object) -> str:
    """Text for an HTML element or a quoted attribute."""
    return html.escape(str(value), quote=True)


def page(title: str, body: str, *, active: str = "") -> str:
    nav = "".join(
        f'<a href="{esc(href)}"{" aria-current=page" if href == active else ""}>{esc(label)}</a>'
        for href, label in NAV
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · burnline</title><style>{STYLE}</style></head>"
        f"<body><header><strong>burnline</strong>{nav}</header><main>{body}</main></body></html>\n"
    )


def table(headers: Iterable[str | tuple[str, str]], rows: Iterable[str], *, css: str = "") -> str:
    """A table; a header is its text, or (text, class); each row is already-built ``<tr>`` HTML."""
    head = "".join(
        f'<th class="{esc(h[1])}">{esc(h[0])}</th>' if isinstance(h, tuple) else f"<th>{esc(h)}</th>"
        for h in headers
    )
    css_attr = f' class="{esc(css)}"' if css else ""
    return f"<table{css_attr}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def cell(value: object, css: str = "") -> str:
    return f'<td class="{esc(css)}">{esc(value)}</td>' if css else f"<td>{esc(value)}</td>"


def link(href: str, text: object, query: Mapping[str, str] | None = None) -> str:
    target = href + ("?" + urlencode(query) if query else "")
    return f'<a href="{esc(target)}">{esc(text)}</a>'


def percent(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value * 100:.{digits}f}%"


def number(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def byte_size(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
