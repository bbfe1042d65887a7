"""Runs the demo: burnline (``collector.service.Service``, in this process and event loop) on the demo
config, the traffic generator beside it talking to burnline over loopback sockets only, and the view.

Order: the services' ``/metrics`` listeners first (the scrape config names their ports), then
burnline, then the traffic. The end (``--duration`` reached, Ctrl-C or SIGTERM): traffic stops,
burnline stops (its queues drain; alerts pending for Alertmanager get their moment), the summary is
printed. The incident service's page alert is followed on the engine's alert state, against the
traffic generator's own record of the incident's first and last bad event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from collector.config import ConfigError
from collector.core.service import Service
from collector.core.startup_errors import StartupError
from collector.demo.clients import ForwardClient, OtlpHttpClient
from collector.demo.config import demo_config
from collector.demo.scenario import Scenario
from collector.demo.traffic import TrafficGenerator
from collector.demo.view import AlertTimes, Snapshot, progress_line, render, summary_line

log = logging.getLogger("burnline.demo")

INCIDENT_SLO = "checkout-availability"
REFRESH = 0.5  # seconds between snapshots
PROGRESS_EVERY = 10.0  # --no-live: a progress line this often
STOP_GRACE = 5.0


@dataclass
class DemoOptions:
    duration: float | None = None
    alertmanagers: list[str] = field(default_factory=list)
    data_dir: str | None = None
    live: bool = True
    scenario: Scenario = field(default_factory=Scenario)


@dataclass
class DemoResult:
    exit_code: int
    times: AlertTimes
    summary: str = ""


class _Rates:
    """Records/s per signal over the last few seconds, from burnline's accepted counters."""

    def __init__(self, span: float = 5.0) -> None:
        self.span = span
        self.samples: list[tuple[float, dict[str, float]]] = []

    def update(self, now: float, totals: dict[str, float]) -> dict[str, float]:
        self.samples.append((now, totals))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.span:
            self.samples.pop(0)
        then, old = self.samples[0]
        seconds = now - then
        if seconds <= 0:
            return dict.fromkeys(totals, 0.0)
        return {k: max(v - old.get(k, 0.0), 0.0) / seconds for k, v in totals.items()}


def _accepted(service: Service) -> dict[str, float]:
    totals = {"logs": 0.0, "traces": 0.0, "metrics": 0.0}
    for metric in service.telemetry.accepted.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                signal_name = sample.labels.get("signal", "")
                totals[signal_name] = totals.get(signal_name, 0.0) + sample.value
    return totals


def _alertmanager_sends(service: Service) -> tuple[int, int]:
    ok = failed = 0
    for metric in service.telemetry.slo_alertmanager_sends.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                if sample.labels.get("outcome") == "success":
                    ok += int(sample.value)
                else:
                    failed += int(sample.value)
    return ok, failed


def _phase(scenario: Scenario, elapsed: float) -> str:
    if elapsed < scenario.incident_at:
        return f"healthy; checkout starts failing in {scenario.incident_at - elapsed:.0f}s"
    if elapsed < scenario.incident_end:
        return f"INCIDENT: {scenario.incident_error_ratio:.0%} of checkouts fail (payment provider timeout)"
    return "recovered: checkout healthy again"


