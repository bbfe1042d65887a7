"""Nothing acknowledged is lost, nothing is delivered twice: outages, 429 storms and overload.

Forward clients here behave like Fluent Bit with Require_ack_response: a chunk whose ack does not
come (the server refused it and closed the connection) is sent again on a new connection.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.doubles.elasticsearch import ElasticsearchDouble
from tests.forward_frames import ForwardClient, event_time, forward
from tests.process import BurnlineProcess
from tests.support import free_port, metric_value, running_service, wait_until


class AckingClient:
    """Sends chunks until each is acknowledged (reconnecting after a refusal), within a time budget."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.acked: list[str] = []
        self.refused_records = 0
        self.refusals = 0

    async def send_all(self, messages: list[str], per_frame: int, budget: float) -> None:
        deadline = time.monotonic() + budget
        client: ForwardClient | None = None
        try:
            for start in range(0, len(messages), per_frame):
                part = messages[start : start + per_frame]
                chunk = f"{self.port}-{start}-{part[0]}"
                frame = forward(
                    "app.load", [[event_time(int(time.time())), {"log": m}] for m in part], {"chunk": chunk}
                )
                while time.monotonic() < deadline:
                    if client is None:
                        client = await ForwardClient.connect(self.port)
                    try:
                        await client.send(frame)
                        if await client.receive(timeout=30) == {"ack": chunk}:
                            self.acked += part
                            break
                    except (EOFError, ConnectionError):
                        self.refusals += 1
                        self.refused_records += len(part)
                        await client.close()
                        client = None
                        await asyncio.sleep(0.05)  # Fluent Bit waits before it retries a chunk
                else:
                    return
        finally:
            if client is not None:
                await client.close()


def delivered(es: ElasticsearchDouble) -> Counter[str]:
    return Counter(doc["message"] for doc in es.documents("logs-*"))


def service_config(port: int, es_url: str, **exporter: Any) -> dict[str, Any]:
    return {
        "receivers": {"forward": {"endpoint": f"127.0.0.1:{port}"}},
        "exporters": {"elasticsearch": {"endpoints": [es_url], **exporter}},
        "service": {"pipelines": {"logs": {"receivers": ["forward"], "exporters": ["elasticsearch"]}}},
    }


async def test_backend_outage_under_steady_load(tmp_path: Path) -> None:
    async with ElasticsearchDouble() as es:
        port = free_port()
        fast_retry = {"initial_interval": "50ms", "max_interval": "300ms"}
        config = service_config(port, es.url, retry=fast_retry, batch={"flush_interval": "50ms"})
        async with running_service(config, str(tmp_path)) as svc:
            client = AckingClient(port)
            total = 20000
            load = asyncio.create_task(client.send_all([f"m{i}" for i in range(total)], 10, budget=90))
            await wait_until(lambda: es.count("logs-*") > 100, timeout=20)
            await es.stop()  # the backend goes away while records keep coming
            at_outage = len(client.acked)
            # Still acknowledging during the outage: the durable queue takes what cannot be delivered.
            await wait_until(lambda: len(client.acked) >= min(total, at_outage + 1000), timeout=20)
            await asyncio.sleep(0.5)
            await es.start()
            await load
            assert len(client.acked) == total
            await wait_until(lambda: es.count("logs-*") >= total, timeout=60)
            assert delivered(es) == Counter(client.acked)  # every acknowledged record once
            retries = svc.telemetry.registry.get_sample_value(
                "burnline_export_retries_total",
                {"component": "elasticsearch", "signal": "logs", "reason": "connection"},
            )
            assert retries and retries > 0


async def test_429_storm_loses_nothing_duplicates_nothing_and_backs_off(tmp_path: Path) -> None:
    rng = random.Random(429)
    async with ElasticsearchDouble() as es:
        # 2000 items answer 429, scattered among successes; then whole requests are throttled too.
        es.fail_items([429 if rng.random() < 0.6 else 201 for _ in range(3000)])
        es.fail_requests(20, status=429, retry_after=0.05)
        port = free_port()
        retry = {"initial_interval": "20ms", "max_interval": "200ms", "multiplier": 2}
        config = service_config(
            port, es.url, retry=retry, batch={"flush_interval": "20ms", "max_records": 200}
        )
        async with running_service(config, str(tmp_path)) as svc:
            client = AckingClient(port)
            await client.send_all([f"m{i}" for i in range(2000)], 20, budget=60)
            assert len(client.acked) == 2000
            await wait_until(lambda: es.count("logs-*") >= 2000, timeout=60)
            assert delivered(es) == Counter(client.acked)
            labels = {"component": "elasticsearch", "signal": "logs"}
            # The double holds the last documents before burnline has read its answer and counted
            # them: wait for the count, then check it is exact (never more than was sent).
            exported = "burnline_records_exported_total"
            await wait_until(lambda: metric_value(svc, exported, labels) >= 2000, timeout=10)
            assert metric_value(svc, exported, labels) == 2000
            throttled = metric_value(svc, "burnline_export_retries_total", {**labels, "reason": "http_429"})
            assert throttled > 0
            # Backing off, not hammering: far fewer bulk requests than failed items + retries of them.
            assert len(es.bulk_requests) < 600


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def scrape(admin_port: int, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``, read from the admin port."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{admin_port}/metrics") as resp:
            text = await resp.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def test_overload_refuses_exactly_stays_in_memory_bounds_and_delivers_all_acked(tmp_path: Path) -> None:
    hard_limit = 400 * 1024**2
    async with ElasticsearchDouble() as es:
        es.fail_requests(10**6, status=429)  # the backend takes nothing during the load
        port = free_port()
        config = service_config(
            port,
            es.url,
            queue={"max_bytes": "2MiB", "memory_bytes": "1MiB", "block_timeout": "200ms"},
            retry={"initial_interval": "50ms", "max_interval": "200ms"},
            batch={"flush_interval": "50ms"},
        )
        config["service"].update(
            data_dir=str(tmp_path / "data"),
            admin={"endpoint": "${BURNLINE_ADMIN_ENDPOINT}"},
            memory_limiter={"hard_limit": hard_limit, "soft_limit": 300 * 1024**2},
        )
        path = tmp_path / "burnline.yaml"
        path.write_text(yaml.safe_dump(config))
        proc = BurnlineProcess(path, tmp_path)
        await proc.start()
        try:
            clients = [AckingClient(port) for _ in range(4)]
            payload = "x" * 400
            await asyncio.gather(
                *(
                    c.send_all([f"c{n}-{i}-{payload}" for i in range(20000)], 100, budget=8)
                    for n, c in enumerate(clients)
                )
            )
            acked = [m for c in clients for m in c.acked]
            refused_records = sum(c.refused_records for c in clients)
            assert refused_records > 0, "the load never exceeded what burnline could queue"
            assert acked, "nothing was accepted"
            assert proc.proc is not None
            assert peak_rss(proc.proc.pid) < hard_limit
            labels = {"component": "forward", "signal": "logs"}
            assert await scrape(proc.admin_port, "burnline_records_accepted_total", **labels) == len(acked)
            assert (
                await scrape(proc.admin_port, "burnline_records_refused_total", **labels) == refused_records
            )

            es._request_failures.clear()  # the backend recovers
            for _ in range(600):
                if es.count("logs-*") >= len(acked):
                    break
                await asyncio.sleep(0.05)
            got = delivered(es)
            assert got == Counter(acked)
            await proc.signal(signal.SIGTERM)
            assert await proc.wait() == 0
        finally:
            await proc.stop()
