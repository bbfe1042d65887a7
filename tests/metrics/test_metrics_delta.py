"""DeltaTracker: increases of cumulative series, resets, start-time changes, staleness, bounds."""

from __future__ import annotations

import math
from typing import Any

import pytest

from collector.core.model import MetricKind, MetricPoint, Scope, Temporality
from collector.metrics import Delta, DeltaTracker, FirstPoint

S = 1_000_000_000
T0 = 1_700_000_000 * S
RESOURCE = {"service.name": "checkout", "service.instance.id": "pod-1"}


def counter(
    value: float | int,
    t: int,
    *,
    start: int = 0,
    name: str = "http_requests_total",
    attributes: dict[str, Any] | None = None,
    resource: dict[str, Any] | None = None,
    temporality: Temporality = Temporality.CUMULATIVE,
    flags: int = 0,
) -> MetricPoint:
    return MetricPoint(
        name=name,
        kind=MetricKind.SUM,
        time_unix_nano=T0 + t * S,
        start_time_unix_nano=start,
        attributes=dict(attributes if attributes is not None else {"code": "200"}),
        value=value,
        temporality=temporality,
        monotonic=True,
        resource=RESOURCE if resource is None else resource,
        flags=flags,
    )


def histogram(
    counts: list[int], t: int, *, bounds: list[float] | None = None, total: float = 0.0
) -> MetricPoint:
    return MetricPoint(
        name="latency",
        kind=MetricKind.HISTOGRAM,
        time_unix_nano=T0 + t * S,
        value=None,
        temporality=Temporality.CUMULATIVE,
        count=sum(counts),
        sum=total,
        bucket_counts=counts,
        explicit_bounds=bounds if bounds is not None else [0.1, 0.5],
        resource=RESOURCE,
    )


def values(deltas: list[Delta]) -> list[float | int]:
    return [d.value for d in deltas]


def test_increments_between_points_of_one_series() -> None:
    tracker = DeltaTracker(first_point="drop")
    assert tracker.deltas([counter(10, 0)], now=0) == []  # the baseline
    out = tracker.deltas([counter(15, 1), counter(15, 2), counter(22.5, 3)], now=1)
    assert values(out) == [5, 0, 7.5]
    assert [(d.start_time_unix_nano, d.time_unix_nano) for d in out] == [
        (T0, T0 + S),
        (T0 + S, T0 + 2 * S),
        (T0 + 2 * S, T0 + 3 * S),
    ]
    assert not any(d.reset or d.first for d in out)
    assert out[0].point.value == 15


def test_series_are_kept_apart_by_attributes_resource_and_name() -> None:
    tracker = DeltaTracker(first_point="drop")
    other_resource = {"service.name": "checkout", "service.instance.id": "pod-2"}
    first = [
        counter(1, 0, attributes={"code": "200"}),
        counter(100, 0, attributes={"code": "500"}),
        counter(1000, 0, resource=other_resource),
        counter(7, 0, name="other_total"),
    ]
    assert tracker.deltas(first, now=0) == []
    assert len(tracker) == 4
    second = [
        counter(2, 1, attributes={"code": "200"}),
        counter(150, 1, attributes={"code": "500"}),
        counter(1003, 1, resource=dict(other_resource)),  # an equal map, another object: same series
        counter(7, 1, name="other_total"),
    ]
    assert values(tracker.deltas(second, now=1)) == [1, 50, 3, 0]


def test_attribute_order_and_value_types_decide_identity() -> None:
    tracker = DeltaTracker(first_point="drop")
    tracker.deltas([counter(1, 0, attributes={"a": "x", "b": 1})], now=0)
    # Same attributes in another order: the same series. 1.0 and True are not 1: other series.
    out = tracker.deltas(
        [
            counter(4, 1, attributes={"b": 1, "a": "x"}),
            counter(9, 1, attributes={"a": "x", "b": 1.0}),
            counter(9, 1, attributes={"a": "x", "b": True}),
        ],
        now=1,
    )
    assert values(out) == [3]
    assert len(tracker) == 3


def test_a_decrease_is_a_reset_and_the_new_value_is_the_increase() -> None:
    tracker = DeltaTracker(first_point="drop")
    tracker.deltas([counter(100, 0)], now=0)
    out = tracker.deltas([counter(120, 1), counter(3, 2), counter(10, 3)], now=1)
    assert values(out) == [20, 3, 7]
    assert [d.reset for d in out] == [False, True, False]
    assert tracker.stats.resets == 1


