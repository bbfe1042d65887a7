"""The demo's traffic generator: plays the services of a :class:`Scenario` and sends their telemetry
to burnline over the network only, as their agents would.

Every request of a service becomes

- an OTLP server span (checkout also a client span for its payment call, so a trace has a tree),
  posted as OTLP/HTTP protobuf;
- one log line, shipped as Fluent Bit ships a Kubernetes container's line (``log`` holding the
  app's JSON, ``kubernetes`` metadata, trace and span ids) over Fluent Forward;
- a count and a latency observation on the service's own ``/metrics`` (prometheus-client), which
  burnline's ``prometheus_scrape`` receiver scrapes; each service listens on its own port.

Requests are due at the service's rate from the start, counted against the clock (a late tick sends
what fell due meanwhile), so the ratios of the scenario hold however the event loop is scheduled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from collector import __version__
from collector.demo.clients import ForwardClient, OtlpHttpClient
from collector.demo.scenario import (
    INCIDENT_SERVICE,
    NAMESPACE,
    SEARCH_LATENCY_THRESHOLD,
    EvenSpread,
    Scenario,
    ServiceProfile,
)

log = logging.getLogger("burnline.demo")

TICK = 0.25  # seconds between sends
LATENCY_BUCKETS = (0.025, 0.05, 0.1, SEARCH_LATENCY_THRESHOLD, 0.5, 1.0, 2.5)
# What each service's requests say, in its spans' status and its log lines.
ERROR_MESSAGES = {
    "checkout": "payment failed: provider timeout",
    "cart": "cart store write failed",
    "search": "slow search: index shard timed out",
}
OK_MESSAGES = {"checkout": "order placed", "cart": "item added to cart", "search": "search answered"}
# At most this many requests per service and tick: after a long stall the generator catches up
# over several ticks instead of sending one huge chunk.
MAX_PER_TICK = 2000


@dataclass
class Request:
    service: str
    time_ns: int  # when it ended
    duration: float
    bad: bool
    trace_id: bytes
    span_id: bytes


@dataclass
class ServiceCounts:
    requests: int = 0
    bad: int = 0


@dataclass
class TrafficStats:
    """What the generator produced (not what burnline accepted: see the clients' Delivery)."""

    started_at: float = 0.0  # Unix seconds
    per_service: dict[str, ServiceCounts] = field(default_factory=dict)
    first_incident_bad_at: float | None = None  # Unix seconds of the incident's first bad request
    last_incident_bad_at: float | None = None


class MetricsTarget:
    """One service's ``/metrics``: request counts by status code and a latency histogram."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "http_requests", "Requests answered, by status code.", ["code"], registry=self.registry
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer a request.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.scrapes = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    def record(self, request: Request) -> None:
        code = "503" if request.bad and request.service != "search" else "200"
        self.requests.labels(code).inc()
        self.duration.observe(request.duration)

    async def _metrics(self, _: web.Request) -> web.Response:
        self.scrapes += 1
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def start(self, host: str, port: int = 0) -> int:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only through the server's sockets
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else port
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _attr(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


class TrafficGenerator:
    def __init__(
        self,
        scenario: Scenario,
        forward: ForwardClient | None = None,
        otlp: OtlpHttpClient | None = None,
        *,
        seed: int | None = None,
        repeat_every: float = 0.0,
    ) -> None:
        """``forward`` and ``otlp`` may come later (``connect``): the ``/metrics`` listeners start
        first, as burnline's scrape config names their ports. ``repeat_every`` > 0 replays the
        incident that often (the compose stack's endless demo)."""
        self.scenario = scenario
        self.forward = forward
        self.otlp = otlp
        self.repeat_every = repeat_every
        self.targets = {s.name: MetricsTarget(s.name) for s in scenario.services}
        self.stats = TrafficStats(per_service={s.name: ServiceCounts() for s in scenario.services})
        self._spread = {s.name: EvenSpread() for s in scenario.services}
        self._random = random.Random(seed)
        self._pods = {
            s.name: f"{s.name}-{self._random.randrange(16**9):09x}-{_suffix(self._random)}"
            for s in scenario.services
        }
        self._started_monotonic = 0.0

    async def start_targets(
        self, host: str = "127.0.0.1", ports: dict[str, int] | None = None
    ) -> dict[str, int]:
        """Starts every service's ``/metrics``; returns the port of each."""
        return {
            name: await target.start(host, (ports or {}).get(name, 0))
            for name, target in self.targets.items()
        }

    def connect(self, forward: ForwardClient, otlp: OtlpHttpClient) -> None:
        self.forward = forward
        self.otlp = otlp

    async def stop(self) -> None:
        for target in self.targets.values():
            await target.stop()
        if self.forward is not None:
            await self.forward.close()
        if self.otlp is not None:
            await self.otlp.close()

    def elapsed(self) -> float:
        return time.monotonic() - self._started_monotonic if self._started_monotonic else 0.0

    def scenario_time(self, elapsed: float) -> float:
        """Where in the scenario ``elapsed`` falls (the incident comes back every ``repeat_every``)."""
        if self.repeat_every > 0 and elapsed >= self.scenario.incident_at:
            return self.scenario.incident_at + (elapsed - self.scenario.incident_at) % self.repeat_every
        return elapsed

    async def run(self, stop: asyncio.Event) -> None:
        """Plays the services until ``stop`` is set."""
        self._started_monotonic = time.monotonic()
        self.stats.started_at = time.time()
        sent = dict.fromkeys(self.targets, 0)
        last_elapsed = 0.0
        while not stop.is_set():
            elapsed = self.elapsed()
            requests: list[Request] = []
            for profile in self.scenario.services:
                due = min(int(profile.rate * elapsed) - sent[profile.name], MAX_PER_TICK)
                for i in range(due):
                    # Spread over the time since the last tick, so event times are as smooth as traffic.
                    at = last_elapsed + (elapsed - last_elapsed) * (i + 1) / due
                    requests.append(self._request(profile, at))
                sent[profile.name] += max(due, 0)
            last_elapsed = elapsed
            if requests:
                await self._send(requests)
            try:
                await asyncio.wait_for(stop.wait(), TICK)
            except TimeoutError:
                pass

    def _request(self, profile: ServiceProfile, elapsed: float) -> Request:
        name = profile.name
        scenario_elapsed = self.scenario_time(elapsed)
        bad = self._spread[name].next(self.scenario.bad_ratio(name, scenario_elapsed))
        now = self.stats.started_at + elapsed
        rnd = self._random
        incident = (
            name == INCIDENT_SERVICE
            and self.scenario.incident_at <= scenario_elapsed < self.scenario.incident_end
        )
        if name == "search":
            duration = rnd.uniform(0.35, 0.9) if bad else rnd.uniform(0.01, 0.25)
        elif incident and bad:
            duration = rnd.uniform(1.0, 2.0)  # the payment provider times out
        else:
            duration = rnd.uniform(0.02, 0.15)
        counts = self.stats.per_service[name]
        counts.requests += 1
        if bad:
            counts.bad += 1
            if incident:
                if self.stats.first_incident_bad_at is None:
                    self.stats.first_incident_bad_at = now
                self.stats.last_incident_bad_at = now
        request = Request(name, int(now * 1e9), duration, bad, os.urandom(16), os.urandom(8))
        self.targets[name].record(request)
        return request

    async def _send(self, requests: list[Request]) -> None:
        assert self.forward is not None and self.otlp is not None, "connect() first"
        forward, otlp = self.forward, self.otlp
        by_service: dict[str, list[Request]] = {}
        for request in requests:
            by_service.setdefault(request.service, []).append(request)
        body, spans = self._otlp_body(by_service)
        sends = [otlp.send_traces(body, spans)]
        for name, items in by_service.items():
            tag = f"kube.var.log.containers.{self._pods[name]}_{NAMESPACE}_{name}"
            sends.append(forward.send(tag, [(r.time_ns, self._log_record(r)) for r in items]))
        # Spans and logs travel in parallel, as separate agents would send them.
        await asyncio.gather(*sends)

    def _otlp_body(self, by_service: dict[str, list[Request]]) -> tuple[bytes, int]:
        request = ExportTraceServiceRequest()
        count = 0
        for name, items in by_service.items():
            resource = Resource(
                attributes=[
                    _attr("service.name", name),
                    _attr("service.namespace", NAMESPACE),
                    _attr("k8s.namespace.name", NAMESPACE),
                    _attr("k8s.pod.name", self._pods[name]),
                ]
            )
            spans: list[Span] = []
            route = self.scenario.service(name).route
            for r in items:
                start = r.time_ns - int(r.duration * 1e9)
                code = 503 if r.bad and name != "search" else 200
                status = (
                    Status(code=Status.STATUS_CODE_ERROR, message=ERROR_MESSAGES.get(name, "error"))
                    if (r.bad and name != "search")
                    else Status()
                )
                method, path = route.split(" ", 1)
                spans.append(
                    Span(
                        trace_id=r.trace_id,
                        span_id=r.span_id,
                        name=route,
                        kind=Span.SPAN_KIND_SERVER,
                        start_time_unix_nano=start,
                        end_time_unix_nano=r.time_ns,
                        attributes=[
                            _attr("http.request.method", method),
                            _attr("http.route", path),
                            _attr("http.response.status_code", code),
                        ],
                        status=status,
                    )
                )
                if name == INCIDENT_SERVICE:
                    # The payment call inside the checkout: where the time goes when the provider fails.
                    child_end = r.time_ns - int(r.duration * 1e9 * 0.1)
                    spans.append(
                        Span(
                            trace_id=r.trace_id,
                            span_id=os.urandom(8),
                            parent_span_id=r.span_id,
                            name="POST /v1/charges",
                            kind=Span.SPAN_KIND_CLIENT,
                            start_time_unix_nano=start + int(r.duration * 1e9 * 0.1),
                            end_time_unix_nano=child_end,
                            attributes=[
                                _attr("http.request.method", "POST"),
                                _attr("server.address", "payments.example"),
                                _attr("http.response.status_code", 504 if r.bad else 201),
                            ],
                            status=Status(code=Status.STATUS_CODE_ERROR) if r.bad else Status(),
                        )
                    )
            count += len(spans)
            request.resource_spans.append(
                ResourceSpans(
                    resource=resource,
                    scope_spans=[
                        ScopeSpans(
                            scope=InstrumentationScope(name="burnline-demo", version=__version__), spans=spans
                        )
                    ],
                )
            )
        return request.SerializeToString(), count

    def _log_record(self, r: Request) -> dict[str, Any]:
        name = r.service
        if r.bad:
            level = "warn" if name == "search" else "error"  # slow, not failed
            message = ERROR_MESSAGES.get(name, "error")
        else:
            level, message = "info", OK_MESSAGES.get(name, "ok")
        app_line = {
            "level": level,
            "msg": message,
            "duration_ms": round(r.duration * 1000, 1),
            "trace_id": r.trace_id.hex(),
            "span_id": r.span_id.hex(),
        }
        return {
            "log": json.dumps(app_line, separators=(",", ":")),
            "stream": "stderr" if level == "error" else "stdout",
            "kubernetes": {
                "namespace_name": NAMESPACE,
                "pod_name": self._pods[name],
                "container_name": name,
                "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "shop"},
            },
        }


def _suffix(rnd: random.Random) -> str:
    return "".join(rnd.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
