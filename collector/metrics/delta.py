"""Counter semantics: how much a cumulative series grew between two of its points.

Cumulative monotonic sums (Prometheus counters), histograms and summaries report running totals. To
count events (the SLO engine's good/bad/total), what matters is the increase between consecutive
points of one series, with the rules Prometheus' ``rate()`` applies:

- a value that went down is a reset (the process restarted): the new value is the increase since
  the reset, as nothing else is known about what happened in between;
- a start time (``start_time_unix_nano``) that changed is a reset too, even if the value grew;
- a point older than (or as old as) the last one seen is out of order and ignored.

A series is the metric's name, kind and scope, its attributes and its resource. ``DeltaTracker``
keeps the last point of each, bounded in count (the least recently seen series is evicted) and in
time (a series not seen for ``stale_after`` seconds is forgotten). It is pure and synchronous: no
I/O, no clock but the one it is handed, so it can run on the event loop on whole batches.

What the first point of a series counts is ``first_point``:

- ``drop``: nothing; it is the baseline (Prometheus' ``increase()`` does the same);
- ``keep``: its whole value (for sources known to start from zero on first sight);
- ``auto`` (default): its whole value only when its start time shows that the series began after
  this tracker started and after every point of a series it forgot (expired or evicted), so that
  a series that comes back is never counted twice; otherwise it is the baseline.

Delta-temporality points are already increases: they pass through as they are, without state.
Gauges and non-monotonic sums are not counters and produce nothing.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from collector.core.model import FLAG_NO_RECORDED_VALUE, MetricKind, MetricPoint, Temporality


class FirstPoint(StrEnum):
    AUTO = "auto"
    DROP = "drop"
    KEEP = "keep"


@dataclass(slots=True)
class Delta:
    """The increase of one series over ``(start_time_unix_nano, time_unix_nano]``, ending at ``point``.

    ``value`` is the sum's increase, or the observation count's for histograms and summaries; ``sum``
    the increase of their sum (None when a point has no sum). Bucket increases line up with the
    point's buckets: ``bucket_counts`` with ``explicit_bounds``, the exponential ones with their
    offsets. ``reset`` says the series restarted and the increase is its value since then; ``first``
    that the increase is a first point's whole value.
    """

    point: MetricPoint
    start_time_unix_nano: int
    time_unix_nano: int
    value: float | int
    sum: float | None = None
    bucket_counts: list[int] = field(default_factory=list)
    zero_count: int = 0
    positive_offset: int = 0
    positive_bucket_counts: list[int] = field(default_factory=list)
    negative_offset: int = 0
    negative_bucket_counts: list[int] = field(default_factory=list)
    reset: bool = False
    first: bool = False


@dataclass(slots=True)
class TrackerStats:
    """Running counts, for the owner to export as metrics."""

    resets: int = 0
    out_of_order: int = 0
    layout_changes: int = 0  # histogram buckets changed shape: re-baselined, nothing counted
    ended: int = 0  # series forgotten on a stale marker
    expired: int = 0
    evicted: int = 0
    invalid: int = 0  # points whose value is not a number


@dataclass(slots=True)
class _State:
    point: MetricPoint
    last_seen: float


SeriesKey = tuple[Hashable, ...]


def _freeze(value: Any) -> Hashable:
    """A hashable stand-in for an attribute value that keeps 1, 1.0 and True apart."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float | bytes) or value is None:
        return (type(value).__name__, value)
    if isinstance(value, list | tuple):
        return ("list", tuple(_freeze(v) for v in value))
    if isinstance(value, dict):
        return ("map", tuple(sorted((str(k), _freeze(v)) for k, v in value.items())))
    return (type(value).__name__, repr(value))


def attributes_key(attributes: dict[str, Any]) -> tuple[Hashable, ...]:
    """An order-independent hashable identity of an attribute map."""
    if not attributes:
        return ()
    return tuple(sorted((k, _freeze(v)) for k, v in attributes.items()))


def _tracked(point: MetricPoint) -> bool:
    kind = point.kind
    if kind == MetricKind.SUM:
        return point.monotonic and point.temporality in (Temporality.CUMULATIVE, Temporality.DELTA)
    if kind in (MetricKind.HISTOGRAM, MetricKind.EXPONENTIAL_HISTOGRAM):
        return point.temporality in (Temporality.CUMULATIVE, Temporality.DELTA)
    return kind == MetricKind.SUMMARY  # always cumulative


def _number_ok(point: MetricPoint) -> bool:
    if point.kind == MetricKind.SUM:
        return point.value is not None and not math.isnan(point.value)
    return point.sum is None or not math.isnan(point.sum)


