"""Small inline SVG charts: a time series with threshold lines, and a trace's span waterfall.

Plain SVG text with every label escaped, sized by a viewBox so the page's CSS scales it; no script,
no external font or stylesheet, so the page works air-gapped and prints the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from collector.status.html import esc

WIDTH, HEIGHT = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 10, 24
ROW_HEIGHT = 18
WATERFALL_LABEL = 260


@dataclass(frozen=True, slots=True)
class Threshold:
    value: float
    label: str
    css: str  # class of the line: "page" or "ticket"


def _fmt_value(value: float, percent: bool) -> str:
    if percent:
        return f"{value * 100:.0f}%"
    return f"{value:.3g}"


def _fmt_time(seconds: float, span: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    if span > 12 * 3600:
        return moment.strftime("%m-%d %H:%M")
    return moment.strftime("%H:%M")


def line_chart(
    title: str,
    points: list[tuple[float, float]],
    thresholds: Sequence[Threshold] = (),
    *,
    percent: bool = False,
    floor: float | None = 0.0,
) -> str:
    """An SVG polyline of (Unix seconds, value) points with dashed threshold lines and min/max labels."""
    finite = [(t, v) for t, v in points if math.isfinite(t) and math.isfinite(v)]
    label = f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{esc(title)}">'
    if len(finite) < 2:
        return label + f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data yet</text></svg>'
    t0, t1 = finite[0][0], finite[-1][0]
    values = [v for _, v in finite] + [th.value for th in thresholds]
    low = min(values) if floor is None else min(floor, *values)
    high = max(values)
    if high - low < 1e-9:
        high = low + (1.0 if not percent else 0.01)
    if not percent:  # headroom above a burn rate's peak; a budget's top is its 100 %
        high += (high - low) * 0.05
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (t - t0) / (t1 - t0 or 1.0) * plot_w

    def y(v: float) -> float:
        return TOP + (high - v) / (high - low) * plot_h

    parts = [label, f"<title>{esc(title)}</title>"]
    parts.append(f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>')
    for value in (low, high):
        parts.append(
            f'<text class="axis" x="{LEFT - 4}" y="{y(value) + 4:.1f}" text-anchor="end">'
            f"{esc(_fmt_value(value, percent))}</text>"
        )
    for t, anchor in ((t0, "start"), (t1, "end")):
        parts.append(
            f'<text class="axis" x="{x(t):.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
            f"{esc(_fmt_time(t, t1 - t0))}</text>"
        )
    for th in thresholds:
        ty = y(th.value)
        parts.append(
            f'<line class="threshold {esc(th.css)}" x1="{LEFT}" x2="{WIDTH - RIGHT}"'
            f' y1="{ty:.1f}" y2="{ty:.1f}"/>'
            f'<text class="axis {esc(th.css)}" x="{WIDTH - RIGHT - 2}" y="{ty - 3:.1f}" text-anchor="end">'
            f"{esc(th.label)}</text>"
        )
    coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in finite)
    parts.append(f'<polyline class="series" points="{coords}"/>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    start_ns: int
    end_ns: int
    depth: int
    error: bool
    tooltip: str
    anchor: str  # the id of the span's row in the page's span table


def waterfall(bars: list[Bar], total_label: str) -> str:
    """One row per span: its name indented by depth, then a bar placed by start and duration."""
    if not bars:
        return '<p class="empty">no spans</p>'
    start = min(b.start_ns for b in bars)
    end = max(max(b.end_ns, b.start_ns) for b in bars)
    span = max(end - start, 1)
    height = TOP + ROW_HEIGHT * len(bars) + BOTTOM
    plot_w = WIDTH * 1.5 - WATERFALL_LABEL - RIGHT
    width = WIDTH * 1.5
    parts = [
        f'<svg class="waterfall" viewBox="0 0 {width:.0f} {height}" role="img" aria-label="span waterfall">',
        f'<text class="axis" x="{WATERFALL_LABEL}" y="{height - 6}">0</text>',
        f'<text class="axis" x="{width - RIGHT}" y="{height - 6}" text-anchor="end">'
        f"{esc(total_label)}</text>",
    ]
    for row, bar in enumerate(bars):
        top = TOP + row * ROW_HEIGHT
        x = WATERFALL_LABEL + (bar.start_ns - start) / span * plot_w
        w = max((max(bar.end_ns, bar.start_ns) - bar.start_ns) / span * plot_w, 1.5)
        css = "bar error" if bar.error else "bar"
        indent = 4 + 10 * min(bar.depth, 20)
        parts.append(
            f'<a href="#{esc(bar.anchor)}"><g class="span-row"><title>{esc(bar.tooltip)}</title>'
            f'<text class="span-name" x="{indent}" y="{top + 13}">{esc(bar.label[:48])}</text>'
            f'<rect class="{css}" x="{x:.1f}" y="{top + 3}" width="{w:.1f}"'
            f' height="{ROW_HEIGHT - 6}"/></g></a>'
        )
    parts.append("</svg>")
    return "".join(parts)
