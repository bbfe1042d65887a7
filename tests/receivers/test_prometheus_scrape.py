"""prometheus_scrape: real exporters, bad targets, scheduling, staleness, backpressure, Kubernetes pods.

Everything runs through a full in-process service whose metrics pipeline ends in the ``capture``
exporter. Real node_exporter and Prometheus processes are scraped when their binaries are installed;
the values burnline delivers are checked against a direct scrape parsed here independently.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import logging
import math
import re
import shutil
import ssl
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_exposition

from collector.config import parse_config
from collector.config.loader import ConfigError
from collector.core.component import ComponentContext
from collector.core.model import Batch, MetricKind, MetricPoint, Signal
from collector.core.service import Service
from collector.core.telemetry import Telemetry
from collector.discovery import TargetSpec
from collector.receivers.prometheus_scrape import receiver as prometheus_scrape
from collector.receivers.prometheus_scrape.config import PrometheusScrapeConfig
from collector.receivers.prometheus_scrape.receiver import PrometheusScrapeReceiver
from collector.receivers.prometheus_scrape.target import ACCEPT, NO_RECORDED_VALUE
from collector.workers.identity import WorkerIdentity
from tests.doubles.kube_apiserver import KubeAPIServer, make_pod
from tests.real_services import local_process
from tests.support import free_port, metric_value, running_service, wait_until

RID = "prometheus_scrape"
TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
PROMETHEUS = "/usr/bin/prometheus"
HUGE_BYTES = 50 * 1024 * 1024


# ---------------------------------------------------------------------------------------------
# A scrape target the test controls


@dataclass
class Route:
    body: bytes = b""
    content_type: str = TEXT
    status: int = 200
    delay: float = 0.0
    gzip: bool = False


@dataclass
class FakeTarget:
    """An HTTP server on loopback answering scrapes with whatever the test sets per path."""

    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    inflight: int = 0
    max_inflight: int = 0
    huge_sent: list[int] = field(default_factory=list)  # bytes sent, per request of /huge
    huge_done: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    def set(self, path: str, text: str | bytes, **kwargs: Any) -> None:
        body = text.encode() if isinstance(text, str) else text
        self.routes[path] = Route(body=body, **kwargs)

    def hits(self, path: str) -> int:
        return sum(1 for p, _, _ in self.requests if p == path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, dict(request.headers), dict(request.query)))
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if request.path == "/huge":
                return await self._huge(request)
            route = self.routes.get(request.path)
            if route is None:
                return web.Response(status=404, text="404 page not found\n")
            if route.delay:
                await asyncio.sleep(route.delay)
            body = route.body
            headers = {"Content-Type": route.content_type}
            if route.gzip:
                body = gzip.compress(body)
                headers["Content-Encoding"] = "gzip"
            return web.Response(status=route.status, body=body, headers=headers)
        finally:
            self.inflight -= 1

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        """50 MB of valid exposition, streamed without a Content-Length."""
        response = web.StreamResponse(headers={"Content-Type": TEXT})
        await response.prepare(request)
        line = b"# padding " + b"x" * 1013 + b"\n"
        chunk = line * 64  # 64 KiB
        sent = 0
        try:
            while sent < HUGE_BYTES:
                await response.write(chunk)
                sent += len(chunk)
            await response.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass
        finally:
            self.huge_sent.append(sent)
            self.huge_done.set()
        return response


@asynccontextmanager
async def fake_target(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[FakeTarget]:
    target = FakeTarget()
    app = web.Application()
    app.router.add_get("/{path:.*}", target.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    sockets = getattr(site._server, "sockets", None)
    assert sockets
    target.port = int(sockets[0].getsockname()[1])
    try:
        yield target
    finally:
        await runner.cleanup()


# ---------------------------------------------------------------------------------------------
# The service under test


def scrape_config(**receiver: Any) -> dict[str, Any]:
    return {
        "receivers": {RID: receiver},
        "exporters": {"capture": {"batch": {"flush_interval": "10ms"}}},
        "service": {"pipelines": {"metrics": {"receivers": [RID], "exporters": ["capture"]}}},
    }


def job(name: str, *targets: str, **settings: Any) -> dict[str, Any]:
    return {"job_name": name, "static_configs": [{"targets": list(targets)}], **settings}


def captured(svc: Service) -> list[MetricPoint]:
    return list(svc.exporters["capture"].items)  # type: ignore[attr-defined]


def labels_of(point: MetricPoint) -> dict[str, Any]:
    """The point's Prometheus labels: its attributes, and job and instance from its resource."""
    labels = dict(point.attributes)
    labels["job"] = point.resource.get("service.name")
    labels["instance"] = point.resource.get("service.instance.id")
    return labels


def series(svc: Service, name: str, **labels: str) -> list[MetricPoint]:
    return [
        p
        for p in captured(svc)
        if p.name == name and all(labels_of(p).get(k) == v for k, v in labels.items())
    ]


def latest(svc: Service, name: str, **labels: str) -> MetricPoint:
    found = series(svc, name, **labels)
    assert found, f"no {name} {labels} captured"
    return found[-1]


def up_values(svc: Service, job_name: str) -> list[Any]:
    return [p.value for p in series(svc, "up", job=job_name)]


def refused(svc: Service) -> float:
    """Records of this receiver the pipeline refused, whatever the reason."""
    return sum(
        sample.value
        for metric in svc.telemetry.refused.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("component") == RID
    )


def errors(svc: Service, reason: str) -> float:
    return metric_value(svc, "burnline_receiver_errors_total", {"component": RID, "reason": reason})


# ---------------------------------------------------------------------------------------------
# Independent reading of a direct scrape


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?\s*$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_TYPE = re.compile(r"^# TYPE (\S+) (\S+)\s*$")


