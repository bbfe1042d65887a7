"""``burnline demo``: the scenario's alert math against the real SLO engine on a simulated clock; the
whole demo as a process, paging a real Alertmanager and resolving; Ctrl-C ends it cleanly; the
clients survive a burnline that is not there; bad options get a clear error."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from collector.config.model import AlertingConfig
from collector.core.model import LogRecord, MetricPoint, Span
from collector.demo import cli
from collector.demo.clients import ForwardClient, OtlpHttpClient
from collector.demo.config import ENDPOINT_VARIABLES, demo_config
from collector.demo.scenario import INCIDENT_SERVICE, EvenSpread, Scenario, demo_slos
from collector.demo.standalone import TrafficOptions, run_traffic
from collector.slo.engine import SloEngine
from collector.slo.spec import SLOSpec
from tests.slo_support import needs_alertmanager, real_alertmanager
from tests.support import DEADLINE, free_port, running_service, wait_until

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = re.compile(
    r"burnline demo done after \d+s: checkout-availability page alert fired ([\d.]+)s after the first "
    r"failed checkout \(detection time\), resolved ([\d.]+)s after recovery \(resolution time\)"
)


# -- the math


@pytest.mark.parametrize("ratio", [0.001, 0.002, 0.75, 0.333])
def test_even_spread_marks_exactly_the_ratio(ratio: float) -> None:
    spread = EvenSpread()
    marks = [spread.next(ratio) for _ in range(10_000)]
    assert sum(marks) == round(10_000 * ratio)
    # Evenly: no two bad ones closer than the ratio allows.
    positions = [i for i, bad in enumerate(marks) if bad]
    assert min(b - a for a, b in itertools.pairwise(positions)) >= int(1 / ratio) - 1


def test_the_scenario_fires_during_the_incident_and_resolves_in_the_demo() -> None:
    scenario = Scenario()
    detection = scenario.expected_detection()
    assert detection is not None and 0 < detection < scenario.incident_length
    assert scenario.incident_end < scenario.expected_resolution() < 150 - 20  # margin in a 150 s demo
    # A gentler incident would not page at all; the math says so instead of promising a page.
    assert Scenario(incident_error_ratio=0.05).expected_detection() is None


def _simulate(scenario: Scenario, start: float, seconds: float) -> tuple[float | None, float | None]:
    """The real engine fed the checkout SLO's counts as the generator produces them (rate, even
    spread, 0.1 s steps), evaluated every second as the demo config says; (fired, resolved) as
    seconds since the start."""
    clock = [start]
    spec = SLOSpec.model_validate(next(s for s in demo_slos() if s["service"] == INCIDENT_SERVICE))
    engine = SloEngine([spec], AlertingConfig(evaluation_interval=1.0), clock=lambda: clock[0])
    rate = scenario.service(INCIDENT_SERVICE).rate
    spread = EvenSpread()
    sent = 0
    fired = resolved = None
    for step in range(1, int(seconds * 10) + 1):
        elapsed = step / 10
        now = start + elapsed
        clock[0] = now
        due = int(rate * elapsed) - sent
        sent += due
        bad = sum(spread.next(scenario.bad_ratio(INCIDENT_SERVICE, elapsed)) for _ in range(due))
        if due:
            bucket = int(now // 10 * 10)
            engine.add_counts({(0, bucket): [float(due), float(bad)]}, now)
        if step % 10 == 0:
            engine.evaluate(now)
            page = engine.slos[spec.name].alerts["page"]
            if page.firing and fired is None:
                fired = elapsed
            if not page.firing and page.resolved_at and resolved is None:
                resolved = elapsed
    return fired, resolved


@pytest.mark.parametrize("start", [1_800_000_000.0, 1_800_000_007.3])  # on and off a 10 s bucket edge
def test_the_engine_agrees_with_the_documented_math(start: float) -> None:
    scenario = Scenario()
    fired, resolved = _simulate(scenario, start, 150)
    detection = scenario.expected_detection()
    assert detection is not None and fired is not None and resolved is not None
    # Evaluations run every second: the alert fires within one of the condition first holding.
    assert scenario.incident_at + detection <= fired <= scenario.incident_at + detection + 1.1
    assert scenario.expected_resolution() <= resolved <= scenario.expected_resolution() + 1.1


# -- the config


def test_demo_config_uses_the_built_in_default_plus_scraping_slos_and_alerting(tmp_path: Path) -> None:
    env = {v: f"127.0.0.1:{free_port()}" for v in ENDPOINT_VARIABLES}
    config, endpoints = demo_config(
        str(tmp_path), {"checkout": "127.0.0.1:9101"}, ["http://127.0.0.1:9093"], env=env
    )
    assert {"forward", "fluentbit_http", "otlp", "remote_write", "prometheus_scrape"} <= set(config.receivers)
    assert config.service.pipelines["metrics"].receivers[-1] == "prometheus_scrape"
    assert [s.name for s in config.slos] == ["checkout-availability", "cart-log-errors", "search-latency"]
    assert {s.sli.kind for s in config.slos} == {"traces", "logs", "metrics"}
    assert [a.url for a in config.alerting.alertmanagers] == ["http://127.0.0.1:9093"]
    assert config.alerting.evaluation_interval == 1.0
    assert config.service.data_dir == str(tmp_path)
    assert endpoints.admin == f"http://{env['BURNLINE_ADMIN_ENDPOINT']}"
    assert endpoints.forward[1] == int(env["BURNLINE_FORWARD_ENDPOINT"].rsplit(":", 1)[1])


# -- bad input


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--duration", "-5"], "the duration must be a positive number of seconds"),
        (["--duration", "soon"], "'soon' is not a number of seconds"),
        (["--alertmanager", "alertmanager:9093"], "is not an http:// or https:// URL"),
    ],
)
def test_bad_options_are_named(argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert problem in capsys.readouterr().err


async def test_clients_count_what_a_missing_burnline_did_not_take() -> None:
    port = free_port()  # nothing listens there
    forward = ForwardClient("127.0.0.1", port)
    otlp = OtlpHttpClient(f"http://127.0.0.1:{port}")
    try:
        assert not await forward.send("kube.x", [(time.time_ns(), {"log": "hello"})])
        assert not await otlp.send_traces(b"", spans=3)
    finally:
        await forward.close()
        await otlp.close()
    assert (forward.stats.delivered, forward.stats.dropped, forward.stats.retries) == (0, 1, 1)
    assert (otlp.stats.delivered, otlp.stats.dropped, otlp.stats.retries) == (0, 3, 1)


# -- the demo as a process


def _demo_env() -> dict[str, str]:
    """Free ports for every endpoint (the default ones may be taken by another test's burnline)."""
    env = dict(os.environ)
    env.update({variable: f"127.0.0.1:{free_port()}" for variable in ENDPOINT_VARIABLES})
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def _start_demo(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "collector.demo.cli",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _get(url: str) -> Any:
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 200, await response.text()
            if response.content_type == "application/json":
                return await response.json()
            return await response.text()


@needs_alertmanager
async def test_the_demo_pages_a_real_alertmanager_and_resolves(tmp_path: Path) -> None:
    env = _demo_env()
    admin = f"http://{env['BURNLINE_ADMIN_ENDPOINT']}"
    async with real_alertmanager(tmp_path / "am") as am:
        started = time.monotonic()
        demo = await _start_demo("--duration", "150", "--no-live", "--alertmanager", am.url, env=env)
        seen_firing: list[dict[str, Any]] = []
        cleared_after_firing = False
        output = b""
        try:
            reader = asyncio.create_task(demo.stdout.read() if demo.stdout else asyncio.sleep(0))
            # Watch Alertmanager while the demo runs: the page alert arrives, then goes away (API v2
            # lists only active alerts: a resolved alert is no longer there).
            while not reader.done():
                if time.monotonic() - started > 150 + DEADLINE:
                    raise AssertionError("the demo did not end by itself")
                alerts = await am.alerts(severity="page", slo="checkout-availability")
                if alerts and not seen_firing:
                    seen_firing = alerts
                    # The demo's own API shows it too, while it fires.
                    status = await _get(f"{admin}/api/v1/slos/checkout-availability")
                    assert status["alerts"]["page"]["state"] == "firing"
                if seen_firing and not alerts:
                    cleared_after_firing = True
                await asyncio.sleep(0.5)
            output = reader.result() or b""
            assert await asyncio.wait_for(demo.wait(), DEADLINE) == 0, output.decode()
        finally:
            if demo.returncode is None:
                demo.kill()
                await demo.wait()
        text = output.decode()
        assert seen_firing, f"the page alert never reached Alertmanager\n{text}"
        alert = seen_firing[0]
        assert alert["labels"]["alertname"] == "CheckoutAvailability"
        assert alert["labels"]["service"] == "checkout"
        assert alert["status"]["state"] == "active"
        assert alert["generatorURL"].startswith(admin)
        assert cleared_after_firing, f"the page alert never resolved in Alertmanager\n{text}"
        assert await am.alerts(severity="page") == []

        # The summary: detection and resolution times as the scenario's math predicts, never earlier
        # (the counts cross the thresholds when the math says); later by up to the 1 s evaluation
        # interval and the 0.25 s send tick, plus what a loaded machine adds (hence the margins).
        match = SUMMARY.search(text)
        assert match, text
        detection, resolution = float(match.group(1)), float(match.group(2))
        scenario = Scenario()
        expected_detection = scenario.expected_detection()
        assert expected_detection is not None
        assert expected_detection - 0.5 <= detection <= expected_detection + 6.0, text
        expected_resolution = scenario.expected_resolution() - scenario.incident_end
        assert expected_resolution - 1.0 <= resolution <= expected_resolution + 8.0, text
        assert "checkout-availability: page alert firing" in text
        assert "checkout-availability: page alert resolved" in text
        assert "cart-log-errors: page alert" not in text and "search-latency: page alert" not in text
        assert f"status page {admin}/status" in text


async def test_ctrl_c_ends_the_demo_cleanly_and_traffic_went_through_every_receiver(tmp_path: Path) -> None:
    env = _demo_env()
    admin = f"http://{env['BURNLINE_ADMIN_ENDPOINT']}"
    data = tmp_path / "data"
    demo = await _start_demo("--no-live", "--data-dir", str(data), env=env)
    try:
        assert demo.stdout is not None
        head = ""
        for _ in range(20):  # burnline's own start-up warnings may come first
            head += (await asyncio.wait_for(demo.stdout.readline(), DEADLINE)).decode()
            if "status page" in head:
                break
        assert f"status page {admin}/status" in head, head

        async def counted() -> dict[str, float]:
            slos = (await _get(f"{admin}/api/v1/slos"))["slos"]
            return {s["name"]: s["events"]["good"] + s["events"]["bad"] for s in slos}

        deadline = time.monotonic() + DEADLINE
        while True:
            counts = await counted()
            # Every SLO counts events: spans via OTLP/HTTP, logs via Forward, scraped counters.
            if all(v > 0 for v in counts.values()):
                break
            assert time.monotonic() < deadline, counts
            await asyncio.sleep(0.5)
        metrics = await _get(f"{admin}/metrics")
        for component, signal_name in (
            ("forward", "logs"),
            ("otlp", "traces"),
            ("prometheus_scrape", "metrics"),
        ):
            assert re.search(
                rf'burnline_records_accepted_total\{{component="{component}",signal="{signal_name}"\}} [1-9]',
                metrics,
            ), component
        demo.send_signal(signal.SIGINT)
        output = (await asyncio.wait_for(demo.stdout.read(), DEADLINE)).decode()
        assert await asyncio.wait_for(demo.wait(), DEADLINE) == 0, output
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
    assert "burnline demo interrupted after" in output
    assert "page alert not tested (the incident had not started)" in output
    assert "Traceback" not in output
    # --data-dir keeps the local store for `burnline logs` / `burnline traces` afterwards.
    assert (data / "burnline.db").exists()


# -- traffic only (the compose stack's sample service)


async def test_traffic_only_feeds_a_burnline_elsewhere_through_its_receivers(tmp_path: Path) -> None:
    ports = {"forward": free_port(), "otlp": free_port(), "metrics": free_port()}
    # Three consecutive free ports for the services' /metrics (bounded search).
    base = next(p for p in range(20000, 20600, 3) if all(_port_free(p + i) for i in range(3)))
    services = [s.name for s in Scenario().services]
    config = {
        "receivers": {
            "forward": {"endpoint": f"127.0.0.1:{ports['forward']}"},
            "otlp": {"grpc": None, "http": {"endpoint": f"127.0.0.1:{ports['otlp']}"}},
            "prometheus_scrape": {
                "scrape_interval": "0.5s",
                "jobs": [
                    {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{base + i}"]}]}
                    for i, name in enumerate(services)
                ],
            },
        },
        "exporters": {"capture": {"batch": {"flush_interval": 0}}},
        "service": {
            "pipelines": {
                "logs": {"receivers": ["forward"], "exporters": ["capture"]},
                "traces": {"receivers": ["otlp"], "exporters": ["capture"]},
                "metrics": {"receivers": ["prometheus_scrape"], "exporters": ["capture"]},
            }
        },
    }
    stop = asyncio.Event()
    options = TrafficOptions(
        forward=("127.0.0.1", ports["forward"]),
        otlp_url=f"http://127.0.0.1:{ports['otlp']}",
        metrics_host="127.0.0.1",
        metrics_port=base,
        incident_every=30,
    )
    async with running_service(config, str(tmp_path / "data")) as svc:
        traffic = asyncio.create_task(run_traffic(options, stop))
        capture = svc.exporters["capture"]

        def seen() -> tuple[set[str], set[str], set[str]]:
            items = list(capture.items)  # type: ignore[attr-defined]
            logs = {i.resource.get("service.name") for i in items if isinstance(i, LogRecord)}
            spans = {i.resource.get("service.name") for i in items if isinstance(i, Span)}
            jobs = {
                i.resource.get("service.name")
                for i in items
                if isinstance(i, MetricPoint) and i.name.startswith("http_request_duration_seconds")
            }
            return logs, spans, jobs

        try:
            await wait_until(lambda: all(found == set(services) for found in seen()))
        finally:
            stop.set()
            assert await asyncio.wait_for(traffic, DEADLINE) == 0
        log = next(i for i in capture.items if isinstance(i, LogRecord))  # type: ignore[attr-defined]
        assert log.resource["k8s.namespace.name"] == "shop" and log.trace_id


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_compose_stack_wires_the_demo_services_to_burnline() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yaml").read_text())
    burnline = yaml.safe_load((ROOT / "deploy" / "burnline-compose.yaml").read_text())
    command = compose["services"]["demo-traffic"]["command"]
    args = cli.build_parser().parse_args(command)
    assert args.traffic_only and args.incident_every > 0
    receivers = burnline["receivers"]
    assert args.forward == ("burnline", int(receivers["forward"]["endpoint"].rsplit(":", 1)[1]))
    assert args.otlp == f"http://burnline:{receivers['otlp']['http']['endpoint'].rsplit(':', 1)[1]}"
    jobs = {j["job_name"]: j for j in receivers["prometheus_scrape"]["jobs"]}
    host, base = args.metrics_listen
    assert host == "0.0.0.0"  # reachable from burnline across the compose network
    for i, service in enumerate(Scenario().services):
        assert jobs[service.name]["static_configs"][0]["targets"] == [f"demo-traffic:{base + i}"]
    # The example SLOs count the demo services' traffic (service names, namespace, span names).
    examples = yaml.safe_load((ROOT / "deploy" / "slos" / "examples.yaml").read_text())["slos"]
    watched = {
        s["sli"].get("traces", s["sli"].get("logs", {})).get("match", {}).get("service.name")
        for s in examples
    }
    assert {s.name for s in Scenario().services} <= watched


# -- the view


def test_the_live_view_shows_rates_slo_states_alerts_and_the_status_page() -> None:
    from rich.console import Console

    from collector.demo.view import AlertTimes, Snapshot, progress_line, render, summary_line

    clock = [1_800_000_000.0]
    spec = SLOSpec.model_validate(demo_slos()[0])
    engine = SloEngine([spec], AlertingConfig(evaluation_interval=1.0), clock=lambda: clock[0])
    engine.add_counts({(0, int(clock[0])): [100.0, 30.0]}, clock[0])
    engine.evaluate()
    snapshot = Snapshot(
        elapsed=66.0,
        duration=150.0,
        phase="INCIDENT: 75% of checkouts fail",
        rates={"logs": 95.0, "traces": 120.0, "metrics": 14.0},
        accepted={"logs": 6000.0, "traces": 7800.0, "metrics": 900.0},
        requests={"checkout": (1650, 150)},
        slos=engine.status(),
        alertmanager=(2, 0),
        events=["  66.4s  checkout-availability: page alert firing"],
        status_url="http://127.0.0.1:8888/status",
        admin_url="http://127.0.0.1:8888",
    )
    console = Console(record=True, width=160, color_system=None)
    console.print(render(snapshot))
    screen = console.export_text()
    assert "http://127.0.0.1:8888/status" in screen
    assert "120/s" in screen and "1,650" in screen
    assert re.search(r"checkout-availability\s+│ traces\s+│\s+99% │\s+70\.00% │\s+30\.00", screen), screen
    assert "FIRING" in screen and "2 send(s) accepted" in screen
    assert "checkout-availability: page alert firing" in screen
    line = progress_line(snapshot)
    assert "traces 120/s" in line and "checkout-availability burn5m=30.00 page=firing" in line
    times = AlertTimes(first_bad=100.0, last_bad=108.0, fired=105.5, resolved=141.0)
    assert summary_line("checkout-availability", times, 150.2, interrupted=False) == (
        "burnline demo done after 150s: checkout-availability page alert fired 5.5s after the first "
        "failed checkout (detection time), resolved 33.0s after recovery (resolution time)"
    )


def test_a_port_in_use_stops_the_demo_with_its_problem(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        for variable in ENDPOINT_VARIABLES:
            monkeypatch.setenv(variable, f"127.0.0.1:{free_port()}")
        port = taken.getsockname()[1]
        monkeypatch.setenv("BURNLINE_OTLP_HTTP_ENDPOINT", f"127.0.0.1:{port}")
        assert cli.main(["--duration", "5", "--no-live"]) == 1
    out = capsys.readouterr().out
    assert "burnline demo: cannot start burnline:" in out and f"127.0.0.1:{port}" in out
