"""The SLO pieces of the status pages: the table of every SLO, the firing alerts, alert states."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collector.slo.policy import window_seconds
from collector.status.html import (
    cell,
    esc,
    link,
    number,
    percent,
    table,
)
from collector.status.slo_query import SORTS
from collector.status.store_html import choice_input, text_input

STATUS_ROWS = 100  # SLOs the status page lists unless asked for more
MAX_STATUS_ROWS = 1000  # and at most (the API gives any number)


def window_factors(slo: Mapping[str, Any]) -> dict[str, list[tuple[str, float]]]:
    """Per window, the (severity, factor) of every alert condition that reads it."""
    out: dict[str, list[tuple[str, float]]] = {}
    for cond in slo.get("conditions", []):
        for key in ("long_window", "short_window"):
            out.setdefault(cond[key], []).append((cond["severity"], float(cond["factor"])))
    return dict(sorted(out.items(), key=lambda item: window_seconds(item[0])))


def objective(slo: Mapping[str, Any]) -> str:
    return f"{float(slo['objective']):g}% / {slo['period']}"


def budget_css(remaining: float) -> str:
    return "num budget-bad" if remaining <= 0 else ("num budget-low" if remaining < 0.25 else "num")


def alert_cells(slo: Mapping[str, Any]) -> str:
    parts = []
    for severity in ("page", "ticket"):
        info = slo.get("alerts", {}).get(severity, {})
        state = str(info.get("state", "inactive"))
        text = state if info.get("enabled", True) else "disabled"
        parts.append(f'<td class="state-{esc(state)}" data-severity="{esc(severity)}">{esc(text)}</td>')
    return "".join(parts)


def slo_table(slos: list[dict[str, Any]], *, narrowed: bool = False) -> str:
    if not slos and narrowed:
        return '<p class="empty">No SLO matches.</p>'
    if not slos:
        return '<p class="empty">No SLOs are configured (<code>slos:</code> or <code>slo_files:</code>).</p>'
    windows = sorted({w for slo in slos for w in window_factors(slo)}, key=window_seconds)
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
        factors = window_factors(slo)
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
            f"{cell(objective(slo), 'num')}"
            f"{cell(percent(slo.get('sli'), 3), 'num')}"
            f"{cell(percent(remaining, 1), budget_css(remaining))}"
            f"{''.join(burn_cells)}{alert_cells(slo)}</tr>"
        )
    return table(headers, rows, css="slos")


def slo_form(params: Mapping[str, str]) -> str:
    return (
        '<form class="search" method="get" action="/status">'
        + text_input("service", "service", params, "checkout or check*")
        + text_input("name", "SLO", params, "name or glob")
        + choice_input("firing", "firing", ("", "true"), params)
        + choice_input("sort", "order", SORTS[::-1], params)
        + text_input("limit", "rows", params, str(STATUS_ROWS))
        + '<button type="submit">Show</button></form>'
    )


def shown_note(shown: int, matched: int, total: int, narrowed: bool, by_budget: bool) -> str:
    """What the table holds of what was asked, when that is not simply every SLO."""
    if shown == total:
        return ""
    order = ", lowest error budget first" if by_budget else ", in configuration order"
    if narrowed:
        showing = f"; showing {shown:,}{order}" if shown < matched else ""
        text = f"{matched:,} of {total:,} SLOs match{showing}."
    else:
        text = f"Showing {shown:,} of {total:,} SLOs{order}. Narrow them down above, or ask for more rows."
    return f'<p class="muted" id="shown">{esc(text)}</p>'


def firing_list(slos: list[dict[str, Any]], more: int = 0) -> str:
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
    rest = f'<li class="muted">and {more:,} more SLOs with an alert firing</li>' if more else ""
    return f'<ul id="alerts" class="alerts">{items}{rest}</ul>'