def _sub(new: float | None, old: float | None) -> float | None:
    return None if new is None or old is None else new - old


def _whole(point: MetricPoint, start: int, *, reset: bool = False, first: bool = False) -> Delta:
    """The point's own value as the increase (a first point, a reset or a delta point)."""
    if point.kind == MetricKind.SUM:
        value: float | int = point.value if point.value is not None else 0
        return Delta(point, start, point.time_unix_nano, value, reset=reset, first=first)
    return Delta(
        point,
        start,
        point.time_unix_nano,
        point.count,
        sum=point.sum,
        bucket_counts=list(point.bucket_counts),
        zero_count=point.zero_count,
        positive_offset=point.positive_offset,
        positive_bucket_counts=list(point.positive_bucket_counts),
        negative_offset=point.negative_offset,
        negative_bucket_counts=list(point.negative_bucket_counts),
        reset=reset,
        first=first,
    )


def _downscale(offset: int, counts: list[int], by: int) -> tuple[int, list[int]]:
    """Exponential buckets merged to a scale ``by`` steps coarser (index i goes to i >> by)."""
    if by <= 0 or not counts:
        return offset, counts
    merged: dict[int, int] = {}
    for i, c in enumerate(counts):
        j = (offset + i) >> by
        merged[j] = merged.get(j, 0) + c
    first = min(merged)
    return first, [merged.get(first + k, 0) for k in range(max(merged) - first + 1)]


def _aligned_diff(new_offset: int, new: list[int], old_offset: int, old: list[int]) -> list[int] | None:
    """Per-bucket increases of dense exponential buckets laid out on the new point's indexes.

    None when a bucket went down or the old point had a bucket the new one lacks (a reset).
    """
    out = list(new)
    for i, c in enumerate(old):
        if not c:
            continue
        k = old_offset + i - new_offset
        if k < 0 or k >= len(out):
            return None
        out[k] -= c
        if out[k] < 0:
            return None
    return out