class Demo:
    def __init__(self, options: DemoOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.scenario = options.scenario
        self.times = AlertTimes()
        self.events: list[str] = []
        self._seen: dict[tuple[str, str], str] = {}

    def _say(self, text: str) -> None:
        """A plain line: never wrapped (a pipe has no width) and no markup read into it."""
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def _event(self, elapsed: float, text: str) -> None:
        line = f"{elapsed:6.1f}s  {text}"
        self.events.append(line)
        if not self.options.live:
            self._say(line)

    def _follow(self, service: Service, generator: TrafficGenerator, elapsed: float) -> list[dict[str, Any]]:
        """Notes alert transitions as events and the page alert's times; returns every SLO's status."""
        engine = service.slo_engine
        assert engine is not None
        stats = generator.stats
        if stats.first_incident_bad_at is not None and self.times.first_bad is None:
            self.times.first_bad = stats.first_incident_bad_at
            self._event(elapsed, "checkout starts failing: first failed checkout sent")
        self.times.last_bad = stats.last_incident_bad_at
        statuses = engine.status()
        for status in statuses:
            for severity, alert in status["alerts"].items():
                key = (str(status["name"]), severity)
                state = alert["state"]
                if self._seen.get(key, "inactive") != state:
                    self._seen[key] = state
                    if state != "inactive":
                        self._event(elapsed, f"{key[0]}: {severity} alert {state}")
        page = engine.slos[INCIDENT_SLO].alerts["page"]
        first_bad = self.times.first_bad
        # Fired by this incident: not an alert still firing from the counts of an earlier run.
        if (
            page.firing
            and self.times.fired is None
            and first_bad is not None
            and page.started_at >= first_bad
        ):
            self.times.fired = page.started_at
        if (
            not page.firing
            and page.resolved_at
            and self.times.fired is not None
            and self.times.resolved is None
        ):
            self.times.resolved = page.resolved_at
        return statuses

    async def run(self, stop: asyncio.Event) -> DemoResult:
        opts = self.options
        data_dir = opts.data_dir or tempfile.mkdtemp(prefix="burnline-demo-")
        if opts.data_dir and (Path(opts.data_dir) / "slo").exists():
            self._say(
                f"note: {opts.data_dir} holds SLO counts of an earlier run; they count in the "
                "windows too, so the alert timing differs from a fresh run (use a new --data-dir)"
            )
        generator: TrafficGenerator | None = None
        service: Service | None = None
        try:
            generator = TrafficGenerator(self.scenario)
            ports = await generator.start_targets()
            targets = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
            try:
                config, endpoints = demo_config(data_dir, targets, opts.alertmanagers)
            except ConfigError as exc:
                self._say(f"burnline demo: {exc}")
                return DemoResult(1, self.times)
            generator.connect(ForwardClient(*endpoints.forward), OtlpHttpClient(endpoints.otlp_http))
            service = Service(config)
            try:
                await service.start()
            except (OSError, ConfigError, StartupError) as exc:
                self._say(f"burnline demo: cannot start burnline: {exc}")
                service = None
                return DemoResult(1, self.times)
            status_url = f"{service.admin.url}/status"
            self._say(
                f"burnline demo: status page {status_url}  admin {service.admin.url}  data {data_dir}\n"
                f"  Forward {endpoints.forward[0]}:{endpoints.forward[1]}  OTLP/HTTP {endpoints.otlp_http}"
                + (f"  Alertmanager {', '.join(opts.alertmanagers)}" if opts.alertmanagers else "")
            )
            return await self._play(service, generator, stop, status_url)
        finally:
            if service is not None:
                await service.stop(grace=STOP_GRACE)
            if generator is not None:
                await generator.stop()
            if not opts.data_dir:
                shutil.rmtree(data_dir, ignore_errors=True)

    async def _play(
        self, service: Service, generator: TrafficGenerator, stop: asyncio.Event, status_url: str
    ) -> DemoResult:
        opts = self.options
        traffic_stop = asyncio.Event()
        traffic = asyncio.create_task(generator.run(traffic_stop), name="demo-traffic")
        started = time.monotonic()
        rates = _Rates()
        last_progress = -PROGRESS_EVERY
        live = Live(console=self.console, refresh_per_second=4, transient=False) if opts.live else None
        interrupted = False
        try:
            with live if live is not None else contextlib.nullcontext():
                while True:
                    elapsed = time.monotonic() - started
                    statuses = self._follow(service, generator, elapsed)
                    accepted = _accepted(service)
                    snapshot = Snapshot(
                        elapsed=elapsed,
                        duration=opts.duration,
                        phase=_phase(self.scenario, generator.scenario_time(elapsed)),
                        rates=rates.update(elapsed, accepted),
                        accepted=accepted,
                        requests={n: (c.requests, c.bad) for n, c in generator.stats.per_service.items()},
                        slos=statuses,
                        alertmanager=_alertmanager_sends(service) if opts.alertmanagers else None,
                        events=self.events,
                        status_url=status_url,
                        admin_url=service.admin.url,
                    )
                    if live is not None:
                        live.update(render(snapshot))
                    elif elapsed - last_progress >= PROGRESS_EVERY:
                        last_progress = elapsed
                        self._say(progress_line(snapshot))
                    if opts.duration is not None and elapsed >= opts.duration:
                        break
                    if traffic.done():
                        traffic.result()  # a bug in the generator ends the demo with its traceback
                    try:
                        await asyncio.wait_for(stop.wait(), REFRESH)
                        interrupted = True
                        break
                    except TimeoutError:
                        pass
        finally:
            traffic_stop.set()
            await traffic
        elapsed = time.monotonic() - started
        summary = summary_line(INCIDENT_SLO, self.times, elapsed, interrupted)
        self._say(summary)
        return DemoResult(0, self.times, summary)


async def run_demo(options: DemoOptions, console: Console | None = None) -> DemoResult:
    """The whole demo in the running event loop; Ctrl-C and SIGTERM end it cleanly (main thread)."""
    console = console or Console()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    try:
        return await Demo(options, console).run(stop)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
