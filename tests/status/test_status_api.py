"""The admin JSON API against its OpenAPI description: schemathesis generates requests from the
description (fuzzed query parameters included) and validates every answer against it; no request may
give a 500. Then the numbers themselves, against what the scenario sent.

The service runs in a thread with its own event loop, because schemathesis' calls are blocking.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from collector.core.telemetry import LOOP_LAG, Telemetry
from collector.status.openapi import document
from collector.status.pipeline import PipelineSampler, bucket_quantile, snapshot
from collector.workers.metrics_merge import MergedTelemetry
from tests.status.conftest import is_spurious_ast_error
from tests.status.test_status_page import SECRETS, Scene, burning_service

STARTUP_DEADLINE = 120.0

schema = schemathesis.openapi.from_dict(document())


def _real_date(value: Any) -> bool:
    """Whether a value's date, if it has one, is on the calendar (2026-11-31 is not)."""
    match = re.match(r"^(\d{4})-(\d{2})-(\d{2})", str(value))
    if match is None:
        return True
    try:
        datetime.date(*(int(g) for g in match.groups()))
    except ValueError:
        return False
    return True


@schema.hook
def filter_query(_: Any, query: dict[str, Any] | None) -> bool:
    """A pattern cannot say how many days a month has: generated times on no calendar day are dropped
    (the server answers them 400 naming the parameter, as test_bad_parameters_... checks)."""
    return query is None or all(_real_date(query.get(name, "")) for name in ("since", "until"))


class LiveScene:
    """burning_service, kept running in a thread of its own until ``close``."""

    def __init__(self, tmp_path: Path) -> None:
        self.scene: Scene | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, args=(tmp_path,), name="status-api-service")
        self._thread.start()
        if not self._ready.wait(STARTUP_DEADLINE):
            raise AssertionError(f"the service did not start within {STARTUP_DEADLINE}s")
        if self.error is not None:
            raise self.error

    def _run(self, tmp_path: Path) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                async with burning_service(tmp_path) as scene:
                    self.scene = scene
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as exc:  # reported to the test thread
                self.error = exc
                self._ready.set()

        asyncio.run(main())

    @property
    def base(self) -> str:
        assert self.scene is not None
        return self.scene.base

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveScene]:
    scene = LiveScene(tmp_path_factory.mktemp("status-api"))
    try:
        yield scene
    finally:
        scene.close()


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_answer_matches_the_openapi_description(case: Any, live: LiveScene) -> None:
    response = case.call_and_validate(base_url=live.base, timeout=30)
    assert response.status_code < 500
    for secret in SECRETS:
        assert secret not in response.text


BAD_PARAMETERS = [
    ("/api/v1/logs", {"since": "\x00\ud7ff" * 3}),
    ("/api/v1/logs", {"since": "9" * 400}),
    ("/api/v1/logs", {"since": "99999999999999999999d"}),
    ("/api/v1/logs", {"until": "2026-13-45"}),
    ("/api/v1/logs", {"limit": "-1"}),
    ("/api/v1/logs", {"limit": "\uff11\uff12"}),  # fullwidth digits: isdigit() but not a count
    ("/api/v1/logs", {"since": "2026-11-31"}),
    ("/api/v1/logs", {"level": ""}),
    ("/api/v1/logs", {"limit": "10000000000000000000000"}),
    ("/api/v1/logs", {"level": "loud"}),
    ("/api/v1/logs", {"trace_id": "xyz"}),
    ("/api/v1/logs", {"service": "s" * 1000}),
    ("/api/v1/logs", {"colour": "red"}),
    ("/api/v1/traces", {"errors": "maybe"}),
    ("/api/v1/traces", {"min_duration": "forever"}),
    ("/api/v1/traces", {"min_duration": "1e300s"}),
    ("/api/v1/traces", {"pod": "[" * 300}),
]


@pytest.mark.parametrize(("path", "params"), BAD_PARAMETERS)
def test_bad_parameters_are_400_naming_the_parameter(
    live: LiveScene, path: str, params: dict[str, str]
) -> None:
    response = requests.get(live.base + path, params=params, timeout=30)
    assert response.status_code == 400, response.text
    body = response.json()
    jsonschema.validate(body, document()["components"]["schemas"]["Error"])
    assert body["parameter"] == next(iter(params))
    assert body["parameter"] in body["error"]


