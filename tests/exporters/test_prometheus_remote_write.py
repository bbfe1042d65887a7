"""The ``prometheus_remote_write`` exporter: the wire format, answers and retries against a recording
double, a round trip through burnline's own receiver, and a real Prometheus storing what it sent.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cramjam
import orjson
import pytest
from aiohttp import web
from pydantic import ValidationError

from collector.core.component import ComponentContext, RetryableExportError
from collector.core.model import Batch, Exemplar, MetricKind, MetricPoint, Scope, Signal, Temporality
from collector.core.retry_after import parse_retry_after
from collector.core.telemetry import Telemetry
from collector.exporterhelper.deadletter import DeadLetter
from collector.prompb import remote_pb2, types_pb2
from collector.receivers.remote_write.receiver import RemoteWriteReceiver
from exporters.prometheus_remote_write.client import MAX_RETRY_AFTER
from exporters.prometheus_remote_write.config import PrometheusRemoteWriteConfig
from exporters.prometheus_remote_write.encoding import native_histogram
from exporters.prometheus_remote_write.exporter import PrometheusRemoteWriteExporter
from tests.real_services import needs_prometheus, real_prometheus
from tests.support import free_port, running_service, wait_until

S = 1_000_000_000
RESOURCE = {
    "service.name": "checkout",
    "service.namespace": "shop",
    "service.instance.id": "pod-1",
    "k8s.pod.name": "checkout-abc",
}
SCOPE = Scope("checkout.lib", "")
STALE_BITS = 0x7FF0000000000002


def gauge(name: str, value: float, t: int, **attributes: Any) -> MetricPoint:
    return MetricPoint(
        name=name,
        kind=MetricKind.GAUGE,
        time_unix_nano=t,
        value=value,
        description=f"{name} help",
        attributes=attributes,
        resource=RESOURCE,
        scope=SCOPE,
    )


def counter(name: str, value: float, t: int, unit: str = "", **attributes: Any) -> MetricPoint:
    return MetricPoint(
        name=name,
        kind=MetricKind.SUM,
        time_unix_nano=t,
        value=value,
        unit=unit,
        description=f"{name} help",
        temporality=Temporality.CUMULATIVE,
        monotonic=True,
        attributes=attributes,
        resource=RESOURCE,
        scope=SCOPE,
    )


def histogram(name: str, t: int, **attributes: Any) -> MetricPoint:
    return MetricPoint(
        name=name,
        kind=MetricKind.HISTOGRAM,
        time_unix_nano=t,
        unit="s",
        description="latency",
        temporality=Temporality.CUMULATIVE,
        count=10,
        sum=4.25,
        bucket_counts=[3, 5, 1, 1],
        explicit_bounds=[0.1, 0.5, 1.0],
        attributes=attributes,
        resource=RESOURCE,
        scope=SCOPE,
    )


def summary(name: str, t: int) -> MetricPoint:
    return MetricPoint(
        name=name,
        kind=MetricKind.SUMMARY,
        time_unix_nano=t,
        count=20,
        sum=40.5,
        quantiles=[(0.99, 9.0), (0.5, 1.5)],
        resource=RESOURCE,
        scope=SCOPE,
    )


# ---------------------------------------------------------------------------------------------------
# A recording remote-write double


@dataclass
class Recorded:
    headers: dict[str, str]
    body: bytes
    started: float = 0.0  # time.monotonic() when the request arrived and when it was answered
    answered: float = 0.0

    @property
    def request(self) -> remote_pb2.WriteRequest:
        out = remote_pb2.WriteRequest()
        out.ParseFromString(bytes(cramjam.snappy.decompress_raw(self.body)))
        return out

    def series(self) -> dict[tuple[tuple[str, str], ...], types_pb2.TimeSeries]:
        return {tuple((label.name, label.value) for label in ts.labels): ts for ts in self.request.timeseries}


@dataclass
class Double:
    url: str
    recorded: list[Recorded] = field(default_factory=list)
    # Answers to give, in order (status, headers, text); 204 once they run out.
    script: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    # Or an answer chosen by what a request holds (None: the script's), and a wait before answering.
    answer: Callable[[Recorded], tuple[int, dict[str, str], str] | None] = lambda _: None
    delay: Callable[[], float] = lambda: 0.0


@asynccontextmanager
async def double() -> AsyncIterator[Double]:
    port = free_port()
    d = Double(f"http://127.0.0.1:{port}/api/v1/write")

    async def handle(request: web.Request) -> web.Response:
        recorded = Recorded(dict(request.headers), await request.read(), time.monotonic())
        d.recorded.append(recorded)
        wait = d.delay()
        if wait:
            await asyncio.sleep(wait)
        recorded.answered = time.monotonic()
        chosen = d.answer(recorded)
        if chosen is not None:
            status, headers, text = chosen
            return web.Response(status=status, headers=headers, text=text)
        if d.script:
            status, headers, text = d.script.pop(0)
            return web.Response(status=status, headers=headers, text=text)
        return web.Response(status=204)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/api/v1/write", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield d
    finally:
        await runner.cleanup()


@asynccontextmanager
async def exporter(
    tmp_path: Path, endpoint: str, **settings: Any
) -> AsyncIterator[PrometheusRemoteWriteExporter]:
    telemetry = Telemetry()
    ctx = ComponentContext("prometheus_remote_write", telemetry, str(tmp_path), logging.getLogger("test.prw"))
    exp = PrometheusRemoteWriteExporter(PrometheusRemoteWriteConfig(endpoint=endpoint, **settings), ctx)
    exp.dead_letter = DeadLetter("prometheus_remote_write", tmp_path / "deadletter", telemetry)
    await exp.start()
    try:
        yield exp
    finally:
        await exp.stop()


def batch(points: list[MetricPoint]) -> Batch:
    return Batch(Signal.METRICS, points, 100 * len(points))


def dead_letters(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "deadletter" / "prometheus_remote_write.ndjson"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


TARGET = (("instance", "pod-1"), ("job", "shop/checkout"), ("otel_scope_name", "checkout.lib"))


def key(name: str, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((("__name__", name), *TARGET, *extra)))


# ---------------------------------------------------------------------------------------------------
# The wire format


async def test_requests_carry_the_protocol_headers_and_sorted_series(tmp_path: Path) -> None:
    now = 1_700_000_000 * S
    later = counter("orders.placed", 45, now + 2 * S, status="ok")
    earlier = counter("orders.placed", 42, now + S, status="ok")
    earlier.exemplars = [
        Exemplar(now, 1.0, {"user.id": "u1"}, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    ]
    stale = gauge("queue.depth", math.nan, now + S, queue="orders")
    stale.flags = 1
    points = [
        later,
        earlier,
        gauge("queue.depth", 7.5, now, queue="orders"),
        stale,
        histogram("rpc.duration", now),
        summary("gc.pause", now),
    ]
    settings = {"headers": {"X-Scope-OrgID": "tenant-1"}, "bearer_token": "tok"}
    async with double() as d, exporter(tmp_path, d.url, **settings) as exp:
        assert await exp.export(batch(points)) == len(points)
    [rec] = d.recorded
    assert rec.headers["Content-Encoding"] == "snappy"
    assert rec.headers["Content-Type"] == "application/x-protobuf"
    assert rec.headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert rec.headers["User-Agent"].startswith("burnline/")
    assert rec.headers["X-Scope-OrgID"] == "tenant-1"
    assert rec.headers["Authorization"] == "Bearer tok"
    request = rec.request
    for ts in request.timeseries:
        names = [label.name for label in ts.labels]
        assert names == sorted(names) and len(set(names)) == len(names)
        assert all(label.value for label in ts.labels)
        stamps = [s.timestamp for s in ts.samples]
        assert stamps == sorted(stamps)
    series = rec.series()
    orders = series[key("orders_placed_total", ("status", "ok"))]
    assert [(s.timestamp, s.value) for s in orders.samples] == [
        (now // 10**6 + 1000, 42),
        (now // 10**6 + 2000, 45),
    ]
    [ex] = orders.exemplars
    assert {label.name: label.value for label in ex.labels} == {
        "user_id": "u1",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331",
    }
    depth = series[key("queue_depth", ("queue", "orders"))]
    assert depth.samples[0].value == 7.5
    assert struct.unpack("<Q", struct.pack("<d", depth.samples[1].value))[0] == STALE_BITS
    buckets = {
        le: series[key("rpc_duration_seconds_bucket", ("le", le))].samples[0].value
        for le in ("0.1", "0.5", "1.0", "+Inf")
    }
    assert buckets == {"0.1": 3, "0.5": 8, "1.0": 9, "+Inf": 10}
    assert series[key("rpc_duration_seconds_count")].samples[0].value == 10
    assert series[key("rpc_duration_seconds_sum")].samples[0].value == 4.25
    assert series[key("gc_pause", ("quantile", "0.5"))].samples[0].value == 1.5
    assert series[key("gc_pause", ("quantile", "0.99"))].samples[0].value == 9.0
    assert series[key("gc_pause_count")].samples[0].value == 20
    info = series[
        (
            ("__name__", "target_info"),
            ("instance", "pod-1"),
            ("job", "shop/checkout"),
            ("k8s_pod_name", "checkout-abc"),
        )
    ]
    assert [(s.timestamp, s.value) for s in info.samples] == [(now // 10**6 + 2000, 1.0)]
    metadata = {(m.metric_family_name, m.type, m.help, m.unit) for m in request.metadata}
    assert ("orders_placed_total", types_pb2.MetricMetadata.COUNTER, "orders.placed help", "") in metadata
    assert ("rpc_duration_seconds", types_pb2.MetricMetadata.HISTOGRAM, "latency", "seconds") in metadata
    assert ("gc_pause", types_pb2.MetricMetadata.SUMMARY, "", "") in metadata


async def test_batches_are_cut_into_requests_in_time_order(tmp_path: Path) -> None:
    now = 1_700_000_000 * S
    points = [gauge("g", float(i), now + (9 - i) * S) for i in range(10)]  # newest first
    async with double() as d, exporter(tmp_path, d.url, max_samples_per_request=4, target_info=False) as exp:
        assert await exp.export(batch(points)) == 10
    assert [len(r.request.timeseries[0].samples) for r in d.recorded] == [4, 4, 2]
    sent = [s.timestamp for r in d.recorded for s in r.request.timeseries[0].samples]
    assert sent == sorted(sent) and len(sent) == 10


def test_exponential_histograms_as_native_histograms() -> None:
    point = MetricPoint(
        name="lat",
        kind=MetricKind.EXPONENTIAL_HISTOGRAM,
        time_unix_nano=5 * S,
        temporality=Temporality.CUMULATIVE,
        count=9,
        sum=3.0,
        scale=10,
        zero_count=1,
        positive_offset=-4,
        positive_bucket_counts=[1, 1, 0, 0, 0, 0, 0, 0, 2, 0, 3, 1],
    )
    h = native_histogram(point)
    # Scale 10 -> 8 merges four buckets into one: OTel indexes -4..7 become -1 (2), 0 (0), 1 (6).
    assert (h.schema, h.count_int, h.sum, h.zero_count_int, h.timestamp) == (8, 9, 3.0, 1, 5000)
    assert [(s.offset, s.length) for s in h.positive_spans] == [(0, 1), (1, 1)]  # Prometheus index 0, 2
    assert list(h.positive_deltas) == [2, 4]
    assert h.zero_threshold == 1e-128


async def test_unsupported_points_are_dropped_and_counted(tmp_path: Path) -> None:
    now = 1_700_000_000 * S
    delta = counter("d", 1, now)
    delta.temporality = Temporality.DELTA
    exp_hist = MetricPoint(
        name="lat",
        kind=MetricKind.EXPONENTIAL_HISTOGRAM,
        time_unix_nano=now,
        temporality=Temporality.CUMULATIVE,
        count=1,
        positive_bucket_counts=[1],
    )
    async with double() as d, exporter(tmp_path, d.url) as exp:
        assert await exp.export(batch([delta, exp_hist, gauge("g", 1, now)])) == 1
        registry = exp.ctx.telemetry.registry
        for reason in ("delta_temporality", "exponential_histogram"):
            labels = {"component": "prometheus_remote_write", "signal": "metrics", "reason": reason}
            assert registry.get_sample_value("burnline_records_dropped_total", labels) == 1
    assert len(d.recorded) == 1


# ---------------------------------------------------------------------------------------------------
# Shards


def _targets_batch(targets: int, series: int, samples: int, t0: int) -> list[MetricPoint]:
    """``samples`` points of ``series`` series for each of ``targets`` pods, newest first."""
    points = []
    for t in range(targets):
        resource = {
            "service.name": "checkout",
            "service.namespace": "shop",
            "service.instance.id": f"pod-{t}",
            "k8s.pod.name": f"checkout-{t}",  # so that the target has a target_info
        }
        for i in range(series):
            for k in reversed(range(samples)):
                point = gauge("queue.depth", float(k), t0 + k * S, queue=f"q{i}")
                point.resource = resource
                points.append(point)
    return points


def _job_instances(recorded: Recorded) -> set[tuple[str, str]]:
    out = set()
    for labels in recorded.series():
        named = dict(labels)
        out.add((named.get("job", ""), named.get("instance", "")))
    return out


async def test_shards_send_at_once_and_never_share_a_target(tmp_path: Path) -> None:
    """Requests of one batch overlap in time, two that overlap never carry the same target, and
    every series (target_info too) arrives in time order whatever the answers' delays."""
    t0 = 1_700_000_000 * S
    points = _targets_batch(targets=12, series=5, samples=4, t0=t0)  # 240 samples
    rng = random.Random(7)
    async with double() as d, exporter(tmp_path, d.url, max_samples_per_request=20) as exp:
        d.delay = lambda: rng.uniform(0.0, 0.03)
        assert await exp.export(batch(points)) == len(points)
    overlapping = 0
    for i, a in enumerate(d.recorded):
        for b in d.recorded[i + 1 :]:
            if a.started < b.answered and b.started < a.answered:
                overlapping += 1
                assert not _job_instances(a) & _job_instances(b)
    assert overlapping > 0
    # At most four in flight at any moment (the default shards).
    assert max(sum(r.started <= x.started < r.answered for r in d.recorded) for x in d.recorded) <= 4
    arrived: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for rec in sorted(d.recorded, key=lambda r: r.started):
        for labels, ts in rec.series().items():
            arrived.setdefault(labels, []).extend(sample.timestamp for sample in ts.samples)
    assert len([k for k in arrived if dict(k)["__name__"] == "queue_depth"]) == 60
    assert len([k for k in arrived if dict(k)["__name__"] == "target_info"]) == 12
    for stamps in arrived.values():
        assert stamps == sorted(stamps)
    assert sum(len(v) for k, v in arrived.items() if dict(k)["__name__"] == "queue_depth") == 240


