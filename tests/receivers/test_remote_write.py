"""The ``remote_write`` receiver: Prometheus remote-write 1.0 in, metric points out.

Requests are real HTTP requests to a running service whose pipeline ends in the ``capture``
exporter; the strongest check is a real Prometheus remote-writing its own series into burnline.
"""

from __future__ import annotations

import base64
import math
import struct
import time
from pathlib import Path
from typing import Any

import aiohttp
import cramjam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.core.model import NO_ITEMS, MetricKind, MetricPoint, Temporality
from collector.core.service import Service
from collector.prompb import remote_pb2, types_pb2
from collector.receivers.remote_write.convert import Converter
from collector.receivers.remote_write.families import FamilyTypes
from collector.receivers.remote_write.receiver import RemoteWriteReceiver
from collector.translator.prometheus import prometheus_unit_to_ucum
from tests.real_services import needs_prometheus, real_prometheus
from tests.support import free_port, metric_value, running_service, wait_until

RID = "remote_write"
T_MS = 1_700_000_000_123
STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "burnline-test/1",
}


def config(port: int, **settings: Any) -> dict[str, Any]:
    return {
        "receivers": {RID: {"endpoint": f"127.0.0.1:{port}", **settings}},
        "exporters": {"capture": {}},
        "service": {"pipelines": {"metrics": {"receivers": [RID], "exporters": ["capture"]}}},
    }


def series(
    labels: dict[str, str], samples: list[tuple[float, int]] | None = None, request: Any = None
) -> types_pb2.TimeSeries:
    ts = request.timeseries.add() if request is not None else types_pb2.TimeSeries()
    for name, value in labels.items():
        ts.labels.add(name=name, value=value)
    for sample, t in samples or []:
        ts.samples.add(value=sample, timestamp=t)
    return ts


def body(request: remote_pb2.WriteRequest) -> bytes:
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


async def post(
    port: int, data: bytes, headers: dict[str, str] | None = None, path: str = "/api/v1/write"
) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"http://127.0.0.1:{port}{path}", data=data, headers=HEADERS if headers is None else headers
        ) as response:
            return response.status, dict(response.headers), await response.text()


def captured(svc: Service) -> list[MetricPoint]:
    return svc.exporters["capture"].items  # type: ignore[attr-defined,no-any-return]


def errors(svc: Service, reason: str) -> float:
    return metric_value(svc, "burnline_receiver_errors_total", {"component": RID, "reason": reason})


def by_name(points: list[MetricPoint]) -> dict[str, list[MetricPoint]]:
    out: dict[str, list[MetricPoint]] = {}
    for p in points:
        out.setdefault(p.name, []).append(p)
    return out


# ---------------------------------------------------------------------------------------------------
# Conversion


