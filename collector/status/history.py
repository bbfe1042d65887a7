"""An SLO's past, rebuilt from the engine's bucket rings: burn rate per window and budget burn-down.

The engine keeps its counts in three rings (collector/slo/windows.py: 10 s buckets over 1 h, 5 min
over 1 d, 1 h over the period). A window's burn rate at an earlier moment ``t`` is the sum of the
window's buckets ending at ``t``, so a series needs nothing the engine does not already hold: each
window is drawn from the finest ring that holds the window plus some history before it (a 5m window
over the last 55 minutes at 10 s steps, a 6h window over the last 18 hours at 5 min steps, 1d and
longer at 1 h steps over the rest of the period).

The budget burn-down is the error budget remaining as it stood at each hour of the period: the
period's counts up to that hour, through the same formula as the engine's own budget.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from collector.slo import policy
from collector.slo.engine import SloState
from collector.slo.windows import TIER_RESOLUTIONS, TIER_SPANS

# A window's chart needs at least this many points of history before it is worth drawing.
MIN_POINTS = 6


@dataclass(frozen=True, slots=True)
class Series:
    """Points (Unix seconds, value), oldest first."""

    name: str
    points: list[tuple[float, float]]


@dataclass(slots=True)
class _Ring:
    resolution: float
    current: int  # absolute index of the newest bucket
    size: int
    counts: array[float]  # [total0, second0, total1, second1, ...] by slot

    def bucket(self, index: int) -> tuple[float, float]:
        slot = 2 * (index % self.size)
        return self.counts[slot], self.counts[slot + 1]


def _rings(state: SloState) -> list[_Ring] | None:
    """The engine's rings as they are now (None before the SLO counted anything)."""
    currents, raw = state.windows.snapshot()
    if not any(raw):
        return None
    out = []
    for resolution, current, data in zip(TIER_RESOLUTIONS, currents, raw, strict=True):
        counts = array("d")
        counts.frombytes(data)
        out.append(_Ring(resolution, current, len(counts) // 2, counts))
    return out


def _span(tier: int, period: float) -> float:
    return TIER_SPANS[tier] if tier < len(TIER_SPANS) else period


def _tier_for(window: float, period: float) -> int | None:
    """The finest ring that holds the window and at least MIN_POINTS of history before it."""
    for tier, resolution in enumerate(TIER_RESOLUTIONS):
        if window + MIN_POINTS * resolution <= _span(tier, period) and window >= resolution:
            return tier
    return None


def _bad_total(state: SloState, total: float, second: float) -> tuple[float, float]:
    return (total - second if state.good_channel else second), total


def burn_rate_series(state: SloState, window: str, now: float) -> Series | None:
    """The window's burn rate at each bucket end of its ring (the newest at ``now``); None when there
    is no history to draw (nothing counted yet, or a window as long as the period)."""
    rings = _rings(state)
    seconds = policy.window_seconds(window)
    tier = _tier_for(seconds, state.spec.period)
    if rings is None or tier is None:
        return None
    ring = rings[tier]
    length = max(1, round(seconds / ring.resolution))
    oldest = ring.current - ring.size + 1
    first_end = oldest + length - 1  # the first bucket whose window lies wholly inside the ring
    total = second = 0.0
    for index in range(oldest, first_end):
        t, s = ring.bucket(index)
        total += t
        second += s
    points = []
    ratio = state.spec.objective_ratio
    for end in range(first_end, ring.current + 1):
        t, s = ring.bucket(end)
        total += t
        second += s
        bad, all_events = _bad_total(state, total, second)
        points.append((min((end + 1) * ring.resolution, now), policy.burn_rate(bad, all_events, ratio)))
        t, s = ring.bucket(end - length + 1)
        total -= t
        second -= s
    return Series(window, points)


def budget_series(state: SloState, now: float) -> Series | None:
    """The error budget remaining at the end of each hour of the period, from the period's counts up
    to then: untouched (1) at the start of the first hour with events, the budget now at ``now``."""
    rings = _rings(state)
    if rings is None:
        return None
    ring = rings[-1]
    ratio = state.spec.objective_ratio
    total = second = 0.0
    points = []
    started = False
    for index in range(ring.current - ring.size + 1, ring.current + 1):
        t, s = ring.bucket(index)
        total += t
        second += s
        if not started and total > 0:  # hours before the first event would only draw a flat line
            started = True
            points.append((index * ring.resolution, 1.0))
        if started:
            bad, all_events = _bad_total(state, total, second)
            remaining = policy.error_budget_remaining(bad, all_events, ratio)
            points.append((min((index + 1) * ring.resolution, now), remaining))
    return Series("budget", points)
