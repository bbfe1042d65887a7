"""What the benchmarks send: Kubernetes-shaped log records and OTLP spans, pre-encoded per protocol.

Records look like what Fluent Bit's kubernetes filter emits (~650 bytes: the log line, stream, and a
`kubernetes` map with pod, namespace, container, host, labels and annotations) from a fixed set of
pods, so per-pod work (resources, ECS fragments) repeats as it does in a cluster.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import msgpack
import orjson
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

PODS = 50
SERVICES = ("checkout", "cart", "search", "payment", "catalog")


def _pod(i: int) -> dict[str, Any]:
    app = SERVICES[i % len(SERVICES)]
    name = f"{app}-7d9f8c6b5-{i:05x}"
    return {
        "pod_name": name,
        "namespace_name": "shop",
        "pod_id": f"0b1c2d3e-4f50-6172-8394-{i:012x}",
        "host": f"node-{i % 7}.cluster.local",
        "container_name": app,
        "docker_id": f"{i:064x}",
        "container_hash": f"registry.example/{app}@sha256:{i:064x}",
        "container_image": f"registry.example/{app}:1.{i % 9}.0",
        "labels": {
            "app.kubernetes.io/name": app,
            "app.kubernetes.io/version": f"1.{i % 9}.0",
            "pod-template-hash": "7d9f8c6b5",
        },
        "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9102"},
    }


def log_records(n: int, seed: int = 1) -> list[dict[str, Any]]:
    """``n`` records as Fluent Bit's kubernetes filter leaves them."""
    rng = random.Random(seed)
    pods = [_pod(i) for i in range(PODS)]
    levels = ("info", "info", "info", "warn", "error", "debug")
    out = []
    for i in range(n):
        level = levels[rng.randrange(len(levels))]
        line = orjson.dumps(
            {
                "level": level,
                "msg": f"request {i} handled",
                "http.method": "GET",
                "http.route": "/api/v1/items/{id}",
                "status": 200 if level != "error" else 503,
                "duration_ms": rng.randrange(1, 900),
                "trace_id": os.urandom(16).hex(),
            }
        ).decode()
        out.append({"log": line, "stream": "stdout", "kubernetes": pods[rng.randrange(PODS)]})
    return out


def _event_time(now: float, n: int) -> msgpack.ExtType:
    """Fluent's EventTime: seconds and nanoseconds as two big-endian uint32 (ext type 0)."""
    return msgpack.ExtType(0, int(now).to_bytes(4, "big") + (n % 10**9).to_bytes(4, "big"))


def forward_frames(records: list[dict[str, Any]], per_frame: int, tag: str = "kube.var.log") -> list[bytes]:
    """PackedForward frames (``[tag, bin(entries), {chunk}]``) of ``per_frame`` records each, EventTime
    timestamps, a distinct chunk id per frame."""
    now = time.time()
    frames = []
    for f, start in enumerate(range(0, len(records) - per_frame + 1, per_frame)):
        entries = b"".join(
            msgpack.packb([_event_time(now, f * per_frame + j), record])
            for j, record in enumerate(records[start : start + per_frame])
        )
        frames.append(msgpack.packb([tag, entries, {"chunk": f"bench-{f:08d}", "size": per_frame}]))
    return frames


def json_bodies(records: list[dict[str, Any]], per_request: int) -> list[bytes]:
    """Fluent Bit HTTP output bodies (format json: an array of records with a `date` key)."""
    now = time.time()
    return [
        orjson.dumps([{"date": now, **r} for r in records[start : start + per_request]])
        for start in range(0, len(records) - per_request + 1, per_request)
    ]


def _kv(key: str, value: str | int) -> common_pb2.KeyValue:
    if isinstance(value, int):
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(int_value=value))
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))


def trace_requests(count: int, spans_per_request: int, seed: int = 2) -> list[bytes]:
    """ExportTraceServiceRequest bodies of ``spans_per_request`` server/client spans each, spread over
    the services, as an instrumented HTTP service sends them."""
    rng = random.Random(seed)
    now = time.time_ns()
    out = []
    for r in range(count):
        request = trace_service_pb2.ExportTraceServiceRequest()
        per_service = spans_per_request // len(SERVICES)
        for s, service in enumerate(SERVICES):
            resource_spans = request.resource_spans.add()
            resource_spans.resource.CopyFrom(
                resource_pb2.Resource(
                    attributes=[
                        _kv("service.name", service),
                        _kv("service.version", "1.4.2"),
                        _kv("k8s.namespace.name", "shop"),
                        _kv("k8s.pod.name", f"{service}-7d9f8c6b5-{s:05x}"),
                        _kv("telemetry.sdk.language", "python"),
                    ]
                )
            )
            scope_spans = resource_spans.scope_spans.add()
            scope_spans.scope.name = "opentelemetry.instrumentation.aiohttp_server"
            for i in range(per_service):
                start = now - rng.randrange(10**9)
                error = rng.random() < 0.02
                span = trace_pb2.Span(
                    trace_id=os.urandom(16),
                    span_id=os.urandom(8),
                    parent_span_id=os.urandom(8) if i % 2 else b"",
                    name="GET /api/v1/items/{id}",
                    kind=trace_pb2.Span.SPAN_KIND_SERVER if i % 2 == 0 else trace_pb2.Span.SPAN_KIND_CLIENT,
                    start_time_unix_nano=start,
                    end_time_unix_nano=start + rng.randrange(10**5, 10**9),
                    attributes=[
                        _kv("http.request.method", "GET"),
                        _kv("http.route", "/api/v1/items/{id}"),
                        _kv("http.response.status_code", 503 if error else 200),
                        _kv("url.path", f"/api/v1/items/{r * 1000 + i}"),
                        _kv("server.address", f"{service}.shop.svc"),
                    ],
                    status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR if error else 0),
                )
                scope_spans.spans.append(span)
        out.append(request.SerializeToString())
    return out