def test_a_changed_start_time_is_a_reset_even_when_the_value_grew() -> None:
    tracker = DeltaTracker(first_point="drop")
    tracker.deltas([counter(5, 0, start=T0 - 60 * S)], now=0)
    out = tracker.deltas([counter(8, 1, start=T0 - 60 * S), counter(9, 2, start=T0 + 2 * S - 1)], now=1)
    assert values(out) == [3, 9]
    assert out[1].reset
    assert out[1].start_time_unix_nano == T0 + 2 * S - 1
    # A start time that appears where there was none is not a reset.
    tracker2 = DeltaTracker(first_point="drop")
    tracker2.deltas([counter(5, 0)], now=0)
    assert values(tracker2.deltas([counter(6, 1, start=T0 - S)], now=1)) == [1]


def test_out_of_order_and_duplicate_points_are_ignored() -> None:
    tracker = DeltaTracker(first_point="drop")
    tracker.deltas([counter(10, 5)], now=0)
    out = tracker.deltas([counter(8, 4), counter(10, 5), counter(12, 6)], now=1)
    assert values(out) == [2]
    assert tracker.stats.out_of_order == 2
    assert tracker.stats.resets == 0


def test_first_point_policies() -> None:
    started = T0
    before = counter(50, 0, start=T0 - 10 * S)  # began before the tracker: already counted elsewhere
    after = counter(4, 1, start=T0 + S // 2, name="new_total")  # began while the tracker ran
    unknown = counter(7, 1, name="unknown_start_total")
    drop = DeltaTracker(first_point=FirstPoint.DROP, started_unix_nano=started)
    keep = DeltaTracker(first_point="keep", started_unix_nano=started)
    auto = DeltaTracker(started_unix_nano=started)
    assert drop.deltas([before, after, unknown], now=0) == []
    kept = keep.deltas([before, after, unknown], now=0)
    assert values(kept) == [50, 4, 7] and all(d.first for d in kept)
    auto_out = auto.deltas([before, after, unknown], now=0)
    assert values(auto_out) == [4]
    assert auto_out[0].first and auto_out[0].start_time_unix_nano == T0 + S // 2


def test_auto_never_counts_a_forgotten_series_twice() -> None:
    tracker = DeltaTracker(max_series=1, started_unix_nano=T0)
    a = counter(4, 1, start=T0 + S, name="a_total")
    assert values(tracker.deltas([a], now=0)) == [4]
    # b evicts a; a comes back with the same start time: its value was counted already.
    b = counter(1, 2, start=T0 + 2 * S, name="b_total")
    assert values(tracker.deltas([b], now=1)) == [1]
    again = counter(6, 3, start=T0 + S, name="a_total")
    assert tracker.deltas([again], now=2) == []
    assert tracker.stats.evicted == 2
    # A series that starts after everything forgotten is still counted from its first point.
    fresh = counter(2, 4, start=T0 + 10 * S, name="c_total")
    assert values(tracker.deltas([fresh], now=3)) == [2]


def test_series_not_seen_for_stale_after_are_forgotten() -> None:
    tracker = DeltaTracker(stale_after=300, first_point="drop")
    tracker.deltas([counter(10, 0, name="a_total"), counter(10, 0, name="b_total")], now=1000)
    tracker.deltas([counter(11, 1, name="b_total")], now=1200)
    assert tracker.expire(1301) == 1  # a last seen at 1000
    assert len(tracker) == 1 and tracker.stats.expired == 1
    # a comes back: a new series, whose first point is a baseline again (no increase of 5).
    assert tracker.deltas([counter(15, 2, name="a_total")], now=1302) == []
    assert values(tracker.deltas([counter(16, 3, name="a_total")], now=1303)) == [1]


def test_the_series_count_is_bounded_by_evicting_the_least_recently_seen() -> None:
    tracker = DeltaTracker(max_series=3, first_point="drop")
    tracker.deltas([counter(1, 0, name=f"s{i}_total") for i in range(3)], now=0)
    tracker.deltas([counter(2, 1, name="s0_total")], now=1)  # s0 is now the most recent
    tracker.deltas([counter(1, 1, name="s3_total")], now=2)  # evicts s1, the least recently seen
    assert len(tracker) == 3
    assert tracker.stats.evicted == 1
    out = tracker.deltas([counter(5, 2, name="s0_total"), counter(5, 2, name="s1_total")], now=3)
    assert values(out) == [3]  # s1 was forgotten: its point is a new baseline
    assert len(tracker) == 3


def test_a_stale_marker_ends_the_series() -> None:
    tracker = DeltaTracker(first_point="drop")
    tracker.deltas([counter(10, 0)], now=0)
    assert tracker.deltas([counter(math.nan, 1, flags=1)], now=1) == []
    assert len(tracker) == 0 and tracker.stats.ended == 1
    assert tracker.deltas([counter(3, 2)], now=2) == []  # a new baseline


def test_nan_values_are_skipped_without_touching_the_state() -> None:
    tracker = DeltaTracker(first_point="drop")
    tracker.deltas([counter(10, 0)], now=0)
    assert tracker.deltas([counter(math.nan, 1)], now=1) == []
    assert values(tracker.deltas([counter(12, 2)], now=2)) == [2]
    assert tracker.stats.invalid == 1


def test_gauges_non_monotonic_sums_and_delta_points() -> None:
    tracker = DeltaTracker(first_point="keep")
    gauge = MetricPoint(name="temp", kind=MetricKind.GAUGE, time_unix_nano=T0, value=3.0)
    updown = counter(5, 0, name="queue")
    updown.monotonic = False
    delta = counter(4, 1, temporality=Temporality.DELTA, start=T0)
    out = tracker.deltas([gauge, updown, delta], now=0)
    assert values(out) == [4]
    assert out[0].start_time_unix_nano == T0 and not out[0].first
    assert len(tracker) == 0  # delta points need no state


def test_histogram_buckets_count_and_sum() -> None:
    tracker = DeltaTracker(first_point="drop")
    tracker.deltas([histogram([1, 2, 0], 0, total=1.0)], now=0)
    out = tracker.deltas([histogram([4, 2, 1], 1, total=3.5)], now=1)
    assert len(out) == 1
    d = out[0]
    assert (d.value, d.sum, d.bucket_counts, d.reset) == (4, 2.5, [3, 0, 1], False)
    # A bucket going down is a reset, even though the count grew.
    out = tracker.deltas([histogram([0, 10, 0], 2, total=4.0)], now=2)
    assert out[0].reset and out[0].bucket_counts == [0, 10, 0] and out[0].value == 10


def test_histogram_whose_buckets_change_is_rebaselined() -> None:
    tracker = DeltaTracker(first_point="drop")
    tracker.deltas([histogram([1, 1, 1], 0)], now=0)
    assert tracker.deltas([histogram([2, 2, 2, 2], 1, bounds=[0.1, 0.5, 1.0])], now=1) == []
    assert tracker.stats.layout_changes == 1
    out = tracker.deltas([histogram([3, 2, 2, 2], 2, bounds=[0.1, 0.5, 1.0])], now=2)
    assert out[0].bucket_counts == [1, 0, 0, 0]


def test_exponential_histogram_increase_across_a_downscale() -> None:
    def exp(t: int, scale: int, offset: int, counts: list[int], zero: int = 0) -> MetricPoint:
        return MetricPoint(
            name="rpc",
            kind=MetricKind.EXPONENTIAL_HISTOGRAM,
            time_unix_nano=T0 + t * S,
            temporality=Temporality.CUMULATIVE,
            count=sum(counts) + zero,
            sum=float(t),
            scale=scale,
            zero_count=zero,
            positive_offset=offset,
            positive_bucket_counts=counts,
            scope=Scope("lib", "1.0"),
        )

    tracker = DeltaTracker(first_point="drop")
    tracker.deltas([exp(0, 2, 4, [1, 1, 1, 1], zero=1)], now=0)  # indexes 4..7 at scale 2
    # Scale 1 merges index pairs: 4,5 -> 2 and 6,7 -> 3; one more observation in 3, one in 4.
    out = tracker.deltas([exp(1, 1, 2, [2, 3, 1], zero=2)], now=1)
    d = out[0]
    assert (d.positive_offset, d.positive_bucket_counts, d.zero_count, d.value) == (2, [0, 1, 1], 1, 3)
    # A finer scale than before cannot be compared: re-baselined.
    assert tracker.deltas([exp(2, 3, 8, [10])], now=2) == []
    assert tracker.stats.layout_changes == 1


def test_summary_count_and_sum() -> None:
    tracker = DeltaTracker(first_point="drop")

    def summary(t: int, count: int, total: float) -> MetricPoint:
        return MetricPoint(
            name="rpc_seconds",
            kind=MetricKind.SUMMARY,
            time_unix_nano=T0 + t * S,
            count=count,
            sum=total,
            quantiles=[(0.5, 0.1)],
        )

    tracker.deltas([summary(0, 10, 2.0)], now=0)
    out = tracker.deltas([summary(1, 15, 3.0), summary(2, 2, 0.5)], now=1)
    assert [(d.value, d.sum, d.reset) for d in out] == [(5, 1.0, False), (2, 0.5, True)]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_series"):
        DeltaTracker(max_series=0)
    with pytest.raises(ValueError, match="stale_after"):
        DeltaTracker(stale_after=0)
    with pytest.raises(ValueError):
        DeltaTracker(first_point="sometimes")