@dataclass
class Direct:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    types: dict[str, str]

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]

    def family_of(self, sample_name: str) -> str | None:
        """The histogram/summary family a sample line belongs to, if any."""
        for suffix in ("_bucket", "_sum", "_count", ""):
            base = sample_name[: len(sample_name) - len(suffix)] if suffix else sample_name
            if sample_name.endswith(suffix) and self.types.get(base) in ("histogram", "summary"):
                return base
        return None


def read_direct(text: str) -> Direct:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        typed = _TYPE.match(line)
        if typed:
            types[typed.group(1)] = typed.group(2)
            continue
        if line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"unexpected line {line!r}"
        labels = frozenset(
            (k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
            for k, v in _LABEL.findall(match.group(2) or "")
        )
        samples[(match.group(1), labels)] = float(match.group(3))
    return Direct(samples, types)


async def scrape_directly(url: str) -> Direct:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return read_direct(await response.text())


def own_labels(point: MetricPoint) -> frozenset[tuple[str, str]]:
    return frozenset((k, v) for k, v in point.attributes.items() if k not in ("job", "instance"))


@pytest.fixture
async def node_exporter(tmp_path: Path) -> AsyncIterator[str]:
    if shutil.which(NODE_EXPORTER) is None:
        pytest.skip(f"{NODE_EXPORTER} is not installed (Debian package prometheus-node-exporter)")
    port = free_port()
    args = [
        NODE_EXPORTER,
        f"--web.listen-address=127.0.0.1:{port}",
        "--collector.disable-defaults",
        "--collector.cpu",
        "--collector.meminfo",
    ]
    async with local_process(args, f"http://127.0.0.1:{port}/metrics", tmp_path / "node_exporter.log"):
        yield f"127.0.0.1:{port}"


@pytest.fixture
async def prometheus(tmp_path: Path) -> AsyncIterator[str]:
    if shutil.which(PROMETHEUS) is None:
        pytest.skip(f"{PROMETHEUS} is not installed (Debian package prometheus)")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1h\nscrape_configs: []\n")
    args = [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    async with local_process(args, f"http://127.0.0.1:{port}/-/ready", tmp_path / "prometheus.log"):
        yield f"127.0.0.1:{port}"


# ---------------------------------------------------------------------------------------------
# Real exporters


async def test_node_exporter_values_match_a_direct_scrape(node_exporter: str, tmp_path: Path) -> None:
    url = f"http://{node_exporter}/metrics"
    before = await scrape_directly(url)
    config = scrape_config(jobs=[job("node", node_exporter, scrape_interval="1s")])
    async with running_service(config, str(tmp_path / "data")) as svc:
        await wait_until(lambda: bool(series(svc, "up", job="node")))
        after = await scrape_directly(url)
        up = latest(svc, "up", job="node")
        points = [p for p in captured(svc) if p.time_unix_nano == up.time_unix_nano]

    assert up.value == 1
    assert up.attributes == {}
    assert up.resource["service.name"] == "node"
    assert up.resource["service.instance.id"] == node_exporter
    scraped = latest(svc, "scrape_samples_scraped", job="node").value
    assert scraped == len(before.samples) == len(after.samples)
    assert latest(svc, "scrape_samples_post_metric_relabeling", job="node").value == scraped
    assert 0 < latest(svc, "scrape_duration_seconds", job="node").value < 1  # type: ignore[operator]

    scraped_points = {(p.name, own_labels(p)): p for p in points if p.name not in prometheus_scrape.SYNTHETIC}
    assert all(p.resource["service.name"] == "node" for p in points)
    # Every plain series of the direct scrape is there, under the same name and labels.
    plain = {key for key in before.samples if before.family_of(key[0]) is None}
    assert plain == {key for key, p in scraped_points.items() if p.kind in (MetricKind.GAUGE, MetricKind.SUM)}

    # Constant: equal.
    total = scraped_points[("node_memory_MemTotal_bytes", frozenset())]
    assert total.kind is MetricKind.GAUGE
    assert (
        total.value == before.value("node_memory_MemTotal_bytes") == after.value("node_memory_MemTotal_bytes")
    )
    # Counters that only grow: between the two direct scrapes.
    cpu = [p for key, p in scraped_points.items() if key[0] == "node_cpu_seconds_total"]
    assert cpu
    for point in cpu:
        key = ("node_cpu_seconds_total", own_labels(point))
        assert point.kind is MetricKind.SUM and point.monotonic
        assert before.samples[key] <= point.value <= after.samples[key]  # type: ignore[operator]
    # The Go runtime's summary: quantiles by label, count and sum.
    gc = scraped_points[("go_gc_duration_seconds", frozenset())]
    assert gc.kind is MetricKind.SUMMARY
    assert [q for q, _ in gc.quantiles] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert (
        before.value("go_gc_duration_seconds_count")
        <= gc.count
        <= after.value("go_gc_duration_seconds_count")
    )


async def test_prometheus_own_metrics_match_a_direct_scrape(prometheus: str, tmp_path: Path) -> None:
    url = f"http://{prometheus}/metrics"
    await scrape_directly(url)  # the /metrics handler's series exist once it has served a request
    before = await scrape_directly(url)
    config = scrape_config(jobs=[job("prometheus", prometheus, scrape_interval="1s")])
    async with running_service(config, str(tmp_path / "data")) as svc:
        await wait_until(lambda: bool(series(svc, "up", job="prometheus")), timeout=15)
        after = await scrape_directly(url)
        up = latest(svc, "up", job="prometheus")
        points = {
            (p.name, own_labels(p)): p
            for p in captured(svc)
            if p.time_unix_nano == up.time_unix_nano and p.name not in prometheus_scrape.SYNTHETIC
        }
    assert up.value == 1

    build = [p for (name, _), p in points.items() if name == "prometheus_build_info"]
    assert len(build) == 1
    assert build[0].value == 1
    assert (build[0].name, own_labels(build[0])) in before.samples
    reloaded = points[("prometheus_config_last_reload_successful", frozenset())]
    assert reloaded.value == before.value("prometheus_config_last_reload_successful") == 1

    # The request-duration histogram of /metrics: same bounds, counts between the direct scrapes.
    name = "prometheus_http_request_duration_seconds"
    histogram = points[(name, frozenset({("handler", "/metrics")}))]
    assert histogram.kind is MetricKind.HISTOGRAM
    bounds = sorted(
        float(dict(labels)["le"])
        for (sample, labels), _ in before.samples.items()
        if sample == f"{name}_bucket" and dict(labels).get("handler") == "/metrics"
    )
    assert histogram.explicit_bounds == [b for b in bounds if b != math.inf]
    assert sum(histogram.bucket_counts) == histogram.count
    cumulative = 0
    for bound, count in zip([*histogram.explicit_bounds, math.inf], histogram.bucket_counts, strict=True):
        cumulative += count
        le = "+Inf" if bound == math.inf else f"{bound:g}"
        low = before.value(f"{name}_bucket", handler="/metrics", le=le)
        high = after.value(f"{name}_bucket", handler="/metrics", le=le)
        assert low <= cumulative <= high
    assert before.value(f"{name}_count", handler="/metrics") <= histogram.count
    assert histogram.count <= after.value(f"{name}_count", handler="/metrics")


# ---------------------------------------------------------------------------------------------
# Bad targets


async def test_bad_targets_are_down_with_a_reason_and_others_unaffected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=f"burnline.receiver.{RID}")
    async with fake_target() as server:
        address = f"127.0.0.1:{server.port}"
        server.set("/good", "# TYPE requests_total counter\nrequests_total 5\n")
        server.set("/slow", "slow 1\n", delay=5)
        server.set("/garbage", "<html><body><h1>It works!</h1></body></html>\n", content_type="text/html")
        server.set("/error", "boom\n", status=500)
        refused = f"127.0.0.1:{free_port()}"
        config = scrape_config(
            scrape_interval="700ms",
            jobs=[
                job("good", address, metrics_path="/good"),
                job("slow", address, metrics_path="/slow", scrape_timeout="300ms"),
                job("garbage", address, metrics_path="/garbage"),
                job("huge", address, metrics_path="/huge", body_size_limit="1MiB"),
                job("error", address, metrics_path="/error"),
                job("refused", refused),
            ],
        )
        async with running_service(config, str(tmp_path / "data")) as svc:
            names = ("good", "slow", "garbage", "huge", "error", "refused")
            await wait_until(lambda: all(len(up_values(svc, n)) >= 2 for n in names), timeout=20)
            await asyncio.wait_for(server.huge_done.wait(), 10)

            assert set(up_values(svc, "good")) == {1}
            for name in names[1:]:
                assert set(up_values(svc, name)) == {0}, name
            # The good target's samples arrive with every scrape, whatever the others do.
            good = series(svc, "requests_total", job="good")
            assert len(good) >= 2 and {p.value for p in good} == {5}
            for name in names[1:]:
                assert not [
                    p
                    for p in captured(svc)
                    if p.resource.get("service.name") == name and p.name not in prometheus_scrape.SYNTHETIC
                ]
            assert errors(svc, "timeout") >= 2
            assert errors(svc, "invalid_exposition") >= 2
            assert errors(svc, "body_size_limit") >= 2
            assert errors(svc, "http_500") >= 2
            assert errors(svc, "connection_refused") >= 2
            # The slow target is given up on at its timeout, and says how long it took.
            slow = latest(svc, "scrape_duration_seconds", job="slow").value
            assert 0.25 < slow < 1  # type: ignore[operator]

    # Cut at the limit, not read to the end: far less than the 50 MB was ever sent (the rest of what
    # was sent sat in socket buffers).
    assert server.huge_sent
    assert max(server.huge_sent) < 16 * 1024 * 1024
    down = [r.getMessage() for r in caplog.records if "is down" in r.getMessage()]
    # One line per target when it goes down, not one per failed scrape.
    assert len(down) == 5, down
    assert any("/huge" in line and "1048576-byte body_size_limit" in line for line in down)
    assert any("/slow" in line and "0.3s scrape_timeout" in line for line in down)
    assert any(refused in line and "cannot connect" in line for line in down)
    assert any("/error" in line and "HTTP 500" in line for line in down)
    assert any("/garbage" in line and "not a Prometheus exposition" in line for line in down)


async def test_gzip_bomb_is_cut_at_the_limit(tmp_path: Path) -> None:
    async with fake_target() as server:
        # 20 MB of exposition, about 20 KB on the wire.
        server.set("/metrics", ("a 1\n" * 5_000_000), gzip=True)
        config = scrape_config(
            # A scrape_timeout long enough that a busy machine still inflates up to the limit.
            jobs=[
                job(
                    "bomb",
                    f"127.0.0.1:{server.port}",
                    body_size_limit="1MiB",
                    scrape_interval="10s",
                    scrape_timeout="10s",
                )
            ]
        )
        async with running_service(config, str(tmp_path / "data")) as svc:
            await wait_until(lambda: bool(up_values(svc, "bomb")))
            assert up_values(svc, "bomb")[0] == 0
            assert errors(svc, "body_size_limit") == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"caf\xe9 1\n", "bad_encoding"), ("".join(f"s{i} {i}\n" for i in range(20)).encode(), "sample_limit")],
    ids=["not-utf8", "sample-limit"],
)
async def test_scrapes_failing_after_the_fetch(body: bytes, reason: str, tmp_path: Path) -> None:
    async with fake_target() as server:
        server.set("/metrics", body)
        config = scrape_config(
            jobs=[job("j", f"127.0.0.1:{server.port}", sample_limit=10, scrape_interval="1s")]
        )
        async with running_service(config, str(tmp_path / "data")) as svc:
            await wait_until(lambda: bool(up_values(svc, "j")))
            assert up_values(svc, "j") == [0]
            assert errors(svc, reason) == 1


