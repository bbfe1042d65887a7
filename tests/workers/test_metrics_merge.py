"""The supervisor's /metrics: its own metrics and every worker's as one valid exposition, each family
once, the workers' samples labelled ``worker``; MergedTelemetry reading real workers' /metrics."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collector.core.telemetry import LOOP_LAG, Telemetry
from collector.workers.metrics_merge import WORKER_LABEL, MergedTelemetry, merge, summed
from tests.support import free_port

Sample = tuple[str, tuple[tuple[str, str], ...], float]


def exposition(accepted: float, exported_seconds: list[float], only: str | None = None) -> bytes:
    """A worker's (or the supervisor's) registry: a labelled counter, a histogram, a gauge, and
    optionally a family only this process has."""
    registry = CollectorRegistry()
    counter = Counter("burnline_records_accepted", "Records accepted.", ["component"], registry=registry)
    counter.labels("forward").inc(accepted)
    counter.labels("otlp").inc(accepted * 2)
    histogram = Histogram(
        "burnline_export_duration_seconds", "Export time.", buckets=(0.1, 1.0), registry=registry
    )
    for seconds in exported_seconds:
        histogram.observe(seconds)
    Gauge("burnline_queue_size", "Queued batches.", registry=registry).set(accepted / 10)
    if only:
        Gauge(only, "A family of one process only.", registry=registry).set(7)
    return generate_latest(registry)


def samples(text: bytes, *, process: bool = False) -> set[Sample]:
    """Every sample; the process_* series only with ``process``: their CPU seconds and memory change
    between two reads of one registry, so sets of two reads compare without them."""
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
        if process or not s.name.startswith("process_")
    }


def labelled(text: bytes, worker: str) -> set[Sample]:
    return {
        (name, tuple(sorted((*labels, (WORKER_LABEL, worker)))), value)
        for name, labels, value in samples(text)
    }


def type_lines(text: bytes) -> list[tuple[str, str]]:
    return re.findall(r"^# TYPE (\S+) (\S+)$", text.decode(), flags=re.MULTILINE)


def test_merge_keeps_every_sample_labels_the_workers_and_writes_each_family_once() -> None:
    own = exposition(5, [0.05], only="burnline_workers")
    workers = {0: exposition(100, [0.05, 0.5, 3.0]), 1: exposition(30, [2.0], only="burnline_worker_only")}
    merged = merge(own, workers)

    # It parses back, and holds exactly the inputs' samples: the supervisor's unlabelled, each
    # worker's with its index as the worker label.
    assert samples(merged) == samples(own) | labelled(workers[0], "0") | labelled(workers[1], "1")
    # Each family once: one TYPE (and HELP) line per name, as the text format requires.
    types = type_lines(merged)
    assert len(types) == len({name for name, _ in types})
    assert len(re.findall(r"^# HELP ", merged.decode(), flags=re.MULTILINE)) == len(types)
    # ... and every input family is there with its type, whichever process had it.
    inputs = [line for text in (own, *workers.values()) for line in type_lines(text)]
    assert dict(types) == dict(inputs)
    assert ("burnline_records_accepted_total", "counter") in types
    assert ("burnline_export_duration_seconds", "histogram") in types
    families = {f.name: f for f in text_string_to_metric_families(merged.decode())}
    assert families["burnline_records_accepted"].type == "counter"
    assert families["burnline_export_duration_seconds"].type == "histogram"
    # Counters and histograms keep their sample suffixes.
    names = {s.name for f in families.values() for s in f.samples}
    assert {
        "burnline_records_accepted_total",
        "burnline_export_duration_seconds_bucket",
        "burnline_export_duration_seconds_sum",
        "burnline_export_duration_seconds_count",
    } <= names
    value = {(name, labels): v for name, labels, v in samples(merged)}
    assert value[("burnline_records_accepted_total", (("component", "forward"),))] == 5
    assert value[("burnline_records_accepted_total", (("component", "forward"), ("worker", "0")))] == 100
    assert value[("burnline_records_accepted_total", (("component", "otlp"), ("worker", "1")))] == 60
    le_inf = (("le", "+Inf"), ("worker", "0"))
    assert value[("burnline_export_duration_seconds_bucket", le_inf)] == 3
    assert value[("burnline_export_duration_seconds_count", (("worker", "1"),))] == 1
    # A family only one process has: the supervisor's unlabelled, a worker's labelled.
    assert value[("burnline_workers", ())] == 7
    assert value[("burnline_worker_only", (("worker", "1"),))] == 7
    assert ("burnline_workers", (("worker", "0"),)) not in value


def test_merge_of_real_telemetry() -> None:
    own, worker = Telemetry(), Telemetry()
    worker.accepted.labels("forward", "logs").inc(12)
    merged = merge(own.exposition(), {3: worker.exposition()})
    assert samples(merged) == samples(own.exposition()) | labelled(worker.exposition(), "3")
    types = type_lines(merged)
    assert len(types) == len({name for name, _ in types})
    assert ("burnline_records_accepted_total", "counter") in types
    value = {(name, labels): v for name, labels, v in samples(merged)}
    key = (("component", "forward"), ("signal", "logs"), ("worker", "3"))
    assert value[("burnline_records_accepted_total", key)] == 12
    # The process series too: the supervisor's own, and each worker's under its label.
    cpu = {labels for name, labels, _ in samples(merged, process=True) if name == "process_cpu_seconds_total"}
    assert cpu == {(), (("worker", "3"),)}


def test_merge_without_workers_is_the_own_exposition() -> None:
    own = exposition(5, [0.5])
    assert samples(merge(own, {})) == samples(own)
    assert all(WORKER_LABEL not in dict(labels) for _, labels, _ in samples(merge(own, {})))


@asynccontextmanager
async def metrics_server(handler: Callable[[web.Request], Awaitable[web.Response]]) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


SLO_TEXT = (
    b"# HELP burnline_slo_objective The objective.\n"
    b"# TYPE burnline_slo_objective gauge\n"
    b'burnline_slo_objective{slo="a"} 0.99\n'
)


async def test_full_exposition_reads_every_worker_and_leaves_out_a_failing_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker_text = exposition(40, [0.2], only="burnline_worker_only")
    scrapes = {"ok": 0, "broken": 0}

    async def ok(request: web.Request) -> web.Response:
        scrapes["ok"] += 1
        return web.Response(body=worker_text, content_type="text/plain")

    async def broken(request: web.Request) -> web.Response:
        scrapes["broken"] += 1
        return web.Response(status=500, text="no")

    async with metrics_server(ok) as ok_url, metrics_server(broken) as broken_url:
        endpoints = {0: ok_url, 1: broken_url}
        telemetry = MergedTelemetry(lambda: dict(endpoints))
        extra_calls = 0

        async def slo_exposition() -> AsyncIterator[bytes]:
            nonlocal extra_calls
            extra_calls += 1
            half = len(SLO_TEXT) // 2
            yield SLO_TEXT[:half]
            yield SLO_TEXT[half:]

        telemetry.extra_expositions.append(slo_exposition)
        telemetry.accepted.labels("forward", "logs").inc(3)
        try:
            with caplog.at_level(logging.WARNING, logger="burnline.workers.metrics"):
                text = await telemetry.full_exposition()
            assert scrapes == {"ok": 1, "broken": 1}
            assert f"worker metrics at {broken_url} answered 500" in caplog.text
            got = samples(text)
            assert got == samples(telemetry.exposition()) | labelled(worker_text, "0") | samples(SLO_TEXT)
            assert not any(dict(labels).get(WORKER_LABEL) == "1" for _, labels, _ in got)
            # The extra exposition follows once, unlabelled, after the merged families.
            assert extra_calls == 1
            assert text.count(b"# TYPE burnline_slo_objective gauge") == 1
            assert text.endswith(SLO_TEXT)
            types = type_lines(text)
            assert len(types) == len({name for name, _ in types})

            # The endpoints are read at every scrape: a worker gone is no longer asked; one that
            # does not listen is left out too, with a line.
            endpoints.pop(0)
            endpoints[1] = f"http://127.0.0.1:{free_port()}"
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="burnline.workers.metrics"):
                text = await telemetry.full_exposition()
            assert scrapes == {"ok": 1, "broken": 1}
            assert "cannot read a worker's metrics" in caplog.text
            assert samples(text) == samples(telemetry.exposition()) | samples(SLO_TEXT)
        finally:
            await telemetry.close()


def test_summed_adds_workers_up_and_takes_the_least_of_component_up() -> None:
    def worker(accepted: float, queue: float, up: float) -> bytes:
        r = CollectorRegistry()
        Counter("burnline_records_accepted", "x", ["component", "signal"], registry=r).labels(
            "forward", "logs"
        ).inc(accepted)
        Gauge("burnline_queue_records", "x", ["component"], registry=r).labels("es").set(queue)
        Gauge("burnline_component_up", "x", ["component", "kind"], registry=r).labels("es", "exporter").set(
            up
        )
        return generate_latest(r)

    families = {f.name: f for f in summed({0: worker(10, 3, 1), 1: worker(5, 4, 0)})}
    accepted = [s for s in families["burnline_records_accepted"].samples if s.name.endswith("_total")]
    assert [(s.labels, s.value) for s in accepted] == [({"component": "forward", "signal": "logs"}, 15.0)]
    assert [s.value for s in families["burnline_queue_records"].samples] == [7.0]
    assert [s.value for s in families["burnline_component_up"].samples] == [0.0]  # down in one worker
    both_up = {f.name: f for f in summed({0: worker(1, 0, 1), 1: worker(1, 0, 1)})}
    assert [s.value for s in both_up["burnline_component_up"].samples] == [1.0]
    assert summed({}) == []


def test_summed_keeps_each_worker_s_event_loop_lag_apart() -> None:
    workers = [Telemetry() for _ in range(2)]
    workers[0].loop_lag.observe(0.0005)
    workers[1].loop_lag.observe(0.4)
    (lag,) = [f for f in summed({i: w.exposition() for i, w in enumerate(workers)}) if f.name == LOOP_LAG]
    counts = {s.labels["worker"]: s.value for s in lag.samples if s.name.endswith("_count")}
    assert counts == {"0": 1.0, "1": 1.0}
    under = {s.labels["worker"]: s.value for s in lag.samples if s.labels.get("le") == "0.25"}
    assert under == {"0": 1.0, "1": 0.0}
