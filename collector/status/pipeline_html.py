"""The pipeline health section of ``/status``: receivers, queues and exporters with their rates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collector.status.html import (
    byte_size,
    cell,
    duration,
    esc,
    number,
    table,
)


def _up_cell(up: bool) -> str:
    return cell("up", "ok") if up else cell("down", "over")


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
        + loop_lag_line(health.get("event_loop") or {})
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


SATURATED_LAG = 0.1  # seconds of p99 lag from which the page (and BurnlineSaturated) call it saturated


def loop_lag_line(lag: dict[str, Any]) -> str:
    p50, p99 = lag.get("lag_p50_seconds"), lag.get("lag_p99_seconds")
    if p99 is None:
        return ""
    late = (
        '; <span class="over">the process needs more CPU than it gets (more workers or replicas)</span>'
        if p99 > SATURATED_LAG
        else ""
    )
    processes = lag.get("processes") or []
    # With workers, the figures are the busiest process's (collector/status/pipeline.py _loop_lag).
    whose = ""
    if len(processes) > 1:
        worker = lag.get("busiest_worker")
        busiest = f"worker {worker}" if worker is not None else "the supervisor"
        whose = f" in {esc(busiest)}, the busiest of {len(processes)} processes"
    return (
        f'<p id="event-loop">Event loop: timers ran late by {esc(_lag(p50))} (median), '
        f"{esc(_lag(p99))} (p99){whose}{late}</p>"
    )


def _lag(seconds: float | None) -> str:
    return "under 1 ms" if seconds is not None and seconds < 0.001 else duration(seconds)
