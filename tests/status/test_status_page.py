"""The status pages on the admin port, with an SLO burning: a real Service fed through its Forward and
OTLP/HTTP receivers (the Python Fluent client, OTLP JSON over HTTP) into the local store.

The scenario (``burning_service``) is shared with test_status_api.py and test_status_browser.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fluent import sender

from collector.core.service import Service
from collector.slo.engine import SloEngine
from collector.slo.spec import SLOSpec
from collector.status import history
from collector.status.pipeline_html import loop_lag_line
from tests.support import free_port, running_service, wait_until

# Config values that hold credentials: no page or API answer may show them.
SECRETS = ("am-secret-password-7731", "otlp-secret-token-4412")
SCRIPT_BODY = "<script>alert('pwned')</script> payment declined"

SLOS: list[dict[str, Any]] = [
    {
        "name": "checkout-log-errors",
        "service": "checkout",
        "objective": 99,
        "description": "Checkout logs without errors",
        "sli": {"logs": {"match": {"service.name": "checkout"}, "bad": {"severity": ">=error"}}},
    },
    {
        "name": "checkout-availability",
        "service": "checkout",
        "objective": 99.9,
        "sli": {
            "traces": {
                "match": {"service.name": "checkout", "span.kind": "server"},
                "bad": {"status": "error"},
            }
        },
    },
    {
        "name": "search-availability",
        "service": "search",
        "objective": 99.5,
        "sli": {"traces": {"match": {"service.name": "search"}, "bad": {"status": "error"}}},
    },
]


@dataclass
class Scene:
    service: Service
    base: str  # the admin server's URL
    trace_id: str  # a trace with three spans (one failed) and two log records
    error_span_id: str


def service_config(ports: dict[str, int], db: Path, local: bool = True) -> dict[str, Any]:
    exporters: dict[str, Any] = {
        # A backend that is down: its queue fills and retries, and its header holds a credential.
        "otlp/backend": {
            "endpoint": f"http://127.0.0.1:{ports['dead']}",
            "protocol": "http/protobuf",
            "headers": {"authorization": f"Bearer {SECRETS[1]}"},
            "retry": {"initial_interval": "1s", "max_interval": "5s"},
        },
    }
    if local:
        exporters["local"] = {"path": str(db), "batch": {"flush_interval": "10ms"}}
    names = ["local"] if local else ["otlp/backend"]
    return {
        "receivers": {
            "forward": {"endpoint": f"127.0.0.1:{ports['forward']}"},
            "otlp": {"grpc": None, "http": {"endpoint": f"127.0.0.1:{ports['otlp']}"}},
        },
        "exporters": exporters,
        "service": {
            "pipelines": {
                "logs": {"receivers": ["forward", "otlp"], "exporters": names},
                "traces": {"receivers": ["otlp"], "exporters": [*names, "otlp/backend"] if local else names},
            },
            "admin": {"endpoint": f"127.0.0.1:{ports['admin']}"},
        },
        "slos": SLOS,
        "alerting": {
            "alertmanagers": [
                {
                    "url": f"http://127.0.0.1:{ports['dead']}",
                    "basic_auth": {"username": "burnline", "password": SECRETS[0]},
                }
            ],
            "evaluation_interval": "0.2s",
            "resend_delay": "1s",
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
            message = SCRIPT_BODY if i == 0 else f"request {i} done"
            assert log.emit("checkout", {"level": level, "message": message, "kubernetes": kubernetes}), (
                log.last_error
            )
    finally:
        log.close()


def _attr(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


async def post_otlp(port: int, path: str, body: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}{path}", json=body) as response:
            assert response.status == 200, await response.text()


async def send_trace(port: int) -> tuple[str, str]:
    """One checkout request: a server span, a child that failed, a child in cart; and its logs."""
    trace_id = os.urandom(16).hex()
    root, failed, cart = (os.urandom(8).hex() for _ in range(3))
    now = time.time_ns()
    start = now - 120_000_000

    def span(
        span_id: str, parent: str, name: str, offset_ms: int, length_ms: int, *, error: bool
    ) -> dict[str, Any]:
        return {
            "traceId": trace_id,
            "spanId": span_id,
            **({"parentSpanId": parent} if parent else {}),
            "name": name,
            "kind": 2 if not parent else 3,
            "startTimeUnixNano": str(start + offset_ms * 1_000_000),
            "endTimeUnixNano": str(start + (offset_ms + length_ms) * 1_000_000),
            "status": {"code": 2, "message": "card <declined>"} if error else {"code": 0},
        }

    def resource(service: str) -> dict[str, Any]:
        return {"attributes": [_attr("service.name", service), _attr("k8s.namespace.name", "shop")]}

    await post_otlp(
        port,
        "/v1/traces",
        {
            "resourceSpans": [
                {
                    "resource": resource("checkout"),
                    "scopeSpans": [
                        {
                            "scope": {"name": "test"},
                            "spans": [
                                span(root, "", "POST /checkout", 0, 110, error=False),
                                span(failed, root, "charge card", 20, 60, error=True),
                            ],
                        }
                    ],
                },
                {
                    "resource": resource("cart"),
                    "scopeSpans": [
                        {
                            "scope": {"name": "test"},
                            "spans": [span(cart, root, "load cart", 5, 10, error=False)],
                        }
                    ],
                },
            ]
        },
    )
    records = [
        {
            "timeUnixNano": str(start + ms * 1_000_000),
            "severityNumber": number,
            "severityText": text,
            "body": {"stringValue": body},
            "traceId": trace_id,
            "spanId": span_id,
        }
        for ms, number, text, body, span_id in (
            (21, 9, "INFO", "charging card for order A-17", failed),
            (79, 17, "ERROR", "card declined for order A-17", failed),
        )
    ]
    await post_otlp(
        port,
        "/v1/logs",
        {"resourceLogs": [{"resource": resource("checkout"), "scopeLogs": [{"logRecords": records}]}]},
    )
    return trace_id, failed


async def get(url: str, **params: str) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, params=params) as response:
            return response.status, await response.text(), dict(response.headers)


@asynccontextmanager
async def burning_service(tmp_path: Path, local: bool = True) -> AsyncIterator[Scene]:
    """A Service whose checkout-log-errors SLO is paging, with logs and a trace in its local store."""
    ports = {name: free_port() for name in ("forward", "otlp", "admin", "dead")}
    config = service_config(ports, tmp_path / "store.db", local)
    # A short grace: the dead backend's queue would hold the stop for the whole default grace.
    async with running_service(config, str(tmp_path / "data"), grace=0.5) as svc:
        svc.admin.service = svc
        await asyncio.to_thread(emit_logs, ports["forward"], 60, 40)
        trace_id, failed = await send_trace(ports["otlp"])
        engine = svc.slo_engine
        assert isinstance(engine, SloEngine)
        await wait_until(lambda: engine.slos["checkout-log-errors"].alerts["page"].firing)
        if local:
            exporter = svc.exporters["local"]
            await wait_until(lambda: _stored(exporter.path, trace_id))  # type: ignore[attr-defined]
        yield Scene(svc, svc.admin.url, trace_id, failed)


def _stored(path: Path, trace_id: str) -> bool:
    """Whether the store has all 100 Forward records and the trace's logs and spans."""
    import sqlite3

    if not path.exists():
        return False
    conn = sqlite3.connect(path)
    try:
        logs = conn.execute("SELECT count(*) FROM logs").fetchone()[0]
        spans = conn.execute("SELECT count(*) FROM spans WHERE trace_id = ?", (trace_id,)).fetchone()[0]
    except sqlite3.Error:
        return False
    finally:
        conn.close()
    return bool(logs >= 102 and spans == 3)


