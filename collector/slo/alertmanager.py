"""Alertmanager API v2 client: POST ``/api/v2/alerts`` to every configured Alertmanager.

Every Alertmanager gets every alert (several form an HA pair; they deduplicate among themselves),
as Prometheus' notifier does. ``send`` never blocks: it puts the alerts in each Alertmanager's
pending map and returns. One task per Alertmanager posts what is pending, up to 256 alerts a
request, and retries a failed request with exponential backoff (0.5 s doubling to 30 s, with
jitter). Pending alerts are keyed by their label set, so a newer version of an alert replaces an
older one still waiting: an Alertmanager down for long costs memory bounded by the number of
distinct alerts, not by time, and gets the latest state once it is back.

Sends are counted in ``burnline_slo_alertmanager_sends_total{alertmanager,outcome}`` (outcome
``success``, ``retry`` or ``error``) and alerts in ``burnline_slo_alerts_sent_total{alertmanager}``.
4xx answers other than 429 are not retried: Alertmanager refused the alerts as invalid, and the
same request would be refused again (logged with its answer).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import ssl
from typing import Any

import aiohttp
import orjson

from collector.config.model import AlertmanagerConfig
from collector.core.tasks import cancel_and_wait
from collector.core.telemetry import Telemetry

log = logging.getLogger("burnline.slo.alertmanager")

MAX_BATCH = 256
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
MAX_PENDING = 100_000


def _key(alert: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(alert["labels"].items()))


class _Target:
    def __init__(self, config: AlertmanagerConfig) -> None:
        self.config = config
        self.url = config.url.rstrip("/") + "/api/v2/alerts"
        self.name = config.url.rstrip("/")
        self.pending: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()  # set while nothing is pending
        self.idle.set()
        self.headers = {"Content-Type": "application/json", "User-Agent": "burnline"}
        if config.bearer_token:
            self.headers["Authorization"] = f"Bearer {config.bearer_token.get_secret_value()}"
        self.ssl: ssl.SSLContext | bool = config.tls.context() if config.tls is not None else True
        if config.basic_auth is not None:
            credentials = (
                f"{config.basic_auth.username}:{config.basic_auth.password.get_secret_value()}".encode()
            )
            self.headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")


class AlertmanagerClient:
    def __init__(self, configs: list[AlertmanagerConfig], telemetry: Telemetry) -> None:
        self.targets = [_Target(c) for c in configs]
        self._sends = telemetry.slo_alertmanager_sends
        self._sent = telemetry.slo_alerts_sent
        self._dropped = telemetry.slo_alerts_dropped
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    def send(self, alerts: list[dict[str, Any]]) -> None:
        """Queues the alerts for every Alertmanager; returns at once."""
        for target in self.targets:
            for alert in alerts:
                key = _key(alert)
                if key not in target.pending and len(target.pending) >= MAX_PENDING:
                    self._dropped.labels(target.name).inc()
                    continue
                target.pending[key] = alert
            if target.pending:
                target.idle.clear()
                target.wake.set()

    async def start(self) -> None:
        if not self.targets:
            return
        self._session = aiohttp.ClientSession()
        for target in self.targets:
            self._tasks.append(asyncio.create_task(self._run(target), name=f"alertmanager {target.name}"))

    async def stop(self, grace: float = 5.0) -> None:
        """Gives pending alerts ``grace`` seconds to go out, then stops."""
        if self._tasks:
            try:
                await asyncio.wait_for(asyncio.gather(*(t.idle.wait() for t in self.targets)), grace)
            except TimeoutError:
                left = sum(len(t.pending) for t in self.targets)
                log.warning("stopping with %d SLO alert(s) not delivered to Alertmanager", left)
        await cancel_and_wait(self._tasks)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self, target: _Target) -> None:
        backoff = BACKOFF_INITIAL
        while True:
            await target.wake.wait()
            target.wake.clear()
            while target.pending:
                keys = list(target.pending)[:MAX_BATCH]
                batch = [target.pending[k] for k in keys]
                outcome = await self._post(target, batch)
                self._sends.labels(target.name, outcome).inc()
                if outcome == "retry":
                    await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                backoff = BACKOFF_INITIAL
                for key, alert in zip(keys, batch, strict=True):
                    # A newer version that arrived meanwhile stays pending.
                    if target.pending.get(key) is alert:
                        del target.pending[key]
                if outcome == "success":
                    self._sent.labels(target.name).inc(len(batch))
            target.idle.set()

    async def _post(self, target: _Target, batch: list[dict[str, Any]]) -> str:
        assert self._session is not None
        config = target.config
        try:
            async with self._session.post(
                target.url,
                data=orjson.dumps(batch),
                headers=target.headers,
                ssl=target.ssl,
                timeout=aiohttp.ClientTimeout(total=config.timeout),
            ) as response:
                if 200 <= response.status < 300:
                    return "success"
                text = (await response.text(errors="replace"))[:300]
                if response.status == 429 or response.status >= 500:
                    log.warning(
                        "Alertmanager %s answered %d: %s (retrying)", target.name, response.status, text
                    )
                    return "retry"
                log.error(
                    "Alertmanager %s refused %d alert(s) with %d: %s",
                    target.name,
                    len(batch),
                    response.status,
                    text,
                )
                return "error"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("cannot reach Alertmanager %s: %s (retrying)", target.name, exc or type(exc).__name__)
            return "retry"
