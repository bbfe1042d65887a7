"""The ``prometheus`` exporter: OpenTelemetry -> Prometheus naming, the exposition, expiry, and a real
Prometheus scraping it and answering queries with the exported values.

``real_prometheus`` (a Debian /usr/bin/prometheus in a temporary directory on a free loopback port)
is also used by tests/test_remote_write.py and tests/test_prometheus_remote_write.py.
"""

from __future__ import annotations

import asyncio
import gzip
import math
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from collector.core.model import Exemplar, MetricKind, MetricPoint, Scope, Signal, Temporality
from collector.core.service import Service
from collector.exporterhelper.durable_queue import DurableQueue
from exporters.prometheus.config import PrometheusExporterConfig
from exporters.prometheus.exporter import PrometheusExporter
from exporters.prometheus.naming import attribute_labels, sanitize_label_name, sanitize_metric_name, unit_word
from exporters.prometheus.translator import Translator
from tests.real_services import needs_prometheus, real_prometheus
from tests.support import free_port, metric_value, running_service, wait_until

PROMTOOL_BIN = shutil.which("promtool") or "/usr/bin/promtool"
S = 1_000_000_000
RESOURCE = {"service.name": "checkout", "service.instance.id": "pod-1", "k8s.pod.name": "checkout-abc"}
SCOPE = Scope("checkout.instrumentation", "1.2.0")


# ---------------------------------------------------------------------------------------------------
# Points


def gauge(name: str, value: float, t: int, unit: str = "", **attributes: Any) -> MetricPoint:
    return MetricPoint(
        name=name,
        kind=MetricKind.GAUGE,
        time_unix_nano=t,
        value=value,
        unit=unit,
        description=f"{name} help",
        attributes=attributes,
        resource=RESOURCE,
        scope=SCOPE,
    )


def counter(
    name: str, value: float, t: int, unit: str = "", start: int = 0, **attributes: Any
) -> MetricPoint:
    return MetricPoint(
        name=name,
        kind=MetricKind.SUM,
        time_unix_nano=t,
        start_time_unix_nano=start,
        value=value,
        unit=unit,
        description=f"{name} help",
        temporality=Temporality.CUMULATIVE,
        monotonic=True,
        attributes=attributes,
        resource=RESOURCE,
        scope=SCOPE,
    )


def histogram(name: str, t: int, unit: str = "s", **attributes: Any) -> MetricPoint:
    return MetricPoint(
        name=name,
        kind=MetricKind.HISTOGRAM,
        time_unix_nano=t,
        unit=unit,
        description=f"{name} help",
        temporality=Temporality.CUMULATIVE,
        count=10,
        sum=4.25,
        bucket_counts=[3, 5, 1, 1],
        explicit_bounds=[0.1, 0.5, 1.0],
        attributes=attributes,
        resource=RESOURCE,
        scope=SCOPE,
    )


def summary(name: str, t: int, unit: str = "ms") -> MetricPoint:
    return MetricPoint(
        name=name,
        kind=MetricKind.SUMMARY,
        time_unix_nano=t,
        unit=unit,
        description=f"{name} help",
        count=20,
        sum=40.5,
        quantiles=[(0.99, 9.0), (0.5, 1.5)],
        resource=RESOURCE,
        scope=SCOPE,
    )


def config(port: int, **settings: Any) -> dict[str, Any]:
    exporter = {"endpoint": f"127.0.0.1:{port}", "batch": {"flush_interval": "20ms"}, **settings}
    return {
        "receivers": {"inject": {}},
        "exporters": {"prometheus": exporter},
        "service": {"pipelines": {"metrics": {"receivers": ["inject"], "exporters": ["prometheus"]}}},
    }