async def test_one_shard_one_request_when_the_batch_fits_in_one(tmp_path: Path) -> None:
    points = _targets_batch(targets=12, series=5, samples=4, t0=1_700_000_000 * S)
    async with double() as d, exporter(tmp_path, d.url) as exp:  # 2,000 samples a request
        assert await exp.export(batch(points)) == len(points)
    assert len(d.recorded) == 1


async def test_shards_one(tmp_path: Path) -> None:
    """``shards: 1`` sends one request after the other, as before shards."""
    points = _targets_batch(targets=12, series=5, samples=4, t0=1_700_000_000 * S)
    async with double() as d, exporter(tmp_path, d.url, max_samples_per_request=20, shards=1) as exp:
        d.delay = lambda: 0.005
        assert await exp.export(batch(points)) == len(points)
    ordered = sorted(d.recorded, key=lambda r: r.started)
    assert len(ordered) >= 12 and all(a.answered <= b.started for a, b in itertools.pairwise(ordered))
    sent = [
        s.timestamp
        for r in ordered
        for labels, ts in r.series().items()
        if dict(labels)["__name__"] == "queue_depth"
        for s in ts.samples
    ]
    assert len(sent) == 240


async def test_a_failing_shard_leaves_only_its_own_points_to_retry(tmp_path: Path) -> None:
    t0 = 1_700_000_000 * S
    points = _targets_batch(targets=12, series=5, samples=4, t0=t0)
    failing = ("shop/checkout", "pod-3")

    def answer(rec: Recorded) -> tuple[int, dict[str, str], str] | None:
        return (503, {"Retry-After": "3"}, "busy") if failing in _job_instances(rec) else None

    async with double() as d, exporter(tmp_path, d.url, max_samples_per_request=20) as exp:
        d.answer = answer
        with pytest.raises(RetryableExportError) as caught:
            await exp.export(batch(points))
        err = caught.value
        assert err.reason == "http_503" and err.retry_after == 3.0
        assert err.remaining is not None
        rest = err.remaining.items
        # The failing shard's points from its failed request on; the other shards delivered.
        assert {p.resource["service.instance.id"] for p in rest} >= {"pod-3"}
        assert err.delivered + len(rest) == len(points)
        assert err.delivered > 0
        delivered_pods = set()
        for rec in d.recorded:
            if failing not in _job_instances(rec):
                delivered_pods |= {instance for _, instance in _job_instances(rec)}
        assert not delivered_pods & {p.resource["service.instance.id"] for p in rest}
        d.answer = lambda _: None
        assert await exp.export(err.remaining) == len(rest)


