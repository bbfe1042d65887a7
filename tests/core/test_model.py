"""The data model's shared empty list: every point and span reads it as a list and none can fill it."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Callable
from typing import Any

import msgpack
import orjson
import pytest

from collector.core.model import NO_ITEMS, MetricKind, MetricPoint, Span


def _point() -> MetricPoint:
    return MetricPoint(name="up", kind=MetricKind.GAUGE, time_unix_nano=1, value=1.0)


def test_points_and_spans_without_items_share_one_empty_list() -> None:
    a, b = _point(), _point()
    span = Span(trace_id="a" * 32, span_id="b" * 16, name="GET", start_time_unix_nano=1, end_time_unix_nano=2)
    for holder in (a, b):
        for name in (
            "bucket_counts",
            "explicit_bounds",
            "positive_bucket_counts",
            "negative_bucket_counts",
            "quantiles",
            "exemplars",
        ):
            assert getattr(holder, name) is NO_ITEMS
    assert span.events is NO_ITEMS and span.links is NO_ITEMS
    assert a == b and a.bucket_counts == [] and isinstance(a.bucket_counts, list)


@pytest.mark.parametrize(
    "change",
    [
        lambda items: items.append(1),
        lambda items: items.extend([1]),
        lambda items: items.insert(0, 1),
        lambda items: items.__iadd__([1]),
        lambda items: items.__setitem__(slice(0, 0), [1]),
        lambda items: items.__imul__(2),
    ],
    ids=["append", "extend", "insert", "+=", "slice assignment", "*="],
)
def test_filling_the_shared_empty_list_is_refused_and_changes_no_other_point(
    change: Callable[[list[Any]], object],
) -> None:
    a, b = _point(), _point()
    with pytest.raises(TypeError, match="assign a new list"):
        change(a.exemplars)
    assert b.exemplars == [] and len(NO_ITEMS) == 0


def test_a_point_given_its_own_list_owns_it() -> None:
    a, b = _point(), _point()
    a.bucket_counts = [1, 2]
    a.bucket_counts.append(3)
    assert a.bucket_counts == [1, 2, 3] and b.bucket_counts == []


def test_the_shared_empty_list_copies_pickles_and_serializes_as_itself() -> None:
    a = _point()
    for copied in (copy.copy(a), copy.deepcopy(a), dataclasses.replace(a)):
        assert copied == a and copied.quantiles == []
    assert dataclasses.asdict(a)["quantiles"] == []
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):  # slots dataclasses need 2 or more
        assert pickle.loads(pickle.dumps(a, protocol=protocol)).quantiles is NO_ITEMS
    assert copy.deepcopy(a).quantiles is NO_ITEMS
    assert orjson.dumps(NO_ITEMS) == b"[]"
    assert msgpack.unpackb(msgpack.packb(NO_ITEMS)) == []
