"""Rate-limited problem logging: one line per reason per interval, saying how many were not logged.

A misbehaving client can send thousands of bad requests a second; logging each would drown the
log and cost more CPU than refusing them. Every copy of this logic in burnline uses this module.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Final

LOG_INTERVAL: Final = 10.0


class RateLimitedLog:
    """Decides, per key, whether a line is due: at most one per ``interval`` seconds."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def due(self, key: str = "") -> tuple[bool, int]:
        """(whether to log now, how many occurrences of ``key`` were not logged since its last line)."""
        now = time.monotonic()
        if now - self._last.get(key, -math.inf) < self._interval:
            self._quiet[key] = self._quiet.get(key, 0) + 1
            return False, 0
        self._last[key] = now
        return True, self._quiet.pop(key, 0)


def not_logged(quiet: int) -> str:
    """The suffix of a rate-limited line: `` (N more like it not logged)``, or nothing."""
    return f" ({quiet} more like it not logged)" if quiet else ""


class ProblemLog:
    """Logs answers to bad requests at most once per interval per reason (see RateLimitedLog)."""

    def __init__(self, logger: logging.Logger, interval: float = LOG_INTERVAL) -> None:
        self._log = logger
        self._limit = RateLimitedLog(interval)

    def warn(self, reason: str, answer: str, where: str, peer: str, detail: str) -> None:
        due, quiet = self._limit.due(reason)
        if due:
            self._log.warning(
                "answered %s to %s from %s: %s%s", answer, where, peer, detail, not_logged(quiet)
            )
