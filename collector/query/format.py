"""Text of the query output: times, durations, counts, logfmt values, control characters escaped."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson

from collector.core.model import SpanKind, StatusCode
from collector.query.terminal import Style, is_terminal, use_color

# C0 controls and DEL are escaped in text output: one record stays one line, and a record cannot
# send escape sequences to the terminal.
_CONTROL = {i: f"\\x{i:02x}" for i in (*range(32), 127) if i != 9} | {10: "\\n", 13: "\\r"}


def iso_time(ns: int, digits: int = 3) -> str:
    """Unix ns -> '2026-11-29T22:56:48.123Z' (``digits`` of the fraction, 0-9)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    try:
        text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return str(ns)
    if digits:
        text += "." + f"{frac:09d}"[:digits]
    return text + "Z"


def clean(text: str) -> str:
    return text.translate(_CONTROL)


def logfmt_value(value: Any) -> str:
    if isinstance(value, str):
        if value and not any(c in value for c in ' "=') and value.isprintable():
            return value
        return orjson.dumps(value).decode()
    return clean(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode())


def load_object(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


PLAIN = Style()


def format_duration(ns: int) -> str:
    """Nanoseconds -> '0s', '850ns', '12.5µs', '250ms', '1.23s', '2m05s', '1h02m'."""
    if ns <= 0:
        return "0s"
    if ns < 1_000:
        return f"{ns}ns"
    # Each unit while the rounded value stays below the next unit (999.97µs is "1ms", not "1000µs").
    for unit, size, decimals, below in (("µs", 1e3, 1, 1000), ("ms", 1e6, 1, 1000), ("s", 1e9, 2, 60)):
        value = round(ns / size, decimals)
        if value < below:
            return _trim(f"{value:.{decimals}f}") + unit
    whole = round(ns / 1e9)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _trim(number: str) -> str:
    return number.rstrip("0").rstrip(".") if "." in number else number


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def kind_name(kind: int) -> str:
    try:
        return SpanKind(kind).name.lower() if kind else ""
    except ValueError:
        return str(kind)


def status_name(code: int) -> str:
    try:
        return StatusCode(code).name.lower()
    except ValueError:
        return str(code)


def terminal_style(args: argparse.Namespace, stream: TextIO) -> Style:
    """Colours per ``--color`` (and NO_COLOR); aligned columns when ``stream`` is a terminal."""
    return Style(color=use_color(args.color, stream), align=is_terminal(stream))


def describe_query(path: Path, args: argparse.Namespace, filters: dict[str, Any]) -> str:
    """``store data/burnline.db, since 2026-12-05T07:00:00.000Z, service=cart``: what was asked."""
    parts = [f"store {path}", f"since {iso_time(args.since)}"]
    if args.until is not None:
        parts.append(f"until {iso_time(args.until)}")
    parts += [f"{name}={logfmt_value(value)}" for name, value in filters.items() if value is not None]
    return clean(", ".join(parts))