# ---------------------------------------------------------------------------------------------
# What a scrape sends and receives


async def test_openmetrics_gzip_headers_params_and_bearer_token(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    Counter("jobs_processed", "Jobs.", ["queue"], registry=registry).labels("mail").inc(3)
    created = registry.get_sample_value("jobs_processed_created", {"queue": "mail"})
    assert created is not None
    async with fake_target() as server:
        server.set("/custom", openmetrics_exposition(registry), content_type=OPENMETRICS, gzip=True)  # type: ignore[no-untyped-call]
        address = f"127.0.0.1:{server.port}"
        config = scrape_config(
            jobs=[
                {
                    "job_name": "om",
                    "metrics_path": "/custom",
                    "params": {"module": ["a", "b"], "target": "x"},
                    "scrape_interval": "2s",
                    "scrape_timeout": "1500ms",
                    "bearer_token": "t0ken",
                    "static_configs": [
                        {"targets": [address], "labels": {"env": "prod", "instance": "nice-name"}}
                    ],
                }
            ]
        )
        async with running_service(config, str(tmp_path / "data")) as svc:
            await wait_until(lambda: bool(up_values(svc, "om")))
            point = latest(svc, "jobs_processed_total")
        path, headers, query = server.requests[0]
    assert path == "/custom"
    assert headers["Accept"] == ACCEPT
    assert "gzip" in headers["Accept-Encoding"]
    assert headers["X-Prometheus-Scrape-Timeout-Seconds"] == "1.5"
    assert headers["Authorization"] == "Bearer t0ken"
    assert headers["User-Agent"].startswith("burnline/")
    assert query == {"module": "a", "target": "x"}  # dict() keeps the first of a repeated parameter
    assert point.kind is MetricKind.SUM
    assert point.value == 3
    assert point.start_time_unix_nano == round(created * 1e6) * 1000
    # Static labels are target labels; one of them names the instance.
    assert point.attributes == {"queue": "mail", "env": "prod"}
    assert point.resource["service.name"] == "om"
    assert point.resource["service.instance.id"] == "nice-name"
    assert point.resource["server.address"] == "127.0.0.1"
    assert point.resource["server.port"] == server.port


@pytest.mark.parametrize("from_file", [False, True], ids=["inline", "password-file"])
async def test_basic_auth(from_file: bool, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("p4ss\n")
    auth = {"username": "me", **({"password_file": str(secret)} if from_file else {"password": "p4ss"})}
    async with fake_target() as server:
        server.set("/metrics", "a 1\n")
        config = scrape_config(
            jobs=[job("j", f"127.0.0.1:{server.port}", basic_auth=auth, scrape_interval="1s")]
        )
        async with running_service(config, str(tmp_path / "data")) as svc:
            await wait_until(lambda: bool(up_values(svc, "j")))
        _, headers, _ = server.requests[0]
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"me:p4ss").decode()


async def test_https_targets_are_verified(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("metrics.internal")
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ssl)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with fake_target(server_ssl) as server:
        server.set("/metrics", "a 1\n")
        address = f"127.0.0.1:{server.port}"
        https = {"scheme": "https", "scrape_interval": "1s"}
        tls = {"ca_file": str(ca_file), "server_name": "metrics.internal"}
        config = scrape_config(
            jobs=[
                job("trusted", address, tls=tls, **https),
                # The certificate is not for 127.0.0.1, and without the CA it is not trusted at all.
                job("wrong-name", address, tls={"ca_file": str(ca_file)}, **https),
                job("untrusted", address, **https),
            ]
        )
        async with running_service(config, str(tmp_path / "data")) as svc:
            await wait_until(lambda: all(up_values(svc, j) for j in ("trusted", "wrong-name", "untrusted")))
            assert up_values(svc, "trusted")[0] == 1
            assert latest(svc, "a").resource["url.scheme"] == "https"
            assert up_values(svc, "wrong-name")[0] == up_values(svc, "untrusted")[0] == 0
            assert errors(svc, "tls") >= 2


async def test_conflicting_labels_are_exported_unless_honored(tmp_path: Path) -> None:
    async with fake_target() as server:
        server.set("/metrics", 'federated{job="app",instance="pod-1",code="200"} 1\n')
        address = f"127.0.0.1:{server.port}"
        config = scrape_config(
            jobs=[job("plain", address), job("honor", address, honor_labels=True)], scrape_interval="1s"
        )
        async with running_service(config, str(tmp_path / "data")) as svc:
            await wait_until(lambda: len(series(svc, "federated")) >= 2)
            plain = latest(svc, "federated", job="plain")
            honored = latest(svc, "federated", job="app")
    assert labels_of(plain) == {
        "job": "plain",
        "instance": address,
        "exported_job": "app",
        "exported_instance": "pod-1",
        "code": "200",
    }
    assert labels_of(honored) == {"job": "app", "instance": "pod-1", "code": "200"}
    # The exposed job and instance identify the source of those series (federation, pushgateway).
    assert honored.resource["service.name"] == "app"
    assert honored.resource["server.port"] == server.port


@asynccontextmanager
async def scraped(body: str, tmp_path: Path) -> AsyncIterator[tuple[FakeTarget, Service]]:
    """A target serving ``body``, scraped every 300 ms as job ``j``: (the target, the service) after
    its first scrape."""
    async with fake_target() as server:
        server.set("/metrics", body)
        config = scrape_config(jobs=[job("j", f"127.0.0.1:{server.port}", scrape_interval="300ms")])
        async with running_service(config, str(tmp_path / "data")) as svc:
            await wait_until(lambda: bool(up_values(svc, "j")))
            yield server, svc


async def markers_after(server: FakeTarget, svc: Service, body: str, name: str) -> list[MetricPoint]:
    """Serves ``body`` from now on; the staleness markers of ``name`` once there are any."""
    server.set("/metrics", body)
    await wait_until(lambda: any(p.flags for p in series(svc, name)))
    return [p for p in series(svc, name) if p.flags]


async def test_vanished_series_and_failed_scrapes_get_staleness_markers(tmp_path: Path) -> None:
    # t carries its own timestamp: its source says when it was valid, so it never gets a marker.
    body = "# TYPE a gauge\na 1\n# TYPE b_total counter\nb_total 2\nt 5 1700000000000\n"
    async with scraped(body, tmp_path) as (server, svc):
        assert latest(svc, "scrape_series_added").value == 3
        stale = await markers_after(server, svc, "# TYPE a gauge\na 3\n", "b_total")
        assert len(stale) == 1
        assert stale[0].flags == NO_RECORDED_VALUE
        assert math.isnan(stale[0].value)  # type: ignore[arg-type]
        assert stale[0].kind is MetricKind.SUM and stale[0].monotonic
        assert stale[0].attributes == {}
        assert stale[0].resource["service.instance.id"] == f"127.0.0.1:{server.port}"
        # A series still there is not marked; a new one is counted as added.
        assert not any(p.flags for p in series(svc, "a"))
        server.set("/metrics", "# TYPE a gauge\na 3\nc 1\n")
        await wait_until(lambda: bool(series(svc, "c")))
        await wait_until(lambda: latest(svc, "up").time_unix_nano == latest(svc, "c").time_unix_nano)
        assert latest(svc, "scrape_series_added").value == 1
        # The target fails: every series of its last good scrape ends.
        server.set("/metrics", "oops", status=503)
        await wait_until(lambda: any(p.flags for p in series(svc, "a")))
        assert all(p.flags for p in series(svc, "c")[-1:])
        count = len([p for p in captured(svc) if p.flags])
        await wait_until(lambda: up_values(svc, "j")[-2:] == [0, 0])
        # ...once: the next failures have nothing left to end.
        assert len([p for p in captured(svc) if p.flags]) == count
        assert not any(p.flags for p in series(svc, "t"))


async def test_a_series_is_the_same_whatever_the_order_of_its_labels(tmp_path: Path) -> None:
    """Only the series that vanished gets a marker, with its labels; reordered labels are no new series."""
    body = '# TYPE r_total counter\nr_total{method="get",code="200"} 1\nr_total{method="put",code="500"} 1\n'
    async with scraped(body, tmp_path) as (server, svc):
        assert latest(svc, "scrape_series_added").value == 2
        reordered = '# TYPE r_total counter\nr_total{code="200",method="get"} 2\n'
        stale = await markers_after(server, svc, reordered, "r_total")
        await wait_until(lambda: latest(svc, "up").time_unix_nano == latest(svc, "r_total").time_unix_nano)
        assert [p.attributes for p in stale] == [{"code": "500", "method": "put"}]
        assert latest(svc, "scrape_series_added").value == 0


async def test_concurrency_is_bounded(tmp_path: Path) -> None:
    async with fake_target() as server:
        # Six scrapes of 0.5s each per 1s interval: unbounded, three or more would overlap.
        server.set("/metrics", "a 1\n", delay=0.5)
        address = f"127.0.0.1:{server.port}"
        config = scrape_config(
            max_concurrent_scrapes=2,
            jobs=[
                {
                    "job_name": "many",
                    "scrape_interval": "1s",
                    "scrape_timeout": "900ms",
                    "static_configs": [{"targets": [address], "labels": {"n": str(i)}} for i in range(6)],
                }
            ],
        )
        async with running_service(config, str(tmp_path / "data")) as svc:
            await wait_until(
                lambda: {p.attributes["n"] for p in series(svc, "up", job="many")} == set("012345")
            )
            assert set(up_values(svc, "many")) == {1}
    assert server.max_inflight == 2


def test_scrape_offsets_are_stable_and_spread() -> None:
    config = PrometheusScrapeConfig.model_validate({"jobs": [job("j", "127.0.0.1:1", scrape_interval="10s")]})
    ctx = ComponentContext(id=RID, telemetry=Telemetry(), data_dir=".", logger=logging.getLogger("test"))
    receiver = PrometheusScrapeReceiver(config, ctx, {})
    targets = [
        receiver._target(receiver.jobs["j"], TargetSpec(address=f"10.0.{i // 250}.{i % 250}:9100"))
        for i in range(200)
    ]
    now = 1_700_000_000.0
    delays = [t.first_delay(now) for t in targets]
    assert all(0 <= d < 10 for d in delays)
    # The same target always lands on the same phase of the interval.
    assert all(
        math.isclose(t.first_delay(now + 10), d, abs_tol=1e-6) for t, d in zip(targets, delays, strict=True)
    )
    assert all(
        math.isclose((t.first_delay(now + 3) + 3) % 10, d, abs_tol=1e-6)
        for t, d in zip(targets, delays, strict=True)
    )
    # Spread over the interval: every second of it holds some targets, none holds a crowd.
    per_second = [sum(1 for d in delays if s <= d < s + 1) for s in range(10)]
    assert min(per_second) > 5 and max(per_second) < 40


async def test_refused_scrapes_are_dropped_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=f"burnline.receiver.{RID}")
    async with fake_target() as server:
        server.set("/metrics", "".join(f"s{i} {i}\n" for i in range(30)))
        config = scrape_config(jobs=[job("j", f"127.0.0.1:{server.port}", scrape_interval="200ms")])
        config["exporters"]["capture"] = {
            "paused": True,
            "queue": {"max_records": 40, "block_timeout": "50ms"},
            "batch": {"flush_interval": "10ms"},
        }
        async with running_service(config, str(tmp_path / "data")) as svc:
            # Three scrapes of 35 points each refused, at least.
            await wait_until(lambda: refused(svc) >= 105)
            refusals = [r for r in caplog.records if "refused" in r.getMessage()]
            assert len(refusals) == 1
            assert "dropped, the next scrape brings current values" in refusals[0].getMessage()
            svc.exporters["capture"].resume.set()  # type: ignore[attr-defined]
            before = len(series(svc, "up"))
            await wait_until(lambda: len(series(svc, "up")) >= before + 2)


