"""Shared test helpers: free loopback ports, an in-process service, bounded waiting."""

from __future__ import annotations

import asyncio
import gc
import random
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from collector.config import parse_config
from collector.core.component import ComponentConfig, Exporter, Receiver, register
from collector.core.model import Batch, Signal
from collector.core.service import Service
from collector.exporterhelper import batch_codec
from collector.exporterhelper.sender import ExporterConfig


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


# Ports are handed out below the kernel's ephemeral range, by a cursor that starts at a random place
# (two suites on one machine rarely walk the same ports) and never hands a port out twice in a run.
# Why not bind(("127.0.0.1", 0)): the kernel draws that port from the ephemeral range, the range it
# also draws every client socket's local port from, and may draw the same port again as soon as the
# probe is closed; between free_port() and the real bind another test's connection, or the next
# free_port() call, could take it. CI failed exactly so (the admin endpoint's port "in use").
_POOL_LOW = 10_000
_POOL_SIZE = _ephemeral_low() - _POOL_LOW
_cursor = random.randrange(_POOL_SIZE) if _POOL_SIZE > 1_000 else 0


def _bindable(port: int) -> bool:
    """Free for TCP and for UDP (some receivers take both), not even in TIME_WAIT."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A port free on 127.0.0.1 for TCP and UDP, never a client socket's local port, never the same
    one twice in a run; when the machine leaves no room below its ephemeral range, the kernel's pick."""
    global _cursor
    if _POOL_SIZE > 1_000:
        for _ in range(_POOL_SIZE):
            port = _POOL_LOW + _cursor % _POOL_SIZE
            _cursor += 1
            if _bindable(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The listening addresses of burnline's built-in default config, each read from its variable (the
# admin endpoint is BurnlineProcess's to choose).
BUILT_IN_ENDPOINTS = (
    "BURNLINE_FORWARD_ENDPOINT",
    "BURNLINE_HTTP_ENDPOINT",
    "BURNLINE_OTLP_GRPC_ENDPOINT",
    "BURNLINE_OTLP_HTTP_ENDPOINT",
    "BURNLINE_REMOTE_WRITE_ENDPOINT",
    "BURNLINE_PROMETHEUS_ENDPOINT",
)


def built_in_endpoints() -> dict[str, str]:
    """Each of ``BUILT_IN_ENDPOINTS`` on a free loopback port."""
    return {name: f"127.0.0.1:{free_port()}" for name in BUILT_IN_ENDPOINTS}


@asynccontextmanager
async def running_service(
    config: dict[str, Any], data_dir: str, grace: float = 10.0
) -> AsyncIterator[Service]:
    """Starts a Service in this event loop from a config dict; stops (and drains) it on exit.

    ``service.data_dir`` defaults to ``data_dir``; the admin endpoint to port 0 (``svc.admin.port``
    is the port it got), so that nothing can take it between choosing and binding.
    """
    config = dict(config)
    service_section = dict(config.get("service", {}))
    service_section.setdefault("data_dir", data_dir)
    service_section.setdefault("admin", {"endpoint": "127.0.0.1:0"})
    config["service"] = service_section
    svc = Service(parse_config(config, source="<test>", env={}))
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop(grace=grace)


# A deadline for what tests wait on (a process, a file, a socket, a counter). Generous on purpose: a
# passing wait returns as soon as its condition holds, so only a failing test ever waits this long,
# and a busy machine (two suites at once plus a CPU hog, see the README) must not fail a correct one.
DEADLINE = 60.0


async def wait_until(
    predicate: Callable[[], bool], timeout: float = DEADLINE, interval: float = 0.02
) -> None:
    """Polls ``predicate`` until true; fails the test after the deadline (bounded, never forever).

    ``timeout`` is how long the condition should take on an idle machine; the deadline is never
    shorter than ``DEADLINE``.
    """
    limit = max(timeout, DEADLINE)
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {limit}s")
        await asyncio.sleep(interval)


def metric_value(service: Service, name: str, labels: dict[str, str] | None = None) -> float:
    """A sample of the service's own metrics (0.0 when absent), e.g. burnline_records_accepted_total."""
    value = service.telemetry.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


class CaptureConfig(ExporterConfig):
    # While paused, export() waits: with a small queue this makes receivers see backpressure.
    paused: bool = False


@register
class CaptureExporter(Exporter):
    """A test-only exporter that keeps what it is given, in memory (type ``capture``)."""

    type_name = "capture"
    config_model = CaptureConfig
    signals = frozenset(Signal)

    def __init__(self, config: CaptureConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.items: list[Any] = []
        self.batches = 0
        self.resume = asyncio.Event()
        if not config.paused:
            self.resume.set()

    async def export(self, batch: Batch) -> int:
        await self.resume.wait()
        self.items.extend(batch.items)
        self.batches += 1
        return len(batch)


class InjectConfig(ComponentConfig):
    pass


@register
class InjectReceiver(Receiver):
    """A test-only receiver (type ``inject``): the test hands it batches directly with push()."""

    type_name = "inject"
    config_model = InjectConfig
    signals = frozenset(Signal)

    async def push(self, records: Sequence[Any], signal: Signal = Signal.LOGS) -> None:
        await self.consumers[signal].consume(Batch(signal, list(records), 100 * len(records)))


def decode_measured(row: bytes) -> tuple[Batch, int]:
    """A durable-queue row decoded, and the bytes its decode allocated that the batch still holds
    (tracemalloc): what a decoded batch takes in memory. bench/decoded_size.py prints it too."""
    gc.collect()
    tracemalloc.start()
    try:
        batch = batch_codec.decode(row)
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return batch, held
