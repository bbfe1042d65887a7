"""Running burnline as a real process in tests: start it, wait until ready, signal it, read its log."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp

from tests.support import free_port


class BurnlineProcess:
    """``python -m collector run -c CONFIG`` in a subprocess, its stderr kept in a file."""

    def __init__(self, config: Path, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.workdir = workdir
        self.admin_port = free_port()
        self.env = {**os.environ, "BURNLINE_ADMIN_ENDPOINT": f"127.0.0.1:{self.admin_port}", **(env or {})}
        self.log_path = workdir / f"burnline-{self.admin_port}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 90.0) -> None:
        """Starts the process and waits for /readyz; a process that does not get ready is killed."""
        try:
            await self._start(timeout)
        except BaseException:
            await self.stop()
            raise

    async def _start(self, timeout: float) -> None:
        log = self.log_path.open("wb")
        args = [sys.executable, "-m", "collector", "run"]
        if self.config.name != "-":
            args += ["-c", str(self.config)]
        self.proc = await asyncio.create_subprocess_exec(
            *args, cwd=self.workdir, env=self.env, stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise AssertionError(f"burnline exited {self.proc.returncode}:\n{self.log()}")
                try:
                    async with http.get(f"http://127.0.0.1:{self.admin_port}/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"burnline not ready within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def stop(self) -> None:
        """Ends the process whatever its state (for fixtures' cleanup)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