def test_odd_but_valid_text_is_searched_not_refused(live: LiveScene) -> None:
    for value in ("%_\\", "[*?", "'; DROP TABLE logs; --", "\x00", "日本語"):
        response = requests.get(live.base + "/api/v1/logs", params={"q": value, "pod": value}, timeout=30)
        assert response.status_code == 200, (value, response.text)
        assert response.json() == {"logs": []}


def test_logs_and_traces_are_what_was_sent(live: LiveScene) -> None:
    assert live.scene is not None
    logs = requests.get(
        live.base + "/api/v1/logs", params={"level": "error", "q": "declined"}, timeout=30
    ).json()
    bodies = sorted(str(r["body"]) for r in logs["logs"])
    assert bodies == ["<script>alert('pwned')</script> payment declined", "card declined for order A-17"]
    newest_first = requests.get(live.base + "/api/v1/logs", params={"limit": "1000"}, timeout=30).json()[
        "logs"
    ]
    times = [r["time_unix_nano"] for r in newest_first]
    assert len(times) == 102 and times == sorted(times, reverse=True)
    by_trace = requests.get(live.base + "/api/v1/logs", params={"trace_id": live.scene.trace_id}, timeout=30)
    assert [r["severity_number"] for r in by_trace.json()["logs"]] == [17, 9]

    traces = requests.get(live.base + "/api/v1/traces", params={"errors": "true"}, timeout=30).json()[
        "traces"
    ]
    assert [t["trace_id"] for t in traces] == [live.scene.trace_id]
    assert traces[0]["span_count"] == 3 and traces[0]["error_count"] == 1
    assert traces[0]["root_name"] == "POST /checkout" and traces[0]["duration_ns"] == 110_000_000

    trace = requests.get(f"{live.base}/api/v1/traces/{live.scene.trace_id.upper()}", timeout=30).json()
    assert [(s["name"], s["depth"]) for s in trace["spans"]] == [
        ("POST /checkout", 0),
        ("load cart", 1),
        ("charge card", 1),
    ]
    assert trace["span_count"] == 3 and trace["truncated"] is False
    assert [r["body"] for r in trace["logs"]] == [
        "charging card for order A-17",
        "card declined for order A-17",
    ]


def test_slos_and_pipeline_report_the_burn_and_the_stuck_backend(live: LiveScene) -> None:
    slos = requests.get(live.base + "/api/v1/slos", timeout=30).json()["slos"]
    assert [s["name"] for s in slos] == [
        "checkout-log-errors",
        "checkout-availability",
        "search-availability",
    ]
    burning = requests.get(live.base + "/api/v1/slos/checkout-log-errors", timeout=30).json()
    assert burning["alerts"]["page"]["state"] == "firing"
    assert burning["events"]["bad"] == 40 + 1  # 40 Forward errors and the trace's OTLP ERROR record
    assert requests.get(live.base + "/api/v1/slos/nope", timeout=30).status_code == 404

    health = requests.get(live.base + "/api/v1/pipeline", timeout=30).json()
    receivers = {r["id"]: r for r in health["receivers"]}
    assert receivers["forward"]["signals"]["logs"]["accepted"] == 100
    assert receivers["otlp"]["signals"]["traces"]["accepted"] == 3
    exporters = {e["id"]: e for e in health["exporters"]}
    assert exporters["local"]["signals"]["logs"]["exported"] == 102
    assert exporters["local"]["queue"]["records"] == 0
    backend = exporters["otlp/backend"]
    assert backend["queue"]["records"] == 3  # the backend is down: the spans wait
    assert backend["queue"]["capacity_bytes"] > 0
    assert health["memory"]["resident_bytes"] > 0
    assert sorted(health["pipelines"]) == ["logs", "traces"]


def test_openapi_document_is_served_and_is_openapi_3_1(live: LiveScene) -> None:
    served = requests.get(live.base + "/api/v1/openapi.json", timeout=30).json()
    assert served == document()
    assert served["openapi"] == "3.1.0"
    for path in served["paths"]:
        assert path.startswith("/api/v1/")


