"""burnline as a process: the README's quick start, SIGTERM drain, and SIGKILL losing nothing acknowledged."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from fluent import sender

from tests.doubles.elasticsearch import ElasticsearchDouble
from tests.forward_frames import ForwardClient, event_time, forward
from tests.process import BurnlineProcess
from tests.support import free_port


def write_config(path: Path, forward_port: int, es_url: str, **exporter: Any) -> Path:
    config = {
        "receivers": {"forward": {"endpoint": f"127.0.0.1:{forward_port}"}},
        "exporters": {"elasticsearch": {"endpoints": [es_url], **exporter}},
        "service": {
            "data_dir": str(path.parent / "data"),
            "admin": {"endpoint": "${BURNLINE_ADMIN_ENDPOINT}"},  # BurnlineProcess sets it
            "shutdown_grace_period": "20s",
            "pipelines": {"logs": {"receivers": ["forward"], "exporters": ["elasticsearch"]}},
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


async def send_acked(port: int, messages: list[str], per_frame: int = 10) -> list[str]:
    """Sends Forward frames asking for acks; returns the messages whose frame was acknowledged."""
    acked: list[str] = []
    client = await ForwardClient.connect(port)
    try:
        for start in range(0, len(messages), per_frame):
            chunk = f"chunk-{start}"
            part = messages[start : start + per_frame]
            entries = [[event_time(int(time.time())), {"log": m}] for m in part]
            await client.send(forward("app.test", entries, {"chunk": chunk}))
            reply = await client.receive(timeout=60)
            assert reply == {"ack": chunk}
            acked += part
    except (EOFError, ConnectionError, TimeoutError):
        pass  # the server went away mid-load: what was acked so far is what counts
    finally:
        await client.close()
    return acked


def messages_in(es: ElasticsearchDouble) -> Counter[str]:
    return Counter(doc["message"] for doc in es.documents("logs-*"))


async def restart_with_the_backend_up(
    proc: BurnlineProcess, es: ElasticsearchDouble, config: Path, tmp_path: Path
) -> BurnlineProcess:
    """Stops burnline while its backend is down (what it queued stays on disk), starts the backend,
    and starts burnline again on the same data directory."""
    try:
        await proc.signal(signal.SIGTERM)
        assert await proc.wait() == 0, proc.log()
        assert "stay queued on disk for the next start" in proc.log()
    finally:
        await proc.stop()
    await es.start()
    again = BurnlineProcess(config, tmp_path)
    await again.start()
    return again


async def wait_for_documents(es: ElasticsearchDouble, pattern: str, count: int) -> None:
    for _ in range(200):
        if es.count(pattern) >= count:
            return
        await asyncio.sleep(0.05)


async def test_quick_start_default_config_then_burnline_logs(tmp_path: Path) -> None:
    """The README: `burnline run` on the built-in default, fluent-logger sends, `burnline logs` shows."""
    forward_port, http_port = free_port(), free_port()
    env = {
        "BURNLINE_FORWARD_ENDPOINT": f"127.0.0.1:{forward_port}",
        "BURNLINE_HTTP_ENDPOINT": f"127.0.0.1:{http_port}",
        "BURNLINE_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
        "BURNLINE_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "BURNLINE_REMOTE_WRITE_ENDPOINT": f"127.0.0.1:{free_port()}",
        "BURNLINE_PROMETHEUS_ENDPOINT": f"127.0.0.1:{free_port()}",
        "BURNLINE_DATA_DIR": str(tmp_path / "data"),
    }
    proc = BurnlineProcess(Path("-"), tmp_path, env)
    await proc.start()
    try:

        def emit() -> None:
            log = sender.FluentSender("app", host="127.0.0.1", port=forward_port, nanosecond_precision=True)
            assert log.emit(
                "checkout",
                {
                    "log": '{"level":"error","msg":"payment declined","order":"A-17"}',
                    "kubernetes": {
                        "namespace_name": "shop",
                        "pod_name": "checkout-7d9f",
                        "container_name": "checkout",
                        "labels": {"app.kubernetes.io/name": "checkout"},
                    },
                },
            ), log.last_error
            assert log.emit("checkout", {"log": "INFO started in 2.1s"}), log.last_error
            log.close()

        await asyncio.to_thread(emit)
        query = [
            sys.executable,
            "-m",
            "collector",
            "logs",
            "--db",
            str(tmp_path / "data" / "burnline.db"),
            "--since",
            "5m",
            "--json",
        ]
        lines: list[dict[str, Any]] = []
        for _ in range(100):  # the local exporter flushes within its 1 s flush interval
            out = await asyncio.to_thread(subprocess.run, query, capture_output=True, text=True, timeout=120)
            lines = [json.loads(line) for line in out.stdout.splitlines()]
            if len(lines) == 2:
                break
            await asyncio.sleep(0.1)
        assert [line["body"] for line in lines] == ["payment declined", "INFO started in 2.1s"]
        assert lines[0]["service"] == "checkout" and lines[0]["severity_text"] == "error"
        text = await asyncio.to_thread(
            subprocess.run,
            [*query[:-1], "--service", "checkout", "--level", "error"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "payment declined" in text.stdout and "started" not in text.stdout
        await proc.signal(signal.SIGTERM)
        assert await proc.wait() == 0
    finally:
        await proc.stop()


async def test_sigterm_drains_acknowledged_records(tmp_path: Path) -> None:
    """Memory queue, long flush interval: the records sit in memory at SIGTERM and still arrive."""
    async with ElasticsearchDouble() as es:
        port = free_port()
        config = write_config(
            tmp_path / "burnline.yaml",
            port,
            es.url,
            queue={"storage": "memory"},
            batch={"flush_interval": "60s", "max_records": 100000},
        )
        proc = BurnlineProcess(config, tmp_path)
        await proc.start()
        try:
            acked = await send_acked(port, [f"m{i}" for i in range(500)])
            assert len(acked) == 500
            assert es.count("logs-*") == 0  # still lingering in the queue
            await proc.signal(signal.SIGTERM)
            assert await proc.wait() == 0, proc.log()
            assert messages_in(es) == Counter(acked)
        finally:
            await proc.stop()


async def test_sigterm_with_backend_down_keeps_the_rest_on_disk(tmp_path: Path) -> None:
    async with ElasticsearchDouble() as es:
        port = free_port()
        config = write_config(tmp_path / "burnline.yaml", port, es.url, retry={"initial_interval": "100ms"})
        short_grace = config.read_text().replace("shutdown_grace_period: 20s", "shutdown_grace_period: 1s")
        config.write_text(short_grace)
        await es.stop()
        proc = BurnlineProcess(config, tmp_path)
        await proc.start()
        try:
            acked = await send_acked(port, [f"m{i}" for i in range(100)])
            assert len(acked) == 100
        except BaseException:
            await proc.stop()
            raise
        again = await restart_with_the_backend_up(proc, es, config, tmp_path)
        try:
            await wait_for_documents(es, "logs-*", 100)
            assert messages_in(es) == Counter(acked)
        finally:
            await again.signal(signal.SIGTERM)
            await again.wait()
            await again.stop()


async def test_spans_queued_with_the_backend_down_are_delivered_after_a_restart(tmp_path: Path) -> None:
    """Spans from the OpenTelemetry SDK into Elasticsearch, which is down: the durable queue stores
    each request as it came (the exporter holds only its spans), the stop leaves them on disk, and
    the next start reads them back and indexes every span once, its attributes as sent."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    async with ElasticsearchDouble() as es:
        otlp_http = free_port()
        config = tmp_path / "burnline.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "receivers": {"otlp": {"http": {"endpoint": f"127.0.0.1:{otlp_http}"}, "grpc": None}},
                    "exporters": {
                        "elasticsearch": {"endpoints": [es.url], "retry": {"initial_interval": "100ms"}}
                    },
                    "service": {
                        "data_dir": str(tmp_path / "data"),
                        "admin": {"endpoint": "${BURNLINE_ADMIN_ENDPOINT}"},
                        "shutdown_grace_period": "1s",
                        "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["elasticsearch"]}},
                    },
                }
            )
        )
        await es.stop()
        proc = BurnlineProcess(config, tmp_path)
        await proc.start()

        def send_spans() -> list[str]:
            provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
            exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{otlp_http}/v1/traces", timeout=10)
            provider.add_span_processor(SimpleSpanProcessor(exporter))  # one request a span, acknowledged
            tracer = provider.get_tracer("restart")
            ids = []
            for i in range(20):
                with tracer.start_as_current_span(f"GET /items/{i}") as span:
                    span.set_attribute("http.response.status_code", 200 + i)
                    span.set_attribute("ok", i % 2 == 0)
                    ids.append(f"{span.get_span_context().span_id:016x}")
            provider.shutdown()
            return ids

        try:
            span_ids = await asyncio.to_thread(send_spans)
        except BaseException:
            await proc.stop()
            raise
        again = await restart_with_the_backend_up(proc, es, config, tmp_path)
        try:
            await wait_for_documents(es, "traces-*", len(span_ids))
            documents = es.documents("traces-*")
            assert sorted(doc["span"]["id"] for doc in documents) == sorted(span_ids)
            by_name = {doc["span"]["name"]: doc for doc in documents}
            assert by_name["GET /items/3"]["http"]["response"]["status_code"] == 203
            assert (by_name["GET /items/4"]["ok"], by_name["GET /items/3"]["ok"]) == (True, False)
            assert by_name["GET /items/4"]["service"]["name"] == "checkout"
        finally:
            await again.signal(signal.SIGTERM)
            assert await again.wait() == 0
            await again.stop()


