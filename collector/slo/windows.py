"""Event-time counts of one SLO over its period, and their sums over the burn-rate windows.

Counts sit in ring buffers at three resolutions, each covering what its windows need:

    tier  bucket  span       windows
    0     10 s    1 h        5m, 30m, 1h
    1     5 m     1 d        2h, 6h, 1d
    2     1 h     the period 3d, the period

Every event goes into all three tiers (three additions). A window is the whole buckets of its tier
that end after ``now - window``, including the bucket ``now`` falls in: it spans between
``window - resolution`` and ``window`` (a 5m window 4m50s to 5m; the period within an hour), which
is the same kind of edge Prometheus' ``rate()`` has. Each window keeps its two sums up to date:
an event adds to the windows its bucket is in, and moving the clock subtracts the buckets that fall
out, so reading a window is O(1) and advancing costs O(buckets that expired).

Two channels are counted: ``total`` and ``second``, which is the bad count, or for a metric SLI
written with ``good:`` the good count (``bad = total - good``, clamped by the burn-rate arithmetic).

Memory: nothing until the first event (an SLO without traffic reads windows at zero shared by every
such SLO of its period); then its own window sums, and 16 bytes per bucket (two doubles), ~22 KiB
for a 30-day period, allocated per SLO with traffic.
"""

from __future__ import annotations

import functools
from array import array
from dataclasses import dataclass

from collector.slo.policy import window_seconds, windows

TIER_RESOLUTIONS: tuple[float, ...] = (10.0, 300.0, 3600.0)
TIER_SPANS: tuple[float, ...] = (3600.0, 86400.0)  # the last tier spans the period


@dataclass(slots=True)
class WindowSum:
    name: str
    seconds: float
    tier: int
    length: int  # buckets in the window
    first: int  # absolute index of the oldest bucket inside the window
    total: float = 0.0
    second: float = 0.0


@functools.cache
def _layout(period: float) -> tuple[tuple[str, float, int, int], ...]:
    """(name, seconds, tier, buckets) of every window of a period; computed once per period."""
    out = []
    for name in windows(period):
        seconds = window_seconds(name)
        tier = next((i for i, span in enumerate(TIER_SPANS) if seconds <= span), len(TIER_SPANS))
        out.append((name, seconds, tier, max(1, round(seconds / TIER_RESOLUTIONS[tier]))))
    return tuple(out)


class _Tier:
    __slots__ = ("counts", "current", "resolution", "size")

    def __init__(self, resolution: float, size: int) -> None:
        self.resolution = resolution
        self.size = size
        self.counts: array[float] | None = None  # [total0, second0, total1, second1, ...]
        self.current = -1  # absolute index of the newest bucket the ring holds (now's)