PAGES = ("/status", "/status/slos/checkout-log-errors", "/status/logs", "/status/traces")


def assert_self_contained(html: str) -> None:
    """Nothing loaded from anywhere: no script, no external src, stylesheet or link."""
    lowered = html.lower()
    assert "<script" not in lowered
    assert not re.search(r"""\ssrc\s*=\s*["']?(https?:)?//""", lowered)
    assert not re.search(r"""<link[^>]*href\s*=\s*["']?(https?:)?//""", lowered)
    assert "@import" not in lowered and "url(" not in lowered


async def test_status_page_lists_the_burning_slo_first_with_its_firing_alert(tmp_path: Path) -> None:
    async with burning_service(tmp_path) as scene:
        status, html, headers = await get(scene.base + "/status")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        order = re.findall(r'<tr data-slo="([^"]+)"', html)
        assert set(order) == {s["name"] for s in SLOS}
        engine = scene.service.slo_engine
        assert engine is not None
        budgets = [engine.slos[name].budget_remaining() for name in order]
        assert budgets == sorted(budgets) and order[0] == "checkout-log-errors"
        assert re.search(
            r'<li class="state-firing" data-slo="checkout-log-errors" data-severity="page">', html
        )
        row = re.search(r'<tr data-slo="checkout-log-errors">(.*?)</tr>', html, re.S)
        assert row is not None
        assert '<td class="state-firing" data-severity="page">firing</td>' in row.group(1)
        assert 'class="num over"' in row.group(1)  # a burn rate above its factor is marked
        remaining = engine.slos["checkout-log-errors"].budget_remaining()
        assert f"{remaining * 100:.1f}%" in row.group(1)
        # Pipeline health: every receiver and exporter, the failing backend's queue holding the spans.
        for component in ("forward", "otlp", "local", "otlp/backend"):
            assert f"<td>{component}</td>" in html
        assert "Memory: resident" in html
        assert re.search(
            r'<p id="event-loop">Event loop: timers ran late by [^<]+ \(median\), [^<]+ \(p99\)', html
        )
        assert_self_contained(html)

        status, text, _ = await get(scene.base + "/")
        assert status == 200 and "/status" in text and "/api/v1/openapi.json" in text
        async with aiohttp.ClientSession() as session:
            async with session.get(
                scene.base + "/", headers={"Accept": "text/html"}, allow_redirects=False
            ) as response:
                assert response.status == 302 and response.headers["Location"] == "/status"