async def test_samples_become_points_with_target_resource_and_scope(tmp_path: Path) -> None:
    port = free_port()
    request = remote_pb2.WriteRequest()
    # Labels out of order and one with an empty value: both accepted, as Prometheus' receiver does.
    series(
        {
            "job": "api",
            "__name__": "http_requests_total",
            "instance": "10.0.0.1:8080",
            "code": "200",
            "empty": "",
        },
        [(5.0, T_MS), (7.0, T_MS + 15_000)],
        request,
    )
    series({"__name__": "up", "job": "api", "instance": "10.0.0.1:8080"}, [(1.0, T_MS)], request)
    series(
        {"__name__": "rpc_calls_total", "otel_scope_name": "io.grpc", "otel_scope_version": "1.6"},
        [(STALE_NAN, T_MS)],
        request,
    )
    async with running_service(config(port), str(tmp_path)) as svc:
        status, headers, text = await post(port, body(request))
        assert (status, text) == (204, "")
        assert headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
        await wait_until(lambda: len(captured(svc)) == 4)
        points = by_name(captured(svc))
        first, second = points["http_requests_total"]
        assert (first.kind, first.monotonic, first.temporality) == (
            MetricKind.SUM,
            True,
            Temporality.CUMULATIVE,
        )
        assert (first.value, first.time_unix_nano) == (5.0, T_MS * 1_000_000)
        assert (second.value, second.time_unix_nano) == (7.0, (T_MS + 15_000) * 1_000_000)
        assert first.attributes == {"code": "200"}
        assert first.attributes is not second.attributes  # each point owns its attributes
        assert first.resource == {"service.name": "api", "service.instance.id": "10.0.0.1:8080"}
        assert first.resource is points["up"][0].resource  # one resource map per target and request
        assert first.metadata == {"prometheus.type": "counter"}
        assert first.scope.name == "burnline/remote_write" and first.scope.version == ""
        [up] = points["up"]
        assert (up.kind, up.value, up.metadata["prometheus.type"]) == (MetricKind.GAUGE, 1.0, "unknown")
        [stale] = points["rpc_calls_total"]
        assert stale.flags == 1 and math.isnan(stale.value or 0)
        assert (stale.scope.name, stale.scope.version) == ("io.grpc", "1.6")
        assert stale.resource == {}
        assert (
            metric_value(svc, "burnline_records_accepted_total", {"component": RID, "signal": "metrics"}) == 4
        )


def test_the_series_of_a_request_share_their_label_strings() -> None:
    """Protobuf makes a new string of every label; the points of a request hold one of each."""
    request = remote_pb2.WriteRequest()
    for pod in ("cart-1", "cart-2"):
        series({"__name__": "up", "namespace": "shop", "pod": pod}, [(1.0, T_MS)], request)
    a, b = Converter(FamilyTypes(100), infer_types=True).convert(request).points
    assert a.attributes == {"namespace": "shop", "pod": "cart-1"}
    assert b.attributes == {"namespace": "shop", "pod": "cart-2"}
    key_a, key_b = (next(k for k in p.attributes if k == "namespace") for p in (a, b))
    assert key_a is key_b
    assert a.attributes["namespace"] is b.attributes["namespace"]
    assert a.name is b.name


_LABEL_NAMES = st.sampled_from(["", "__name__", "job", "instance", "otel_scope_name", "a", "b"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_LABEL_NAMES, st.sampled_from(["", "x", "y"])), max_size=8))
def test_any_labels_are_taken_or_refused_naming_the_first_bad_name(labels: list[tuple[str, str]]) -> None:
    """Repeated and empty names are found whatever their values, and the first one is named."""
    request = remote_pb2.WriteRequest()
    ts = request.timeseries.add()
    for name, value in labels:
        ts.labels.add(name=name, value=value)
    ts.samples.add(value=1.0, timestamp=T_MS)
    conversion = Converter(FamilyTypes(100), infer_types=True).convert(request)
    expected = None
    seen: set[str] = set()
    for name, _ in labels:
        if not name:
            expected = "a label has an empty name"
        elif name in seen:
            expected = f"label {name!r} is repeated"
        if expected:
            break
        seen.add(name)
    given_labels = {name: value for name, value in labels if value}
    if expected is None and not given_labels.get("__name__"):
        expected = "no __name__ label"
    if expected is not None:
        assert conversion.problems == [f"series 0: {expected}"]
        assert conversion.points == []
        return
    [point] = conversion.points
    assert point.name == given_labels["__name__"]
    special = {"__name__", "job", "instance", "otel_scope_name"}
    assert point.attributes == {k: v for k, v in given_labels.items() if k not in special}
    assert point.resource.get("service.name", "") == given_labels.get("job", "")
    assert point.resource.get("service.instance.id", "") == given_labels.get("instance", "")
    assert point.scope.name == given_labels.get("otel_scope_name", "burnline/remote_write")


