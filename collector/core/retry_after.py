"""The Retry-After header (RFC 9110 section 10.2.3): delta-seconds or an HTTP-date."""

from __future__ import annotations

import email.utils
import math
import time


def parse_retry_after(value: str | None, maximum: float = math.inf) -> float | None:
    """Seconds to wait, at most ``maximum``; None when the header is absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    if math.isnan(seconds):
        return None
    return max(0.0, min(seconds, maximum))
