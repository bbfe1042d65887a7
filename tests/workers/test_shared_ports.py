"""The workers of ``service.workers`` share the receivers' ports (SO_REUSEPORT): two receivers with the
identities of worker 0 and 1 of 2 bind the same 127.0.0.1 port and both answer clients; with the
default identity (one process) a second bind of a taken port still fails, as a port conflict must."""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.core.component import ComponentContext, Receiver
from collector.core.model import Batch, Signal
from collector.core.telemetry import Telemetry
from collector.receivers.fluentbit_http.config import FluentBitHTTPConfig
from collector.receivers.fluentbit_http.receiver import FluentBitHTTPReceiver
from collector.receivers.forward.config import ForwardConfig
from collector.receivers.forward.receiver import ForwardReceiver
from collector.receivers.otlp.config import OTLPReceiverConfig
from collector.receivers.otlp.receiver import OTLPReceiver
from collector.workers.identity import WorkerIdentity
from tests.forward_frames import ForwardClient, event_time, forward
from tests.support import free_port

# Connections the kernel spreads by a hash of each one's addresses: with two listeners, the chance
# that this many new connections all reach one is 2 * 2**-ATTEMPTS.
ATTEMPTS = 200
TIMEOUT = 10.0
TRACES_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class Collect:
    def __init__(self) -> None:
        self.batches: list[Batch] = []

    async def consume(self, batch: Batch) -> None:
        self.batches.append(batch)


def context(kind: str, tmp_path: Path, worker: WorkerIdentity | None) -> ComponentContext:
    logger = logging.getLogger(f"test.shared.{kind}")
    if worker is None:  # as the service builds it with one worker: the default identity
        return ComponentContext(kind, Telemetry(), str(tmp_path), logger)
    return ComponentContext(kind, Telemetry(), str(tmp_path), logger, worker=worker)


Make = Callable[[int, ComponentContext, Collect], Receiver[Any]]


def make_forward(port: int, ctx: ComponentContext, consumer: Collect) -> Receiver[Any]:
    config = ForwardConfig.model_validate({"endpoint": f"127.0.0.1:{port}"})  # UDP heartbeat on too
    return ForwardReceiver(config, ctx, {Signal.LOGS: consumer})


def make_fluentbit(port: int, ctx: ComponentContext, consumer: Collect) -> Receiver[Any]:
    config = FluentBitHTTPConfig.model_validate({"endpoint": f"127.0.0.1:{port}"})
    return FluentBitHTTPReceiver(config, ctx, {Signal.LOGS: consumer})


def make_otlp_grpc(port: int, ctx: ComponentContext, consumer: Collect) -> Receiver[Any]:
    config = OTLPReceiverConfig.model_validate({"grpc": {"endpoint": f"127.0.0.1:{port}"}, "http": None})
    return OTLPReceiver(config, ctx, {Signal.TRACES: consumer})


async def send_forward(port: int, n: int) -> None:
    client = await ForwardClient.connect(port)
    try:
        await client.send(
            forward("app", [[event_time(int(time.time())), {"log": f"r{n}"}]], {"chunk": f"c{n}"})
        )
        assert await client.receive(timeout=TIMEOUT) == {"ack": f"c{n}"}
    finally:
        await client.close()


async def send_fluentbit(port: int, n: int) -> None:
    # A new connection for every request: a kept-alive one would always reach the same worker.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as s:
        async with s.post(f"http://127.0.0.1:{port}/app.log", json=[{"log": f"r{n}"}]) as response:
            assert response.status == 201, await response.text()


async def send_otlp_grpc(port: int, n: int) -> None:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name").value.string_value = "checkout"
    span = resource_spans.scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = (n + 1).to_bytes(16, "big"), (n + 1).to_bytes(8, "big"), "GET /"
    span.start_time_unix_nano, span.end_time_unix_nano = time.time_ns(), time.time_ns() + 1000
    # Its own subchannel pool: a new TCP connection for this channel, not one shared with the last.
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        answer = await channel.unary_unary(TRACES_EXPORT)(request.SerializeToString(), timeout=TIMEOUT)
        assert answer == b""


KINDS: dict[str, tuple[Make, Callable[[int, int], Awaitable[None]]]] = {
    "forward": (make_forward, send_forward),
    "fluentbit_http": (make_fluentbit, send_fluentbit),
    "otlp_grpc": (make_otlp_grpc, send_otlp_grpc),
}


@asynccontextmanager
async def started(receiver: Receiver[Any]) -> AsyncIterator[Receiver[Any]]:
    try:
        await asyncio.wait_for(receiver.start(), TIMEOUT)
        yield receiver
    finally:
        await receiver.stop()


@pytest.mark.parametrize("kind", list(KINDS))
async def test_two_workers_bind_one_port_and_both_serve(kind: str, tmp_path: Path) -> None:
    make, send = KINDS[kind]
    port = free_port()
    consumers = [Collect(), Collect()]
    async with AsyncExitStack() as stack:
        receivers = [
            await stack.enter_async_context(
                started(make(port, context(kind, tmp_path / str(i), WorkerIdentity(i, 2)), consumers[i]))
            )
            for i in range(2)
        ]
        assert all(r.ready() for r in receivers)
        sent = 0
        while not all(c.batches for c in consumers):
            assert sent < ATTEMPTS, f"after {sent} connections only one worker answered"
            await send(port, sent)
            sent += 1
        # Every request answered went to exactly one of them.
        assert sum(len(c.batches) for c in consumers) == sent

        # One worker gone (a restart): the other answers every connection meanwhile.
        await receivers[0].stop()
        before = len(consumers[1].batches)
        for n in range(10):
            await send(port, sent + n)
        assert len(consumers[1].batches) == before + 10


@pytest.mark.parametrize("kind", list(KINDS))
async def test_a_single_process_still_refuses_a_taken_port(kind: str, tmp_path: Path) -> None:
    make, send = KINDS[kind]
    port = free_port()
    first = make(port, context(kind, tmp_path / "a", None), Collect())
    async with started(first):
        second = make(port, context(kind, tmp_path / "b", None), Collect())
        with pytest.raises(OSError) as caught:
            await asyncio.wait_for(second.start(), TIMEOUT)
        await second.stop()
        if kind != "otlp_grpc":  # gRPC's own error names no errno
            assert caught.value.errno == errno.EADDRINUSE
        assert not second.ready()
        # Neither may a worker join a port a single process holds (it did not set SO_REUSEPORT).
        worker = make(port, context(kind, tmp_path / "c", WorkerIdentity(1, 2)), Collect())
        with pytest.raises(OSError):
            await asyncio.wait_for(worker.start(), TIMEOUT)
        await worker.stop()
        await send(port, 1)  # the first still serves