async def test_metadata_types_series_in_later_requests(tmp_path: Path) -> None:
    port = free_port()
    meta = remote_pb2.WriteRequest()
    for family, mtype, help_text, unit in [
        ("queue_depth", types_pb2.MetricMetadata.GAUGE, "Items waiting.", ""),
        ("rpc_duration_seconds", types_pb2.MetricMetadata.HISTOGRAM, "RPC latency.", "seconds"),
        ("gc_pause", types_pb2.MetricMetadata.SUMMARY, "GC pauses.", ""),
        ("jobs", types_pb2.MetricMetadata.COUNTER, "Jobs done.", ""),  # OpenMetrics family name
        ("build", types_pb2.MetricMetadata.INFO, "", ""),
        ("thread_count", types_pb2.MetricMetadata.GAUGE, "", ""),
    ]:
        meta.metadata.add(type=mtype, metric_family_name=family, help=help_text, unit=unit)
    request = remote_pb2.WriteRequest()
    for name, extra in [
        ("queue_depth", {}),
        ("rpc_duration_seconds_bucket", {"le": "0.5"}),
        ("rpc_duration_seconds_count", {}),
        ("rpc_duration_seconds_sum", {}),
        ("gc_pause", {"quantile": "0.99"}),
        ("gc_pause_count", {}),
        ("jobs_total", {}),
        ("jobs_created", {}),
        ("build_info", {"version": "1.0"}),
        ("thread_count", {}),
    ]:
        series({"__name__": name, **extra}, [(1.0, T_MS)], request)
    async with running_service(config(port), str(tmp_path)) as svc:
        assert (await post(port, body(meta)))[0] == 204  # metadata alone: nothing to hand on
        status, _, _ = await post(port, body(request))
        assert status == 204
        await wait_until(lambda: len(captured(svc)) == 10)
        kinds = {p.name: (p.kind, p.monotonic, p.metadata["prometheus.type"]) for p in captured(svc)}
        assert kinds == {
            "queue_depth": (MetricKind.GAUGE, False, "gauge"),
            "rpc_duration_seconds_bucket": (MetricKind.SUM, True, "histogram"),
            "rpc_duration_seconds_count": (MetricKind.SUM, True, "histogram"),
            "rpc_duration_seconds_sum": (MetricKind.SUM, False, "histogram"),
            "gc_pause": (MetricKind.GAUGE, False, "summary"),
            "gc_pause_count": (MetricKind.SUM, True, "summary"),
            "jobs_total": (MetricKind.SUM, True, "counter"),
            "jobs_created": (MetricKind.GAUGE, False, "counter"),
            "build_info": (MetricKind.SUM, False, "info"),
            "thread_count": (MetricKind.GAUGE, False, "gauge"),
        }
        bucket = next(p for p in captured(svc) if p.name == "rpc_duration_seconds_bucket")
        assert (bucket.description, bucket.unit, bucket.attributes) == ("RPC latency.", "s", {"le": "0.5"})


async def test_types_inferred_from_names_until_metadata_arrives(tmp_path: Path) -> None:
    port = free_port()
    first = remote_pb2.WriteRequest()
    series({"__name__": "requests_total"}, [(1.0, T_MS)], first)
    series({"__name__": "thread_count"}, [(4.0, T_MS)], first)  # a gauge by its name alone
    series({"__name__": "latency_sum"}, [(4.0, T_MS)], first)  # family unknown yet
    series({"__name__": "latency_bucket", "le": "+Inf"}, [(3.0, T_MS)], first)
    second = remote_pb2.WriteRequest()
    series({"__name__": "latency_sum"}, [(5.0, T_MS + 1)], second)  # family learned from _bucket
    series({"__name__": "latency_count"}, [(3.0, T_MS + 1)], second)
    async with running_service(config(port), str(tmp_path)) as svc:
        assert (await post(port, body(first)))[0] == 204
        assert (await post(port, body(second)))[0] == 204
        await wait_until(lambda: len(captured(svc)) == 6)
        got = [(p.name, p.kind, p.monotonic, p.metadata["prometheus.type"]) for p in captured(svc)]
        assert got == [
            ("requests_total", MetricKind.SUM, True, "counter"),
            ("thread_count", MetricKind.GAUGE, False, "unknown"),
            ("latency_sum", MetricKind.GAUGE, False, "unknown"),
            ("latency_bucket", MetricKind.SUM, True, "histogram"),
            ("latency_sum", MetricKind.SUM, False, "histogram"),
            ("latency_count", MetricKind.SUM, True, "histogram"),
        ]
    port = free_port()
    async with running_service(config(port, infer_types=False), str(tmp_path / "strict")) as svc:
        assert (await post(port, body(first)))[0] == 204
        await wait_until(lambda: len(captured(svc)) == 4)
        assert {p.kind for p in captured(svc)} == {MetricKind.GAUGE}


