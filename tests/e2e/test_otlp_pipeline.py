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
from google.protobuf.message import Message

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


def service_config(
    http_port: int, signal: Signal, exporter: dict[str, object], processors: dict[str, object]
) -> dict[str, object]:
    """burnline with an OTLP/HTTP receiver, ``processors`` and the otlp exporter, for ``signal``."""
    pipeline = {"receivers": ["otlp"], "processors": list(processors), "exporters": ["otlp/jaeger"]}
    return {
        "receivers": {"otlp": {"grpc": None, "http": {"endpoint": f"127.0.0.1:{http_port}"}}},
        "processors": processors,
        "exporters": {"otlp/jaeger": {"batch": {"flush_interval": "10ms"}, **exporter}},
        "service": {"pipelines": {signal.value: pipeline}},
    }


async def post(http_port: int, path: str, request: Message) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"http://127.0.0.1:{http_port}{path}",
            data=request.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        ) as resp:
            assert resp.status == 200


@pytest.mark.parametrize("processors", [{}, NOOP_ATTRIBUTES], ids=["as-received", "re-encoded"])
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize(("signal", "path", "build"), CASES, ids=[c[0].value for c in CASES])
async def test_otlp_in_equals_otlp_out(
    tmp_path: Path, protocol: str, signal: Signal, path: str, build: object, *, processors: dict[str, object]
) -> None:
    original = build()  # type: ignore[operator]
    async with OTLPEndpointDouble() as backend:
        http_port = free_port()
        exporter: dict[str, object] = {"protocol": protocol}
        if protocol == "grpc":
            exporter.update(endpoint=backend.grpc_endpoint, insecure=True)
        else:
            exporter.update(endpoint=backend.http_url)
        async with running_service(
            service_config(http_port, signal, exporter, processors), str(tmp_path)
        ) as svc:
            assert svc.senders["otlp/jaeger"].queue.keep_wire  # the otlp exporter sends Batch.wire
            await post(http_port, path, original)
            await wait_until(lambda: len(backend.taken(signal)) == 1, timeout=10)
        [received] = backend.taken(signal)
        assert received.request == original, _diff(received.request, original)


async def test_a_processor_s_change_reaches_the_backend(tmp_path: Path) -> None:
    """The records a processor changed are sent, not the request they were received in."""
    original = original_traces()
    upsert = {"attributes/env": {"actions": [{"key": "env", "action": "upsert", "value": "test"}]}}
    async with OTLPEndpointDouble() as backend:
        http_port = free_port()
        exporter: dict[str, object] = {"endpoint": backend.grpc_endpoint, "insecure": True}
        async with running_service(service_config(http_port, Signal.TRACES, exporter, upsert), str(tmp_path)):
            await post(http_port, "/v1/traces", original)
            await wait_until(lambda: len(backend.taken(Signal.TRACES)) == 1, timeout=10)
    received = backend.spans()
    assert len(received) == sum(len(ss.spans) for rs in original.resource_spans for ss in rs.scope_spans)
    for span in received:
        assert any(kv.key == "env" and kv.value.string_value == "test" for kv in span.attributes)
