"""SLO counting split between workers and their supervisor counts every event exactly once: the
supervisor's engine, fed by the workers' RecordRelays over real socket pairs, holds the same window
totals, bad counts, lifetime and late counts as one engine that saw every batch itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.config.model import AlertingConfig
from collector.core.model import (
    Batch,
    LogRecord,
    MetricKind,
    MetricPoint,
    Signal,
    Span,
    SpanKind,
    StatusCode,
    Temporality,
)
from collector.slo.engine import SloEngine
from collector.slo.spec import SLOSpec
from collector.workers.channel import COUNTS, POINTS, Channel, pair
from collector.workers.slo_relay import RecordRelay, apply

T0 = 1_699_999_200.0
NS = 1_000_000_000
TIMEOUT = 30.0
MARK = "test-mark"  # not a message of the protocol: the test's own "everything sent so far" marker


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def slo(name: str, service: str, sli: dict[str, Any]) -> SLOSpec:
    return SLOSpec.model_validate({"name": name, "service": service, "objective": 99.0, "sli": sli})


RECORD_SLOS = [
    slo("checkout-logs", "checkout",
        {"logs": {"match": {"service.name": "checkout"}, "bad": {"severity": ">=error"}}}),
    slo("cart-logs", "cart", {"logs": {"match": {}, "bad": {"severity": ">=warn"}}}),
    slo("every-logs", "shop", {"logs": {"match": {"service.name": "=~.+"}, "bad": {"severity": ">=error"}}}),
    slo(
        "checkout-spans",
        "checkout",
        {"traces": {"match": {"span.kind": "server"}, "bad": {"status": "error", "latency_over": "300ms"}}},
    ),
]  # fmt: skip

METRIC_SLOS = [
    slo(
        "api-errors",
        "api",
        {"metrics": {"total": 'http_requests_total{job="api"}',
                     "bad": 'http_requests_total{job="api",code=~"5.."}'}},
    ),
    slo(
        "api-latency",
        "api",
        {
            "metrics": {
                "total": 'http_request_duration_seconds_count{job="api"}',
                "good": 'http_request_duration_seconds_bucket{job="api",le="0.3"}',
            }
        },
    ),
]  # fmt: skip


def engine(slos: list[SLOSpec], clock: Clock) -> SloEngine:
    return SloEngine(list(slos), AlertingConfig(lateness=300), clock=clock)


class Link:
    """One worker: its matching-only engine and relay on a real socket pair, and the supervisor's
    reading end."""

    def __init__(self, relay: RecordRelay, worker: Channel, supervisor: Channel) -> None:
        self.relay = relay
        self.worker = worker
        self.supervisor = supervisor
        self._messages: AsyncIterator[dict[str, Any]] = supervisor.messages()
        self.received: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, slos: list[SLOSpec], clock: Clock) -> Link:
        ours, theirs = pair()
        supervisor = await Channel.open(ours)
        worker = await Channel.open(theirs)
        return cls(RecordRelay(worker, engine(slos, clock)), worker, supervisor)

    async def deliver(self, target: SloEngine) -> int:
        """Applies to ``target`` everything the worker sent so far, in order; returns what was dropped."""
        self.worker.send({"t": MARK})
        dropped = 0
        while True:
            message = await asyncio.wait_for(anext(self._messages), TIMEOUT)
            if message["t"] == MARK:
                return dropped
            self.received.append(message)
            dropped += apply(target, message)

    async def close(self) -> None:
        await self.worker.close()
        await self.supervisor.close()


def windows_of(e: SloEngine) -> dict[str, Any]:
    """Everything the engine counted, per SLO: each window's (total, second), lifetime, late."""
    return {
        name: (
            {w: (s.total, s.second) for w, s in state.windows.sums.items()},
            state.lifetime(),
            state.late,
        )
        for name, state in e.slos.items()
    }


SERVICES = ["checkout", "cart", "search"]
# (signal, service, bad, age in seconds: up to beyond the lateness of 300 s, worker)
Event = tuple[str, str, bool, int, int]
events = st.tuples(
    st.sampled_from(["log", "span"]),
    st.sampled_from(SERVICES),
    st.booleans(),
    st.sampled_from([0, 0, 5, 30, 90, 250, 299, 320, 900, -1]),
    st.integers(0, 1),
)


def log_record(clock: Clock, service: str, bad: bool, age: int) -> LogRecord:
    # age -1: no time at all, the engine's now counts.
    t = 0 if age < 0 else int((clock.now - age) * NS)
    severity = (17 if service != "cart" else 13) if bad else 9
    resource = {"service.name": service} if service else {}  # "": no service, which no SLO watches
    return LogRecord(time_unix_nano=t, severity_number=severity, resource=resource)


def span(clock: Clock, service: str, bad: bool, age: int) -> Span:
    end = int((clock.now - max(age, 0)) * NS)
    return Span(
        "a" * 32,
        "b" * 16,
        "GET /",
        end - (450 if bad and age % 2 else 10) * 1_000_000,
        end,
        kind=SpanKind.SERVER if age != 90 else SpanKind.CLIENT,  # some spans no SLO counts
        status_code=StatusCode.ERROR if bad and not age % 2 else StatusCode.UNSET,
        resource={"service.name": service},
    )