# ---------------------------------------------------------------------------------------------
# Kubernetes pods


async def test_kubernetes_pods_are_discovered_and_scraped(tmp_path: Path) -> None:
    apiserver = KubeAPIServer()
    await apiserver.start()
    try:
        async with fake_target() as server:
            server.set("/metrics", "# TYPE hits_total counter\nhits_total 1\n")
            server.set("/custom", "# TYPE other gauge\nother 2\n")
            apiserver.add(make_pod("web-1", "shop", port=server.port, labels={"app": "web", "team": "a"}))
            config = scrape_config(
                kubernetes_pods={
                    "api_server": apiserver.url,
                    "scrape_interval": "300ms",
                    "pod_labels": ["app"],
                }
            )
            async with running_service(config, str(tmp_path / "data")) as svc:
                await wait_until(lambda: bool(series(svc, "hits_total")))
                hits = latest(svc, "hits_total")
                assert labels_of(hits) == {
                    "job": "kubernetes-pods",
                    "instance": f"127.0.0.1:{server.port}",
                    "namespace": "shop",
                    "pod": "web-1",
                    "node": "node-1",
                    "app": "web",
                }
                assert hits.resource["k8s.pod.name"] == "web-1"
                assert hits.resource["k8s.namespace.name"] == "shop"
                assert hits.resource["service.name"] == "kubernetes-pods"

                # A second pod on another path.
                apiserver.add(make_pod("api-1", "shop", port=server.port, path="/custom"))
                await wait_until(lambda: bool(series(svc, "other", pod="api-1")))

                # Annotation removed: its series end and it is no longer scraped.
                apiserver.modify(
                    make_pod("web-1", "shop", port=server.port, scrape=False, labels={"app": "web"})
                )
                await wait_until(lambda: any(p.flags for p in series(svc, "up", pod="web-1")))
                assert any(p.flags == NO_RECORDED_VALUE for p in series(svc, "hits_total", pod="web-1"))
                hits_before = server.hits("/metrics")
                custom_before = server.hits("/custom")
                await wait_until(lambda: server.hits("/custom") >= custom_before + 3)
                assert server.hits("/metrics") == hits_before

                # Deleted: gone too.
                apiserver.delete("shop", "api-1")
                await wait_until(lambda: any(p.flags for p in series(svc, "up", pod="api-1")))
                assert errors(svc, "discovery_connection") == 0
    finally:
        await apiserver.stop()