async def test_native_histograms_become_exponential_histograms(tmp_path: Path) -> None:
    port = free_port()
    request = remote_pb2.WriteRequest()
    ts = series({"__name__": "rpc_latency_seconds", "job": "api"}, None, request)
    # Buckets at Prometheus indexes -1, 0 (span at -1, length 2) and 3 (gap 2): counts 2, 5, 1.
    h = ts.histograms.add(
        count_int=10, sum=12.5, schema=3, zero_threshold=0.001, zero_count_int=2, timestamp=T_MS
    )
    h.positive_spans.add(offset=-1, length=2)
    h.positive_spans.add(offset=2, length=1)
    h.positive_deltas.extend([2, 3, -4])
    # A float histogram with whole counts, on the negative side.
    f = ts.histograms.add(count_float=3.0, sum=-1.0, schema=0, zero_count_float=0.0, timestamp=T_MS + 1000)
    f.negative_spans.add(offset=1, length=2)
    f.negative_counts.extend([1.0, 2.0])
    # Gauge histograms have no OpenTelemetry point: dropped and counted, not an error.
    ts.histograms.add(count_int=1, sum=1, schema=0, reset_hint=types_pb2.Histogram.GAUGE, timestamp=T_MS)
    ts.exemplars.add(
        value=0.3,
        timestamp=T_MS,
        labels=[
            types_pb2.Label(name="trace_id", value="0AF7651916CD43DD8448EB211C80319C"),
            types_pb2.Label(name="span_id", value="b7ad6b7169203331"),
            types_pb2.Label(name="user", value="u1"),
        ],
    )
    async with running_service(config(port), str(tmp_path)) as svc:
        status, _, text = await post(port, body(request))
        assert status == 204, text
        await wait_until(lambda: len(captured(svc)) == 2)
        p, q = captured(svc)
        assert p.kind == MetricKind.EXPONENTIAL_HISTOGRAM and p.temporality == Temporality.CUMULATIVE
        assert (p.count, p.sum, p.scale, p.zero_count, p.zero_threshold) == (10, 12.5, 3, 2, 0.001)
        assert (p.positive_offset, p.positive_bucket_counts) == (-2, [2, 5, 0, 0, 1])
        assert p.time_unix_nano == T_MS * 1_000_000
        assert (q.count, q.sum, q.scale, q.negative_offset, q.negative_bucket_counts) == (
            3,
            -1.0,
            0,
            0,
            [1, 2],
        )
        [exemplar] = q.exemplars  # the series' exemplars go on its last point
        assert (exemplar.trace_id, exemplar.span_id) == (
            "0af7651916cd43dd8448eb211c80319c",
            "b7ad6b7169203331",
        )
        assert (exemplar.value, exemplar.filtered_attributes) == (0.3, {"user": "u1"})
        dropped = {"component": RID, "signal": "metrics", "reason": "gauge_histogram"}
        assert metric_value(svc, "burnline_records_dropped_total", dropped) == 1


