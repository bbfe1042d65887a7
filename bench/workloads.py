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


# ---- Prometheus: remote_write requests and scrape bodies -------------------------------------------

# cAdvisor / kube-state-metrics families as a Prometheus server remote-writes them: (name, type).
RW_FAMILIES = (
    ("container_cpu_usage_seconds_total", "counter"),
    ("container_memory_working_set_bytes", "gauge"),
    ("container_network_receive_bytes_total", "counter"),
    ("container_network_transmit_bytes_total", "counter"),
    ("kube_pod_container_status_restarts_total", "counter"),
    ("container_fs_usage_bytes", "gauge"),
    ("http_requests_total", "counter"),
    ("kube_pod_container_resource_requests", "gauge"),
)


def remote_write_series(count: int, per_request: int) -> list[list[tuple[dict[str, str], float]]]:
    """``count`` requests of ``per_request`` distinct series (one sample each), Kubernetes-labelled:
    ``count * per_request`` series in all, none repeated across requests."""
    rng = random.Random(3)
    out = []
    for r in range(count):
        series = []
        for i in range(per_request):
            n = r * per_request + i
            name, _ = RW_FAMILIES[n % len(RW_FAMILIES)]
            pod = n // len(RW_FAMILIES)
            app = SERVICES[pod % len(SERVICES)]
            labels = {
                "__name__": name,
                "job": "kubelet",
                "instance": f"10.0.{pod % 7}.{pod % 200}:10250",
                "namespace": "shop",
                "pod": f"{app}-7d9f8c6b5-{pod:05x}",
                "container": app,
                "node": f"node-{pod % 7}.cluster.local",
                "image": f"registry.example/{app}:1.{pod % 9}.0",
                "metrics_path": "/metrics/cadvisor",
            }
            if name == "http_requests_total":
                labels.update({"code": "200", "method": "GET", "route": "/api/v1/items/{id}"})
            series.append((labels, float(rng.randrange(10**6))))
        out.append(series)
    return out


def remote_write_requests(count: int, per_request: int) -> list[bytes]:
    """Snappy-compressed remote-write 1.0 WriteRequests (what Prometheus POSTs, max_samples_per_send
    2000 by default), each with the metadata of its families."""
    import cramjam

    from collector.prompb import remote_pb2, types_pb2

    types = {"counter": types_pb2.MetricMetadata.COUNTER, "gauge": types_pb2.MetricMetadata.GAUGE}
    now_ms = int(time.time() * 1000)
    out = []
    for series in remote_write_series(count, per_request):
        request = remote_pb2.WriteRequest()
        for labels, value in series:
            ts = request.timeseries.add()
            for key in sorted(labels):
                ts.labels.add(name=key, value=labels[key])
            ts.samples.add(value=value, timestamp=now_ms)
        for name, kind in RW_FAMILIES:
            request.metadata.add(type=types[kind], metric_family_name=name, help=f"{name} (bench)")
        out.append(bytes(cramjam.snappy.compress_raw(request.SerializeToString())))
    return out


SCRAPE_SAMPLES = 500


def exposition(variant: int, samples: int = SCRAPE_SAMPLES) -> bytes:
    """A Prometheus text exposition (0.0.4) of exactly ``samples`` samples, as an instrumented
    service exposes it: a request-duration histogram (20 label sets x 13 lines), a request counter,
    process metrics and per-queue gauges for the rest. ``variant`` moves the values."""
    rng = random.Random(variant)
    lines: list[str] = []
    buckets = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf")
    sets = [(m, r, c) for m in ("GET", "POST") for r in range(5) for c in ("200", "500")]
    lines += ["# HELP http_request_duration_seconds Request duration.",
              "# TYPE http_request_duration_seconds histogram"]  # fmt: skip
    for method, route, code in sets:
        labels = f'method="{method}",route="/api/v1/r{route}",code="{code}"'
        count = 1000 * (variant + 1) + rng.randrange(1000)
        for i, le in enumerate(buckets):
            n = count if le == "+Inf" else count * (i + 1) // (len(buckets) + 1)
            lines.append(f'http_request_duration_seconds_bucket{{{labels},le="{le}"}} {n}')
        lines.append(f"http_request_duration_seconds_sum{{{labels}}} {count * 0.042:.3f}")
        lines.append(f"http_request_duration_seconds_count{{{labels}}} {count}")
    lines += ["# HELP http_requests_total Requests handled.", "# TYPE http_requests_total counter"]
    for method, route, code in sets:
        lines.append(
            f'http_requests_total{{method="{method}",route="/api/v1/r{route}",code="{code}"}} '
            f"{1000 * (variant + 1) + rng.randrange(1000)}"
        )
    process = [
        ("process_cpu_seconds_total", "counter", 12.5 + variant),
        ("process_resident_memory_bytes", "gauge", 8.1e7 + rng.randrange(10**6)),
        ("process_open_fds", "gauge", 40 + rng.randrange(10)),
        ("process_start_time_seconds", "gauge", 1.7e9),
    ]
    for name, kind, value in process:
        lines += [f"# HELP {name} {name}.", f"# TYPE {name} {kind}", f"{name} {value}"]
    done = len(sets) * (len(buckets) + 2) + len(sets) + len(process)
    lines += ["# HELP app_queue_depth Items waiting per queue.", "# TYPE app_queue_depth gauge"]
    for q in range(samples - done):
        lines.append(f'app_queue_depth{{queue="q{q:03d}"}} {rng.randrange(100)}')
    return ("\n".join(lines) + "\n").encode()