async def test_sigkill_mid_load_loses_nothing_acknowledged_and_duplicates_nothing(tmp_path: Path) -> None:
    async with ElasticsearchDouble() as es:
        port = free_port()
        config = write_config(tmp_path / "burnline.yaml", port, es.url, batch={"flush_interval": "50ms"})
        proc = BurnlineProcess(config, tmp_path)
        await proc.start()
        try:
            load = asyncio.create_task(send_acked(port, [f"m{i}" for i in range(20000)], per_frame=20))
            for _ in range(200):  # kill once some records were delivered and more are in flight
                if es.count("logs-*") > 200:
                    break
                await asyncio.sleep(0.02)
            await proc.signal(signal.SIGKILL)
            acked = await load
            assert 0 < len(acked) < 20000
        finally:
            await proc.stop()
        again = BurnlineProcess(config, tmp_path)
        await again.start()
        try:
            for _ in range(300):
                if set(messages_in(es)) >= set(acked):
                    break
                await asyncio.sleep(0.05)
            delivered = messages_in(es)
            assert not set(acked) - set(delivered), "acknowledged records were lost"
            assert max(delivered.values()) == 1, "a record was indexed twice"
        finally:
            await again.signal(signal.SIGTERM)
            assert await again.wait() == 0
            await again.stop()