async def test_discovery_failures_are_counted_and_retried(tmp_path: Path) -> None:
    apiserver = KubeAPIServer()
    await apiserver.start()
    try:
        apiserver.fail_next = [500]
        async with fake_target() as server:
            server.set("/metrics", "a 1\n")
            apiserver.add(make_pod("p", port=server.port))
            config = scrape_config(kubernetes_pods={"api_server": apiserver.url, "scrape_interval": "300ms"})
            async with running_service(config, str(tmp_path / "data")) as svc:
                await wait_until(lambda: bool(series(svc, "a", pod="p")), timeout=15)
                assert errors(svc, "discovery_http_500") == 1
    finally:
        await apiserver.stop()


# ---------------------------------------------------------------------------------------------
# Several workers: each target scraped by exactly one of them


@dataclass
class Capture:
    """A receiver's consumer: what it delivered."""

    points: list[MetricPoint] = field(default_factory=list)

    async def consume(self, batch: Batch) -> None:
        self.points.extend(batch.items)

    def scraped(self) -> set[tuple[str, str, str]]:
        """The targets scraped (an ``up`` sample, not a staleness marker): (job, instance, n or pod)."""
        return {
            (labels["job"], labels["instance"], labels.get("n") or labels.get("pod") or "")
            for p in self.points
            if p.name == "up" and not p.flags
            for labels in [labels_of(p)]
        }


