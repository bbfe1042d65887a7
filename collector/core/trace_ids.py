"""Trace and span ids as burnline keeps them: lower-case hex of their full length, never all zeros."""

from __future__ import annotations

from typing import Any, Final

TRACE_ID_BYTES: Final = 16
SPAN_ID_BYTES: Final = 8


def hex_id(value: Any, size: int) -> str:
    """``value`` as a lower-case hex id of ``size`` bytes; "" if it is not one (or is all zeros)."""
    if not isinstance(value, str) or len(value) != 2 * size:
        return ""
    try:
        raw = bytes.fromhex(value)  # C speed; the length check above rules out its whitespace
    except ValueError:
        return ""
    return raw.hex() if len(raw) == size and any(raw) else ""


def require_hex_id(value: Any, size: int, what: str) -> str:
    """``hex_id`` for a value that must be an id: ValueError naming ``what`` when it is not one."""
    text = hex_id(value, size)
    if not text:
        raise ValueError(f"{what} {value!r} is not {2 * size} hex digits (and not all zeros)")
    return text