async def push(svc: Service, points: list[MetricPoint], delivered: int | None = None) -> PrometheusExporter:
    """Hands points to the pipeline and waits until the exporter has taken ``delivered`` of them."""
    exporter = svc.exporters["prometheus"]
    assert isinstance(exporter, PrometheusExporter)
    labels = {"component": "prometheus", "signal": "metrics"}
    before = metric_value(svc, "burnline_records_exported_total", labels)
    want = before + (len(points) if delivered is None else delivered)
    await svc.receivers["inject"].push(points, Signal.METRICS)  # type: ignore[attr-defined]
    await wait_until(lambda: metric_value(svc, "burnline_records_exported_total", labels) >= want)
    return exporter


async def scrape(port: int, accept: str = "", encoding: str = "") -> tuple[int, dict[str, str], bytes]:
    headers = {"Accept-Encoding": encoding or "identity"}
    if accept:
        headers["Accept"] = accept
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics", headers=headers) as response:
            return response.status, dict(response.headers), await response.read()


def samples(text: str, openmetrics: bool = False) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    parse = parse_openmetrics if openmetrics else parse_text
    out = {}
    for family in parse(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


TARGET = (("instance", "pod-1"), ("job", "checkout"))
SCOPE_LABELS = (("otel_scope_name", "checkout.instrumentation"), ("otel_scope_version", "1.2.0"))


def labels(*extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((*TARGET, *SCOPE_LABELS, *extra)))


# ---------------------------------------------------------------------------------------------------
# Naming rules


def test_metric_and_label_names_are_sanitized() -> None:
    assert sanitize_metric_name("http.server.duration") == "http_server_duration"
    assert sanitize_metric_name("a..b__c:d") == "a_b_c:d"
    assert sanitize_metric_name("2xx.count") == "_2xx_count"
    assert sanitize_label_name("k8s.pod.name") == "k8s_pod_name"
    assert sanitize_label_name("0abc") == "key_0abc"
    assert sanitize_label_name("a:b") == "a_b"


def test_units_become_prometheus_words() -> None:
    assert unit_word("ms", gauge=False) == "milliseconds"
    assert unit_word("By/s", gauge=True) == "bytes_per_second"
    assert unit_word("{packet}", gauge=False) == ""
    assert unit_word("{packet}/s", gauge=False) == "per_second"
    assert unit_word("1", gauge=True) == "ratio"
    assert unit_word("1", gauge=False) == ""
    assert unit_word("Cel", gauge=True) == "celsius"
    assert unit_word("widgets", gauge=True) == "widgets"


def test_family_names_follow_the_compatibility_spec() -> None:
    translator = Translator(PrometheusExporterConfig())
    cases = [
        (gauge("system.memory.utilization", 0.5, 1, unit="1"), "gauge", "system_memory_utilization_ratio"),
        (counter("http.server.requests", 1, 1, unit="{request}"), "counter", "http_server_requests"),
        (counter("net.io", 1, 1, unit="By"), "counter", "net_io_bytes"),
        (counter("net_io_bytes_total", 1, 1, unit="By"), "counter", "net_io_bytes"),
        (histogram("http.server.duration", 1, unit="ms"), "histogram", "http_server_duration_milliseconds"),
        (histogram("request_duration_seconds", 1, unit="s"), "histogram", "request_duration_seconds"),
        (gauge("disk.io", 1, 1, unit="By/s"), "gauge", "disk_io_bytes_per_second"),
    ]
    for point, expected_type, expected_name in cases:
        ptype = translator.prometheus_type(point)
        assert (ptype, translator.family(point, ptype).name) == (expected_type, expected_name), point.name
    prefixed = Translator(PrometheusExporterConfig(namespace="shop", add_metric_suffixes=False))
    point = counter("net.io", 1, 1, unit="By")
    assert prefixed.family(point, "counter").name == "shop_net_io"


def test_series_of_one_family_share_its_family() -> None:
    """A Family is worked out once a family, not once a series: 32,000 series held 32,000 copies."""
    translator = Translator(PrometheusExporterConfig())
    first = gauge("queue.depth", 1, 1, unit="By", queue="a")
    same = translator.family(first, "gauge")
    assert translator.family(gauge("queue.depth", 2, 2, unit="By", queue="b"), "gauge") is same
    other_help = gauge("queue.depth", 1, 1, unit="By", queue="a")
    other_help.description = "bytes waiting"
    assert translator.family(other_help, "gauge").help == "bytes waiting"
    assert translator.family(gauge("queue.depth", 1, 1, unit="s"), "gauge").name == "queue_depth_seconds"
    # The same name from a classic histogram's own series stays verbatim: another family.
    part = gauge("queue_depth_bytes_bucket", 1, 1, unit="By", le="1")
    part.metadata = {"prometheus.type": "histogram"}
    assert translator.family(part, "unknown").name == "queue_depth_bytes_bucket"
    plain = gauge("queue_depth_bytes_bucket", 1, 1, unit="By", le="1")
    assert translator.family(plain, "unknown").name == "queue_depth_bytes_bucket_bytes"
    assert translator.family(first, "gauge") is same


def test_attributes_that_collide_are_joined_in_key_order() -> None:
    assert attribute_labels({"a_b": "2", "a.b": "1", "c": 3, "d": True, "e": [1, "x"], "f": ""}) == {
        "a_b": "1;2",
        "c": "3",
        "d": "true",
        "e": '[1,"x"]',
    }


# ---------------------------------------------------------------------------------------------------
# The endpoint


async def test_exposition_in_text_and_openmetrics(tmp_path: Path) -> None:
    port = free_port()
    now = time.time_ns()
    points = [
        gauge("queue.depth", 7.5, now, unit="{item}", queue="orders"),
        counter("orders.placed", 42, now, start=now - 60 * S, status="ok"),
        histogram("rpc.duration", now, method="get"),
        summary("gc.pause", now),
    ]
    points[1].exemplars = [
        Exemplar(now, 1.0, {"user": "u1"}, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    ]
    async with running_service(config(port), str(tmp_path)) as svc:
        await push(svc, points)
        status, headers, body = await scrape(port)
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = samples(body.decode())
        assert text[("queue_depth", labels(("queue", "orders")))] == 7.5
        assert text[("orders_placed_total", labels(("status", "ok")))] == 42
        assert text[("orders_placed_created", labels(("status", "ok")))] == pytest.approx(
            (now - 60 * S) / 1e9
        )
        hist = {
            le: text[("rpc_duration_seconds_bucket", labels(("le", le), ("method", "get")))]
            for le in ("0.1", "0.5", "1.0", "+Inf")
        }
        assert hist == {"0.1": 3, "0.5": 8, "1.0": 9, "+Inf": 10}
        assert text[("rpc_duration_seconds_count", labels(("method", "get")))] == 10
        assert text[("rpc_duration_seconds_sum", labels(("method", "get")))] == 4.25
        assert text[("gc_pause_milliseconds", labels(("quantile", "0.5")))] == 1.5
        assert text[("gc_pause_milliseconds", labels(("quantile", "0.99")))] == 9.0
        assert text[("gc_pause_milliseconds_count", labels())] == 20
        assert (
            text[("target_info", (*TARGET[:1], ("job", "checkout"), ("k8s_pod_name", "checkout-abc")))] == 1
        )
        assert b"# HELP orders_placed_total orders.placed help" in body
        assert b"# TYPE rpc_duration_seconds histogram" in body

        status, headers, body = await scrape(port, accept="application/openmetrics-text; version=1.0.0")
        assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
        assert body.endswith(b"# EOF\n")
        assert b"# UNIT rpc_duration_seconds seconds" in body
        assert b'trace_id="0af7651916cd43dd8448eb211c80319c"' in body  # the counter's exemplar
        om = samples(body.decode(), openmetrics=True)
        assert om[("orders_placed_total", labels(("status", "ok")))] == 42
        assert om[("target_info", (*TARGET[:1], ("job", "checkout"), ("k8s_pod_name", "checkout-abc")))] == 1

        status, headers, body = await scrape(port, encoding="gzip")
        assert headers["Content-Encoding"] == "gzip"
        assert samples(gzip.decompress(body).decode())[("queue_depth", labels(("queue", "orders")))] == 7.5


async def test_promtool_reads_the_text_exposition(tmp_path: Path) -> None:
    if not os.access(PROMTOOL_BIN, os.X_OK):
        pytest.skip("promtool is not installed")
    port = free_port()
    now = time.time_ns()
    points = [
        gauge("queue.depth", 7.5, now, queue="orders"),
        counter("orders", 42, now, status="ok"),
        histogram("rpc.duration", now),
        summary("gc.pause", now, unit="s"),
    ]
    async with running_service(config(port), str(tmp_path)) as svc:
        await push(svc, points)
        _, _, body = await scrape(port)
    check = await asyncio.create_subprocess_exec(
        PROMTOOL_BIN,
        "check",
        "metrics",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(check.communicate(body), 30)
    # 0: clean, not even a lint remark; 3: lint remarks; 1: a text format promtool cannot parse.
    assert check.returncode == 0, output.decode()


async def test_series_expire_stale_markers_remove_and_deltas_add_up(tmp_path: Path) -> None:
    port = free_port()
    now = time.time_ns()
    async with running_service(config(port, metric_expiration="5m"), str(tmp_path)) as svc:

        def delta(value: int, t: int) -> MetricPoint:
            point = counter("jobs.done", value, now + t * S, start=now + (t - 1) * S)
            point.temporality = Temporality.DELTA
            return point

        await push(svc, [gauge("a", 1, now), gauge("b", 2, now), delta(3, 0)])
        await push(svc, [delta(4, 1)])
        exporter = await push(svc, [delta(4, 2)])
        _, _, body = await scrape(port)
        assert samples(body.decode())[("jobs_done_total", labels())] == 11  # 3 + 4 + 4
        stale = gauge("a", math.nan, now + S)
        stale.flags = 1
        await push(svc, [stale])
        await wait_until(lambda: exporter.series_count == 2)
        exporter.store([gauge("b", 3, now + S)])
        assert exporter.expire(time.monotonic() + 301) == 2
        _, _, body = await scrape(port)
        assert not [k for k in samples(body.decode()) if k[0] != "target_info"]


async def test_a_series_is_its_family_and_its_whole_label_set(tmp_path: Path) -> None:
    """The exporter keys a series by its family and its labels, sorted and flattened into one tuple."""
    port = free_port()
    now = time.time_ns()
    async with running_service(config(port), str(tmp_path)) as svc:
        exporter = await push(
            svc,
            [
                gauge("queue.depth", 1, now, x="1", y="2"),
                gauge("queue.depth", 2, now, x="12"),  # the values run together: another series
                gauge("queue.depth", 3, now, x="1", y=""),  # an empty value is no label: another one
                gauge("queue.depth", 4, now + S, y="2", x="1"),  # the first series, labels reordered
                gauge("queue.size", 5, now, x="1", y="2"),  # the first labels in another family
            ],
        )
        assert exporter.series_count == 4
        _, _, body = await scrape(port)
        got = samples(body.decode())
        assert got[("queue_depth", labels(("x", "1"), ("y", "2")))] == 4
        assert got[("queue_depth", labels(("x", "12")))] == 2
        assert got[("queue_depth", labels(("x", "1")))] == 3
        assert got[("queue_size", labels(("x", "1"), ("y", "2")))] == 5


async def test_unsupported_and_conflicting_points_are_dropped_and_counted(tmp_path: Path) -> None:
    port = free_port()
    now = time.time_ns()
    exp = MetricPoint(
        name="lat",
        kind=MetricKind.EXPONENTIAL_HISTOGRAM,
        time_unix_nano=now,
        temporality=Temporality.CUMULATIVE,
        count=1,
        scale=2,
        positive_bucket_counts=[1],
    )
    clash = histogram("orders", now, unit="")  # a histogram family "orders" after the counter "orders"
    async with running_service(config(port), str(tmp_path)) as svc:
        await push(svc, [counter("orders", 1, now), exp, clash], delivered=1)

        def dropped(reason: str) -> float:
            return metric_value(
                svc,
                "burnline_records_dropped_total",
                {"component": "prometheus", "signal": "metrics", "reason": reason},
            )

        assert dropped("exponential_histogram") == 1
        assert dropped("type_conflict") == 1
        _, _, body = await scrape(port)
        assert ("orders_total", labels()) in samples(body.decode())


async def test_prometheus_typed_classic_parts_keep_their_names(tmp_path: Path) -> None:
    """Series the remote_write receiver took apart (a histogram's _bucket) go out as they came in."""
    port = free_port()
    now = time.time_ns()
    bucket = counter("http_latency_seconds_bucket", 5, now, le="0.5")
    bucket.metadata = {"prometheus.type": "histogram"}
    total = counter("http_requests_total", 9, now)
    total.metadata = {"prometheus.type": "counter"}
    unknown = gauge("legacy_thing", 3, now)
    unknown.metadata = {"prometheus.type": "unknown"}
    async with running_service(config(port), str(tmp_path)) as svc:
        await push(svc, [bucket, total, unknown])
        _, _, body = await scrape(port)
    text = body.decode()
    assert "# TYPE http_latency_seconds_bucket untyped" in text
    assert "# TYPE legacy_thing untyped" in text
    got = samples(text)
    assert got[("http_latency_seconds_bucket", labels(("le", "0.5")))] == 5
    assert got[("http_requests_total", labels())] == 9


# ---------------------------------------------------------------------------------------------------
# The queue


def test_the_queue_is_in_memory_unless_configured_otherwise() -> None:
    default = PrometheusExporterConfig().queue
    assert (default.storage, default.max_bytes) == ("memory", 16 * 1024 * 1024)
    # Setting another queue field keeps the exporter's defaults, not the generic (disk) ones.
    tuned = PrometheusExporterConfig.model_validate({"queue": {"block_timeout": "1s"}}).queue
    assert (tuned.storage, tuned.max_bytes, tuned.block_timeout) == ("memory", 16 * 1024 * 1024, 1.0)
    assert PrometheusExporterConfig.model_validate({"queue": {"storage": "disk"}}).queue.storage == "disk"


async def test_the_service_gives_it_a_memory_queue_and_disk_when_asked(tmp_path: Path) -> None:
    port = free_port()
    now = time.time_ns()
    async with running_service(config(port), str(tmp_path / "memory")) as svc:
        assert not isinstance(svc.senders["prometheus"].queue, DurableQueue)
        await push(svc, [gauge("queue.depth", 7.5, now, queue="orders")])
        _status, _headers, body = await scrape(port)
        assert samples(body.decode())[("queue_depth", labels(("queue", "orders")))] == 7.5
    assert not (tmp_path / "memory" / "queue").exists()  # nothing written to disk

    disk = config(port, queue={"storage": "disk"})
    async with running_service(disk, str(tmp_path / "disk")) as svc:
        assert isinstance(svc.senders["prometheus"].queue, DurableQueue)
        await push(svc, [gauge("queue.depth", 2.5, now, queue="orders")])
    assert (tmp_path / "disk" / "queue" / "prometheus.db").is_file()


# ---------------------------------------------------------------------------------------------------
# A real Prometheus scrapes the exporter


@needs_prometheus
async def test_a_real_prometheus_scrapes_the_exported_values(tmp_path: Path) -> None:
    port = free_port()
    now = time.time_ns()
    bucket = counter("classic_seconds_bucket", 5, now, le="0.5")
    bucket.metadata = {"prometheus.type": "histogram"}
    points = [
        gauge("queue.depth", 7.5, now, unit="{item}", queue="orders"),
        counter("orders.placed", 42, now, status="ok"),
        histogram("rpc.duration", now, method="get"),
        summary("gc.pause", now),
        bucket,
    ]

    def prometheus_config(_: int) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
            "scrape_configs": [
                {
                    "job_name": "burnline",
                    "honor_labels": True,
                    "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                }
            ],
        }

    async with running_service(config(port), str(tmp_path / "burnline")) as svc:
        await push(svc, points)
        async with real_prometheus(tmp_path / "prometheus", prometheus_config) as prometheus:
            await prometheus.wait_for('up{job="burnline"} == 1')
            targets = await prometheus.get("/api/v1/targets")
            [active] = targets["activeTargets"]
            assert active["health"] == "up" and active["lastError"] == "", active

            async def one(expr: str) -> tuple[dict[str, str], float]:
                [result] = await prometheus.wait_for(expr)
                return result["metric"], float(result["value"][1])

            metric, value = await one('queue_depth{queue="orders"}')
            assert value == 7.5
            assert metric == {
                "__name__": "queue_depth",
                "job": "checkout",
                "instance": "pod-1",
                "queue": "orders",
                "otel_scope_name": "checkout.instrumentation",
                "otel_scope_version": "1.2.0",
            }
            assert (await one('orders_placed_total{status="ok"}'))[1] == 42
            buckets = await prometheus.wait_for(
                'rpc_duration_seconds_bucket{method="get"}', lambda r: len(r) == 4
            )
            assert {r["metric"]["le"]: float(r["value"][1]) for r in buckets} == {
                "0.1": 3,
                "0.5": 8,
                "1.0": 9,
                "+Inf": 10,
            }
            assert (await one("rpc_duration_seconds_count"))[1] == 10
            assert (await one("rpc_duration_seconds_sum"))[1] == 4.25
            q = await prometheus.wait_for("gc_pause_milliseconds", lambda r: len(r) == 2)
            assert {r["metric"]["quantile"]: float(r["value"][1]) for r in q} == {"0.5": 1.5, "0.99": 9.0}
            assert (await one("gc_pause_milliseconds_count"))[1] == 20
            assert (await one("gc_pause_milliseconds_sum"))[1] == 40.5
            metric, value = await one("target_info")
            assert value == 1
            assert metric == {
                "__name__": "target_info",
                "job": "checkout",
                "instance": "pod-1",
                "k8s_pod_name": "checkout-abc",
            }
            assert (await one('classic_seconds_bucket{le="0.5"}'))[1] == 5
            # The scrape's metadata is what the exporter declared.
            meta = await prometheus.get("/api/v1/metadata")
            assert meta["rpc_duration_seconds"][0]["type"] == "histogram"
            assert meta["orders_placed"][0]["type"] == "counter"
            assert meta["rpc_duration_seconds"][0]["unit"] == "seconds"


_LABEL_VALUES = st.sampled_from(["", "a", "b", 7, True, None])


@settings(max_examples=300, deadline=None)
@given(
    resource=st.dictionaries(
        st.sampled_from(
            ["service.name", "service.namespace", "service.instance.id", "job", "instance", "k8s.pod.name"]
        ),
        _LABEL_VALUES,
    ),
    attributes=st.dictionaries(st.sampled_from(["job", "instance", "queue"]), _LABEL_VALUES),
    resource_labels=st.booleans(),
)
def test_job_and_instance_are_the_labels_a_series_gets(
    resource: dict[str, Any], attributes: dict[str, Any], resource_labels: bool
) -> None:
    """What the remote-write exporter shards by is exactly the series' job and instance labels."""
    translator = Translator(PrometheusExporterConfig(resource_to_telemetry_conversion=resource_labels))
    point = MetricPoint(
        name="up",
        kind=MetricKind.GAUGE,
        time_unix_nano=1,
        value=1.0,
        attributes=attributes,
        resource=resource,
    )
    labels, _ = translator.labels(point)
    assert translator.job_and_instance(point) == (labels.get("job", ""), labels.get("instance", ""))