@asynccontextmanager
async def worker_receivers(
    receiver: dict[str, Any], *workers: WorkerIdentity
) -> AsyncIterator[list[tuple[PrometheusScrapeReceiver, Capture]]]:
    """One receiver per worker on the same config, as the worker processes run it."""
    config = PrometheusScrapeConfig.model_validate(receiver)
    running: list[tuple[PrometheusScrapeReceiver, Capture]] = []
    try:
        for worker in workers:
            ctx = ComponentContext(
                id=RID,
                telemetry=Telemetry(),
                data_dir=".",
                logger=logging.getLogger(f"burnline.receiver.{RID}"),
                worker=worker,
            )
            capture = Capture()
            scraper = PrometheusScrapeReceiver(config, ctx, {Signal.METRICS: capture})
            await scraper.start()
            running.append((scraper, capture))
        yield running
    finally:
        for scraper, _ in running:
            await scraper.stop()


def labelled_jobs(address: str, count: int) -> list[dict[str, Any]]:
    """Two jobs (on /a and /b) of ``count`` targets each: one address, told apart by a label."""
    return [
        {
            "job_name": name,
            "metrics_path": f"/{name}",
            "scrape_interval": "500ms",
            "static_configs": [{"targets": [address], "labels": {"n": str(i)}} for i in range(count)],
        }
        for name in ("a", "b")
    ]


