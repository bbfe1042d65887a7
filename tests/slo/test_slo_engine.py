"""The SLO engine on synthetic streams with a controllable clock: counting per signal, burn rates,
the multiwindow alert policy, the alert lifecycle, lateness, metrics, persistence and 10,000 SLOs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

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
from collector.slo.engine import RESOLVED_RETENTION, SloEngine
from collector.slo.metrics import SloMetrics
from collector.slo.persistence import Persister
from collector.slo.spec import SLOSpec

T0 = 1_699_999_200.0
NS = 1_000_000_000


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Sink:
    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []

    def send(self, alerts: list[dict[str, Any]]) -> None:
        self.alerts.extend(alerts)


def log_slo(name: str = "checkout-logs", objective: float = 99.0, **extra: Any) -> SLOSpec:
    return SLOSpec.model_validate(
        {
            "name": name,
            "service": "checkout",
            "objective": objective,
            "sli": {"logs": {"match": {"service.name": "checkout"}, "bad": {"severity": ">=error"}}},
            **extra,
        }
    )


def logs(clock: Clock, good: int, bad: int, resource: dict[str, Any] | None = None, age: float = 0) -> Batch:
    resource = {"service.name": "checkout"} if resource is None else resource
    t = int((clock.now - age) * NS)
    records = [LogRecord(time_unix_nano=t, severity_number=9, resource=resource) for _ in range(good)]
    records += [LogRecord(time_unix_nano=t, severity_number=17, resource=resource) for _ in range(bad)]
    return Batch(Signal.LOGS, records)


def engine_for(*slos: SLOSpec, clock: Clock, **alerting: Any) -> SloEngine:
    return SloEngine(list(slos), AlertingConfig(**alerting), clock=clock, generator_url="http://admin:8888")


def steady(engine: SloEngine, clock: Clock, minutes: int, good: int, bad: int) -> None:
    """A batch a minute for ``minutes``, evaluating after each."""
    for _ in range(minutes):
        clock.now += 60
        engine.observe(logs(clock, good, bad))
        engine.evaluate()


def test_burn_rate_arithmetic_and_budget() -> None:
    clock = Clock()
    engine = engine_for(log_slo(objective=99.0), clock=clock)
    engine.observe(logs(clock, good=98, bad=2))
    engine.evaluate()
    status = engine.status("checkout-logs")[0]
    for window in ("5m", "1h", "30d"):
        assert status["windows"][window]["total"] == 100
        assert status["windows"][window]["bad"] == 2
        assert status["windows"][window]["burn_rate"] == pytest.approx(2.0)  # 2 % errors / 1 % budget
    assert status["error_budget_remaining"] == pytest.approx(-1.0)  # twice the budget spent
    assert status["sli"] == pytest.approx(0.98)
    assert status["events"] == {"good": 98, "bad": 2, "late": 0}
    # 30 minutes later, the 5m window is empty (burn 0), the period still holds the events.
    clock.now += 1800
    engine.evaluate()
    status = engine.status("checkout-logs")[0]
    assert status["windows"]["5m"]["burn_rate"] == 0 and status["windows"]["5m"]["total"] == 0
    assert status["windows"]["30d"]["burn_rate"] == pytest.approx(2.0)


def test_no_traffic_never_fires_and_costs_nothing() -> None:
    clock = Clock()
    sink = Sink()
    quiet, good_only = log_slo("quiet"), log_slo("good-only")
    engine = engine_for(quiet, clock=clock)
    engine.sink = sink
    for _ in range(2000):  # almost a week of evaluations five minutes apart
        clock.now += 300
        assert engine.evaluate() == []
    status = engine.status()[0]
    assert all(w["burn_rate"] == 0 for w in status["windows"].values())
    assert status["error_budget_remaining"] == 1.0
    assert status["sli"] is None
    assert not engine.slos["quiet"].windows.allocated
    engine = engine_for(good_only, clock=clock)
    steady(engine, clock, minutes=120, good=50, bad=0)
    assert engine.evaluate() == []
    assert engine.status()[0]["error_budget_remaining"] == 1.0


def test_short_spike_in_steady_traffic_tickets_but_does_not_page() -> None:
    """1 h of good traffic, then 5 min at 50 % errors: 5m burns 50x, but the 1h window dilutes it to
    ~4x (below 14.4) and the 6h to ~4x (below 6): no page. 1d and 2h are both ~4x, above 3: a ticket.
    Then the spike goes on: after 20 minutes in all 1h is above 14.4 and the page fires."""
    clock = Clock()
    engine = engine_for(log_slo(objective=99.0), clock=clock, resend_delay=1)
    steady(engine, clock, minutes=60, good=100, bad=0)
    alerts: list[dict[str, Any]] = []
    for _ in range(5):
        clock.now += 60
        engine.observe(logs(clock, good=50, bad=50))
        alerts += engine.evaluate()
    state = engine.slos["checkout-logs"]
    assert state.burn_rate("5m") == pytest.approx(50.0)
    assert state.burn_rate("1h") < 14.4 and state.burn_rate("6h") < 6
    assert state.burn_rate("1d") > 3 and state.burn_rate("2h") > 3
    assert {a["labels"]["severity"] for a in alerts} == {"ticket"}
    for _ in range(15):
        clock.now += 60
        engine.observe(logs(clock, good=50, bad=50))
        alerts += engine.evaluate()
    assert state.burn_rate("1h") > 14.4
    page = [a for a in alerts if a["labels"]["severity"] == "page"]
    # The slow page (6h and 30m above 6) fires first; the latest re-send names the quick one too.
    assert "6h burn rate" in page[0]["annotations"]["burn_rates"]
    fired = page[-1]["annotations"]["burn_rates"]
    assert "1h burn rate" in fired and "above 14.4" in fired


def test_alert_lifecycle_payload_resend_and_resolve() -> None:
    clock = Clock()
    spec = log_slo(
        labels={"team": "shop"},
        description="Checkout logs without errors",
        alerting={
            "name": "CheckoutLogs",
            "labels": {"category": "errors"},
            "annotations": {"runbook_url": "https://runbooks.example/checkout"},
            "page": {"labels": {"severity": "critical"}},
        },
    )
    engine = engine_for(spec, clock=clock, evaluation_interval=5, resend_delay=60)
    engine.observe(logs(clock, good=0, bad=100))
    first = [a for a in engine.evaluate() if a["labels"]["alertname"] == "CheckoutLogs"]
    page = next(a for a in first if a["labels"]["severity"] == "critical")
    assert page["labels"] == {
        "alertname": "CheckoutLogs",
        "slo": "checkout-logs",
        "service": "checkout",
        "severity": "critical",  # the page's own label overrides the default "page"
        "team": "shop",
        "category": "errors",
    }
    assert page["annotations"]["runbook_url"] == "https://runbooks.example/checkout"
    assert page["annotations"]["error_budget_remaining"] == "-99.0000"
    assert "Checkout logs without errors" in page["annotations"]["description"]
    assert page["generatorURL"] == "http://admin:8888/status/slos/checkout-logs"
    assert page["startsAt"] == "2023-11-14T22:00:00.000Z"
    assert page["endsAt"] == "2023-11-14T22:04:00.000Z"  # now + 4 x max(5s, 60s)
    # Not re-sent before resend_delay; re-sent after it with a later endsAt, same startsAt.
    clock.now += 30
    assert engine.evaluate() == []
    clock.now += 30
    again = engine.evaluate()
    assert len(again) == 2
    assert {a["startsAt"] for a in again} == {page["startsAt"]}
    # Good traffic for a while: 5m falls below every factor and both alerts resolve.
    resolved: list[dict[str, Any]] = []
    for _ in range(12):
        clock.now += 30
        engine.observe(logs(clock, good=1000, bad=0))
        resolved += engine.evaluate()
    page_resolved = [a for a in resolved if a["labels"]["severity"] == "critical"]
    resolved_at = page_resolved[-1]["endsAt"]
    assert page_resolved[-1]["endsAt"] <= _iso(clock.now)
    assert engine.status()[0]["alerts"]["page"]["state"] == "resolved"
    # Re-sent every resend_delay for 15 minutes with the same endsAt, then no more.
    resends = []
    while clock.now < T0 + 3600:
        clock.now += 30
        engine.observe(logs(clock, good=1000, bad=0))
        resends += [a for a in engine.evaluate() if a["labels"]["severity"] == "critical"]
    assert resends and {a["endsAt"] for a in resends} == {resolved_at}
    assert 10 <= len(resends) <= RESOLVED_RETENTION / 60 + 1
    assert engine.status()[0]["alerts"]["page"]["state"] == "inactive"


def _iso(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_disabled_alerts_do_not_fire() -> None:
    clock = Clock()
    engine = engine_for(log_slo(alerting={"page": {"enabled": False}}), clock=clock)
    engine.observe(logs(clock, good=0, bad=10))
    assert {a["labels"]["severity"] for a in engine.evaluate()} == {"ticket"}


def test_late_events_are_counted_apart() -> None:
    clock = Clock()
    engine = engine_for(log_slo(), clock=clock, lateness=300)
    engine.observe(logs(clock, good=5, bad=5, age=200))  # within lateness: counted
    engine.observe(logs(clock, good=7, bad=0, age=400))  # beyond: late
    state = engine.slos["checkout-logs"]
    assert state.windows.sums["1h"].total == 10
    assert state.late == 7
    assert engine.status()[0]["events"]["late"] == 7


def test_matching_by_service_and_resource() -> None:
    clock = Clock()
    spec = SLOSpec.model_validate(
        {
            "name": "shop-errors",
            "service": "checkout",
            "objective": 99.5,
            "sli": {
                "logs": {
                    "match": {"service.name": "checkout", "k8s.namespace.name": "shop"},
                    "bad": {"http.response.status_code": ">=500", "body": {"regex": "panic|timeout"}},
                }
            },
        }
    )
    engine = engine_for(spec, clock=clock)
    t = int(clock.now * NS)
    shop = {"service.name": "checkout", "k8s.namespace.name": "shop"}
    other_ns = {"service.name": "checkout", "k8s.namespace.name": "test"}
    other_service = {"service.name": "cart", "k8s.namespace.name": "shop"}
    records = [
        LogRecord(t, body="ok", attributes={"http.response.status_code": 200}, resource=shop),
        LogRecord(t, body="ok", attributes={"http.response.status_code": 503}, resource=shop),
        LogRecord(t, body="upstream timeout", resource=shop),
        LogRecord(t, body="x", attributes={"http.response.status_code": "502"}, resource=shop),
        LogRecord(t, body="ok", attributes={"http.response.status_code": 500}, resource=other_ns),
        LogRecord(t, body="panic", resource=other_service),
    ]
    engine.observe(Batch(Signal.LOGS, records))
    sums = engine.slos["shop-errors"].windows.sums["5m"]
    assert (sums.total, sums.second) == (4, 3)


def span(
    kind: int, status: int = StatusCode.UNSET, ms: float = 10, code: int | None = None, **res: Any
) -> Span:
    end = int(T0 * NS)
    attributes = {} if code is None else {"http.response.status_code": code}
    resource = {"service.name": "checkout", **res}
    return Span("a" * 32, "b" * 16, "GET /", end - int(ms * 1e6), end, kind=kind, status_code=status,
                attributes=attributes, resource=resource)  # fmt: skip


def test_trace_slis() -> None:
    clock = Clock()

    def traces_slo(name: str, bad: dict[str, Any]) -> SLOSpec:
        return SLOSpec.model_validate(
            {
                "name": name,
                "service": "checkout",
                "objective": 99.9,
                "sli": {"traces": {"match": {"service.name": "checkout", "span.kind": "server"}, "bad": bad}},
            }
        )

    engine = engine_for(
        traces_slo("errors", {"status": "error"}),
        traces_slo("http", {"http_status": ">=500"}),
        traces_slo("latency", {"latency_over": "300ms"}),
        traces_slo("either", {"status": "error", "latency_over": "300ms"}),
        clock=clock,
    )
    spans = [
        span(SpanKind.SERVER),
        span(SpanKind.SERVER, StatusCode.ERROR),
        span(SpanKind.SERVER, code=503),
        span(SpanKind.SERVER, ms=450),
        span(SpanKind.CLIENT, StatusCode.ERROR, ms=900),  # not a server span: not an event
        span(SpanKind.SERVER, StatusCode.ERROR, **{"service.name": "cart"}),  # another service
    ]
    engine.observe(Batch(Signal.TRACES, spans))
    counts = {n: (s.windows.sums["5m"].total, s.windows.sums["5m"].second) for n, s in engine.slos.items()}
    assert counts == {"errors": (4, 1), "http": (4, 1), "latency": (4, 1), "either": (4, 2)}


def counter(
    name: str, value: float, t: float, job: str = "api", start: float = 0, **labels: str
) -> MetricPoint:
    return MetricPoint(
        name=name,
        kind=MetricKind.SUM,
        time_unix_nano=int(t * NS),
        start_time_unix_nano=int(start * NS),
        attributes=dict(labels),
        value=value,
        monotonic=True,
        temporality=Temporality.CUMULATIVE,
        resource={"service.name": job, "service.instance.id": "10.0.0.1:8080"},
    )


def histogram(t: float, buckets: list[int], job: str = "api") -> MetricPoint:
    return MetricPoint(
        name="http_request_duration_seconds",
        kind=MetricKind.HISTOGRAM,
        time_unix_nano=int(t * NS),
        count=sum(buckets),
        sum=0.0,
        bucket_counts=buckets,
        explicit_bounds=[0.1, 0.3, 1.0],
        temporality=Temporality.CUMULATIVE,
        resource={"service.name": job},
    )


def test_metric_slis_from_counters_histograms_and_remote_write_series() -> None:
    clock = Clock()

    def metric_slo(name: str, **sli: str) -> SLOSpec:
        return SLOSpec.model_validate(
            {"name": name, "service": "api", "objective": 99, "sli": {"metrics": sli}}
        )

    engine = engine_for(
        metric_slo(
            "counter",
            total='http_requests_total{job="api"}',
            bad='http_requests_total{job="api",code=~"5.."}',
        ),
        metric_slo(
            "histogram",
            total='http_request_duration_seconds_count{job="api"}',
            good='http_request_duration_seconds_bucket{job="api",le="0.3"}',
        ),
        metric_slo(
            "remote-write",
            total='rw_duration_seconds_count{instance="10.0.0.1:8080"}',
            good='rw_duration_seconds_bucket{le="0.5"}',
        ),
        clock=clock,
    )

    def scrape(ok: float, errors: float, buckets: list[int], rw_count: float, rw_fast: float) -> None:
        t = clock.now
        engine.observe(
            Batch(
                Signal.METRICS,
                [
                    counter("http_requests_total", ok, t, code="200"),
                    counter("http_requests_total", errors, t, code="503"),
                    counter("http_requests_total", 1000, t, job="other", code="503"),
                    histogram(t, buckets),
                    counter("rw_duration_seconds_count", rw_count, t),
                    counter("rw_duration_seconds_bucket", rw_fast, t, le="0.5"),
                    counter("rw_duration_seconds_bucket", rw_count, t, le="+Inf"),
                ],
            )
        )
        clock.now += 15

    scrape(100, 1, [10, 10, 1, 0], 50, 40)  # the first scrape is the baseline (no start time)
    scrape(190, 11, [50, 30, 15, 5], 150, 130)
    scrape(40, 2, [55, 35, 20, 5], 160, 135)  # the counter restarted: its new value is the increase
    engine.evaluate()
    slos = engine.slos
    # counter: total (200 -> 190+11: 100 more, then 42 after the reset) and bad 10 + 2
    assert slos["counter"].bad_total("5m") == (12, 142)
    # histogram: count 21 -> 100 -> 115 (94 more); le 0.3 (cumulative) 20 -> 80 -> 90 (70 more)
    assert slos["histogram"].bad_total("5m") == (94 - 70, 94)
    assert slos["remote-write"].bad_total("5m") == (110 - 95, 110)


def test_metrics_collector() -> None:
    clock = Clock()
    engine = engine_for(log_slo(objective=99.0), clock=clock)
    engine.observe(logs(clock, good=90, bad=10))
    engine.evaluate()
    registry = CollectorRegistry()
    registry.register(SloMetrics(engine))
    value = registry.get_sample_value
    slo = {"slo": "checkout-logs"}
    assert value("burnline_slo_events_total", {**slo, "service": "checkout", "outcome": "good"}) == 90
    assert value("burnline_slo_events_total", {**slo, "service": "checkout", "outcome": "bad"}) == 10
    assert value("burnline_slo_burn_rate", {**slo, "window": "5m"}) == pytest.approx(10.0)
    assert value("burnline_slo_burn_rate", {**slo, "window": "30d"}) == pytest.approx(10.0)
    assert value("burnline_slo_error_budget_remaining", slo) == pytest.approx(-9.0)
    assert value("burnline_slo_objective", slo) == pytest.approx(0.99)
    assert value("burnline_slo_alert_firing", {**slo, "severity": "page"}) == 1
    assert value("burnline_slo_late_events_total", slo) == 0


async def test_restart_keeps_the_budget(tmp_path: Path) -> None:
    clock = Clock()
    engine = engine_for(log_slo(objective=99.0), clock=clock)
    persister = Persister(engine, tmp_path / "slo", interval=3600)
    await persister.start()
    engine.observe(logs(clock, good=95, bad=5))
    engine.evaluate()
    before = engine.status()[0]
    await persister.stop()
    clock.now += 120  # the restart takes two minutes
    restarted = engine_for(log_slo(objective=99.0), clock=clock)
    persister = Persister(restarted, tmp_path / "slo", interval=3600)
    await persister.start()
    restarted.evaluate()
    after = restarted.status()[0]
    assert after["error_budget_remaining"] == pytest.approx(before["error_budget_remaining"])
    assert after["error_budget_remaining"] == pytest.approx(-4.0)
    assert after["events"] == before["events"]
    assert after["windows"]["5m"]["total"] == 100
    await persister.stop()
    # A changed SLI means other events: the old counts are not mixed in.
    changed = log_slo(
        objective=99.0, sli={"logs": {"match": {"service.name": "checkout"}, "bad": {"severity": ">=warn"}}}
    )
    fresh = engine_for(changed, clock=clock)
    persister = Persister(fresh, tmp_path / "slo", interval=3600)
    await persister.start()
    assert fresh.status()[0]["events"]["good"] == 0
    await persister.stop()


def test_ten_thousand_slos_load_and_evaluate() -> None:
    clock = Clock()
    slos = [
        SLOSpec.model_validate(
            {
                "name": f"slo-{i}",
                "service": f"svc-{i % 1000}",
                "objective": 99.9,
                "sli": {
                    "logs": {"match": {"service.name": f"svc-{i % 1000}"}, "bad": {"severity": ">=error"}}
                },
            }
        )
        for i in range(10_000)
    ]
    engine = engine_for(*slos, clock=clock)
    # Traffic for 100 services (so 1,000 SLOs); the other 9,000 cost nothing.
    records = []
    for s in range(100):
        resource = {"service.name": f"svc-{s}"}
        t = int(clock.now * NS)
        records += [
            LogRecord(t, severity_number=17 if s == 7 and i < 5 else 9, resource=resource) for i in range(20)
        ]
    engine.observe(Batch(Signal.LOGS, records))
    for _ in range(3):
        clock.now += 5
        alerts = engine.evaluate()
    assert engine.evaluations == 3
    # svc-7 had 25 % errors: its 10 SLOs (slo-7, slo-1007, ...) page; nobody else does.
    firing = {name for name, s in engine.slos.items() if s.alerts["page"].firing}
    assert firing == {f"slo-{7 + 1000 * k}" for k in range(10)}
    assert sum(1 for s in engine.slos.values() if s.windows.allocated) == 1000
    assert len(engine.status()) == 10_000
    del alerts


def test_direct_exposition_equals_the_collector() -> None:
    clock = Clock()
    engine = engine_for(log_slo(objective=99.0), log_slo("quiet", service='we"ird\\svc'), clock=clock)
    engine.observe(logs(clock, good=90, bad=10))
    clock.now += 400
    engine.observe(logs(clock, good=7, bad=0, age=390))  # late
    engine.evaluate()
    registry = CollectorRegistry()
    metrics = SloMetrics(engine)
    registry.register(metrics)
    expected = {
        (s.name, tuple(sorted(s.labels.items())), s.value) for f in registry.collect() for s in f.samples
    }
    text = metrics.exposition().decode()
    got = {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert got == expected
    assert ("burnline_slo_late_events_total", (("slo", "checkout-logs"),), 7.0) in got
    assert len(got) == 2 * (2 + 8 + 1 + 1 + 2 + 1)


def test_a_match_without_service_name_watches_the_slos_own_service_only() -> None:
    clock = Clock()
    own = SLOSpec.model_validate(
        {"name": "own", "service": "checkout", "objective": 99.0,
         "sli": {"logs": {"match": {}, "bad": {"severity": ">=error"}}}}
    )  # fmt: skip
    every = SLOSpec.model_validate(
        {"name": "every", "service": "shop", "objective": 99.0,
         "sli": {"logs": {"match": {"service.name": "=~.+"}, "bad": {"severity": ">=error"}}}}
    )  # fmt: skip
    engine = engine_for(own, every, clock=clock)
    engine.observe(logs(clock, good=3, bad=1))
    engine.observe(logs(clock, good=5, bad=5, resource={"service.name": "cart"}))
    status = {s["name"]: s["events"] for s in engine.status()}
    assert (status["own"]["good"], status["own"]["bad"]) == (3, 1)
    assert (status["every"]["good"], status["every"]["bad"]) == (8, 6)


async def test_exposition_in_parts_is_the_whole_text() -> None:
    from collector.slo.metrics import CHUNK

    clock = Clock()
    count = 2 * CHUNK + 1  # three parts per family
    engine = engine_for(*(log_slo(f"slo-{i}") for i in range(count)), clock=clock)
    engine.observe(logs(clock, good=90, bad=10))
    engine.evaluate()
    metrics = SloMetrics(engine)
    parts = [part async for part in metrics.exposition_parts()]
    assert b"".join(parts) == metrics.exposition()
    assert len(parts) == 6 * 4  # per family: its HELP and TYPE, then three parts of SLOs
    assert max(len(part) for part in parts) < len(metrics.exposition()) / 3


async def test_stopping_during_a_periodic_save_keeps_what_it_saves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stop() cancels the periodic flush. A save already handed to its thread must still land, and
    before the store closes: its SLOs are no longer dirty, so the final flush will not write them
    again (a supervisor under test lost its last second of counts so)."""
    import threading

    from collector.slo.persistence import SloStore

    saving, release = threading.Event(), threading.Event()
    original = SloStore.save

    def slow_save(self: SloStore, rows: list[Any]) -> None:
        saving.set()
        release.wait(10)  # holds the save before it takes the store, as a busy thread pool would
        original(self, rows)

    monkeypatch.setattr(SloStore, "save", slow_save)
    clock = Clock()
    engine = engine_for(log_slo(objective=99.0), clock=clock)
    persister = Persister(engine, tmp_path / "slo", interval=0.01)
    await persister.start()
    engine.observe(logs(clock, good=90, bad=10))
    for _ in range(500):  # bounded: the periodic flush starts within a few turns
        if saving.is_set():
            break
        await asyncio.sleep(0.01)
    assert saving.is_set()
    stopping = asyncio.create_task(persister.stop())
    await asyncio.sleep(0.1)  # stop() is under way: the periodic task is cancelled
    release.set()
    await stopping
    monkeypatch.setattr(SloStore, "save", original)
    restarted = engine_for(log_slo(objective=99.0), clock=clock)
    persister = Persister(restarted, tmp_path / "slo", interval=3600)
    await persister.start()
    assert restarted.status()[0]["events"] == {"good": 90, "bad": 10, "late": 0}
    await persister.stop()
