"""Signals to a real `burnline run`: SIGHUP reloads the config under load (issue 10, case 5), a bad file
leaves the old config running, and a second SIGINT ends the drain at once, cleanly."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.doubles.elasticsearch import ElasticsearchDouble
from tests.forward_frames import ForwardClient, event_time, forward
from tests.process import BurnlineProcess
from tests.support import DEADLINE, free_port


def config(path: Path, forward_port: int, es_url: str, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "receivers": {"forward": {"endpoint": f"127.0.0.1:{forward_port}"}},
        "exporters": {"elasticsearch": {"endpoints": [es_url], "batch": {"flush_interval": "50ms"}}},
        "service": {
            "data_dir": str(path.parent / "data"),
            "admin": {"endpoint": "${BURNLINE_ADMIN_ENDPOINT}"},
            "shutdown_grace_period": "60s",
            "pipelines": {"logs": {"receivers": ["forward"], "exporters": ["elasticsearch"]}},
        },
    }
    for key, value in extra.items():
        data[key] = value
    path.write_text(yaml.safe_dump(data))
    return data


async def metrics(proc: BurnlineProcess) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{proc.admin_port}/metrics") as resp:
            return await resp.text()


async def wait_for_log(proc: BurnlineProcess, text: str, count: int = 1) -> None:
    deadline = time.monotonic() + DEADLINE
    while proc.log().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{proc.log()}"
        await asyncio.sleep(0.05)


class SteadySender:
    """One Forward connection sending acknowledged chunks until told to stop."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.acked: list[str] = []
        self.error: BaseException | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SteadySender:
        client = await ForwardClient.connect(self.port)
        self._task = asyncio.create_task(self._send(client))
        return self

    async def _send(self, client: ForwardClient) -> None:
        try:
            for n in range(100_000):
                if self._stop.is_set():
                    return
                part = [f"m{n}-{i}" for i in range(10)]
                entries = [[event_time(int(time.time())), {"log": m}] for m in part]
                await client.send(forward("app.test", entries, {"chunk": f"c{n}"}))
                assert await client.receive(timeout=60) == {"ack": f"c{n}"}
                self.acked += part
                await asyncio.sleep(0.005)
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            await client.close()

    async def wait_for(self, n: int) -> None:
        deadline = time.monotonic() + DEADLINE
        while len(self.acked) < n:
            assert self.error is None and time.monotonic() < deadline, self.error
            await asyncio.sleep(0.02)

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, DEADLINE)


async def wait_delivered(es: ElasticsearchDouble, wanted: set[str]) -> Counter[str]:
    deadline = time.monotonic() + DEADLINE
    while True:
        seen = Counter(doc["message"] for doc in es.documents("logs-*"))
        if wanted <= set(seen) or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.1)


async def test_sighup_swaps_an_exporter_and_adds_a_receiver_under_load(tmp_path: Path) -> None:
    path = tmp_path / "burnline.yaml"
    async with ElasticsearchDouble() as es:
        forward_port, http_port = free_port(), free_port()
        data = config(path, forward_port, es.url)
        proc = BurnlineProcess(path, tmp_path)
        await proc.start()
        try:
            async with SteadySender(forward_port) as sender:  # one connection throughout
                await sender.wait_for(200)
                # The exporter changes; a receiver is added; the forward receiver stays as it is.
                data["exporters"]["elasticsearch"]["batch"] = {"flush_interval": "80ms", "max_records": 300}
                data["receivers"]["fluentbit_http"] = {"endpoint": f"127.0.0.1:{http_port}"}
                data["service"]["pipelines"]["logs"]["receivers"].append("fluentbit_http")
                path.write_text(yaml.safe_dump(data))
                await proc.signal(signal.SIGHUP)
                await wait_for_log(proc, "reloaded")
                await sender.wait_for(len(sender.acked) + 200)  # still acked on the same connection
            assert sender.error is None
            async with aiohttp.ClientSession() as http:
                body = [{"log": "via http"}]
                async with http.post(f"http://127.0.0.1:{http_port}/app.http", json=body) as resp:
                    assert resp.status == 201
            seen = await wait_delivered(es, {*sender.acked, "via http"})
            assert set(sender.acked) <= set(seen), "acknowledged records were lost in the reload"
            assert max(seen.values()) == 1
            text = await metrics(proc)
            assert "burnline_config_last_reload_successful 1.0" in text
            assert 'burnline_build_info{python="' in text
            assert "exporters.elasticsearch changed" in proc.log()
            assert "receivers.fluentbit_http added" in proc.log()
            assert proc.log().count("listening for Fluent Forward") == 1  # not restarted
            await proc.signal(signal.SIGTERM)
            assert await proc.wait() == 0, proc.log()
        finally:
            await proc.stop()


async def test_sighup_with_a_bad_file_keeps_running(tmp_path: Path) -> None:
    path = tmp_path / "burnline.yaml"
    async with ElasticsearchDouble() as es:
        forward_port = free_port()
        data = config(path, forward_port, es.url)
        proc = BurnlineProcess(path, tmp_path)
        await proc.start()
        try:
            data["exporters"]["elasticsearch"]["concurrency"] = "ten"
            path.write_text(yaml.safe_dump(data))
            await proc.signal(signal.SIGHUP)
            await wait_for_log(proc, "reload failed")
            [line] = [line for line in proc.log().splitlines() if "reload failed" in line]
            assert " ERROR " in line and str(path) in line and "exporters.elasticsearch.concurrency" in line
            assert "burnline_config_last_reload_successful 0.0" in await metrics(proc)
            async with SteadySender(forward_port) as sender:
                await sender.wait_for(50)
            seen = await wait_delivered(es, set(sender.acked))
            assert set(sender.acked) <= set(seen)
            # Fixed, the next SIGHUP applies it.
            data["exporters"]["elasticsearch"]["concurrency"] = 3
            path.write_text(yaml.safe_dump(data))
            await proc.signal(signal.SIGHUP)
            await wait_for_log(proc, "reloaded")
            assert "burnline_config_last_reload_successful 1.0" in await metrics(proc)
            await proc.signal(signal.SIGTERM)
            assert await proc.wait() == 0
            assert "Traceback" not in proc.log()
        finally:
            await proc.stop()


async def test_second_sigint_ends_the_drain_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "burnline.yaml"
    async with ElasticsearchDouble() as es:
        forward_port = free_port()
        config(path, forward_port, es.url)
        await es.stop()  # the backend is down: the drain would wait the whole 60 s grace
        proc = BurnlineProcess(path, tmp_path)
        await proc.start()
        try:
            async with SteadySender(forward_port) as sender:
                await sender.wait_for(100)
            await proc.signal(signal.SIGINT)
            await wait_for_log(proc, "stop requested")
            started = time.monotonic()
            await proc.signal(signal.SIGINT)
            assert await proc.wait(timeout=30) == 0
            assert time.monotonic() - started < 30  # well within the 60 s grace
            log = proc.log()
            assert "second stop signal" in log
            assert f"stopped; {len(sender.acked)} accepted record(s) stay queued on disk" in log
            assert "Traceback" not in log and "KeyboardInterrupt" not in log
        finally:
            await proc.stop()
        # What was left queued is delivered by the next start.
        await es.start()
        again = BurnlineProcess(path, tmp_path)
        await again.start()
        try:
            seen = await wait_delivered(es, set(sender.acked))
            assert set(sender.acked) <= set(seen)
        finally:
            await again.signal(signal.SIGTERM)
            await again.wait()
            await again.stop()
