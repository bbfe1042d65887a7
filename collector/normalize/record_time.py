"""A record's own time field (``time``, ``timestamp``, ``@timestamp``, ``ts`` ...) as Unix nanoseconds.

Accepted, as Fluent Bit's and Vector's parsers accept them:

* a Fluent EventTime (the Forward receiver's :class:`EventTime`) or a msgpack timestamp;
* epoch numbers, integer or fractional, or strings of them, read by magnitude: seconds below 1e11
  (the year 5138), then milliseconds below 1e14, microseconds below 1e17, else nanoseconds.
  Numbers below 1e8 are no epoch time in any unit (a count, a duration, ``"2024"``): not read;
* RFC 3339 date-times (``2026-12-04T10:00:00.123456789Z``, ``+02:00`` offsets, a space for the
  ``T``). One without a zone is not read: which zone it meant is a guess.

Anything else (booleans, negative or non-finite numbers, other text, times beyond int64
nanoseconds) is not a time: :func:`parse_time_ns` returns None and the caller keeps the value.
"""

from __future__ import annotations

import calendar
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import msgpack

_NS_PER_S: Final = 1_000_000_000
_MAX_NS: Final = 2**63 - 1
_MIN_EPOCH: Final = 100_000_000  # 1973-03-03 in seconds; any smaller number is no epoch time
_DATE_TIME: Final = re.compile(
    r"\s*(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:[.,](\d+))?\s*(?:([Zz])|([+-])(\d\d):?(\d\d)?)\s*",
    re.ASCII,
)
_NUMBER: Final = re.compile(r"\s*\d+(?:\.\d*)?\s*", re.ASCII)


class EventTime(int):
    """A Fluent EventTime (msgpack ext type 0) as Unix nanoseconds.

    Its own type tells it from an integer time (seconds); inside a record it reads as the integer it is.
    """

    __slots__ = ()


def _scaled_ns(value: int) -> int | None:
    if value < _MIN_EPOCH:
        return None
    if value < 100_000_000_000:  # 1e11 s is the year 5138; 1e11 ms is 1973
        return value * _NS_PER_S
    if value < 100_000_000_000_000:
        return value * 1_000_000
    if value < 100_000_000_000_000_000:
        return value * 1_000
    return value


def _decimal_ns(number: Decimal) -> int | None:
    whole = int(number)
    if whole >= 100_000_000_000 or whole < _MIN_EPOCH:
        return _scaled_ns(whole)
    return int(number * _NS_PER_S)


# Seconds at the start of a minute, by its text ("2024-05-01T10:00"): the records of a batch share
# few minutes, and calendar.timegm costs more than the rest of the parse.
_MINUTES: dict[str, int | None] = {}
_MINUTES_MAX: Final = 4096


def _minute_seconds(year: str, month: str, day: str, hour: str, minute: str) -> int | None:
    key = f"{year}-{month}-{day}T{hour}:{minute}"
    found = _MINUTES.get(key, -1)
    if found != -1:
        return found
    return _cache_minute(key, year, month, day, hour, minute)


def _cache_minute(key: str, *parts: str) -> int | None:
    seconds: int | None = None
    if all(part.isascii() and part.isdigit() for part in parts):
        y, mo, d, h, mi = (int(part) for part in parts)
        if y >= 1 and 1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1] and h <= 23 and mi <= 59:
            seconds = calendar.timegm((y, mo, d, h, mi, 0, 0, 0, 0))
    if len(_MINUTES) >= _MINUTES_MAX:
        _MINUTES.clear()
    _MINUTES[key] = seconds
    return seconds


def _utc_ns(text: str) -> int | None:
    """The common shape, ``2024-05-01T10:00:00[.123456789]Z``, without the regular expression."""
    if text[10] not in "Tt " or text[16] != ":":
        return None
    minute_start = _MINUTES.get(text[:16], -1)
    if minute_start == -1:
        if text[4] != "-" or text[7] != "-" or text[13] != ":":
            return None
        minute_start = _cache_minute(text[:16], text[:4], text[5:7], text[8:10], text[11:13], text[14:16])
    second_text, fraction = text[17:19], text[20:-1]
    if minute_start is None or not (second_text.isascii() and second_text.isdigit()):
        return None
    second = int(second_text)
    if second > 60:
        return None
    if len(text) == 20:
        return (minute_start + second) * _NS_PER_S
    if text[19] not in ".," or not (fraction.isascii() and fraction.isdigit()):
        return None
    return (minute_start + second) * _NS_PER_S + int(fraction[:9].ljust(9, "0"))


def _date_time_ns(text: str) -> int | None:
    if len(text) >= 20 and text[-1] in "Zz":
        found = _utc_ns(text)
        if found is not None:
            return found
    m = _DATE_TIME.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, _, sign, off_h, off_m = m.groups()
    minute_start = _minute_seconds(year, month, day, hour, minute)
    sec = int(second)
    if minute_start is None or sec > 60:
        return None
    seconds = minute_start + sec  # a leap second (:60) is the next second, as Unix time counts it
    if sign:
        offset = int(off_h) * 3600 + int(off_m or 0) * 60
        seconds -= offset if sign == "+" else -offset
    return seconds * _NS_PER_S + (int(fraction[:9].ljust(9, "0")) if fraction else 0)


def parse_time_ns(value: Any) -> int | None:
    """``value`` as Unix nanoseconds, or None when it is not a time this module reads."""
    kind = type(value)
    ns: int | None
    if kind is EventTime:
        ns = int(value)
    elif kind is bool or value is None:
        return None
    elif kind is int:
        ns = _scaled_ns(value) if value >= 0 else None
    elif kind is float:
        if not math.isfinite(value) or value < 0:
            return None
        # Through the decimal text: value * 1e9 would round to a multiple of 256 ns.
        ns = _decimal_ns(Decimal(repr(value)))
    elif kind is str:
        if len(value) >= 20 and value[-1] in "Zz":  # the common case first: 2024-05-01T10:00:00.1Z
            ns = _date_time_ns(value)
        elif _NUMBER.fullmatch(value):
            try:
                ns = _decimal_ns(Decimal(value.strip()))
            except InvalidOperation:
                return None
        else:
            ns = _date_time_ns(value)
    elif kind is msgpack.Timestamp:
        ns = int(value.to_unix_nano())
    else:
        return None
    if ns is None or not 0 <= ns <= _MAX_NS:
        return None
    return ns
