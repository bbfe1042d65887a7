"""Event-time windows: edges exact to the bucket, incremental sums equal to a recount, snapshots."""

from __future__ import annotations

import random

import pytest

from collector.slo.windows import TIER_RESOLUTIONS, SloWindows

DAY = 86400.0
T0 = 1_699_999_200.0  # a multiple of 10 s, 5 min and 1 h: bucket edges are easy to reason about
assert T0 % 3600 == 0


def sums(w: SloWindows, now: float) -> dict[str, tuple[float, float]]:
    w.advance(now)
    return {name: (s.total, s.second) for name, s in w.sums.items()}


def test_windows_of_a_30_day_period() -> None:
    w = SloWindows(30 * DAY)
    assert list(w.sums) == ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"]
    assert not w.allocated  # nothing allocated before the first event
    assert all(s.total == 0 for s in w.sums.values())


def test_slos_without_events_share_zero_windows_until_their_first() -> None:
    quiet, busy = SloWindows(30 * DAY), SloWindows(30 * DAY)
    assert quiet.sums is busy.sums  # one read-only set of zeros for the period
    assert quiet.snapshot() == ([-1, -1, -1], [b"", b"", b""])
    busy.advance(T0)
    assert busy.add(T0, 4, 1, T0)
    assert busy.allocated and busy.sums is not quiet.sums
    assert sums(busy, T0)["5m"] == (4, 1)
    # The event went into busy's own windows only: quiet, and an SLO made later, still read zero.
    assert set(sums(quiet, T0).values()) == {(0, 0)}
    assert set(sums(SloWindows(30 * DAY), T0).values()) == {(0, 0)}
    assert not quiet.allocated
    # A restored snapshot gets windows of its own too.
    restored = SloWindows(30 * DAY)
    assert restored.restore(*busy.snapshot(), T0)
    assert restored.sums is not quiet.sums and sums(restored, T0) == sums(busy, T0)
    assert set(sums(quiet, T0).values()) == {(0, 0)}


@pytest.mark.parametrize(
    ("window", "resolution", "seconds"),
    [
        ("5m", 10, 300),
        ("30m", 10, 1800),
        ("1h", 10, 3600),
        ("2h", 300, 7200),
        ("6h", 300, 21600),
        ("1d", 300, 86400),
        ("3d", 3600, 3 * 86400),
        ("30d", 3600, 30 * 86400),
    ],
)
def test_an_event_leaves_each_window_exactly_when_its_bucket_does(
    window: str, resolution: int, seconds: int
) -> None:
    w = SloWindows(30 * DAY)
    t = T0 + 1234.5
    w.advance(t)
    assert w.add(t, 1, 1, t)
    bucket_start = t // resolution * resolution
    # The window holds the buckets that end after now - window: this one until now reaches
    # its start + window.
    leaves = bucket_start + seconds
    assert sums(w, leaves - 0.001)[window] == (1, 1)
    assert sums(w, leaves)[window] == (0, 0)
    assert w.total == 1 and w.second == 1  # lifetime counts stay


def test_incremental_sums_equal_a_recount() -> None:
    rng = random.Random(11)
    period = 7 * DAY
    w = SloWindows(period)
    events: list[tuple[float, float, float]] = []
    now = T0
    tiers = {name: s.tier for name, s in w.sums.items()}
    lengths = {name: s.length for name, s in w.sums.items()}
    for step in range(3000):
        # Mostly small steps, sometimes hours or days: every tier's expiry and wrap-around runs.
        now += rng.choice([0.5, 3, 10, 45, 400, 4000, 30000]) if step % 7 else rng.uniform(0, 20)
        w.advance(now)
        for _ in range(rng.randint(0, 3)):
            t = now - rng.uniform(0, 300)  # late but within lateness
            total, bad = float(rng.randint(1, 5)), float(rng.randint(0, 1))
            w.add(t, total, bad, now)
            events.append((t, total, bad))
        if step % 50 == 0:
            for name, window in w.sums.items():
                resolution = TIER_RESOLUTIONS[tiers[name]]
                first = int(now // resolution) - lengths[name] + 1
                expected_total = sum(e[1] for e in events if int(e[0] // resolution) >= first)
                expected_bad = sum(e[2] for e in events if int(e[0] // resolution) >= first)
                assert window.total == pytest.approx(expected_total), (step, name)
                assert window.second == pytest.approx(expected_bad), (step, name)


def test_a_clock_jump_beyond_every_ring_empties_them() -> None:
    w = SloWindows(30 * DAY)
    w.add(T0, 10, 2, T0)
    assert sums(w, T0 + 31 * DAY) == {name: (0, 0) for name in w.sums}
    w.add(T0 + 31 * DAY, 4, 1, T0 + 31 * DAY)
    assert all(v == (4, 1) for v in sums(w, T0 + 31 * DAY).values())


def test_future_events_count_as_now_and_too_old_ones_not_at_all() -> None:
    w = SloWindows(30 * DAY)
    w.add(T0 + 3600, 1, 0, T0)  # a clock ahead: counted at now
    assert sums(w, T0)["5m"] == (1, 0)
    assert sums(w, T0 + 300)["5m"] == (0, 0)
    assert not w.add(T0 - 40 * DAY, 1, 1, T0 + 300)  # older than the period ring
    assert w.total == 1


def test_snapshot_and_restore_keep_every_window() -> None:
    w = SloWindows(30 * DAY)
    for i in range(200):
        t = T0 + i * 97.0
        w.advance(t)
        w.add(t, 3, i % 2, t)
    now = T0 + 200 * 97.0
    before = sums(w, now)
    currents, rings = w.snapshot()
    restored = SloWindows(30 * DAY)
    assert restored.restore(currents, rings, now)
    assert sums(restored, now) == before
    later = now + 2 * 3600
    assert sums(restored, later) == sums(w, later)
    # A snapshot from another period's layout is refused rather than misread.
    assert not SloWindows(7 * DAY).restore(currents, rings, now)