def test_pipeline_rates_and_queue_age_come_from_the_registry() -> None:
    telemetry = Telemetry()
    now = [1000.0]
    sampler = PipelineSampler(telemetry, clock=lambda: now[0])
    telemetry.received.labels("forward", "logs").inc(10)
    telemetry.accepted.labels("forward", "logs").inc(10)
    telemetry.queue_capacity_bytes.labels("elasticsearch").set(1 << 20)
    telemetry.queue_records.labels("elasticsearch").set(0)
    sampler.sample()  # t=1000: the queue is empty
    now[0] = 1010.0
    telemetry.accepted.labels("forward", "logs").inc(500)
    telemetry.exported.labels("elasticsearch", "logs").inc(200)
    telemetry.queue_records.labels("elasticsearch").set(300)
    sampler.sample()  # t=1010: 300 waiting
    now[0] = 1020.0
    telemetry.exported.labels("elasticsearch", "logs").inc(100)
    telemetry.failed.labels("elasticsearch", "logs", "mapping").inc(7)
    telemetry.protocol_errors.labels("forward", "bad_frame").inc(2)
    health = snapshot(sampler, None)
    (forward,) = health["receivers"]
    assert forward["signals"]["logs"]["accepted"] == 510
    assert forward["signals"]["logs"]["accepted_per_second"] == pytest.approx(500 / 20)
    assert forward["errors"] == 2 and forward["errors_by_reason"] == {"bad_frame": 2}
    (es,) = health["exporters"]
    assert es["signals"]["logs"]["exported_per_second"] == pytest.approx(300 / 20)
    assert es["queue"]["backlog_seconds"] == pytest.approx(20.0)  # not seen empty since t=1000
    assert es["queue"]["drain_seconds"] == pytest.approx(300 / (300 / 20))
    assert es["dead_letters"] == 7 and es["dead_letters_by_reason"] == {"mapping": 7}
    assert health["rate_window_seconds"] == pytest.approx(20.0)
    jsonschema.validate(health, {**document()["components"]["schemas"]["Pipeline"], **_components()})
    # Requests do not grow the history; only the sampler's own readings do.
    for _ in range(100):
        snapshot(sampler, None)
    assert len(sampler.readings) == 2
    telemetry.queue_records.labels("elasticsearch").set(0)
    assert snapshot(sampler, None)["exporters"][0]["queue"]["backlog_seconds"] is None


def test_the_event_loops_lag_is_read_from_its_histogram_over_the_rate_window() -> None:
    telemetry = Telemetry()
    now = [1000.0]
    sampler = PipelineSampler(telemetry, clock=lambda: now[0])
    assert snapshot(sampler, None)["event_loop"] == {
        "lag_p50_seconds": None,
        "lag_p99_seconds": None,
        "busiest_worker": None,
        "processes": [{"worker": None, "lag_p50_seconds": None, "lag_p99_seconds": None}],
    }
    for _ in range(1000):
        telemetry.loop_lag.observe(0.3)  # before the window: must not count
    sampler.sample()
    now[0] = 1060.0
    for _ in range(98):
        telemetry.loop_lag.observe(0.0005)
    for _ in range(2):
        telemetry.loop_lag.observe(0.4)
    lag = snapshot(sampler, None)["event_loop"]
    # As histogram_quantile: rank 50 of 98 in (0, 1ms]; rank 99 halfway through (250ms, 500ms].
    assert lag["lag_p50_seconds"] == pytest.approx(0.001 * 50 / 98)
    assert lag["lag_p99_seconds"] == pytest.approx(0.375)
    assert lag["busiest_worker"] is None
    assert [p["worker"] for p in lag["processes"]] == [None]
    jsonschema.validate(
        snapshot(sampler, None), {**document()["components"]["schemas"]["Pipeline"], **_components()}
    )