class DeltaTracker:
    """Per-series increases of cumulative points, batch by batch. Not thread-safe."""

    def __init__(
        self,
        *,
        max_series: int = 100_000,
        stale_after: float = 900.0,
        first_point: FirstPoint | str = FirstPoint.AUTO,
        started_unix_nano: int | None = None,
    ) -> None:
        if max_series < 1:
            raise ValueError("max_series must be at least 1")
        if stale_after <= 0:
            raise ValueError("stale_after must be more than 0 seconds")
        self.max_series = max_series
        self.stale_after = stale_after
        self.first_point = FirstPoint(first_point)
        self.started_unix_nano = time.time_ns() if started_unix_nano is None else started_unix_nano
        self.stats = TrackerStats()
        # Least recently seen first: expiry and eviction pop from the front.
        self._series: OrderedDict[SeriesKey, _State] = OrderedDict()
        # The latest point time of any series forgotten so far: a start time before it may belong
        # to a series already counted, so ``auto`` does not count such a first point.
        self._forgotten_until = 0

    def __len__(self) -> int:
        return len(self._series)

    def deltas(self, points: Iterable[MetricPoint], now: float | None = None) -> list[Delta]:
        """The increases the points show, in their order. ``now`` is monotonic seconds (staleness)."""
        now = time.monotonic() if now is None else now
        self.expire(now)
        out: list[Delta] = []
        resources: dict[int, tuple[dict[str, Any], tuple[Hashable, ...]]] = {}
        for point in points:
            if not _tracked(point):
                continue
            if point.temporality == Temporality.DELTA and point.kind != MetricKind.SUMMARY:
                if not point.flags & FLAG_NO_RECORDED_VALUE and _number_ok(point):
                    out.append(_whole(point, point.start_time_unix_nano))
                continue
            delta = self._cumulative(point, self._key(point, resources), now)
            if delta is not None:
                out.append(delta)
        return out

    def expire(self, now: float) -> int:
        """Forgets the series not seen for ``stale_after`` seconds before ``now``; returns how many."""
        cutoff = now - self.stale_after
        series = self._series
        n = 0
        while series:
            key, state = next(iter(series.items()))
            if state.last_seen >= cutoff:
                break
            del series[key]
            self._forget(state)
            n += 1
        self.stats.expired += n
        return n

    def _forget(self, state: _State) -> None:
        self._forgotten_until = max(self._forgotten_until, state.point.time_unix_nano)

    def _key(
        self, point: MetricPoint, resources: dict[int, tuple[dict[str, Any], tuple[Hashable, ...]]]
    ) -> SeriesKey:
        # Resource maps are shared by every point of a source: their key is made once per batch.
        held = resources.get(id(point.resource))
        if held is None or held[0] is not point.resource:
            held = resources[id(point.resource)] = (point.resource, attributes_key(point.resource))
        scope = point.scope
        return (
            point.name,
            point.kind.value,
            scope.name,
            scope.version,
            attributes_key(point.attributes),
            held[1],
        )

    def _cumulative(self, point: MetricPoint, key: SeriesKey, now: float) -> Delta | None:
        series = self._series
        state = series.get(key)
        if point.flags & FLAG_NO_RECORDED_VALUE:
            if state is not None:
                del series[key]
                self._forget(state)
                self.stats.ended += 1
            return None
        if not _number_ok(point):
            self.stats.invalid += 1
            return None
        if state is None:
            if len(series) >= self.max_series:
                _, oldest = series.popitem(last=False)
                self._forget(oldest)
                self.stats.evicted += 1
            series[key] = _State(point, now)
            return self._first(point)
        series.move_to_end(key)
        state.last_seen = now
        previous = state.point
        if point.time_unix_nano <= previous.time_unix_nano:
            self.stats.out_of_order += 1
            return None
        state.point = point
        start_changed = (
            point.start_time_unix_nano != previous.start_time_unix_nano
            and point.start_time_unix_nano > 0
            and previous.start_time_unix_nano > 0
        )
        if start_changed:
            self.stats.resets += 1
            return _whole(point, point.start_time_unix_nano, reset=True)
        return self._increase(point, previous)

    def _first(self, point: MetricPoint) -> Delta | None:
        policy = self.first_point
        if policy == FirstPoint.DROP:
            return None
        start = point.start_time_unix_nano
        if policy == FirstPoint.AUTO and not (
            start > 0 and start >= self.started_unix_nano and start > self._forgotten_until
        ):
            return None
        return _whole(point, start, first=True)

    def _increase(self, point: MetricPoint, previous: MetricPoint) -> Delta | None:
        since = previous.time_unix_nano
        kind = point.kind
        if kind == MetricKind.SUM:
            new, old = point.value, previous.value
            assert new is not None and old is not None  # _number_ok checked both
            if new < old:
                return self._reset(point, since)
            return Delta(point, since, point.time_unix_nano, new - old)
        if point.count < previous.count:
            return self._reset(point, since)
        sum_increase = _sub(point.sum, previous.sum)
        if kind == MetricKind.SUMMARY:
            return Delta(point, since, point.time_unix_nano, point.count - previous.count, sum=sum_increase)
        if kind == MetricKind.HISTOGRAM:
            if point.explicit_bounds != previous.explicit_bounds or len(point.bucket_counts) != len(
                previous.bucket_counts
            ):
                self.stats.layout_changes += 1
                return None
            buckets = [n - o for n, o in zip(point.bucket_counts, previous.bucket_counts, strict=True)]
            if any(b < 0 for b in buckets):
                return self._reset(point, since)
            return Delta(
                point,
                since,
                point.time_unix_nano,
                point.count - previous.count,
                sum=sum_increase,
                bucket_counts=buckets,
            )
        return self._exponential_increase(point, previous, since, sum_increase)

    def _exponential_increase(
        self, point: MetricPoint, previous: MetricPoint, since: int, sum_increase: float | None
    ) -> Delta | None:
        if point.scale > previous.scale or point.zero_threshold != previous.zero_threshold:
            # A cumulative histogram only ever coarsens its scale; finer buckets or a new zero
            # bucket cannot be compared with the old ones.
            self.stats.layout_changes += 1
            return None
        by = previous.scale - point.scale
        old_pos = _downscale(previous.positive_offset, previous.positive_bucket_counts, by)
        old_neg = _downscale(previous.negative_offset, previous.negative_bucket_counts, by)
        positive = _aligned_diff(point.positive_offset, point.positive_bucket_counts, *old_pos)
        negative = _aligned_diff(point.negative_offset, point.negative_bucket_counts, *old_neg)
        zero = point.zero_count - previous.zero_count
        if positive is None or negative is None or zero < 0:
            return self._reset(point, since)
        return Delta(
            point,
            since,
            point.time_unix_nano,
            point.count - previous.count,
            sum=sum_increase,
            zero_count=zero,
            positive_offset=point.positive_offset,
            positive_bucket_counts=positive,
            negative_offset=point.negative_offset,
            negative_bucket_counts=negative,
        )

    def _reset(self, point: MetricPoint, since: int) -> Delta:
        self.stats.resets += 1
        start = point.start_time_unix_nano if point.start_time_unix_nano > since else since
        return _whole(point, start, reset=True)