# ---------------------------------------------------------------------------------------------------
# Answers


async def test_5xx_and_429_are_retried_with_the_rest_of_the_batch(tmp_path: Path) -> None:
    now = 1_700_000_000 * S
    points = [gauge("g", float(i), now + i * S) for i in range(6)]
    async with double() as d, exporter(tmp_path, d.url, max_samples_per_request=2, target_info=False) as exp:
        d.script = [(204, {}, ""), (503, {"Retry-After": "7"}, "overloaded")]
        with pytest.raises(RetryableExportError) as caught:
            await exp.export(batch(points))
        err = caught.value
        assert (err.reason, err.retry_after, err.delivered, err.rejected) == ("http_503", 7.0, 2, 0)
        assert err.remaining is not None and [p.value for p in err.remaining.items] == [2.0, 3.0, 4.0, 5.0]
        d.script = [(429, {}, "slow down")]
        with pytest.raises(RetryableExportError) as caught:
            await exp.export(err.remaining)
        assert caught.value.reason == "http_429" and caught.value.retry_after is None
        assert await exp.export(err.remaining) == 4
    assert dead_letters(tmp_path) == []


async def test_4xx_is_dead_lettered_and_413_is_split(tmp_path: Path) -> None:
    now = 1_700_000_000 * S
    points = [gauge("g", float(i), now + i * S) for i in range(4)]
    async with double() as d, exporter(tmp_path, d.url, target_info=False) as exp:
        d.script = [(400, {}, "out of order sample")]
        assert await exp.export(batch(points)) == 0
        letters = dead_letters(tmp_path)
        assert len(letters) == 4
        assert {(x["reason"], x["detail"]) for x in letters} == {("http_400", "out of order sample")}
        assert letters[0]["record"]["name"] == "g"
        d.script = [(413, {}, "too big"), (204, {}, ""), (413, {}, "too big"), (204, {}, ""), (204, {}, "")]
        assert await exp.export(batch(points)) == 4
        assert [len(r.request.timeseries[0].samples) for r in d.recorded[1:]] == [4, 2, 2, 1, 1]