async def test_workers_split_static_targets_each_scraped_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=f"burnline.receiver.{RID}")
    async with fake_target() as server:
        server.set("/a", "x 1\n")
        server.set("/b", "y 1\n")
        address = f"127.0.0.1:{server.port}"
        every = {(job_name, address, str(i)) for job_name in "ab" for i in range(12)}
        receiver = {"jobs": labelled_jobs(address, 12)}
        async with worker_receivers(receiver, WorkerIdentity(0, 2), WorkerIdentity(1, 2)) as running:
            (first, one), (second, two) = running
            await wait_until(lambda: one.scraped() | two.scraped() == every)
            # A few more rounds: a target of the other worker would show up by now.
            hits = server.hits("/a") + server.hits("/b")
            await wait_until(lambda: server.hits("/a") + server.hits("/b") >= hits + 2 * len(every))
            # What each worker runs is its share of each job, nothing of the other's.
            for job_name in "ab":
                mine, theirs = set(first.targets[job_name]), set(second.targets[job_name])
                assert mine.isdisjoint(theirs) and len(mine | theirs) == 12
        assert one.scraped().isdisjoint(two.scraped())
        assert one.scraped() | two.scraped() == every
        # With 24 targets an empty share would be a broken hash (odds of 2 in 2**24 otherwise).
        assert one.scraped() and two.scraped()
        shares = [
            int(m.group(1))
            for r in caplog.records
            for m in [re.match(r"scraping (\d+) static target\(s\) of 24 \(worker [01]/2", r.getMessage())]
            if m
        ]
        assert sorted(shares) == sorted([len(one.scraped()), len(two.scraped())])


async def test_one_worker_scrapes_every_target(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=f"burnline.receiver.{RID}")
    async with fake_target() as server:
        server.set("/a", "x 1\n")
        server.set("/b", "y 1\n")
        address = f"127.0.0.1:{server.port}"
        every = {(job_name, address, str(i)) for job_name in "ab" for i in range(12)}
        async with worker_receivers({"jobs": labelled_jobs(address, 12)}, WorkerIdentity()) as running:
            [(scraper, capture)] = running
            await wait_until(lambda: capture.scraped() == every)
            assert len(scraper.targets["a"]) == len(scraper.targets["b"]) == 12
    assert "scraping 24 static target(s) in 2 job(s)" in caplog.text
    assert "worker" not in caplog.text  # nothing said about a split when there is none


async def test_workers_split_discovered_pods_each_scraped_once() -> None:
    apiserver = KubeAPIServer()
    await apiserver.start()
    try:
        async with fake_target() as server:
            pods = [f"pod-{i}" for i in range(16)]
            for pod in pods:  # one path per pod: the requests say which pods were scraped
                server.set(f"/{pod}", "hits_total 1\n")
                apiserver.add(make_pod(pod, "shop", port=server.port, path=f"/{pod}"))
            address = f"127.0.0.1:{server.port}"
            every = {("kubernetes-pods", address, pod) for pod in pods}
            receiver = {"kubernetes_pods": {"api_server": apiserver.url, "scrape_interval": "500ms"}}
            workers = WorkerIdentity(0, 2), WorkerIdentity(1, 2)
            async with worker_receivers(receiver, *workers) as running:
                [(_, one), (_, two)] = running
                await wait_until(lambda: one.scraped() | two.scraped() == every)
                assert all(server.hits(f"/{pod}") for pod in pods)
                # A pod that comes later goes to exactly one worker too.
                server.set("/late", "hits_total 1\n")
                apiserver.add(make_pod("late", "shop", port=server.port, path="/late"))
                every.add(("kubernetes-pods", address, "late"))
                await wait_until(lambda: one.scraped() | two.scraped() == every)
                hits = sum(server.hits(f"/{pod}") for pod in pods)
                await wait_until(lambda: sum(server.hits(f"/{pod}") for pod in pods) >= hits + 2 * len(pods))
            assert one.scraped().isdisjoint(two.scraped())
            assert one.scraped() | two.scraped() == every
    finally:
        await apiserver.stop()


# ---------------------------------------------------------------------------------------------
# Configuration


def receiver_config(**receiver: Any) -> Any:
    return parse_config(scrape_config(**receiver), source="<test>", env={}).receivers[RID]