def test_prometheus_units_become_ucum() -> None:
    assert prometheus_unit_to_ucum("seconds") == "s"
    assert prometheus_unit_to_ucum("bytes_per_second") == "By/s"
    assert prometheus_unit_to_ucum("ratio") == "1"
    assert prometheus_unit_to_ucum("widgets") == "widgets"
    assert prometheus_unit_to_ucum("") == ""


# ---------------------------------------------------------------------------------------------------
# Bad input


async def test_invalid_series_are_refused_with_400_and_the_valid_ones_kept(tmp_path: Path) -> None:
    port = free_port()
    request = remote_pb2.WriteRequest()
    series({"__name__": "good"}, [(1.0, T_MS)], request)
    series({"job": "x"}, [(1.0, T_MS)], request)  # no __name__
    ts = series({"__name__": "dup"}, [(1.0, T_MS)], request)
    ts.labels.add(name="a", value="1")
    ts.labels.add(name="a", value="2")
    series({"__name__": "anon", "": "v"}, [(1.0, T_MS)], request)
    bad = series({"__name__": "nh"}, None, request)
    bad.histograms.add(count_int=1, schema=9, timestamp=T_MS)
    wrong = series({"__name__": "nh2"}, None, request)
    h = wrong.histograms.add(count_int=1, schema=0, timestamp=T_MS)
    h.positive_spans.add(offset=0, length=3)
    h.positive_deltas.extend([1])
    backwards = series({"__name__": "nh3"}, None, request)
    h = backwards.histograms.add(count_int=2, schema=0, timestamp=T_MS)
    h.positive_spans.add(offset=5, length=1)
    h.positive_spans.add(offset=-3, length=1)
    h.positive_deltas.extend([1, 0])
    async with running_service(config(port), str(tmp_path)) as svc:
        status, _, text = await post(port, body(request))
        assert status == 400
        assert text.startswith("6 invalid series not written (1 points written)")
        for problem in (
            "series 1: no __name__ label",
            "series 2: label 'a' is repeated",
            "series 3: a label has an empty name",
            "series 4: native histogram schema 9",
            "series 5: native histogram spans cover more buckets",
        ):
            assert problem in text
        await wait_until(lambda: len(captured(svc)) == 1)
        assert captured(svc)[0].name == "good"
        assert errors(svc, "invalid_series") == 1