def test_each_process_s_lag_is_read_alone_and_the_busiest_one_is_shown() -> None:
    """With workers, one saturated worker among idle ones is what the page and the API show: summed
    with the others' wake-ups, its 1 % of late timers would fall below the p99."""
    supervisor = MergedTelemetry(lambda: {})
    workers = [Telemetry() for _ in range(2)]
    now = [1000.0]
    sampler = PipelineSampler(supervisor, clock=lambda: now[0])
    sampler.sample()
    now[0] = 1060.0
    for _ in range(600):
        workers[0].loop_lag.observe(0.0005)
        supervisor.loop_lag.observe(0.0005)
    for _ in range(7):
        workers[1].loop_lag.observe(0.002)
    for _ in range(3):
        workers[1].loop_lag.observe(0.4)  # 3 of its 10 late: 3 of all 1,210 are 0.25 %
    supervisor.read_workers({i: w.exposition() for i, w in enumerate(workers)})
    lag = snapshot(sampler, None)["event_loop"]
    assert lag["busiest_worker"] == "1"
    assert lag["lag_p99_seconds"] == pytest.approx(0.25 + 0.25 * (9.9 - 7) / 3)
    by_worker = {p["worker"]: p for p in lag["processes"]}
    assert list(by_worker) == [None, "0", "1"]  # the supervisor first, then the workers in order
    assert by_worker[None]["lag_p99_seconds"] == by_worker["0"]["lag_p99_seconds"] < 0.001
    # Summed as before, the same samples read well under the threshold.
    assert bucket_quantile(0.99, _summed_buckets(lag_families=[supervisor, *workers])) < 0.1
    jsonschema.validate(
        snapshot(sampler, None), {**document()["components"]["schemas"]["Pipeline"], **_components()}
    )
    # Worker 1 restarts: its new process has counted 5 wake-ups on time, fewer than the window's
    # first reading (at 1060) held; those 5 are its lag, not a negative difference.
    sampler.sample()
    restarted = Telemetry()
    for _ in range(5):
        restarted.loop_lag.observe(0.0005)
    supervisor.read_workers({0: workers[0].exposition(), 1: restarted.exposition()})
    now[0] = 1100.0
    lag = snapshot(sampler, None)["event_loop"]
    by_worker = {p["worker"]: p for p in lag["processes"]}
    assert by_worker["1"]["lag_p99_seconds"] == pytest.approx(0.001 * 4.95 / 5)
    assert lag["lag_p99_seconds"] < 0.001


def _summed_buckets(lag_families: list[Telemetry]) -> list[tuple[float, float]]:
    total: dict[float, float] = {}
    for telemetry in lag_families:
        for family in telemetry.registry.collect():
            if family.name == LOOP_LAG:
                for sample in family.samples:
                    if sample.name.endswith("_bucket"):
                        le = float(sample.labels["le"])
                        total[le] = total.get(le, 0.0) + sample.value
    return sorted(total.items())


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, [(1.0, 0.0), (math.inf, 0.0)], None),
        (0.5, [], None),
        (0.5, [(1.0, 10.0), (2.0, 20.0), (math.inf, 20.0)], 1.0),
        (0.75, [(1.0, 10.0), (2.0, 20.0), (math.inf, 20.0)], 1.5),
        (0.99, [(1.0, 10.0), (math.inf, 20.0)], 1.0),  # in +Inf: the highest finite bound
        (0.1, [(0.5, 0.0), (1.0, 10.0), (math.inf, 10.0)], 0.55),
    ],
)
def test_bucket_quantile_interpolates_as_histogram_quantile(
    q: float, buckets: list[tuple[float, float]], expected: float | None
) -> None:
    assert bucket_quantile(q, buckets) == (None if expected is None else pytest.approx(expected))


def _components() -> dict[str, Any]:
    """The description's components, so that a schema's $refs resolve when validated on its own."""
    return {"components": document()["components"]}


@pytest.mark.parametrize(("path", "params"), BAD_PARAMETERS)
def test_the_pages_answer_bad_searches_with_400_and_the_form(
    live: LiveScene, path: str, params: dict[str, str]
) -> None:
    if "colour" in params:
        pytest.skip("the pages ignore parameters they do not have (a browser may add its own)")
    if "" in params.values():
        pytest.skip("on the pages an empty field means any (the form sends every field)")
    page = path.replace("/api/v1/", "/status/")
    response = requests.get(live.base + page, params=params, timeout=30)
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("text/html")
    assert f"query parameter &#x27;{next(iter(params))}&#x27;" in response.text
    assert '<form class="search"' in response.text


def test_only_cpythons_spurious_ast_error_earns_the_openapi_test_a_second_run() -> None:
    spurious = SystemError("AST constructor recursion depth mismatch (before=321, after=82)")
    wrapped = RuntimeError("while generating 'case'")
    wrapped.__cause__ = spurious
    assert is_spurious_ast_error(spurious)
    assert is_spurious_ast_error(ExceptionGroup("hypothesis", [ValueError("x"), wrapped]))
    assert not is_spurious_ast_error(SystemError("error return without exception set"))
    assert not is_spurious_ast_error(AssertionError("500 from /api/v1/logs"))
