"""The Alertmanager API v2 client against a real Alertmanager: delivery, resolve, retries while it
is down, refusals, and auth headers."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from collector.config.model import AlertmanagerConfig
from collector.core.telemetry import Telemetry
from collector.slo.alertmanager import AlertmanagerClient
from tests.slo_support import needs_alertmanager, real_alertmanager
from tests.support import DEADLINE, free_port, wait_until


def iso(delta: float = 0.0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=delta)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert(ends_in: float, name: str = "checkout-logs") -> dict[str, Any]:
    return {
        "labels": {"alertname": "CheckoutLogs", "slo": name, "service": "checkout", "severity": "page"},
        "annotations": {"summary": "burning", "runbook_url": "https://runbooks.example/checkout"},
        "startsAt": iso(-60),
        "endsAt": iso(ends_in),
        "generatorURL": f"http://127.0.0.1:8888/api/v1/slos/{name}",
    }


def sends(telemetry: Telemetry, url: str, outcome: str) -> float:
    value = telemetry.registry.get_sample_value(
        "burnline_slo_alertmanager_sends_total", {"alertmanager": url, "outcome": outcome}
    )
    return value or 0.0


@needs_alertmanager
async def test_firing_then_resolved_in_two_alertmanagers(tmp_path: Path) -> None:
    telemetry = Telemetry()
    async with real_alertmanager(tmp_path / "am1") as am1, real_alertmanager(tmp_path / "am2") as am2:
        client = AlertmanagerClient(
            [AlertmanagerConfig(url=am1.url), AlertmanagerConfig(url=am2.url + "/")], telemetry
        )
        await client.start()
        try:
            client.send([alert(ends_in=240)])
            for am in (am1, am2):
                got = await am.wait_for(lambda alerts: len(alerts) == 1, slo="checkout-logs")
                assert got[0]["labels"]["severity"] == "page"
                assert got[0]["annotations"]["runbook_url"] == "https://runbooks.example/checkout"
                assert got[0]["generatorURL"] == "http://127.0.0.1:8888/api/v1/slos/checkout-logs"
                assert got[0]["status"]["state"] == "active"
            client.send([alert(ends_in=0)])  # resolved: endsAt = now
            for am in (am1, am2):
                await am.wait_for(lambda alerts: alerts == [], slo="checkout-logs")
        finally:
            await client.stop()
    assert sends(telemetry, am1.url, "success") >= 2 and sends(telemetry, am2.url, "success") >= 2


@needs_alertmanager
async def test_retries_while_alertmanager_is_down_without_blocking(tmp_path: Path) -> None:
    telemetry = Telemetry()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client = AlertmanagerClient([AlertmanagerConfig(url=url, timeout=2)], telemetry)
    await client.start()
    try:
        started = time.monotonic()
        client.send([alert(ends_in=600)])
        assert time.monotonic() - started < 0.5  # send() only queues
        await wait_until(lambda: sends(telemetry, url, "retry") >= 2)
        # Newer versions of the same alert replace the waiting one: one alert pending, not many.
        client.send([alert(ends_in=600)])
        client.send([alert(ends_in=600, name="other")])
        assert len(client.targets[0].pending) == 2
        async with real_alertmanager(tmp_path / "am", port=port) as am:
            got = await am.wait_for(lambda alerts: len(alerts) == 2)
            assert {a["labels"]["slo"] for a in got} == {"checkout-logs", "other"}
        assert sends(telemetry, url, "success") >= 1
    finally:
        await client.stop(grace=0.1)


@needs_alertmanager
async def test_an_invalid_alert_is_refused_and_not_retried(tmp_path: Path) -> None:
    telemetry = Telemetry()
    async with real_alertmanager(tmp_path / "am") as am:
        client = AlertmanagerClient([AlertmanagerConfig(url=am.url)], telemetry)
        await client.start()
        try:
            broken = alert(ends_in=60)
            broken["labels"] = {}
            client.send([broken])
            await wait_until(lambda: sends(telemetry, am.url, "error") == 1)
            await asyncio.sleep(0.5)
            assert sends(telemetry, am.url, "error") == 1 and sends(telemetry, am.url, "retry") == 0
            assert client.targets[0].pending == {}
        finally:
            await client.stop()


async def test_auth_headers() -> None:
    seen: list[tuple[str | None, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Authorization"), await request.json()))
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/api/v2/alerts", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    telemetry = Telemetry()
    client = AlertmanagerClient(
        [
            AlertmanagerConfig(url=f"http://127.0.0.1:{port}", bearer_token="s3cret"),
            AlertmanagerConfig.model_validate(
                {"url": f"http://127.0.0.1:{port}", "basic_auth": {"username": "am", "password": "pw"}}
            ),
        ],
        telemetry,
    )
    await client.start()
    try:
        client.send([alert(ends_in=60)])
        await wait_until(lambda: len(seen) == 2, timeout=DEADLINE)
    finally:
        await client.stop()
        await runner.cleanup()
    assert {auth for auth, _ in seen} == {"Bearer s3cret", "Basic YW06cHc="}
    assert all(body[0]["labels"]["slo"] == "checkout-logs" for _, body in seen)