async def test_bad_bodies_and_headers_get_the_protocols_answers(tmp_path: Path) -> None:
    port = free_port()
    request = remote_pb2.WriteRequest()
    series({"__name__": "x"}, [(1.0, T_MS)], request)
    payload = request.SerializeToString()
    big = remote_pb2.WriteRequest()
    series({"__name__": "big", "pad": "p" * 4000}, [(1.0, T_MS)], big)
    settings = {"max_body_size": "2KiB", "max_decompressed_size": "3KiB"}
    async with running_service(config(port, **settings), str(tmp_path)) as svc:
        # Snappy's framed format is not the block format the spec requires.
        status, _, text = await post(port, bytes(cramjam.snappy.compress(payload)))
        assert status == 400 and "not snappy block-compressed" in text
        status, _, text = await post(port, b"\xff\xff\xff\xff\xff\xff")
        assert status == 400 and "not snappy" in text
        status, _, text = await post(port, bytes(cramjam.snappy.compress_raw(b"\x0a\xff\x01garbage")))
        assert status == 400 and "not a prometheus.WriteRequest" in text
        status, _, text = await post(port, b"")
        assert (status, text.strip()) == (400, "the request has no body")
        # Content types: JSON is not protobuf; remote-write 2.0's message is not supported (415).
        status, _, text = await post(port, body(request), {**HEADERS, "Content-Type": "application/json"})
        assert status == 415 and "'application/json'" in text
        v2 = {
            **HEADERS,
            "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            "X-Prometheus-Remote-Write-Version": "2.0.0",
        }
        status, _, text = await post(port, body(request), v2)
        assert status == 415 and "io.prometheus.write.v2.Request" in text
        status, _, text = await post(port, body(request), {**HEADERS, "Content-Encoding": "gzip"})
        assert status == 415 and "use snappy" in text
        # Sizes: the body as sent, then what it announces it inflates to.
        status, _, _ = await post(port, b"x" * 3000)
        assert status == 413
        raw = big.SerializeToString()
        assert len(raw) > 3 * 1024 and len(cramjam.snappy.compress_raw(raw)) < 2048
        status, _, text = await post(port, body(big))
        assert status == 413 and "inflates to" in text
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/api/v1/write") as response:
                assert response.status == 405 and response.headers["Allow"] == "POST"
            async with session.post(f"http://127.0.0.1:{port}/other", data=body(request)) as response:
                assert response.status == 404
        # Headers left out (a "yolo" 1.0 client) are taken as remote-write 1.0.
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"http://127.0.0.1:{port}/api/v1/write",
                data=body(request),
                skip_auto_headers=["Content-Type"],
            ) as response:
                assert response.status == 204
        assert (await post(port, body(request), {"Content-Type": "application/octet-stream"}))[0] == 204
        proto_v1 = {**HEADERS, "Content-Type": "application/x-protobuf; proto=prometheus.WriteRequest"}
        assert (await post(port, body(request), proto_v1))[0] == 204
        await wait_until(lambda: len(captured(svc)) == 3)
        assert errors(svc, "invalid_snappy") == 2
        assert errors(svc, "invalid_protobuf") == 1
        assert errors(svc, "unsupported_media_type") == 2
        assert errors(svc, "unsupported_encoding") == 1
        assert errors(svc, "too_large") == 2
        assert errors(svc, "empty_body") == 1


async def test_authentication(tmp_path: Path) -> None:
    port = free_port()
    request = remote_pb2.WriteRequest()
    series({"__name__": "x"}, [(1.0, T_MS)], request)
    settings = {"username": "prom", "password": "s3cret", "bearer_token": "tok"}
    basic = "Basic " + base64.b64encode(b"prom:s3cret").decode()
    async with running_service(config(port, **settings), str(tmp_path)) as svc:
        status, headers, _ = await post(port, body(request))
        assert status == 401 and "Basic" in headers["WWW-Authenticate"]
        assert (await post(port, body(request), {**HEADERS, "Authorization": "Bearer nope"}))[0] == 401
        bad_basic = "Basic " + base64.b64encode(b"prom:wrong").decode()
        assert (await post(port, body(request), {**HEADERS, "Authorization": bad_basic}))[0] == 401
        assert (await post(port, body(request), {**HEADERS, "Authorization": basic}))[0] == 204
        assert (await post(port, body(request), {**HEADERS, "Authorization": "Bearer tok"}))[0] == 204
        await wait_until(lambda: len(captured(svc)) == 2)
        assert errors(svc, "unauthorized") == 3


@pytest.mark.parametrize("refused_status", [None, 429])
async def test_backpressure_is_a_retryable_answer_with_retry_after(
    tmp_path: Path, refused_status: int | None
) -> None:
    port = free_port()
    cfg = config(port) if refused_status is None else config(port, refused_status=refused_status)
    cfg["exporters"] = {
        "capture": {
            "paused": True,
            "queue": {"max_records": 2, "block_timeout": "50ms"},
            "batch": {"max_records": 1},
        }
    }
    async with running_service(cfg, str(tmp_path), grace=1.0) as svc:
        statuses = []
        for i in range(6):
            request = remote_pb2.WriteRequest()
            series({"__name__": "x", "i": str(i)}, [(1.0, T_MS)], request)
            status, headers, text = await post(port, body(request))
            statuses.append(status)
            if status != 204:
                assert int(headers["Retry-After"]) >= 1
                assert "retry later" in text
        expected = refused_status or 503
        assert statuses[0] == 204 and expected in statuses, statuses
        refused = {"component": RID, "signal": "metrics", "reason": "exporter queue full"}
        assert metric_value(svc, "burnline_records_refused_total", refused) == statuses.count(expected)
        assert set(statuses) == {204, expected}
        svc.exporters["capture"].resume.set()  # type: ignore[attr-defined]
        await wait_until(lambda: len(captured(svc)) == statuses.count(204))


