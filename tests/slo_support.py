"""A real Alertmanager (Debian's ``prometheus-alertmanager``) for the SLO tests, on a free loopback
port with its own storage and no clustering; and reading its alerts back through API v2."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.real_services import _tail, local_process
from tests.support import DEADLINE, free_port

ALERTMANAGER_BIN = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager") or ""
needs_alertmanager = pytest.mark.skipif(
    not ALERTMANAGER_BIN or not os.access(ALERTMANAGER_BIN, os.X_OK),
    reason="Alertmanager is not installed (apt-get install prometheus-alertmanager)",
)

# Every alert goes to a receiver that notifies nobody: the tests read alerts back through the API.
CONFIG = 'route: {receiver: "null", group_wait: 1s}\nreceivers: [{name: "null"}]\n'


@dataclass
class RealAlertmanager:
    url: str
    port: int
    log: Path

    async def alerts(self, **labels: str) -> list[dict[str, Any]]:
        """Active alerts (resolved ones are not listed by API v2), optionally filtered by labels."""
        params = [("filter", f'{k}="{v}"') for k, v in labels.items()]
        async with aiohttp.ClientSession() as session:
            async with session.get(self.url + "/api/v2/alerts", params=params) as response:
                assert response.status == 200, await response.text()
                result: list[dict[str, Any]] = await response.json()
                return result

    async def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = DEADLINE, **labels: str
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            alerts = await self.alerts(**labels)
            if predicate(alerts):
                return alerts
            if time.monotonic() > deadline:
                raise AssertionError(f"Alertmanager alerts {alerts} after {timeout}s\n{_tail(self.log)}")
            await asyncio.sleep(0.2)


@asynccontextmanager
async def real_alertmanager(directory: Path, port: int | None = None) -> AsyncIterator[RealAlertmanager]:
    port = port or free_port()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "alertmanager.yml"
    config.write_text(CONFIG)
    log = directory / "alertmanager.log"
    args = [
        ALERTMANAGER_BIN,
        f"--config.file={config}",
        f"--storage.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    async with local_process(args, f"http://127.0.0.1:{port}/-/ready", log, timeout=DEADLINE):
        yield RealAlertmanager(f"http://127.0.0.1:{port}", port, log)