async def test_connection_failures_are_retried(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/v1/write"  # nobody listens there
    async with exporter(tmp_path, url) as exp:
        with pytest.raises(RetryableExportError) as caught:
            await exp.export(batch([gauge("g", 1, 1_700_000_000 * S)]))
        assert caught.value.reason == "connection" and caught.value.delivered == 0


def test_retry_after_header() -> None:
    def retry_after(header: str | None) -> float | None:
        return parse_retry_after(header, maximum=MAX_RETRY_AFTER)  # as the exporter reads it

    assert retry_after("12") == 12.0
    assert retry_after("100000") == 300.0
    assert retry_after(None) is None and retry_after("soon") is None
    in_a_minute = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    value = retry_after(in_a_minute)
    assert value is not None and 55 <= value <= 61


def test_settings_that_would_break_the_protocol_are_refused() -> None:
    with pytest.raises(ValidationError, match="Content-Encoding"):
        PrometheusRemoteWriteConfig(
            endpoint="http://p:9090/api/v1/write", headers={"Content-Encoding": "gzip"}
        )
    with pytest.raises(ValidationError, match="credentials"):
        PrometheusRemoteWriteConfig(endpoint="http://u:p@p:9090/api/v1/write")
    with pytest.raises(ValidationError, match="not a remote-write URL"):
        PrometheusRemoteWriteConfig(endpoint="p:9090")
    with pytest.raises(ValidationError, match="not both"):
        PrometheusRemoteWriteConfig(endpoint="http://p/w", username="u", password="p", bearer_token="t")


# ---------------------------------------------------------------------------------------------------
# Round trip and a real Prometheus


async def test_round_trip_through_burnlines_own_receiver(tmp_path: Path) -> None:
    """inject -> prometheus_remote_write -> remote_write receiver -> capture, with Basic auth."""
    port = free_port()
    now = time.time_ns() // 10**6 * 10**6
    cfg = {
        "receivers": {
            "inject": {},
            "remote_write": {"endpoint": f"127.0.0.1:{port}", "username": "burnline", "password": "pw"},
        },
        "exporters": {
            "prometheus_remote_write": {
                "endpoint": f"http://127.0.0.1:{port}/api/v1/write",
                "batch": {"flush_interval": "20ms"},
                "scope_labels": False,
                "username": "burnline",
                "password": "pw",
            },
            "capture": {},
        },
        "service": {
            "pipelines": {
                "metrics/out": {"receivers": ["inject"], "exporters": ["prometheus_remote_write"]},
                "metrics/in": {"receivers": ["remote_write"], "exporters": ["capture"]},
            }
        },
    }
    async with running_service(cfg, str(tmp_path)) as svc:
        assert isinstance(svc.receivers["remote_write"], RemoteWriteReceiver)
        points = [counter("orders.placed", 42, now, status="ok"), gauge("queue.depth", 7.5, now)]
        await svc.receivers["inject"].push(points, Signal.METRICS)  # type: ignore[attr-defined]
        items: list[MetricPoint] = svc.exporters["capture"].items  # type: ignore[attr-defined]
        await wait_until(lambda: len(items) >= 3)
    got = {p.name: p for p in items}
    orders = got["orders_placed_total"]
    assert (orders.kind, orders.monotonic, orders.value, orders.time_unix_nano) == (
        MetricKind.SUM,
        True,
        42,
        now,
    )
    assert orders.attributes == {"status": "ok"}
    assert orders.resource == {"service.name": "shop/checkout", "service.instance.id": "pod-1"}
    assert orders.description == "orders.placed help"  # the metadata came along
    assert got["queue_depth"].value == 7.5
    assert got["target_info"].attributes == {"k8s_pod_name": "checkout-abc"}


def _prometheus_config(_: int) -> dict[str, Any]:
    return {"global": {"scrape_interval": "1m"}}


@needs_prometheus
async def test_a_real_prometheus_stores_what_was_sent(tmp_path: Path) -> None:
    t0 = (time.time_ns() // 10**6 - 10_000) * 10**6  # ten seconds ago, whole milliseconds
    points = [
        gauge("queue.depth", 7.5, t0, queue="orders"),
        gauge("queue.depth", 8.25, t0 + 2 * S, queue="orders"),
        counter("orders.placed", 40, t0, status="ok"),
        counter("orders.placed", 42, t0 + S, status="ok"),
        histogram("rpc.duration", t0, method="get"),
        summary("gc.pause", t0),
    ]
    async with real_prometheus(tmp_path / "prometheus", _prometheus_config) as prometheus:
        async with exporter(tmp_path, prometheus.url + "/api/v1/write") as exp:
            assert await exp.export(batch(points)) == len(points)
        at = t0 / 1e9 + 5

        async def raw(expr: str) -> list[dict[str, Any]]:
            """The stored samples, with timestamps as whole milliseconds."""
            result = await prometheus.query(expr + "[1m]", at=at)
            for r in result:
                r["values"] = [(round(float(ts) * 1000), v) for ts, v in r["values"]]
            return result

        ms = t0 // 10**6

        [depth] = await raw('queue_depth{queue="orders"}')
        assert depth["metric"] == {
            "__name__": "queue_depth",
            "job": "shop/checkout",
            "instance": "pod-1",
            "queue": "orders",
            "otel_scope_name": "checkout.lib",
        }
        assert depth["values"] == [(ms, "7.5"), (ms + 2000, "8.25")]
        [orders] = await raw('orders_placed_total{status="ok"}')
        assert orders["values"] == [(ms, "40"), (ms + 1000, "42")]
        buckets = await prometheus.query('rpc_duration_seconds_bucket{method="get"}', at=at)
        assert {b["metric"]["le"]: b["value"][1] for b in buckets} == {
            "0.1": "3",
            "0.5": "8",
            "1.0": "9",
            "+Inf": "10",
        }
        [quantiles] = await prometheus.query("histogram_quantile(0.5, rpc_duration_seconds_bucket)", at=at)
        assert 0.1 < float(quantiles["value"][1]) <= 0.5
        assert (await prometheus.query("rpc_duration_seconds_sum", at=at))[0]["value"][1] == "4.25"
        q = await prometheus.query("gc_pause", at=at)
        assert {r["metric"]["quantile"]: r["value"][1] for r in q} == {"0.5": "1.5", "0.99": "9"}
        [info] = await prometheus.query("target_info", at=at)
        assert info["metric"]["k8s_pod_name"] == "checkout-abc"


@needs_prometheus
async def test_a_real_prometheus_takes_every_sample_of_a_sharded_batch(tmp_path: Path) -> None:
    """Prometheus refuses a whole request with one out-of-order sample: four shards in flight at once
    with every series' samples still in order lose nothing."""
    t0 = (time.time_ns() // 10**9 - 60) * 10**9  # a minute ago, whole seconds
    points = _targets_batch(targets=12, series=5, samples=4, t0=t0)
    async with real_prometheus(tmp_path / "prometheus", _prometheus_config) as prometheus:
        async with exporter(tmp_path, prometheus.url + "/api/v1/write", max_samples_per_request=20) as exp:
            assert await exp.export(batch(points)) == len(points)
            # The next batch's samples are later; its shards race with nothing of this one.
            later = _targets_batch(targets=12, series=5, samples=1, t0=t0 + 10 * S)
            assert await exp.export(batch(later)) == len(later)
        at = t0 / 1e9 + 30
        counts = await prometheus.query("count_over_time(queue_depth[1m])", at=at)
        assert len(counts) == 60 and {c["value"][1] for c in counts} == {"5"}
        infos = await prometheus.query("count_over_time(target_info[1m])", at=at)
        assert len(infos) == 12
    assert dead_letters(tmp_path) == []


@needs_prometheus
async def test_native_histograms_into_a_real_prometheus(tmp_path: Path) -> None:
    t0 = (time.time_ns() // 10**6 - 10_000) * 10**6
    point = MetricPoint(
        name="rpc.latency",
        kind=MetricKind.EXPONENTIAL_HISTOGRAM,
        time_unix_nano=t0,
        unit="s",
        temporality=Temporality.CUMULATIVE,
        count=12,
        sum=6.5,
        scale=0,
        zero_count=2,
        positive_offset=-2,
        positive_bucket_counts=[3, 0, 5],
        negative_offset=0,
        negative_bucket_counts=[2],
        resource=RESOURCE,
        scope=SCOPE,
    )
    async with real_prometheus(
        tmp_path / "prometheus", _prometheus_config, "--enable-feature=native-histograms"
    ) as prometheus:
        async with exporter(
            tmp_path, prometheus.url + "/api/v1/write", exponential_histograms="native"
        ) as exp:
            assert await exp.export(batch([point])) == 1
        at = t0 / 1e9 + 5
        check: Callable[[str], Any] = lambda expr: prometheus.query(expr, at=at)  # noqa: E731
        [count] = await check("histogram_count(rpc_latency_seconds)")
        [total] = await check("histogram_sum(rpc_latency_seconds)")
        assert (float(count["value"][1]), float(total["value"][1])) == (12, 6.5)
        # Buckets at scale 0: OTel index -2 is (0.25, 0.5], 0 is (1, 2]; two observations below zero.
        [below_half] = await check("histogram_fraction(0, 0.5, rpc_latency_seconds)")
        assert float(below_half["value"][1]) == pytest.approx((2 + 3) / 12, abs=0.1)