# ---------------------------------------------------------------------------------------------------
# A real Prometheus remote-writes into burnline


@needs_prometheus
async def test_a_real_prometheus_remote_writes_its_own_series(tmp_path: Path) -> None:
    port = free_port()

    def prometheus_config(own_port: int) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
            "scrape_configs": [
                {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{own_port}"]}]}
            ],
            "remote_write": [
                {
                    "url": f"http://127.0.0.1:{port}/api/v1/write",
                    "basic_auth": {"username": "prom", "password": "s3cret"},
                    "queue_config": {
                        "batch_send_deadline": "500ms",
                        "min_backoff": "50ms",
                        "max_backoff": "1s",
                    },
                    "metadata_config": {"send": True, "send_interval": "1s"},
                }
            ],
        }

    settings = {"username": "prom", "password": "s3cret"}
    async with running_service(config(port, **settings), str(tmp_path / "burnline")) as svc:
        async with real_prometheus(tmp_path / "prometheus", prometheus_config) as prometheus:

            def typed_counter_seen() -> bool:
                return any(
                    p.name == "prometheus_http_requests_total" and p.description for p in captured(svc)
                )

            await wait_until(
                lambda: any(p.name == "prometheus_build_info" for p in captured(svc)), timeout=60
            )
            await wait_until(typed_counter_seen, timeout=60)
            # What Prometheus itself says about the same series.
            [build] = await prometheus.wait_for("prometheus_build_info")
            expected_version = build["metric"]["version"]
        points = captured(svc)
        info = next(p for p in points if p.name == "prometheus_build_info")
        assert info.kind == MetricKind.GAUGE
        assert info.value == 1.0
        assert info.attributes["version"] == expected_version
        assert info.attributes["goversion"].startswith("go")
        assert info.resource == {
            "service.name": "prometheus",
            "service.instance.id": f"127.0.0.1:{prometheus.port}",
        }
        assert abs(info.time_unix_nano / 1e9 - time.time()) < 120
        up = next(p for p in points if p.name == "up")
        assert up.value == 1.0
        counter = next(p for p in points if p.name == "prometheus_http_requests_total" and p.description)
        assert (counter.kind, counter.monotonic, counter.temporality) == (
            MetricKind.SUM,
            True,
            Temporality.CUMULATIVE,
        )
        assert counter.metadata["prometheus.type"] == "counter"
        assert "handler" in counter.attributes and "code" in counter.attributes
        buckets = [p for p in points if p.name == "prometheus_http_request_duration_seconds_bucket"]
        assert buckets and all("le" in p.attributes and p.kind == MetricKind.SUM for p in buckets)
        receiver = svc.receivers[RID]
        assert isinstance(receiver, RemoteWriteReceiver)
        family = receiver.families.get("prometheus_http_request_duration_seconds")
        assert family is not None and family.type == "histogram" and family.from_metadata
        assert errors(svc, "invalid_series") == 0
        assert errors(svc, "unauthorized") == 0


def test_samples_hold_the_shared_empty_list_not_one_each() -> None:
    """Six empty lists of its own were a third of what a converted sample held in memory."""
    request = remote_pb2.WriteRequest()
    series({"__name__": "up", "pod": "cart-1"}, [(1.0, T_MS), (0.0, T_MS + 1000)], request)
    for point in Converter(FamilyTypes(100), infer_types=True).convert(request).points:
        assert point.bucket_counts is NO_ITEMS and point.quantiles is NO_ITEMS and point.exemplars is NO_ITEMS
