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


def slo_table(slos: list[dict[str, Any]]) -> str:
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
