"""Real services the tests start on 127.0.0.1 free ports: Prometheus and node_exporter (Debian packages).

Each runs in a temporary directory, is waited for (bounded) until it answers, and is stopped when
the block ends; its log is kept for failure messages.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.support import free_port

PROMETHEUS_BIN = shutil.which("prometheus") or "/usr/bin/prometheus"
needs_prometheus = pytest.mark.skipif(
    not os.access(PROMETHEUS_BIN, os.X_OK), reason="Prometheus is not installed (apt-get install prometheus)"
)


def _tail(log: Path, lines: int = 30) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


@asynccontextmanager
async def local_process(
    args: list[str], ready_url: str, log_file: Path, timeout: float = 30.0
) -> AsyncIterator[None]:
    """Runs ``args`` until the block ends, once ``ready_url`` answers 200 (within ``timeout``)."""
    with log_file.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(*args, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                if proc.returncode is not None:
                    raise AssertionError(f"{args[0]} exited with {proc.returncode}:\n{_tail(log_file)}")
                with suppress(aiohttp.ClientError):
                    async with session.get(ready_url) as response:
                        if response.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise AssertionError(f"{args[0]} not ready within {timeout}s:\n{_tail(log_file)}")
                await asyncio.sleep(0.1)
        yield
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@dataclass
class RealPrometheus:
    url: str
    port: int
    log: Path

    async def get(self, path: str, **params: str) -> Any:
        async with aiohttp.ClientSession() as session:
            async with session.get(self.url + path, params=params) as response:
                body = await response.json()
                assert response.status == 200, (response.status, body)
                return body["data"]

    async def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = await self.get("/api/v1/query", **params)
        result: list[dict[str, Any]] = data["result"]
        return result

    async def wait_for(
        self, expr: str, predicate: Callable[[list[dict[str, Any]]], bool] = bool, timeout: float = 45.0
    ) -> list[dict[str, Any]]:
        """Polls a query until its result satisfies ``predicate`` (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            result = await self.query(expr)
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr!r} gave {result} after {timeout}s\n{self.log_tail()}")
            await asyncio.sleep(0.25)

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log, lines)


@asynccontextmanager
async def real_prometheus(
    directory: Path, config: Callable[[int], dict[str, Any]], *flags: str
) -> AsyncIterator[RealPrometheus]:
    """Runs Prometheus with ``config(its own port)`` until the block ends; waits for /-/ready."""
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config(port)))
    log = directory / "prometheus.log"
    args = [
        PROMETHEUS_BIN,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-remote-write-receiver",
        *flags,
    ]
    async with local_process(args, f"http://127.0.0.1:{port}/-/ready", log):
        yield RealPrometheus(f"http://127.0.0.1:{port}", port, log)
