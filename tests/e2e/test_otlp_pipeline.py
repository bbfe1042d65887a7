"""OTLP through burnline end to end: what arrives at the backend equals what the client sent.

A rich trace (events, links, every attribute value type, several resources and scopes) is posted to
burnline's OTLP receiver, crosses the pipeline and its durable queue, and leaves through the OTLP
exporter to an endpoint double standing in for Jaeger. The request the double receives equals the
one sent, field by field: both as received (nothing changed the records, so the exporter sends the
request they came in) and encoded again from the records (a processor that may change records ran).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from collector.core.model import Signal
from tests.doubles.otlp_endpoint import OTLPEndpointDouble
from tests.e2e.test_otlp_fidelity import _diff, original_logs, original_metrics, original_traces
from tests.support import free_port, running_service, wait_until

CASES = [
    (Signal.TRACES, "/v1/traces", original_traces),
    (Signal.LOGS, "/v1/logs", original_logs),
    (Signal.METRICS, "/v1/metrics", original_metrics),
]


# A processor that may change records (it deletes an attribute no record has): the records are
# encoded again rather than their received request sent.
NOOP_ATTRIBUTES = {"attributes/noop": {"actions": [{"key": "no.such.attribute", "action": "delete"}]}}


@pytest.mark.parametrize("processors", [{}, NOOP_ATTRIBUTES], ids=["as-received", "re-encoded"])
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize(("signal", "path", "build"), CASES, ids=[c[0].value for c in CASES])
async def test_otlp_in_equals_otlp_out(
    tmp_path: Path, protocol: str, signal: Signal, path: str, build: object, *, processors: dict[str, object]
) -> None:
    original = build()  # type: ignore[operator]
    async with OTLPEndpointDouble() as backend:
        http_port = free_port()
        exporter: dict[str, object] = {"protocol": protocol, "batch": {"flush_interval": "10ms"}}
        if protocol == "grpc":
            exporter.update(endpoint=backend.grpc_endpoint, insecure=True)
        else:
            exporter.update(endpoint=backend.http_url)
        pipeline = {"receivers": ["otlp"], "processors": list(processors), "exporters": ["otlp/jaeger"]}
        config = {
            "receivers": {"otlp": {"grpc": None, "http": {"endpoint": f"127.0.0.1:{http_port}"}}},
            "processors": processors,
            "exporters": {"otlp/jaeger": exporter},
            "service": {"pipelines": {signal.value: pipeline}},
        }
        async with running_service(config, str(tmp_path)) as svc:
            assert svc.senders["otlp/jaeger"].queue.keep_wire  # the otlp exporter sends Batch.wire
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    f"http://127.0.0.1:{http_port}{path}",
                    data=original.SerializeToString(),
                    headers={"Content-Type": "application/x-protobuf"},
                ) as resp:
                    assert resp.status == 200
            await wait_until(lambda: len(backend.taken(signal)) == 1, timeout=10)
        [received] = backend.taken(signal)
        assert received.request == original, _diff(received.request, original)


async def test_a_processor_s_change_reaches_the_backend(tmp_path: Path) -> None:
    """The records a processor changed are sent, not the request they were received in."""
    original = original_traces()
    async with OTLPEndpointDouble() as backend:
        http_port = free_port()
        config = {
            "receivers": {"otlp": {"grpc": None, "http": {"endpoint": f"127.0.0.1:{http_port}"}}},
            "processors": {
                "attributes/env": {"actions": [{"key": "env", "action": "upsert", "value": "test"}]}
            },
            "exporters": {
                "otlp/jaeger": {
                    "endpoint": backend.grpc_endpoint,
                    "insecure": True,
                    "batch": {"flush_interval": "10ms"},
                }
            },
            "service": {
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp"],
                        "processors": ["attributes/env"],
                        "exporters": ["otlp/jaeger"],
                    }
                }
            },
        }
        async with running_service(config, str(tmp_path)):
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    f"http://127.0.0.1:{http_port}/v1/traces",
                    data=original.SerializeToString(),
                    headers={"Content-Type": "application/x-protobuf"},
                ) as resp:
                    assert resp.status == 200
            await wait_until(lambda: len(backend.taken(Signal.TRACES)) == 1, timeout=10)
    received = backend.spans()
    assert len(received) == sum(len(ss.spans) for rs in original.resource_spans for ss in rs.scope_spans)
    for span in received:
        assert any(kv.key == "env" and kv.value.string_value == "test" for kv in span.attributes)