async def split_scenario(steps: list[tuple[int, list[Event]]]) -> None:
    clock = Clock()
    single = engine(RECORD_SLOS, clock)
    supervisor = engine(RECORD_SLOS, clock)
    links = [await Link.open(RECORD_SLOS, clock), await Link.open(RECORD_SLOS, clock)]
    try:
        for advance, step in steps:
            clock.now += advance
            made = [
                (log_record if kind == "log" else span)(clock, service, bad, age)
                for kind, service, bad, age, _ in step
            ]
            for signal in (Signal.LOGS, Signal.TRACES):
                wanted = LogRecord if signal == Signal.LOGS else Span
                mine = [(item, e[4]) for item, e in zip(made, step, strict=True) if isinstance(item, wanted)]
                single.observe(Batch(signal, [item for item, _ in mine]))
                for index, link in enumerate(links):
                    link.relay.observe(Batch(signal, [item for item, w in mine if w == index]))
            for link in links:
                assert await link.deliver(supervisor) == 0
        assert windows_of(supervisor) == windows_of(single)
        # The workers' own engines only match: nothing is ever added to their windows.
        for link in links:
            assert link.relay.engine is not None
            assert all(s.windows.total == 0 and not s.windows.allocated for s in link.relay.engine.states)
            assert all(m["t"] == COUNTS for m in link.received)
    finally:
        for link in links:
            await link.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(st.sampled_from([0, 1, 7, 10, 60, 400]), st.lists(events, max_size=30)),
        min_size=1,
        max_size=8,
    )
)
def test_records_split_arbitrarily_between_two_workers_count_as_in_one_engine(
    steps: list[tuple[int, list[Event]]],
) -> None:
    asyncio.run(split_scenario(steps))


async def test_a_fixed_split_counts_bad_and_good_exactly() -> None:
    """The same property on one hand-written case, with its expected numbers spelt out."""
    clock = Clock()
    supervisor = engine(RECORD_SLOS, clock)
    links = [await Link.open(RECORD_SLOS, clock), await Link.open(RECORD_SLOS, clock)]
    try:
        first = [log_record(clock, "checkout", bad, 0) for bad in (False, True, False)]
        second = [log_record(clock, "checkout", bad, 0) for bad in (True, True)]
        links[0].relay.observe(Batch(Signal.LOGS, first))
        links[1].relay.observe(Batch(Signal.LOGS, second))
        for link in links:
            await link.deliver(supervisor)
    finally:
        for link in links:
            await link.close()
    state = supervisor.slos["checkout-logs"]
    assert state.bad_total("5m") == (3, 5)
    assert state.lifetime() == (2, 3)
    assert supervisor.slos["every-logs"].bad_total("1h") == (3, 5)
    assert supervisor.slos["cart-logs"].bad_total("1h") == (0, 0)


def counter(value: float, t: float, code: str) -> MetricPoint:
    return MetricPoint(
        name="http_requests_total",
        kind=MetricKind.SUM,
        time_unix_nano=int(t * NS),
        attributes={"code": code},
        value=value,
        monotonic=True,
        temporality=Temporality.CUMULATIVE,
        resource={"service.name": "api", "service.instance.id": "10.0.0.1:8080"},
    )


def histogram(t: float, buckets: list[int]) -> MetricPoint:
    return MetricPoint(
        name="http_request_duration_seconds",
        kind=MetricKind.HISTOGRAM,
        time_unix_nano=int(t * NS),
        count=sum(buckets),
        sum=0.0,
        bucket_counts=buckets,
        explicit_bounds=[0.1, 0.3, 1.0],
        temporality=Temporality.CUMULATIVE,
        resource={"service.name": "api"},
    )


# Cumulative values of one target's series, scrape by scrape: (ok, errors, histogram buckets). The
# fourth is a counter reset (the process restarted).
SCRAPES = [
    (100, 1, [10, 10, 1, 0]),
    (190, 11, [50, 30, 15, 5]),
    (260, 13, [70, 40, 15, 5]),
    (40, 2, [75, 45, 20, 5]),
    (90, 9, [80, 50, 30, 6]),
]


