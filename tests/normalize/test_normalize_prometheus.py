"""Exposition text -> MetricPoints: every metric type, both formats, labels, timestamps, bad input."""

from __future__ import annotations

import math
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client import generate_latest as text_exposition
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_exposition

from collector.core.model import MetricKind, MetricPoint, Scope, Temporality
from collector.normalize.prometheus import ExpositionError, is_openmetrics, parse_exposition
from collector.normalize.prometheus_families import merge_labels, timestamp_ns

SCRAPE_NS = 1_700_000_000_123_456_789
TARGET = {"job": "api", "instance": "10.0.0.1:9100"}


def parse(text: str, openmetrics: bool = False, **kwargs: Any) -> list[MetricPoint]:
    kwargs.setdefault("target_labels", TARGET)
    return parse_exposition(text, openmetrics=openmetrics, scrape_time_ns=SCRAPE_NS, **kwargs).points


def one(points: list[MetricPoint], name: str, **labels: str) -> MetricPoint:
    found = [p for p in points if p.name == name and all(p.attributes.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{len(found)} points named {name} with {labels}: {[p.attributes for p in found]}"
    return found[0]


# ---------------------------------------------------------------------------------------------
# Text format 0.0.4


def test_counter_is_a_monotonic_cumulative_sum_named_as_exposed() -> None:
    points = parse(
        "# HELP http_requests_total The total number of HTTP requests.\n"
        "# TYPE http_requests_total counter\n"
        'http_requests_total{method="post",code="200"} 1027 1395066363000\n'
        'http_requests_total{method="post",code="400"}    3 1395066363000\n'
        "# TYPE legacy_counter counter\n"
        "legacy_counter 5\n"
    )
    ok = one(points, "http_requests_total", code="200")
    assert ok.kind is MetricKind.SUM
    assert ok.monotonic is True
    assert ok.temporality == Temporality.CUMULATIVE
    assert ok.value == 1027
    assert ok.time_unix_nano == 1_395_066_363_000 * 1_000_000  # exact, despite the parser's float
    assert ok.description == "The total number of HTTP requests."
    # job and instance identify the source: they are the resource's, not attributes.
    assert ok.attributes == {"method": "post", "code": "200"}
    assert ok.resource == {"service.name": "api", "service.instance.id": "10.0.0.1:9100"}
    assert ok.start_time_unix_nano == 0
    assert one(points, "http_requests_total", code="400").value == 3
    # Declared without _total: kept as exposed, not renamed the way the parser reports it.
    legacy = one(points, "legacy_counter")
    assert legacy.kind is MetricKind.SUM and legacy.value == 5
    assert legacy.time_unix_nano == SCRAPE_NS
    assert not any(p.name == "legacy_counter_total" for p in points)


def test_gauge_and_untyped_are_gauges() -> None:
    points = parse(
        "# TYPE temperature_celsius gauge\n"
        'temperature_celsius{room="a"} -3.5\n'
        "metric_without_type 12.47\n"
        "# TYPE declared_untyped untyped\n"
        "declared_untyped 1\n"
    )
    gauge = one(points, "temperature_celsius")
    assert gauge.kind is MetricKind.GAUGE and gauge.value == -3.5
    assert gauge.metadata == {}
    for name in ("metric_without_type", "declared_untyped"):
        point = one(points, name)
        assert point.kind is MetricKind.GAUGE
        assert point.metadata == {"prometheus.type": "unknown"}  # OpenMetrics' name for untyped
    assert one(points, "metric_without_type").value == 12.47


def test_histogram_buckets_become_per_bucket_counts() -> None:
    result = parse_exposition(
        "# HELP http_request_duration_seconds A histogram of the request duration.\n"
        "# TYPE http_request_duration_seconds histogram\n"
        'http_request_duration_seconds_bucket{path="/a",le="0.05"} 24054\n'
        'http_request_duration_seconds_bucket{path="/a",le="0.1"} 33444\n'
        'http_request_duration_seconds_bucket{path="/a",le="0.2"} 100392\n'
        'http_request_duration_seconds_bucket{path="/a",le="0.5"} 129389\n'
        'http_request_duration_seconds_bucket{path="/a",le="1"} 133988\n'
        'http_request_duration_seconds_bucket{path="/a",le="+Inf"} 144320\n'
        'http_request_duration_seconds_sum{path="/a"} 53423\n'
        'http_request_duration_seconds_count{path="/a"} 144320\n'
        'http_request_duration_seconds_bucket{path="/b",le="0.05"} 0\n'
        'http_request_duration_seconds_bucket{path="/b",le="0.1"} 2\n'
        'http_request_duration_seconds_bucket{path="/b",le="0.2"} 2\n'
        'http_request_duration_seconds_bucket{path="/b",le="0.5"} 3\n'
        'http_request_duration_seconds_bucket{path="/b",le="1"} 3\n'
        'http_request_duration_seconds_bucket{path="/b",le="+Inf"} 4\n'
        'http_request_duration_seconds_sum{path="/b"} 2.25\n'
        'http_request_duration_seconds_count{path="/b"} 4\n',
        openmetrics=False,
        scrape_time_ns=SCRAPE_NS,
        target_labels=TARGET,
    )
    assert result.samples == 16 and result.invalid == 0
    a = one(result.points, "http_request_duration_seconds", path="/a")
    assert a.kind is MetricKind.HISTOGRAM
    assert a.temporality == Temporality.CUMULATIVE
    assert a.explicit_bounds == [0.05, 0.1, 0.2, 0.5, 1.0]
    assert a.bucket_counts == [24054, 9390, 66948, 28997, 4599, 10332]
    assert sum(a.bucket_counts) == a.count == 144320
    assert a.sum == 53423.0
    assert "le" not in a.attributes
    assert a.attributes == {"path": "/a"}
    b = one(result.points, "http_request_duration_seconds", path="/b")
    assert b.bucket_counts == [0, 2, 0, 1, 0, 1]
    assert (b.count, b.sum) == (4, 2.25)
    assert len(result.points) == 2


def test_histogram_without_inf_bucket_takes_the_rest_from_count() -> None:
    points = parse('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="2"} 5\nh_sum 7.5\nh_count 9\n')
    h = one(points, "h")
    assert h.explicit_bounds == [1.0, 2.0]
    assert h.bucket_counts == [2, 3, 4]
    assert h.count == 9


def test_histogram_with_only_sum_and_count_has_no_buckets() -> None:
    h = one(parse("# TYPE h histogram\nh_sum 1.5\nh_count 3\n"), "h")
    assert (h.count, h.sum, h.bucket_counts, h.explicit_bounds) == (3, 1.5, [], [])


def test_invalid_histogram_is_left_out_and_the_rest_kept() -> None:
    result = parse_exposition(
        "# TYPE h histogram\n"
        'h_bucket{x="bad",le="1"} 5\n'
        'h_bucket{x="bad",le="2"} 3\n'
        'h_bucket{x="bad",le="+Inf"} 6\n'
        'h_count{x="bad"} 6\n'
        'h_sum{x="bad"} 1\n'
        'h_bucket{x="good",le="1"} 1\n'
        'h_bucket{x="good",le="+Inf"} 1\n'
        'h_count{x="good"} 1\n'
        'h_sum{x="good"} 1\n'
        "# TYPE g gauge\n"
        "g 1\n",
        openmetrics=False,
        scrape_time_ns=SCRAPE_NS,
    )
    assert [p.name for p in result.points] == ["h", "g"]
    assert result.points[0].attributes == {"x": "good"}
    assert result.invalid == 5
    assert "h: bucket counts are not cumulative" in result.problem
    assert result.samples == 10


def test_summary_keeps_quantiles_count_and_sum() -> None:
    points = parse(
        "# HELP rpc_duration_seconds A summary of the RPC duration in seconds.\n"
        "# TYPE rpc_duration_seconds summary\n"
        'rpc_duration_seconds{service="x",quantile="0.99"} 76656\n'
        'rpc_duration_seconds{service="x",quantile="0.01"} 3102\n'
        'rpc_duration_seconds{service="x",quantile="0.5"} 4773\n'
        'rpc_duration_seconds_sum{service="x"} 1.7560473e+07\n'
        'rpc_duration_seconds_count{service="x"} 2693\n'
        "# TYPE empty_summary summary\n"
        "empty_summary_sum 0\n"
        "empty_summary_count 0\n"
    )
    s = one(points, "rpc_duration_seconds")
    assert s.kind is MetricKind.SUMMARY
    assert s.quantiles == [(0.01, 3102.0), (0.5, 4773.0), (0.99, 76656.0)]
    assert (s.count, s.sum) == (2693, 1.7560473e07)
    assert s.attributes == {"service": "x"}
    empty = one(points, "empty_summary")
    assert (empty.count, empty.sum, empty.quantiles) == (0, 0.0, [])


def test_label_values_with_escapes_and_syntax_characters() -> None:
    points = parse(
        'msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",'
        'error="Cannot find file:\\n\\"FILE.TXT\\""} 1.458255915e9\n'
        'odd{a="x,y=z",b="{}",c="tab\there"} 1\n'
        'utf8{city="Zürich 東京"} 2\n'
    )
    msdos = one(points, "msdos_file_access_time_seconds")
    assert msdos.attributes["path"] == "C:\\DIR\\FILE.TXT"
    assert msdos.attributes["error"] == 'Cannot find file:\n"FILE.TXT"'
    assert msdos.value == 1.458255915e9
    odd = one(points, "odd")
    assert (odd.attributes["a"], odd.attributes["b"], odd.attributes["c"]) == ("x,y=z", "{}", "tab\there")
    assert one(points, "utf8").attributes["city"] == "Zürich 東京"


def test_nan_and_infinities() -> None:
    points = parse(
        "# TYPE g gauge\n"
        'g{v="nan"} NaN\n'
        'g{v="inf"} +Inf\n'
        'g{v="-inf"} -Inf\n'
        "# TYPE s summary\n"
        's{quantile="0.5"} NaN\n'
        "s_sum 0\n"
        "s_count 0\n"
        "# TYPE h histogram\n"
        'h_bucket{le="-Inf"} 0\n'
        'h_bucket{le="+Inf"} 2\n'
        "h_sum +Inf\n"
        "h_count 2\n"
    )
    assert math.isnan(one(points, "g", v="nan").value)  # type: ignore[arg-type]
    assert one(points, "g", v="inf").value == math.inf
    assert one(points, "g", v="-inf").value == -math.inf
    (quantile, value), *_ = one(points, "s").quantiles
    assert quantile == 0.5 and math.isnan(value)
    h = one(points, "h")
    assert h.explicit_bounds == [-math.inf]
    assert h.bucket_counts == [0, 2]
    assert h.sum == math.inf


def test_timestamps_honoured_or_replaced_by_the_scrape_time() -> None:
    text = "a 1 1700000000001\nb 2\nc 3 -5000\n"
    honoured = parse(text)
    assert one(honoured, "a").time_unix_nano == 1_700_000_000_001_000_000
    assert one(honoured, "b").time_unix_nano == SCRAPE_NS
    assert one(honoured, "c").time_unix_nano == -5_000_000_000
    ignored = parse(text, honor_timestamps=False)
    assert {p.time_unix_nano for p in ignored} == {SCRAPE_NS}


def test_resource_and_scope_are_shared_by_every_point() -> None:
    resource = {"service.name": "api"}
    scope = Scope(name="s")
    points = parse("a 1\nb 2\n", resource=resource, scope=scope)
    assert all(p.resource is resource and p.scope is scope for p in points)


# ---------------------------------------------------------------------------------------------
# Target labels


def test_target_labels_win_and_conflicts_are_exported() -> None:
    resource = {"service.name": "api", "service.instance.id": "h:1", "server.port": 1}
    points = parse(
        'a{job="app",instance="x",exported_job="old"} 1\nb{job="",pod="p"} 2\n',
        target_labels={"job": "api", "instance": "h:1", "env": ""},
        resource=resource,
    )
    a = one(points, "a")
    # exported_job is taken, so the exposed job becomes exported_exported_job.
    assert a.attributes == {"exported_instance": "x", "exported_job": "old", "exported_exported_job": "app"}
    assert a.resource is resource
    # An empty label is an absent one: no conflict, and neither empty value survives.
    b = one(points, "b")
    assert b.attributes == {"pod": "p"}
    assert b.resource is resource


def test_honor_labels_keeps_the_exposed_labels() -> None:
    resource = {"service.name": "api", "service.instance.id": "h:1", "server.port": 1}
    points = parse(
        'a{job="app",instance="x"} 1\nb 2\nc{job="app",instance="x"} 3\nd{instance=""} 4\n',
        target_labels={"job": "api", "instance": "h:1"},
        honor_labels=True,
        resource=resource,
    )
    a, b, c, d = (one(points, name) for name in "abcd")
    assert a.attributes == b.attributes == {}
    # The exposed job and instance identify another source: a resource of their own, shared.
    assert a.resource == {"service.name": "app", "service.instance.id": "x", "server.port": 1}
    assert c.resource is a.resource
    assert b.resource is resource
    # An empty exposed instance is no instance (and honor_labels keeps it so).
    assert d.resource == {"service.name": "api", "server.port": 1}


def test_merge_labels_resolves_conflicts_shorter_names_first() -> None:
    merged = merge_labels({"a": "1", "exported_a": "2", "b": "3"}, {"a": "t", "exported_a": "u"}, False)
    assert merged == {
        "a": "t",
        "exported_a": "u",
        "exported_exported_a": "1",
        "exported_exported_exported_a": "2",
        "b": "3",
    }


# ---------------------------------------------------------------------------------------------
# OpenMetrics


def test_openmetrics_counter_created_and_exemplars() -> None:
    text = (
        "# TYPE foo counter\n"
        "# HELP foo Requests.\n"
        "# UNIT foo \n"
        'foo_total{a="1"} 17.0 # {trace_id="KOO5S4vxi0o"} 0.67\n'
        'foo_created{a="1"} 1520430000.123\n'
        'foo_total{a="2"} 3\n'
        "# EOF\n"
    )
    result = parse_exposition(text, openmetrics=True, scrape_time_ns=SCRAPE_NS)
    assert [p.name for p in result.points] == ["foo_total", "foo_total"]
    first, second = result.points
    assert first.kind is MetricKind.SUM and first.monotonic
    assert first.value == 17.0
    assert first.start_time_unix_nano == 1_520_430_000_123_000_000
    assert first.exemplars == []
    assert first.description == "Requests."
    assert second.start_time_unix_nano == 0
    assert result.samples == 2  # _created lines are not samples


def test_openmetrics_histogram_summary_and_nanosecond_timestamps() -> None:
    text = (
        "# TYPE latency_seconds histogram\n"
        "# UNIT latency_seconds seconds\n"
        'latency_seconds_bucket{le="0.5"} 1 1700000000.5 # {trace_id="a"} 0.3 1700000000.1\n'
        'latency_seconds_bucket{le="1.0"} 3 1700000000.5\n'
        'latency_seconds_bucket{le="+Inf"} 4 1700000000.5\n'
        "latency_seconds_count 4 1700000000.5\n"
        "latency_seconds_sum 3.5 1700000000.5\n"
        "latency_seconds_created 1699999000.25 1700000000.5\n"
        "# TYPE rpc summary\n"
        'rpc{quantile="0.9"} 0.8 1700000000.123456789\n'
        "rpc_sum 10 1700000000.123456789\n"
        "rpc_count 20 1700000000.123456789\n"
        "rpc_created 1699999999 1700000000.123456789\n"
        "# EOF\n"
    )
    points = parse(text, openmetrics=True)
    h = one(points, "latency_seconds")
    assert h.unit == "seconds"
    assert (h.bucket_counts, h.explicit_bounds, h.count, h.sum) == ([1, 2, 1], [0.5, 1.0], 4, 3.5)
    assert h.time_unix_nano == 1_700_000_000_500_000_000
    assert h.start_time_unix_nano == 1_699_999_000_250_000_000
    s = one(points, "rpc")
    assert s.time_unix_nano == 1_700_000_000_123_456_789
    assert s.start_time_unix_nano == 1_699_999_999_000_000_000
    assert (s.quantiles, s.count, s.sum) == ([(0.9, 0.8)], 20, 10.0)


def test_openmetrics_info_stateset_gaugehistogram_unknown() -> None:
    text = (
        "# TYPE build info\n"
        'build_info{version="1.2"} 1\n'
        "# TYPE state stateset\n"
        'state{state="ready"} 1\n'
        'state{state="failed"} 0\n'
        "# TYPE queue gaugehistogram\n"
        'queue_bucket{le="1"} 2\n'
        'queue_bucket{le="+Inf"} 3\n'
        "queue_gcount 3\n"
        "queue_gsum 2.5\n"
        "# TYPE mystery unknown\n"
        "mystery 7\n"
        "# EOF\n"
    )
    result = parse_exposition(text, openmetrics=True, scrape_time_ns=SCRAPE_NS)
    points = result.points
    # info and stateset: non-monotonic cumulative sums, as the OpenTelemetry Collector maps them.
    for point in (one(points, "build_info"), *[p for p in points if p.name == "state"]):
        assert point.kind is MetricKind.SUM and not point.monotonic
        assert point.temporality == Temporality.CUMULATIVE
    assert one(points, "build_info").metadata == {"prometheus.type": "info"}
    assert one(points, "state", state="failed").metadata == {"prometheus.type": "stateset"}
    assert one(points, "state", state="failed").value == 0
    # gaugehistogram and unknown: gauges, one per sample.
    assert all(p.kind is MetricKind.GAUGE for p in points if p.name.startswith(("queue", "mystery")))
    assert one(points, "queue_bucket", le="+Inf").value == 3
    assert one(points, "queue_gsum").metadata == {"prometheus.type": "gaugehistogram"}
    assert one(points, "mystery").metadata == {"prometheus.type": "unknown"}
    assert result.samples == len(points) == 8


def test_openmetrics_native_histogram_becomes_exponential() -> None:
    text = (
        "# TYPE nh histogram\n"
        'nh{path="/"} {count:24,sum:100,schema:0,zero_threshold:0.001,zero_count:4,'
        "positive_spans:[0:2,1:2],negative_spans:[0:2,1:2],"
        "positive_deltas:[2,1,-3,3],negative_deltas:[2,1,-2,3]}\n"
        "# EOF\n"
    )
    nh = one(parse(text, openmetrics=True), "nh")
    assert nh.kind is MetricKind.EXPONENTIAL_HISTOGRAM
    assert (nh.count, nh.sum, nh.scale, nh.zero_count, nh.zero_threshold) == (24, 100.0, 0, 4, 0.001)
    # Prometheus bucket 0 (0.5, 1] is OTLP bucket -1; the one-bucket gap shows as a zero.
    assert (nh.positive_offset, nh.positive_bucket_counts) == (-1, [2, 3, 0, 0, 3])
    assert (nh.negative_offset, nh.negative_bucket_counts) == (-1, [2, 3, 0, 1, 4])
    assert nh.attributes == {"path": "/"}


def test_openmetrics_without_eof_is_invalid() -> None:
    with pytest.raises(ExpositionError, match="EOF"):
        parse_exposition("# TYPE a gauge\na 1\n", openmetrics=True, scrape_time_ns=SCRAPE_NS)


# ---------------------------------------------------------------------------------------------
# What prometheus-client itself exposes, both formats


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    requests = Counter("app_requests", "Requests.", ["code"], registry=registry)
    requests.labels("200").inc(7)
    requests.labels("500").inc(2)
    Gauge("app_queue_depth", "Depth.", registry=registry).set(42.5)
    latency = Histogram("app_latency_seconds", "Latency.", buckets=(0.1, 1.0), registry=registry)
    for value in (0.05, 0.5, 0.7, 3.0):
        latency.observe(value)
    size = Summary("app_size_bytes", "Size.", registry=registry)
    size.observe(10)
    size.observe(30)
    Info("app_build", "Build.", registry=registry).info({"version": "1.2.3"})
    Enum("app_state", "State.", states=["up", "down"], registry=registry).state("down")
    return registry


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
def test_prometheus_client_exposition_round_trip(openmetrics: bool) -> None:
    registry = _registry()
    body = (openmetrics_exposition if openmetrics else text_exposition)(registry).decode()
    points = parse(body, openmetrics=openmetrics)
    assert one(points, "app_requests_total", code="200").value == 7
    assert one(points, "app_requests_total", code="500").value == 2
    assert one(points, "app_queue_depth").value == 42.5
    latency = one(points, "app_latency_seconds")
    assert (latency.bucket_counts, latency.explicit_bounds, latency.count) == ([1, 2, 1], [0.1, 1.0], 4)
    assert latency.sum == pytest.approx(4.25)
    size = one(points, "app_size_bytes")
    assert (size.count, size.sum) == (2, 40.0)
    assert one(points, "app_build_info").attributes["version"] == "1.2.3"
    assert one(points, "app_state", app_state="down").value == 1
    assert one(points, "app_state", app_state="up").value == 0
    created = registry.get_sample_value("app_requests_created", {"code": "200"})
    assert created is not None
    if openmetrics:
        # OpenMetrics carries creation times in the family: they become start times.
        assert (
            one(points, "app_requests_total", code="200").start_time_unix_nano == round(created * 1e6) * 1000
        )
        assert latency.start_time_unix_nano > 0
        assert not any(p.name.endswith("_created") for p in points)
    else:
        # The text format exposes them as plain gauges, which Prometheus ingests as such.
        assert one(points, "app_requests_created", code="200").value == created


# ---------------------------------------------------------------------------------------------
# Bad input and small helpers


@pytest.mark.parametrize(
    "body",
    [
        "<html><body>Not Found</body></html>\n",
        '{"status": "ok"}\n',
        "hello world\n",
        "metric{label=unquoted} 1\n",
        'metric{label="v"} not-a-number\n',
        "# TYPE x gauge\nx 1 notatimestamp\n",
    ],
)
def test_garbage_is_an_exposition_error(body: str) -> None:
    with pytest.raises(ExpositionError, match="not a Prometheus exposition"):
        parse_exposition(body, openmetrics=False, scrape_time_ns=SCRAPE_NS)


def test_empty_body_is_an_empty_exposition() -> None:
    result = parse_exposition("", openmetrics=False, scrape_time_ns=SCRAPE_NS)
    assert (result.points, result.samples) == ([], 0)


def test_content_type_selects_the_parser() -> None:
    assert is_openmetrics("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert is_openmetrics("Application/OpenMetrics-Text")
    assert not is_openmetrics("text/plain; version=0.0.4; charset=utf-8")
    assert not is_openmetrics("")


def test_timestamp_conversion() -> None:
    assert timestamp_ns(1700000000.001, milliseconds=True) == 1_700_000_000_001_000_000
    with pytest.raises(ExpositionError):
        timestamp_ns(math.nan, milliseconds=True)