async def test_slo_page_draws_burn_rates_against_thresholds_and_the_budget_burn_down(tmp_path: Path) -> None:
    async with burning_service(tmp_path) as scene:
        status, html, _ = await get(scene.base + "/status/slos/checkout-log-errors")
        assert status == 200
        assert html.count('<svg class="chart"') == 1 + 7  # budget + 5m, 30m, 1h, 2h, 6h, 1d, 3d
        assert "burn rate over 5m" in html and "page 14.4x" in html and "ticket 3x" in html
        assert html.count("<polyline") >= 2
        # The budget chart's last point is the budget the engine reports.
        engine = scene.service.slo_engine
        assert isinstance(engine, SloEngine)
        state = engine.slos["checkout-log-errors"]
        budget = history.budget_series(state, time.time())
        assert budget is not None and budget.points[0][1] == 1.0
        assert budget.points[-1][1] == pytest.approx(state.budget_remaining())
        assert re.search(r"<td[^>]*>holds</td>", html)
        assert_self_contained(html)
        status, html, _ = await get(scene.base + "/status/slos/no-such-slo")
        assert status == 404 and "No SLO named no-such-slo" in html


async def test_generator_url_opens_the_slo_page(tmp_path: Path) -> None:
    async with burning_service(tmp_path) as scene:
        engine = scene.service.slo_engine
        assert isinstance(engine, SloEngine)
        state = engine.slos["checkout-log-errors"]
        payload = engine.alert_payload(state, state.alerts["page"], time.time())
        assert payload["generatorURL"] == f"{scene.base}/status/slos/checkout-log-errors"
        status, html, _ = await get(payload["generatorURL"])
        assert status == 200 and "SLO checkout-log-errors" in html


async def test_logs_page_searches_and_shows_bodies_as_text(tmp_path: Path) -> None:
    async with burning_service(tmp_path) as scene:
        status, html, _ = await get(scene.base + "/status/logs", level="error", q="declined", limit="1000")
        assert status == 200
        rows = re.findall(r'<tr class="log">', html)
        assert len(rows) == 2  # the Forward record with the script body and the trace's ERROR record
        assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in html
        assert "<script>alert" not in html
        assert f'href="/status/traces/{scene.trace_id}"' in html
        _, html, _ = await get(
            scene.base + "/status/logs", service="checkout", namespace="shop", limit="1000"
        )
        assert len(re.findall(r'<tr class="log">', html)) == 102
        _, html, _ = await get(scene.base + "/status/logs", service="search")
        assert "No log record matches." in html
        status, html, _ = await get(scene.base + "/status/logs", since="yesterday-ish")
        assert status == 400 and "query parameter &#x27;since&#x27;" in html
        status, html, _ = await get(scene.base + "/status/logs", limit="0")
        assert status == 400 and "&#x27;limit&#x27;" in html
        assert_self_contained(html)