@pytest.mark.parametrize(
    ("receiver", "message"),
    [
        ({}, "nothing to scrape"),
        ({"jobs": [job("a", "h:1"), job("a", "h:2")]}, "job names must be unique: a"),
        (
            {"jobs": [job("a", "h:1", scrape_interval="5s", scrape_timeout="10s")]},
            "longer than scrape_interval",
        ),
        ({"scrape_interval": "5s", "scrape_timeout": "6s", "jobs": [job("a", "h:1")]}, "not longer than"),
        ({"jobs": [job("a", "no-port")]}, "is not host:port"),
        ({"jobs": [job("a", "h:1", metrics_path="metrics")]}, "must start with /"),
        ({"jobs": [job("a", "h:1", bearer_token="x", basic_auth={"username": "u"})]}, "at most one of"),
        (
            {
                "jobs": [
                    {"job_name": "a", "static_configs": [{"targets": ["h:1"], "labels": {"bad-name": "x"}}]}
                ]
            },
            "is not a label name",
        ),
        ({"jobs": [job("a", "h:1", unknown_key=1)]}, "unknown_key"),
        ({"kubernetes_pods": {"api_server": "k:6443"}}, "http:// or https://"),
    ],
)
def test_invalid_configs(receiver: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        receiver_config(**receiver)


def test_config_defaults_and_shorthands() -> None:
    config = receiver_config(
        kubernetes_pods=True, scrape_interval="5s", jobs=[job("a", "h:1", params={"m": "x"})]
    )
    assert config.kubernetes_pods is not None and config.kubernetes_pods.enabled
    assert config.kubernetes_pods.job_name == "kubernetes-pods"
    (static, pods) = config.scraped_jobs()
    assert pods is config.kubernetes_pods
    # The 10s default timeout shrinks to a shorter interval, as Prometheus' does.
    assert config.timing(static) == (5.0, 5.0)
    assert static.params == {"m": ["x"]}
    assert static.body_size_limit == 16 * 1024 * 1024
    assert receiver_config(jobs=[job("a", "h:1")], kubernetes_pods=False).kubernetes_pods is None
    default = receiver_config(jobs=[job("a", "h:1")])
    assert default.timing(default.jobs[0]) == (15.0, 10.0)


async def test_unreachable_kubernetes_config_fails_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(Exception, match="no Kubernetes API server"):
        async with running_service(scrape_config(kubernetes_pods=True), str(tmp_path / "data")):
            pass


def test_documented_example_is_valid(tmp_path: Path) -> None:
    doc = prometheus_scrape.__doc__ or ""
    example = doc[doc.index("    prometheus_scrape:") :]
    token = tmp_path / "token"
    token.write_text("t\n")
    body = yaml.safe_load(textwrap.dedent(example).replace("/var/run/secrets/token", str(token)))
    config = PrometheusScrapeConfig.model_validate(body["prometheus_scrape"])
    node, pods = config.scraped_jobs()
    assert config.timing(node) == (15.0, 5.0)
    assert isinstance(pods, prometheus_scrape.KubernetesPodsConfig)
    assert pods.pod_labels == ["app.kubernetes.io/name"]


async def test_bodies_past_the_inline_size_are_parsed_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsing is pure Python: many ordinary targets parsed on the loop starved every other task of it
    (bench/RESULTS.md, "Scrape delivery"). Only small bodies are parsed inline."""
    threads: dict[str, set[str]] = {}
    parse = prometheus_scrape.parse_exposition

    def recording_parse(text: str, **kwargs: Any) -> Any:
        name = re.match(r"[a-z]+", text)
        assert name is not None
        threads.setdefault(name.group(), set()).add(threading.current_thread().name)
        return parse(text, **kwargs)

    monkeypatch.setattr(prometheus_scrape, "parse_exposition", recording_parse)
    big = "".join(f'big{{n="{i}"}} {i}\n' for i in range(2000))
    assert len(big) > prometheus_scrape._INLINE_PARSE_BYTES
    async with fake_target() as server:
        server.set("/big", big)
        server.set("/small", "small 1\n")
        address = f"127.0.0.1:{server.port}"
        config = scrape_config(
            jobs=[
                job("big", address, metrics_path="/big", scrape_interval="200ms"),
                job("small", address, metrics_path="/small", scrape_interval="200ms"),
            ]
        )
        async with running_service(config, str(tmp_path / "data")) as svc:
            await wait_until(lambda: len(up_values(svc, "big")) >= 2 and len(up_values(svc, "small")) >= 2)
            assert len(series(svc, "big")) >= 2000
    assert threads["big"] == {f"burnline-{RID}-parse_0"}
    assert threads["small"] == {threading.main_thread().name}


async def test_a_scrape_holds_its_slot_until_its_batch_is_handed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one slot, no request goes out while another scrape parses: a core too slow to parse
    every scrape makes scrapes wait (and skip ticks) rather than hold ever more bodies."""
    overlaps: list[int] = []
    parse = prometheus_scrape.parse_exposition
    holder: dict[str, FakeTarget] = {}

    def slow_parse(text: str, **kwargs: Any) -> Any:
        before = len(holder["server"].requests)
        time.sleep(0.2)  # in the parse thread: the event loop is free to start other scrapes
        overlaps.append(len(holder["server"].requests) - before)
        return parse(text, **kwargs)

    monkeypatch.setattr(prometheus_scrape, "parse_exposition", slow_parse)
    body = "".join(f's{{n="{i}"}} {i}\n' for i in range(1000))
    async with fake_target() as server:
        holder["server"] = server
        server.set("/metrics", body)
        address = f"127.0.0.1:{server.port}"
        config = scrape_config(
            max_concurrent_scrapes=1,
            jobs=[
                {
                    "job_name": "slow",
                    "scrape_interval": "500ms",
                    "static_configs": [{"targets": [address], "labels": {"n": str(i)}} for i in range(3)],
                }
            ],
        )
        async with running_service(config, str(tmp_path / "data")) as svc:
            # Three targets at 2 scrapes/s each, 0.2 s of parsing each, one slot: 1.2 s of work a
            # second, so ticks are missed, and counted.
            await wait_until(lambda: len(overlaps) >= 6)
            missed = {"component": RID, "scrape_job": "slow"}
            await wait_until(lambda: metric_value(svc, "burnline_scrapes_missed_total", missed) > 0)
            assert {p.attributes["n"] for p in series(svc, "up", job="slow")} == {"0", "1", "2"}
            assert set(up_values(svc, "slow")) == {1}
    assert overlaps and set(overlaps) == {0}, overlaps
