"""The times the query commands take (``--since``, ``--until``), as people write them.

- a duration ago: ``15m``, ``2h``, ``7d``, ``90`` (seconds);
- ``now``, ``today`` (local midnight), ``yesterday`` (local midnight a day earlier);
- a clock time today, local: ``19:00``, ``19:00:30``;
- a date or date-time, RFC 3339 / ISO 8601: ``2026-12-04``, ``2026-12-04 19:00``,
  ``2026-12-04T19:00:00Z``, ``2026-12-04T19:00:00+01:00``.

A time without a zone is local time, as ``date`` and ``journalctl`` read it: the zone of ``TZ``, else
the system's. Local midnight and clock times follow daylight-saving changes (``today`` on a
23-hour day is 23 hours long).
"""

from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta

from collector.config.types import parse_duration

FORMS = (
    "a duration ago (15m, 2h, 7d), now, today, yesterday, a clock time today (19:00) "
    "or a time (2026-12-04 19:00, 2026-12-04T19:00:00Z)"
)

_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?$")


def _local_midnight(day: date) -> datetime:
    # datetime.astimezone() on a naive value applies the local zone's rules (TZ) for that moment.
    return datetime(day.year, day.month, day.day).astimezone()


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def parse_time(text: str, now_ns: int | None = None) -> int:
    """One of :data:`FORMS` -> Unix nanoseconds; ValueError naming the forms otherwise."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    value = text.strip()
    word = value.lower()
    if word == "now":
        return now_ns
    today = datetime.fromtimestamp(now_ns / 1e9).date()  # the local date
    if word == "today":
        return _ns(_local_midnight(today))
    if word == "yesterday":
        return _ns(_local_midnight(today - timedelta(days=1)))
    try:
        seconds = float(value) if value.replace(".", "", 1).isdigit() else parse_duration(value)
        return now_ns - int(seconds * 1e9)
    except ValueError:
        pass
    clock = _CLOCK.match(value)
    if clock:
        hour, minute, second = int(clock.group(1)), int(clock.group(2)), int(clock.group(3) or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise ValueError(f"{text!r} is not a clock time (00:00 to 23:59:59)")
        moment = datetime(today.year, today.month, today.day, hour, minute, second).astimezone()
        fraction = (clock.group(4) or "").ljust(9, "0")
        return _ns(moment) + int(fraction)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use {FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # zone-less: local time
    return _ns(moment)