async def test_trace_waterfall_shows_spans_and_the_trace_logs(tmp_path: Path) -> None:
    async with burning_service(tmp_path) as scene:
        status, html, _ = await get(scene.base + "/status/traces")
        assert status == 200 and f'href="/status/traces/{scene.trace_id}"' in html
        status, html, _ = await get(scene.base + "/status/traces", errors="true", min_duration="100ms")
        assert status == 200 and scene.trace_id in html
        _, html, _ = await get(scene.base + "/status/traces", min_duration="1s")
        assert "No trace matches." in html

        status, html, _ = await get(f"{scene.base}/status/traces/{scene.trace_id}")
        assert status == 200
        assert '<svg class="waterfall"' in html
        assert html.count('class="bar"') == 2 and html.count('class="bar error"') == 1
        names = re.findall(r'<text class="span-name"[^>]*>([^<]*)</text>', html)
        assert names == ["checkout: POST /checkout", "cart: load cart", "checkout: charge card"]
        assert f'id="span-{scene.error_span_id}"' in html
        assert "card &lt;declined&gt;" in html  # the status message, escaped
        assert "card declined for order A-17" in html and "charging card for order A-17" in html
        assert_self_contained(html)

        status, html, _ = await get(f"{scene.base}/status/traces/{'ab' * 16}")
        assert status == 404
        status, html, _ = await get(f"{scene.base}/status/traces/not-hex")
        assert status == 400


async def test_no_page_or_answer_shows_a_secret(tmp_path: Path) -> None:
    async with burning_service(tmp_path) as scene:
        paths = [
            *PAGES,
            f"/status/traces/{scene.trace_id}",
            "/api/v1/slos",
            "/api/v1/pipeline",
            "/api/v1/logs",
            "/api/v1/traces",
            f"/api/v1/traces/{scene.trace_id}",
            "/api/v1/openapi.json",
            "/",
        ]
        for path in paths:
            status, text, _ = await get(scene.base + path)
            assert status == 200, path
            for secret in SECRETS:
                assert secret not in text, (path, secret)


async def test_without_a_local_exporter_the_pages_say_so(tmp_path: Path) -> None:
    async with burning_service(tmp_path, local=False) as scene:
        for path in ("/status/logs", "/status/traces", "/status/traces/" + scene.trace_id):
            status, html, _ = await get(scene.base + path)
            assert status == 200 and "has no local exporter" in html, path
        status, text, _ = await get(scene.base + "/api/v1/logs")
        assert status == 404 and "no local exporter" in text
        status, html, _ = await get(scene.base + "/status")
        assert status == 200 and "<td>otlp/backend</td>" in html


def test_burn_rate_series_ends_at_the_engines_burn_rate() -> None:
    now = 1_800_000_000.0
    spec = SLOSpec.model_validate(SLOS[0])
    engine = SloEngine([spec], clock=lambda: now)
    state = engine.slos[spec.name]
    # 10 minutes of steady traffic, 2 % errors, then 5 minutes at 50 %.
    for second in range(0, 900, 10):
        bad = 5.0 if second >= 600 else 0.2
        state.windows.add(now - 900 + second, 10.0, bad, now)
    engine.advance()
    for window in ("5m", "30m", "1h", "6h", "1d"):
        series = history.burn_rate_series(state, window, now)
        assert series is not None and len(series.points) >= history.MIN_POINTS
        assert series.points[-1][1] == pytest.approx(state.burn_rate(window)), window
        assert all(t <= now for t, _ in series.points)
    five = history.burn_rate_series(state, "5m", now)
    assert five is not None
    before_spike = [v for t, v in five.points if now - 600 <= t <= now - 320]
    assert before_spike and max(before_spike) == pytest.approx(0.02 / 0.01)
    assert history.burn_rate_series(state, "30d", now) is None  # the period: the burn-down shows it
    fresh = SloEngine([spec], clock=lambda: now).slos[spec.name]
    assert history.burn_rate_series(fresh, "5m", now) is None and history.budget_series(fresh, now) is None


def test_the_event_loop_line_names_the_busiest_of_several_processes() -> None:
    one = {"lag_p50_seconds": 0.0005, "lag_p99_seconds": 0.002, "busiest_worker": None}
    line = loop_lag_line({**one, "processes": [{"worker": None}]})
    assert line == '<p id="event-loop">Event loop: timers ran late by under 1 ms (median), 2 ms (p99)</p>'
    busy = {"lag_p50_seconds": 0.03, "lag_p99_seconds": 0.4, "busiest_worker": "1"}
    line = loop_lag_line({**busy, "processes": [{"worker": None}, {"worker": "0"}, {"worker": "1"}]})
    assert "(p99) in worker 1, the busiest of 3 processes;" in line
    assert "needs more CPU than it gets" in line
    line = loop_lag_line({**one, "busiest_worker": None, "processes": [{"worker": None}, {"worker": "0"}]})
    assert "(p99) in the supervisor, the busiest of 2 processes</p>" in line
    assert loop_lag_line({"lag_p50_seconds": None, "lag_p99_seconds": None}) == ""
