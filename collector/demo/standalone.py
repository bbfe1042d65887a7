"""``burnline demo --traffic-only``: the demo services without a burnline of their own, sending to one
that runs elsewhere (the compose stack's sample service, deploy/docker-compose.yaml).

The services send Forward logs to ``--forward`` and OTLP/HTTP spans to ``--otlp``, and serve their
``/metrics`` on three consecutive ports from ``--metrics-listen`` (checkout, cart, search) for that
burnline to scrape. The incident comes back every ``--incident-every`` seconds. A burnline that is
not up yet, or refuses, costs the records of that moment (counted, logged once per problem); the
services keep playing. SIGTERM or Ctrl-C stops them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from dataclasses import dataclass

from collector.demo.clients import ForwardClient, OtlpHttpClient
from collector.demo.scenario import Scenario
from collector.demo.traffic import TrafficGenerator

log = logging.getLogger("burnline.demo")

REPORT_EVERY = 60.0  # seconds between progress log lines


@dataclass
class TrafficOptions:
    forward: tuple[str, int]
    otlp_url: str
    metrics_host: str
    metrics_port: int
    incident_every: float = 0.0
    scenario: Scenario | None = None


async def _report(generator: TrafficGenerator, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), REPORT_EVERY)
        except TimeoutError:
            pass
        counts = ", ".join(f"{n} {c.requests} ({c.bad} bad)" for n, c in generator.stats.per_service.items())
        f, o = generator.forward, generator.otlp
        assert f is not None and o is not None
        log.info(
            "requests: %s; Forward records delivered %d, dropped %d; OTLP spans delivered %d, dropped %d",
            counts,
            f.stats.delivered,
            f.stats.dropped,
            o.stats.delivered,
            o.stats.dropped,
        )


async def run_traffic(options: TrafficOptions, stop: asyncio.Event | None = None) -> int:
    """Plays the services until ``stop`` is set (or SIGTERM/SIGINT in the main thread)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    scenario = options.scenario or Scenario()
    generator = TrafficGenerator(scenario, repeat_every=options.incident_every)
    try:
        ports = {
            s.name: options.metrics_port + i if options.metrics_port else 0
            for i, s in enumerate(scenario.services)
        }
        bound = await generator.start_targets(options.metrics_host, ports)
        generator.connect(ForwardClient(*options.forward), OtlpHttpClient(options.otlp_url))
        log.info(
            "demo services sending to Forward %s:%d and OTLP %s; /metrics on %s",
            *options.forward,
            options.otlp_url,
            ", ".join(f"{name} {options.metrics_host}:{port}" for name, port in bound.items()),
        )
        reporter = asyncio.create_task(_report(generator, stop))
        await generator.run(stop)
        await reporter
        return 0
    except OSError as exc:  # a metrics port in use
        log.error("cannot start the demo services: %s", exc)
        return 1
    finally:
        await generator.stop()
        for sig in handled:
            loop.remove_signal_handler(sig)
