"""SLOs end to end: a running Service fed through its real receivers (Forward logs from
fluent-logger, OTLP/HTTP spans, counters scraped from a live target), one SLO each; an induced error
spike pages two real Alertmanagers, recovery resolves it; the admin API, /metrics and
``burnline slo status`` show the same; a restart keeps the budget."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from fluent import sender
from prometheus_client.parser import text_string_to_metric_families

from collector.config import parse_config
from collector.core.model import LogRecord
from collector.core.service import Service
from collector.slo import cli
from tests.slo_support import needs_alertmanager, real_alertmanager
from tests.support import DEADLINE, free_port, running_service, wait_until

SLOS: list[dict[str, Any]] = [
    {
        "name": "checkout-log-errors",
        "service": "checkout",
        "objective": 99,
        "sli": {
            "logs": {
                "match": {"service.name": "checkout", "k8s.namespace.name": "shop"},
                "bad": {"severity": ">=error"},
            }
        },
        "alerting": {"annotations": {"runbook_url": "https://runbooks.example/checkout-logs"}},
    },
    {
        "name": "checkout-availability",
        "service": "checkout",
        "objective": 99,
        "labels": {"team": "shop"},
        "sli": {
            "traces": {
                "match": {"service.name": "checkout", "span.kind": "server"},
                "bad": {"status": "error"},
            }
        },
        "alerting": {"name": "CheckoutAvailability", "page": {"labels": {"severity": "page"}}},
    },
    {
        "name": "api-errors",
        "service": "api",
        "objective": 99,
        "sli": {
            "metrics": {
                "total": 'http_requests_total{job="api"}',
                "bad": 'http_requests_total{job="api",code=~"5.."}',
            }
        },
    },
]


class Target:
    """A scrape target whose counters the test moves."""

    def __init__(self) -> None:
        self.ok = 0
        self.errors = 0
        self.scrapes = 0

    async def metrics(self, _: web.Request) -> web.Response:
        self.scrapes += 1
        text = (
            "# TYPE http_requests_total counter\n"
            f'http_requests_total{{code="200"}} {self.ok}\n'
            f'http_requests_total{{code="503"}} {self.errors}\n'
        )
        return web.Response(text=text, content_type="text/plain")


@asynccontextmanager
async def scrape_target(target: Target) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/metrics", target.metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


def service_config(
    ports: dict[str, int], alertmanagers: list[str], slos: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "receivers": {
            "forward": {"endpoint": f"127.0.0.1:{ports['forward']}"},
            "otlp": {"grpc": None, "http": {"endpoint": f"127.0.0.1:{ports['otlp']}"}},
            "prometheus_scrape": {
                "scrape_interval": "0.3s",
                "jobs": [
                    {"job_name": "api", "static_configs": [{"targets": [f"127.0.0.1:{ports['target']}"]}]}
                ],
            },
        },
        "exporters": {"capture": {"batch": {"flush_interval": 0}}},
        "service": {
            "pipelines": {
                "logs": {"receivers": ["forward"], "exporters": ["capture"]},
                "traces": {"receivers": ["otlp"], "exporters": ["capture"]},
                "metrics": {"receivers": ["prometheus_scrape"], "exporters": ["capture"]},
            },
            "admin": {"endpoint": f"127.0.0.1:{ports['admin']}"},
        },
        "slos": slos,
        "alerting": {
            "alertmanagers": [{"url": url} for url in alertmanagers],
            "evaluation_interval": "0.2s",
            "resend_delay": "1s",
            "persist_interval": "0.5s",
        },
    }


def emit_logs(port: int, good: int, bad: int) -> None:
    """Forward messages from the Python Fluent client (blocking: run it in a thread)."""
    log = sender.FluentSender("kube", host="127.0.0.1", port=port, nanosecond_precision=True)
    kubernetes = {
        "namespace_name": "shop",
        "pod_name": "checkout-7d9f",
        "container_name": "checkout",
        "labels": {"app.kubernetes.io/name": "checkout"},
    }
    try:
        for i in range(good + bad):
            level = "error" if i < bad else "info"
            assert log.emit(
                "checkout", {"level": level, "message": f"request {i}", "kubernetes": kubernetes}
            ), log.last_error
    finally:
        log.close()


async def post_spans(port: int, ok: int, errors: int) -> None:
    now = time.time_ns()
    spans = [
        {
            "traceId": os.urandom(16).hex(),
            "spanId": os.urandom(8).hex(),
            "name": "POST /checkout",
            "kind": 2,
            "startTimeUnixNano": str(now - 20_000_000),
            "endTimeUnixNano": str(now),
            "status": {"code": 2 if i < errors else 0},
        }
        for i in range(ok + errors)
    ]
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
                "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}],
            }
        ]
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}/v1/traces", json=body) as response:
            assert response.status == 200, await response.text()


async def admin_get(port: int, path: str) -> Any:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{path}") as response:
            assert response.status == 200, await response.text()
            if response.content_type == "application/json":
                return await response.json()
            return await response.text()


def paging(names: set[str]) -> Any:
    return lambda alerts: {a["labels"]["slo"] for a in alerts} == names


def fast_burn_paging(names: set[str], slo: str) -> Any:
    """Every SLO in ``names`` paging, ``slo``'s page explained by the fast-burn pair (1h and 5m).

    An evaluation can see a spike's errors partly arrived: with 3 to 8 of its 20 errors beside the 50
    good records before them, the burn rate is between 6 and 14.4, so only the 6h/30m pair holds and
    the page's first send says so. The engine sends again every resend_delay with the conditions
    that hold then, and Alertmanager takes the newer annotations."""

    def holds(alerts: list[dict[str, Any]]) -> bool:
        by_slo = {a["labels"]["slo"]: a for a in alerts}
        return set(by_slo) == names and "1h burn rate" in by_slo[slo]["annotations"]["burn_rates"]

    return holds


@needs_alertmanager
async def test_error_spike_pages_both_alertmanagers_then_resolves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = Target()
    target.ok = 100
    async with (
        real_alertmanager(tmp_path / "am1") as am1,
        real_alertmanager(tmp_path / "am2") as am2,
        scrape_target(target) as target_port,
    ):
        ports = {"forward": free_port(), "otlp": free_port(), "target": target_port, "admin": free_port()}
        config = service_config(ports, [am1.url, am2.url], SLOS)
        async with running_service(config, str(tmp_path / "data")) as svc:
            assert svc.slo_engine is not None
            # Healthy traffic first: nothing fires.
            await asyncio.to_thread(emit_logs, ports["forward"], 50, 0)
            await post_spans(ports["otlp"], ok=50, errors=0)
            scrapes = target.scrapes
            await wait_until(lambda: target.scrapes >= scrapes + 2)  # the baseline scrape is behind us
            target.ok += 50
            await wait_until(
                lambda: svc.slo_engine is not None and _events(svc.slo_engine, "api-errors") >= 50
            )
            assert await am1.alerts() == []

            # The spike: 50 % errors in every signal.
            await asyncio.to_thread(emit_logs, ports["forward"], 20, 20)
            await post_spans(ports["otlp"], ok=20, errors=20)
            target.ok += 50
            target.errors += 50
            everything = {"checkout-log-errors", "checkout-availability", "api-errors"}
            for am in (am1, am2):
                explained = fast_burn_paging(everything, "checkout-log-errors")
                alerts = await am.wait_for(explained, severity="page")
                by_slo = {a["labels"]["slo"]: a for a in alerts}
                logs_alert = by_slo["checkout-log-errors"]
                assert logs_alert["labels"]["alertname"] == "CheckoutLogErrors"
                assert logs_alert["labels"]["service"] == "checkout"
                assert logs_alert["annotations"]["runbook_url"] == "https://runbooks.example/checkout-logs"
                assert "1h burn rate" in logs_alert["annotations"]["burn_rates"]
                assert logs_alert["generatorURL"] == f"{svc.admin.url}/status/slos/checkout-log-errors"
                assert by_slo["checkout-availability"]["labels"]["team"] == "shop"
                assert by_slo["checkout-availability"]["labels"]["alertname"] == "CheckoutAvailability"

            # The status API, /metrics and `burnline slo status` agree (once every record is in:
            # the page may fire before the last good records of the spike arrive).
            await wait_until(lambda: _events(svc.slo_engine, "checkout-log-errors") == 90)
            status = await admin_get(ports["admin"], "/api/v1/slos/checkout-log-errors")
            assert status["alerts"]["page"]["state"] == "firing"
            assert status["windows"]["5m"]["bad"] == 20 and status["windows"]["5m"]["total"] == 90
            metrics = sample_values(await admin_get(ports["admin"], "/metrics"))
            assert (
                metrics["burnline_slo_alert_firing", (("severity", "page"), ("slo", "checkout-log-errors"))]
                == 1
            )
            bad_events = (("outcome", "bad"), ("service", "checkout"), ("slo", "checkout-log-errors"))
            assert metrics["burnline_slo_events_total", bad_events] == 20
            assert (
                metrics["burnline_slo_burn_rate", (("slo", "checkout-log-errors"), ("window", "5m"))] > 14.4
            )
            assert (
                metrics["burnline_records_accepted_total", (("component", "forward"), ("signal", "logs"))]
                >= 90
            )
            assert (
                await asyncio.to_thread(cli.main, ["status", "--admin", f"127.0.0.1:{ports['admin']}"]) == 0
            )
            table = capsys.readouterr().out
            assert "checkout-log-errors  service=checkout  objective=99% over 30d" in table
            assert "page firing" in table and "FIRING" in table
            assert (
                await asyncio.to_thread(
                    cli.main, ["status", "--admin", f"127.0.0.1:{ports['admin']}", "--json"]
                )
                == 0
            )
            assert len(json.loads(capsys.readouterr().out)["slos"]) == 3

            # Recovery: enough good traffic that every window is below the page factors (< 6 %).
            await asyncio.to_thread(emit_logs, ports["forward"], 500, 0)
            await post_spans(ports["otlp"], ok=500, errors=0)
            target.ok += 2000
            for am in (am1, am2):
                await am.wait_for(paging(set()), severity="page")
            assert svc.slo_engine.status("checkout-log-errors")[0]["alerts"]["page"]["state"] == "resolved"
            success = svc.telemetry.registry.get_sample_value(
                "burnline_slo_alertmanager_sends_total", {"alertmanager": am1.url, "outcome": "success"}
            )
            assert success is not None and success >= 2


def sample_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _events(engine: Any, name: str) -> float:
    good, bad = engine.slos[name].lifetime()
    return float(good + bad)


async def test_restart_keeps_the_budget(tmp_path: Path) -> None:
    ports = {"forward": free_port(), "otlp": free_port(), "target": free_port(), "admin": free_port()}
    config = service_config(ports, [], SLOS[:1])
    config["receivers"].pop("otlp")
    config["receivers"].pop("prometheus_scrape")
    config["service"]["pipelines"] = {"logs": {"receivers": ["forward"], "exporters": ["capture"]}}
    data = str(tmp_path / "data")
    async with running_service(config, data) as svc:
        await asyncio.to_thread(emit_logs, ports["forward"], 95, 5)
        engine = svc.slo_engine
        assert engine is not None
        await wait_until(lambda: _events(engine, "checkout-log-errors") == 100)
        before = (await admin_get(ports["admin"], "/api/v1/slos/checkout-log-errors"))[
            "error_budget_remaining"
        ]
    assert before == pytest.approx(-4.0)  # 5 % errors against a 1 % budget
    ports["admin"] = free_port()
    config["service"]["admin"] = {"endpoint": f"127.0.0.1:{ports['admin']}"}
    async with running_service(config, data):
        after = await admin_get(ports["admin"], "/api/v1/slos/checkout-log-errors")
        assert after["error_budget_remaining"] == pytest.approx(before)
        assert after["events"]["good"] == 95 and after["events"]["bad"] == 5
        index = await admin_get(ports["admin"], "/")
        assert "/api/v1/slos" in index and "/metrics" in index
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{ports['admin']}/api/v1/slos/nope") as response:
                assert response.status == 404


async def test_alertmanager_down_never_blocks_the_pipeline(tmp_path: Path) -> None:
    ports = {"forward": free_port(), "otlp": free_port(), "target": free_port(), "admin": free_port()}
    dead = f"http://127.0.0.1:{free_port()}"
    config = service_config(ports, [dead], SLOS[:1])
    config["receivers"].pop("otlp")
    config["receivers"].pop("prometheus_scrape")
    config["service"]["pipelines"] = {"logs": {"receivers": ["forward"], "exporters": ["capture"]}}
    async with running_service(config, str(tmp_path / "data"), grace=1) as svc:
        started = time.monotonic()
        await asyncio.to_thread(emit_logs, ports["forward"], 0, 50)
        engine = svc.slo_engine
        assert engine is not None
        await wait_until(lambda: engine.slos["checkout-log-errors"].alerts["page"].firing)

        def retries() -> float:
            value = svc.telemetry.registry.get_sample_value(
                "burnline_slo_alertmanager_sends_total", {"alertmanager": dead, "outcome": "retry"}
            )
            return value or 0.0

        await wait_until(lambda: retries() >= 1)
        await asyncio.to_thread(emit_logs, ports["forward"], 100, 0)
        await wait_until(lambda: _events(engine, "checkout-log-errors") == 150, timeout=DEADLINE)
        assert time.monotonic() - started < DEADLINE
        assert len(svc.exporters["capture"].items) == 150  # type: ignore[attr-defined]


async def test_a_receiver_in_two_pipelines_is_counted_once(tmp_path: Path) -> None:
    config = {
        "receivers": {"inject": {}},
        "exporters": {
            "capture": {"batch": {"flush_interval": 0}},
            "capture/b": {"batch": {"flush_interval": 0}},
        },
        "service": {
            "pipelines": {
                "logs": {"receivers": ["inject"], "exporters": ["capture"]},
                "logs/b": {"receivers": ["inject"], "exporters": ["capture/b"]},
            }
        },
        "slos": SLOS[:1],
    }
    async with running_service(config, str(tmp_path / "data")) as svc:
        resource = {"service.name": "checkout", "k8s.namespace.name": "shop"}
        now = time.time_ns()
        records = [LogRecord(now, severity_number=17 if i < 3 else 9, resource=resource) for i in range(10)]
        await svc.receivers["inject"].push(records)  # type: ignore[attr-defined]
        engine = svc.slo_engine
        assert engine is not None
        assert engine.slos["checkout-log-errors"].lifetime() == (7, 3)


async def test_a_broken_slo_file_stops_the_start_with_its_problem(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "slos.yaml").write_text(
        "slos:\n  - name: x\n    service: y\n    objective: 101\n"
        "    sli: {logs: {bad: {severity: '>=error'}}}\n"
    )
    config = {
        "receivers": {"inject": {}},
        "exporters": {"capture": {}},
        "service": {
            "pipelines": {"logs": {"receivers": ["inject"], "exporters": ["capture"]}},
            "data_dir": str(tmp_path / "data"),
            "admin": {"endpoint": f"127.0.0.1:{free_port()}"},
        },
        "slo_files": [str(tmp_path / "slos.yaml")],
    }
    service = Service(parse_config(config, source="<test>", env={}))
    assert await service.run() == 1
    assert f"{tmp_path / 'slos.yaml'}: slos[0].objective: objective is a percentage" in caplog.text