def _new_tiers(period: float) -> list[_Tier]:
    return [
        _Tier(TIER_RESOLUTIONS[0], round(TIER_SPANS[0] / TIER_RESOLUTIONS[0])),
        _Tier(TIER_RESOLUTIONS[1], round(TIER_SPANS[1] / TIER_RESOLUTIONS[1])),
        _Tier(TIER_RESOLUTIONS[2], -(-int(period) // int(TIER_RESOLUTIONS[2]))),
    ]


def _window_sums(period: float, tiers: list[_Tier]) -> dict[str, WindowSum]:
    return {
        name: WindowSum(name, seconds, tier, min(length, tiers[tier].size), 0)
        for name, seconds, tier, length in _layout(period)
    }


@functools.cache
def _unused_sums(period: float) -> dict[str, WindowSum]:
    """Every window of a period at zero: what an SLO that has counted nothing reads. One dict shared by
    all such SLOs of the period and never written (an SLO gets its own at its first event): of ten
    thousand SLOs most may never see traffic, and their own windows took 1.7 KiB each."""
    return _window_sums(period, _new_tiers(period))


class SloWindows:
    """Counts of one SLO. Times are Unix seconds; the caller passes its clock's ``now`` in."""

    __slots__ = ("_by_tier", "_tiers", "period", "second", "sums", "total")

    def __init__(self, period: float) -> None:
        self.period = period
        # Nothing of its own until the first event (or a restored snapshot): _allocate.
        self._tiers: list[_Tier] | None = None
        self._by_tier: list[list[WindowSum]] = []
        self.sums = _unused_sums(period)
        # Lifetime counts (for burnline_slo_events_total), never decreasing.
        self.total = 0.0
        self.second = 0.0

    @property
    def allocated(self) -> bool:
        return self._tiers is not None

    def _own_windows(self, tiers: list[_Tier]) -> list[_Tier]:
        """Takes ``tiers`` (rings not yet allocated) and window sums of its own."""
        self.sums = _window_sums(self.period, tiers)
        self._by_tier = [[w for w in self.sums.values() if w.tier == i] for i in range(3)]
        self._tiers = tiers
        return tiers

    def advance(self, now: float) -> None:
        """Moves every window's end to ``now``: buckets that fell out are subtracted, freed slots zeroed."""
        if self._tiers is None:
            return
        for tier, sums in zip(self._tiers, self._by_tier, strict=True):
            current = int(now // tier.resolution)
            if current <= tier.current:
                continue
            counts = tier.counts
            assert counts is not None
            size = tier.size
            if current - tier.current >= size:
                # Everything the ring held is out of every window.
                for i in range(2 * size):
                    counts[i] = 0.0
                for window in sums:
                    window.total = window.second = 0.0
                    window.first = current - window.length + 1
                tier.current = current
                continue
            for window in sums:
                new_first = current - window.length + 1
                for index in range(window.first, new_first):
                    slot = 2 * (index % size)
                    window.total -= counts[slot]
                    window.second -= counts[slot + 1]
                window.first = max(window.first, new_first)
                # Fractional metric increases can leave float dust below zero after subtraction.
                if window.total < 1e-9:
                    window.total = 0.0
                if window.second < 1e-9:
                    window.second = 0.0
            for index in range(tier.current + 1, current + 1):
                slot = 2 * (index % size)
                counts[slot] = 0.0
                counts[slot + 1] = 0.0
            tier.current = current

    def _allocate(self, now: float) -> list[_Tier]:
        tiers = self._own_windows(_new_tiers(self.period))
        for tier, sums in zip(tiers, self._by_tier, strict=True):
            tier.counts = array("d", bytes(16 * tier.size))
            tier.current = int(now // tier.resolution)
            for window in sums:
                window.first = tier.current - window.length + 1
        return tiers

    def add(self, time: float, total: float, second: float, now: float) -> bool:
        """Counts events at event time ``time`` (clamped to ``now``: a clock ahead counts as now).

        The caller has already advanced to ``now`` and refused late events; False when ``time`` is
        older than every tier holds (nothing counted)."""
        tiers = self._tiers if self._tiers is not None else self._allocate(now)
        time = min(time, now)
        counted = False
        for tier, sums in zip(tiers, self._by_tier, strict=True):
            index = int(time // tier.resolution)
            if index <= tier.current - tier.size:
                continue
            counts = tier.counts
            assert counts is not None
            slot = 2 * (index % tier.size)
            counts[slot] += total
            counts[slot + 1] += second
            counted = True
            for window in sums:
                if index >= window.first:
                    window.total += total
                    window.second += second
        if counted:
            self.total += total
            self.second += second
        return counted

    # -- persistence

    def snapshot(self) -> tuple[list[int], list[bytes]]:
        """Each tier's newest index and its ring as bytes (empty when nothing was counted yet)."""
        if self._tiers is None:
            return [-1, -1, -1], [b"", b"", b""]
        return (
            [t.current for t in self._tiers],
            [t.counts.tobytes() if t.counts is not None else b"" for t in self._tiers],
        )

    def restore(self, currents: list[int], rings: list[bytes], now: float) -> bool:
        """Loads a snapshot and recomputes every window's sums, then advances to ``now``.

        False (and nothing loaded) when the snapshot does not fit this period's layout."""
        if len(currents) != 3 or len(rings) != 3:
            return False
        if not any(rings):
            return True
        tiers = self._tiers if self._tiers is not None else _new_tiers(self.period)
        if any(len(r) != 16 * t.size for r, t in zip(rings, tiers, strict=True)):
            return False
        if self._tiers is None:
            self._own_windows(tiers)
        for tier, sums, current, ring in zip(tiers, self._by_tier, currents, rings, strict=True):
            counts = array("d")
            counts.frombytes(ring)
            tier.counts = counts
            tier.current = current
            for window in sums:
                window.first = current - window.length + 1
                window.total = window.second = 0.0
                for index in range(window.first, current + 1):
                    slot = 2 * (index % tier.size)
                    window.total += counts[slot]
                    window.second += counts[slot + 1]
        self.advance(now)
        return True
