"""The OTLP exporter against a real Jaeger (opt-in).

Set ``BURNLINE_TEST_JAEGER_OTLP`` to Jaeger's OTLP endpoint: ``host:port`` for OTLP/gRPC (plaintext,
e.g. ``127.0.0.1:4317``) or a base URL for OTLP/HTTP (e.g. ``http://127.0.0.1:4318``). With
``BURNLINE_TEST_JAEGER_QUERY`` set to Jaeger's query service (e.g. ``http://127.0.0.1:16686``), the
trace is read back through ``/api/traces/<id>`` and checked span by span. Each run sends its own
trace id and service name (``burnline-test-<random>``), so runs never see each other's data.

A Jaeger all-in-one for this: ``docker run --rm -p 4317:4317 -p 4318:4318 -p 16686:16686
jaegertracing/all-in-one:1.76.0`` (or ``jaegertracing/jaeger:2.x``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import exporters.otlp.exporter  # noqa: F401  (registers the "otlp" exporter type)
from collector.core.component import ComponentContext
from collector.core.model import Batch, Scope, Signal, Span, SpanEvent, SpanKind, SpanLink, StatusCode
from collector.core.telemetry import Telemetry
from collector.exporterhelper.deadletter import DeadLetter
from exporters.otlp.exporter import OTLPExporter, OTLPExporterConfig

JAEGER_OTLP = os.environ.get("BURNLINE_TEST_JAEGER_OTLP", "")
JAEGER_QUERY = os.environ.get("BURNLINE_TEST_JAEGER_QUERY", "").rstrip("/")

pytestmark = [
    pytest.mark.opt_in,
    pytest.mark.skipif(
        not JAEGER_OTLP,
        reason="set BURNLINE_TEST_JAEGER_OTLP to a real Jaeger's OTLP endpoint (host:4317 for gRPC, "
        "http://host:4318 for HTTP) and BURNLINE_TEST_JAEGER_QUERY to its query service to run this",
    ),
]

READ_BACK_TIMEOUT = 30.0


def exporter_settings() -> dict[str, Any]:
    if JAEGER_OTLP.startswith(("http://", "https://")):
        return {"endpoint": JAEGER_OTLP, "protocol": "http/protobuf"}
    return {"endpoint": JAEGER_OTLP, "insecure": True}


def a_trace(service: str) -> tuple[str, list[Span]]:
    trace_id = "a" + secrets.token_hex(16)[1:]  # non-zero high half: Jaeger prints all 32 digits
    now = time.time_ns()
    resource = {"service.name": service, "deployment.environment": "burnline-test", "host.cpus": 2}
    scope = Scope("burnline.test", "1.0")
    root = Span(
        trace_id=trace_id,
        span_id=secrets.token_hex(8),
        name="POST /checkout",
        start_time_unix_nano=now - 50_000_000,
        end_time_unix_nano=now,
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": "POST",
            "http.response.status_code": 503,
            "retry": True,
            "ratio": 0.5,
        },
        events=[SpanEvent(now - 10_000_000, "payment.retry", {"attempt": 2})],
        status_code=StatusCode.ERROR,
        status_message="payment backend unavailable",
        resource=resource,
        scope=scope,
    )
    child = Span(
        trace_id=trace_id,
        span_id=secrets.token_hex(8),
        name="SELECT orders",
        start_time_unix_nano=now - 40_000_000,
        end_time_unix_nano=now - 20_000_000,
        parent_span_id=root.span_id,
        kind=SpanKind.CLIENT,
        attributes={"db.system": "postgresql"},
        links=[SpanLink(trace_id, secrets.token_hex(8), attributes={"link.reason": "batch"})],
        resource=resource,
        scope=scope,
    )
    return trace_id, [root, child]


async def read_back(trace_id: str, expected_spans: int) -> dict[str, Any]:
    """The trace as Jaeger's query API returns it, once it has every span (bounded wait)."""
    url = f"{JAEGER_QUERY}/api/traces/{trace_id}"
    deadline = time.monotonic() + READ_BACK_TIMEOUT
    last = "no answer yet"
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    last = f"HTTP {response.status}"
                    if response.status == 200:
                        data = (await response.json()).get("data") or []
                        if data and len(data[0].get("spans", [])) >= expected_spans:
                            trace: dict[str, Any] = data[0]
                            return trace
                        last = f"{len(data[0].get('spans', [])) if data else 0} span(s) so far"
            except aiohttp.ClientError as exc:  # the query service may still be starting
                last = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.5)
    raise AssertionError(f"trace {trace_id} not readable from {url} within {READ_BACK_TIMEOUT}s ({last})")


def tags(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in items}


async def test_a_trace_lands_in_jaeger(tmp_path: Path) -> None:
    telemetry = Telemetry()
    config = OTLPExporterConfig.model_validate(exporter_settings())
    exporter = OTLPExporter(
        config, ComponentContext("otlp", telemetry, str(tmp_path), logging.getLogger("test"))
    )
    exporter.dead_letter = DeadLetter("otlp", tmp_path / "deadletter", telemetry)
    service = f"burnline-test-{secrets.token_hex(4)}"
    trace_id, sent = a_trace(service)
    await exporter.start()
    try:
        assert await exporter.export(Batch(Signal.TRACES, sent, 2000)) == 2
    finally:
        await exporter.stop()
    if not JAEGER_QUERY:
        pytest.skip("exported; set BURNLINE_TEST_JAEGER_QUERY to read the trace back from Jaeger")

    trace = await read_back(trace_id, len(sent))
    assert trace["traceID"] == trace_id
    by_id = {s["spanID"]: s for s in trace["spans"]}
    root, child = by_id[sent[0].span_id], by_id[sent[1].span_id]
    process = trace["processes"][root["processID"]]
    assert process["serviceName"] == service
    assert tags(process["tags"])["deployment.environment"] == "burnline-test"

    assert root["operationName"] == "POST /checkout"
    assert root["startTime"] == sent[0].start_time_unix_nano // 1000  # microseconds
    assert root["duration"] == sent[0].duration_ns // 1000
    root_tags = tags(root["tags"])
    assert root_tags["span.kind"] == "server"
    assert root_tags["http.response.status_code"] == 503
    assert root_tags["retry"] is True and root_tags["ratio"] == 0.5
    assert root_tags["otel.status_code"] == "ERROR" and root_tags["error"] is True
    assert root_tags["otel.status_description"] == "payment backend unavailable"
    # Jaeger's translator names the scope otel.scope.name (otel.library.name before 1.50).
    assert root_tags.get("otel.scope.name", root_tags.get("otel.library.name")) == "burnline.test"
    [event] = root["logs"]
    assert event["timestamp"] == sent[0].events[0].time_unix_nano // 1000
    assert tags(event["fields"]) == {"event": "payment.retry", "attempt": 2}

    assert child["operationName"] == "SELECT orders"
    assert tags(child["tags"])["span.kind"] == "client"
    references = {(r["refType"], r["spanID"]) for r in child["references"]}
    assert ("CHILD_OF", sent[0].span_id) in references
    assert ("FOLLOWS_FROM", sent[1].links[0].span_id) in references