async def test_quick_start_traces_from_the_otel_sdk_then_burnline_traces(tmp_path: Path) -> None:
    """The default config takes OTLP too: an SDK-instrumented app's trace shows in `burnline traces`."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    otlp_http, prometheus_port = free_port(), free_port()
    env = {
        "BURNLINE_FORWARD_ENDPOINT": f"127.0.0.1:{free_port()}",
        "BURNLINE_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "BURNLINE_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
        "BURNLINE_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{otlp_http}",
        "BURNLINE_REMOTE_WRITE_ENDPOINT": f"127.0.0.1:{free_port()}",
        "BURNLINE_PROMETHEUS_ENDPOINT": f"127.0.0.1:{prometheus_port}",
        "BURNLINE_DATA_DIR": str(tmp_path / "data"),
    }
    proc = BurnlineProcess(Path("-"), tmp_path, env)
    await proc.start()
    try:

        def traced_request() -> str:
            provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
            exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{otlp_http}/v1/traces", timeout=10)
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            tracer = provider.get_tracer("quickstart")
            with tracer.start_as_current_span("POST /pay") as root:
                with tracer.start_as_current_span("charge card") as child:
                    child.set_status(Status(StatusCode.ERROR, "declined"))
                trace_id = f"{root.get_span_context().trace_id:032x}"
            provider.shutdown()
            return trace_id

        trace_id = await asyncio.to_thread(traced_request)
        query = [sys.executable, "-m", "collector", "traces", "--db", str(tmp_path / "data" / "burnline.db")]
        listing: list[dict[str, Any]] = []
        for _ in range(100):
            out = await asyncio.to_thread(
                subprocess.run, [*query, "--json"], capture_output=True, text=True, timeout=30
            )
            listing = [json.loads(line) for line in out.stdout.splitlines()]
            if listing and listing[0].get("span_count") == 2:
                break
            await asyncio.sleep(0.1)
        assert [(t["trace_id"], t["span_count"]) for t in listing] == [(trace_id, 2)]
        tree = await asyncio.to_thread(
            subprocess.run, [*query, "--trace-id", trace_id], capture_output=True, text=True, timeout=30
        )
        assert "POST /pay" in tree.stdout and "charge card" in tree.stdout and "declined" in tree.stdout

        # Metrics over OTLP/JSON come out on the Prometheus endpoint.
        metric = {
            "resourceMetrics": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]
                    },
                    "scopeMetrics": [
                        {
                            "metrics": [
                                {
                                    "name": "payments",
                                    "sum": {
                                        "aggregationTemporality": 2,
                                        "isMonotonic": True,
                                        "dataPoints": [
                                            {
                                                "asInt": "7",
                                                "timeUnixNano": str(time.time_ns()),
                                                "attributes": [
                                                    {"key": "outcome", "value": {"stringValue": "declined"}}
                                                ],
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ]
        }
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{otlp_http}/v1/metrics", json=metric) as resp:
                assert resp.status == 200
            exposition = ""
            for _ in range(100):
                async with http.get(f"http://127.0.0.1:{prometheus_port}/metrics") as resp:
                    exposition = await resp.text()
                if "payments_total" in exposition:
                    break
                await asyncio.sleep(0.1)
        assert 'payments_total{job="checkout",outcome="declined"} 7' in exposition, exposition
        await proc.signal(signal.SIGTERM)
        assert await proc.wait() == 0
    finally:
        await proc.stop()
