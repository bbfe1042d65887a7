"""OTLP through burnline end to end: what arrives at the backend equals what the client sent.

A rich trace (events, links, every attribute value type, several resources and scopes) is posted to
burnline's OTLP receiver, crosses the pipeline and its durable queue, and leaves through the OTLP
exporter to an endpoint double standing in for Jaeger. The request the double receives equals the
one sent, field by field.
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


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize(("signal", "path", "build"), CASES, ids=[c[0].value for c in CASES])
async def test_otlp_in_equals_otlp_out(
    tmp_path: Path, protocol: str, signal: Signal, path: str, build: object
) -> None:
    original = build()  # type: ignore[operator]
    async with OTLPEndpointDouble() as backend:
        http_port = free_port()
        exporter: dict[str, object] = {"protocol": protocol, "batch": {"flush_interval": "10ms"}}
        if protocol == "grpc":
            exporter.update(endpoint=backend.grpc_endpoint, insecure=True)
        else:
            exporter.update(endpoint=backend.http_url)
        config = {
            "receivers": {"otlp": {"grpc": None, "http": {"endpoint": f"127.0.0.1:{http_port}"}}},
            "exporters": {"otlp/jaeger": exporter},
            "service": {"pipelines": {signal.value: {"receivers": ["otlp"], "exporters": ["otlp/jaeger"]}}},
        }
        async with running_service(config, str(tmp_path)):
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