async def test_points_of_one_series_through_alternating_workers_count_as_in_one_engine() -> None:
    clock = Clock()
    single = engine(METRIC_SLOS, clock)
    supervisor = engine(METRIC_SLOS, clock)
    links = [await Link.open(METRIC_SLOS, clock), await Link.open(METRIC_SLOS, clock)]
    try:
        for i, (ok, errors, buckets) in enumerate(SCRAPES):
            t = clock.now
            points = [
                counter(ok, t, "200"),
                counter(errors, t, "503"),
                histogram(t, buckets),
                _unwanted(t, i),
            ]
            batch = Batch(Signal.METRICS, points)
            single.observe(batch)
            link = links[i % 2]  # remote_write shards: each scrape reaches the other worker
            link.relay.observe(batch)
            assert await link.deliver(supervisor) == 0
            clock.now += 15
    finally:
        for link in links:
            await link.close()
    assert windows_of(supervisor) == windows_of(single)
    slos = supervisor.slos
    # The first scrape is the baseline. errors 1 -> 11 -> 13, reset to 2, 9: 10 + 2 + 2 + 7 = 21 bad;
    # ok 100 -> 190 -> 260, reset to 40, 90: 90 + 70 + 40 + 50 = 250; total 271.
    assert slos["api-errors"].bad_total("5m") == (21, 271)
    # count 21 -> 100 -> 130 -> 145 -> 166 (145 more); le 0.3: 20 -> 80 -> 110 -> 120 -> 130 (110 more)
    assert slos["api-latency"].bad_total("5m") == (145 - 110, 145)
    # Only the wanted points travel, as a batch per observed batch; the worker's deltas stay empty.
    for link in links:
        assert [m["t"] for m in link.received] == [POINTS] * len(link.received)
        assert link.received
        assert link.relay.engine is not None
        assert all(s.windows.total == 0 for s in link.relay.engine.states)


def _unwanted(t: float, i: int) -> MetricPoint:
    """A point of a metric no SLO names: no SLO wants it."""
    point = counter(5000 + i, t, "503")
    point.name = "process_cpu_seconds_total"
    return point


async def test_a_batch_no_slo_matches_sends_nothing() -> None:
    clock = Clock()
    supervisor = engine(RECORD_SLOS + METRIC_SLOS, clock)
    link = await Link.open(RECORD_SLOS + METRIC_SLOS, clock)
    try:
        link.relay.observe(Batch(Signal.LOGS, [log_record(clock, "", True, 0)]))
        link.relay.observe(Batch(Signal.METRICS, [_unwanted(clock.now, 1)]))
        link.relay.observe(Batch(Signal.LOGS, []))
        assert await link.deliver(supervisor) == 0
        assert link.received == []
        # Without an engine (no SLOs in the worker) a relay sends nothing either.
        bare = RecordRelay(link.worker)
        bare.observe(Batch(Signal.LOGS, [log_record(clock, "checkout", True, 0)]))
        await link.deliver(supervisor)
        assert link.received == []
    finally:
        await link.close()


async def test_counts_for_an_slo_the_supervisor_lacks_are_dropped_and_reported() -> None:
    clock = Clock()
    # The worker already runs a reloaded SLO set the supervisor does not have yet (or no longer).
    worker_slos = [
        *RECORD_SLOS,
        slo("new-logs", "checkout", {"logs": {"match": {}, "bad": {"severity": ">=warn"}}}),
    ]
    supervisor_slos = [s for s in RECORD_SLOS if s.name != "every-logs"]
    supervisor = engine(supervisor_slos, clock)
    single = engine(supervisor_slos, clock)
    link = await Link.open(worker_slos, clock)
    try:
        batch = Batch(
            Signal.LOGS,
            [log_record(clock, "checkout", True, 0), log_record(clock, "checkout", False, 20)],
        )
        link.relay.observe(batch)
        single.observe(batch)
        # Two buckets (0 s and 20 s ago) for each of new-logs and every-logs.
        assert await link.deliver(supervisor) == 4
    finally:
        await link.close()
    assert set(supervisor.slos) == {"checkout-logs", "cart-logs", "checkout-spans"}
    # What the supervisor does have is counted, and counted into the right SLO: names, not slots.
    assert windows_of(supervisor) == windows_of(single)
    assert supervisor.slos["checkout-logs"].bad_total("5m") == (1, 2)
    assert supervisor.slos["cart-logs"].bad_total("5m") == (0, 0)


def test_apply_reports_nothing_dropped_when_every_slo_is_known() -> None:
    clock = Clock()
    supervisor = engine(RECORD_SLOS, clock)
    rows = [["checkout-logs", int(T0) // 10 * 10, 4, 1], ["nope", int(T0) // 10 * 10, 9, 9]]
    assert apply(supervisor, {"t": COUNTS, "now": T0, "c": rows[:1]}) == 0
    assert apply(supervisor, {"t": COUNTS, "now": T0, "c": rows}) == 1
    assert supervisor.slos["checkout-logs"].bad_total("5m") == (2, 8)


@pytest.mark.parametrize("lateness", [60.0])
def test_late_counts_are_late_in_the_supervisor_too(lateness: float) -> None:
    clock = Clock()
    supervisor = SloEngine(RECORD_SLOS, AlertingConfig(lateness=lateness), clock=clock)
    old = int(T0 - 200) // 10 * 10
    assert apply(supervisor, {"t": COUNTS, "now": T0, "c": [["checkout-logs", old, 3, 1]]}) == 0
    state = supervisor.slos["checkout-logs"]
    assert state.late == 3 and state.bad_total("1h") == (0, 0)
