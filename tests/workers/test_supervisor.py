"""`service.workers: 2` as a real process tree: the workers share the Forward port, every acked event
is counted once by the supervisor's SLO engine (also across a worker killed with SIGKILL, which is
started again), /metrics shows each worker, SIGTERM drains and saves, and the counts are back when
burnline restarts with one worker. A worker that cannot start fails the start, and a config that
cannot be split between workers is refused."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.doubles.elasticsearch import ElasticsearchDouble
from tests.forward_frames import ForwardClient, event_time, forward
from tests.process import BurnlineProcess
from tests.support import DEADLINE, free_port

SLO = {
    "name": "checkout-log-errors",
    "service": "checkout",
    "objective": 99.0,
    "sli": {"logs": {"match": {"service.name": "checkout"}, "bad": {"severity": ">=error"}}},
}


def write_config(path: Path, forward_port: int, es_url: str, workers: int, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "receivers": {"forward": {"endpoint": f"127.0.0.1:{forward_port}"}},
        "exporters": {"elasticsearch": {"endpoints": [es_url], "batch": {"flush_interval": "50ms"}}},
        "service": {
            "workers": workers,
            "data_dir": str(path.parent / "data"),
            "admin": {"endpoint": "${BURNLINE_ADMIN_ENDPOINT}"},
            "shutdown_grace_period": "30s",
            "pipelines": {"logs": {"receivers": ["forward"], "exporters": ["elasticsearch"]}},
        },
        "slos": [SLO],
        "alerting": {"evaluation_interval": "1s", "persist_interval": "1s"},
        **extra,
    }
    path.write_text(yaml.safe_dump(data))
    return data


def records(n: int) -> list[list[Any]]:
    """``n`` checkout log lines, every fourth an error (``n // 4`` bad events when n % 4 == 0)."""
    now = int(time.time())
    pod = {
        "namespace_name": "shop",
        "pod_name": "checkout-7d9f-abcde",
        "container_name": "checkout",
        "labels": {"app.kubernetes.io/name": "checkout", "app": "checkout"},
    }
    return [
        [event_time(now), {"log": f"line {i}", "level": "error" if i % 4 == 0 else "info", "kubernetes": pod}]
        for i in range(n)
    ]


async def send_on_new_connections(port: int, connections: int, per: int) -> int:
    """Each chunk on a connection of its own (so the kernel spreads them); returns the records acked."""

    async def one() -> int:
        client = await ForwardClient.connect(port)
        try:
            chunk = uuid.uuid4().hex
            await client.send(forward("kube.var.log", records(per), {"chunk": chunk}))
            assert await client.receive(timeout=DEADLINE) == {"ack": chunk}
            return per
        finally:
            await client.close()

    return sum(await asyncio.gather(*(one() for _ in range(connections))))


async def admin_get(proc: BurnlineProcess, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{proc.admin_port}{path}") as resp:
            return resp.status, await resp.text()


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if not match:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


async def slo_counts(proc: BurnlineProcess) -> tuple[float, float]:
    """(total, bad) of the SLO over its period, from the supervisor's API."""
    status, body = await admin_get(proc, f"/api/v1/slos/{SLO['name']}")
    assert status == 200, body
    doc = yaml.safe_load(body)
    period = doc["windows"]["30d"]
    return period["total"], period["bad"]


async def wait_for(check: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not await check():
        assert time.monotonic() < deadline, f"{what} not reached within {DEADLINE}s"
        await asyncio.sleep(0.1)


def worker_pids(supervisor_pid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == supervisor_pid:
                pids.append(int(entry.name))
    return sorted(pids)


async def test_two_workers_count_every_acked_event_once_across_a_crash_and_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "burnline.yaml"
    async with ElasticsearchDouble() as es:
        forward_port = free_port()
        write_config(path, forward_port, es.url, workers=2)
        proc = BurnlineProcess(path, tmp_path)
        await proc.start()
        try:
            assert proc.proc is not None
            acked = await send_on_new_connections(forward_port, connections=24, per=40)
            assert acked == 960

            async def counted(total: int) -> bool:
                return await slo_counts(proc) == (float(total), float(total // 4))

            await wait_for(lambda: counted(acked), "the SLO counts of every acked record")
            _, text = await admin_get(proc, "/metrics")
            per_worker = [sample(text, "burnline_records_accepted_total", worker=str(i)) for i in (0, 1)]
            assert sum(per_worker) == acked
            assert all(n > 0 for n in per_worker), (
                f"the kernel gave one worker every connection: {per_worker}"
            )
            assert sample(text, "burnline_workers") == 2

            async def every_loop_lag_sampled() -> bool:
                # Each worker's event loop lag, and the supervisor's own (unlabelled); a monitor's
                # first sample comes 100 ms after its process started, which may be after the data.
                _, text = await admin_get(proc, "/metrics")
                own = re.search(r"^burnline_event_loop_lag_seconds_count (\S+)$", text, re.M)
                workers = [
                    sample(text, "burnline_event_loop_lag_seconds_count", worker=w) for w in ("0", "1")
                ]
                return own is not None and float(own.group(1)) > 0 and all(n > 0 for n in workers)

            await wait_for(every_loop_lag_sampled, "the event loop lag of both workers and the supervisor")
            assert text.count("# TYPE burnline_records_accepted_total counter") == 1
            assert sample(text, "burnline_slo_events_total", slo=SLO["name"]) == acked  # once, not per worker

            async def pipeline_shows_both_workers() -> bool:
                # The status page's pipeline section sums the workers (refreshed every few seconds).
                _, body = await admin_get(proc, "/api/v1/pipeline")
                doc = json.loads(body)
                rows = {r["id"]: r for r in doc["receivers"]}
                exporters = {e["id"]: e for e in doc["exporters"]}
                # The event loop is read per process: the supervisor's own, then each worker's.
                processes = [p["worker"] for p in doc["event_loop"]["processes"]]
                return (
                    "forward" in rows
                    and rows["forward"]["signals"]["logs"]["accepted"] == acked
                    and rows["forward"]["up"]
                    and exporters.get("elasticsearch", {}).get("up") is True
                    and processes == [None, "0", "1"]
                )

            await wait_for(pipeline_shows_both_workers, "the status API's pipeline of both workers")

            # A worker killed outright is started again; what it had acked stays counted once.
            victim = worker_pids(proc.proc.pid)[-1]
            os.kill(victim, signal.SIGKILL)

            async def restarted() -> bool:
                _, text = await admin_get(proc, "/metrics")
                status, _ = await admin_get(proc, "/readyz")
                return sample(text, "burnline_worker_restarts_total") == 1 and status == 200

            await wait_for(restarted, "the killed worker's restart")
            assert victim not in worker_pids(proc.proc.pid)
            acked += await send_on_new_connections(forward_port, connections=24, per=40)
            await wait_for(lambda: counted(acked), "the SLO counts after the restart")

            async def delivered() -> bool:
                return len(set(es.document_ids("logs-*"))) >= acked

            await wait_for(delivered, "the delivery of every acked record")

            await proc.signal(signal.SIGTERM)
            assert await proc.wait() == 0, proc.log()
            assert "all 2 workers stopped" in proc.log()
            assert sorted(p.name for p in (tmp_path / "data" / "queue").iterdir()) == ["worker-0", "worker-1"]
        finally:
            await proc.stop()

        # One worker now: the supervisor's saved counts are the single process's.
        write_config(path, forward_port, es.url, workers=1)
        single = BurnlineProcess(path, tmp_path)
        await single.start()
        try:
            assert await slo_counts(single) == (float(acked), float(acked // 4))
        finally:
            await single.stop()


async def failed_start(proc: BurnlineProcess) -> str:
    """Starts ``proc``, which must exit 1 instead of getting ready; returns its log."""
    try:
        try:
            await proc.start()
        except AssertionError as exc:
            assert "exited 1" in str(exc)
        else:
            raise AssertionError(f"burnline started:\n{proc.log()}")
        return proc.log()
    finally:
        await proc.stop()


async def test_a_worker_that_cannot_start_fails_the_start(tmp_path: Path) -> None:
    path = tmp_path / "burnline.yaml"
    with socket.socket() as taken:  # bound without SO_REUSEPORT: no worker may share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        write_config(path, taken.getsockname()[1], "http://127.0.0.1:9", workers=2)
        log = await failed_start(BurnlineProcess(path, tmp_path))
        assert "receivers.forward" in log
        assert "before it started; stopping" in log


async def test_an_exporter_that_cannot_be_split_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "burnline.yaml"
    data = write_config(path, free_port(), "http://127.0.0.1:9", workers=2)
    data["exporters"] = {"prometheus": {"endpoint": f"127.0.0.1:{free_port()}"}}
    data["receivers"] = {"otlp": {"http": {"endpoint": f"127.0.0.1:{free_port()}"}}}
    data["service"]["pipelines"] = {"metrics": {"receivers": ["otlp"], "exporters": ["prometheus"]}}
    path.write_text(yaml.safe_dump(data))
    log = await failed_start(BurnlineProcess(path, tmp_path))
    assert "exporters.prometheus: cannot run in several workers" in log


async def test_queues_of_workers_that_no_longer_exist_are_delivered_by_the_remaining_one(
    tmp_path: Path,
) -> None:
    """2 workers acknowledge while Elasticsearch is down, then stop with their backlog on disk; one
    worker started afterwards adopts both queues and delivers every acknowledged record once."""
    path = tmp_path / "burnline.yaml"
    forward_port = free_port()
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    data = write_config(path, forward_port, down, workers=2)
    data["service"]["shutdown_grace_period"] = "1s"
    path.write_text(yaml.safe_dump(data))
    proc = BurnlineProcess(path, tmp_path)
    await proc.start()
    try:
        acked = await send_on_new_connections(forward_port, connections=16, per=20)
        await proc.signal(signal.SIGTERM)
        assert await proc.wait() == 0, proc.log()
    finally:
        await proc.stop()
    left = [p for p in (tmp_path / "data" / "queue").glob("worker-*/elasticsearch.db")]
    assert len(left) == 2, left

    async with ElasticsearchDouble() as es:
        write_config(path, forward_port, es.url, workers=1)
        single = BurnlineProcess(path, tmp_path)
        await single.start()
        try:

            async def delivered() -> bool:
                return len(es.document_ids("logs-*")) >= acked

            await wait_for(delivered, "the delivery of both workers' queues")
            assert len(es.document_ids("logs-*")) == len(set(es.document_ids("logs-*"))) == acked
            assert not list((tmp_path / "data" / "queue").glob("worker-*/elasticsearch.db"))
            assert single.log().count("adopted") >= 2, single.log()
        finally:
            await single.stop()


def test_validate_refuses_what_several_workers_cannot_run(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    from collector.cli import main

    monkeypatch.setenv("BURNLINE_ADMIN_ENDPOINT", "127.0.0.1:8888")
    path = tmp_path / "burnline.yaml"
    data = write_config(path, free_port(), "http://127.0.0.1:9", workers=2)
    assert main(["validate", "-c", str(path)]) == 0  # elasticsearch splits fine
    data["exporters"]["prometheus"] = {"endpoint": "127.0.0.1:9464"}
    data["service"]["pipelines"]["metrics"] = {"receivers": ["forward"], "exporters": ["prometheus"]}
    data["receivers"] = {"otlp": {"http": {"endpoint": "127.0.0.1:4318"}}}
    data["service"]["pipelines"]["logs"]["receivers"] = ["otlp"]
    data["service"]["pipelines"]["metrics"]["receivers"] = ["otlp"]
    path.write_text(yaml.safe_dump(data))
    assert main(["validate", "-c", str(path)]) == 1
    assert "exporters.prometheus: cannot run in several workers" in capsys.readouterr().err
    data["service"]["workers"] = 1
    path.write_text(yaml.safe_dump(data))
    assert main(["validate", "-c", str(path)]) == 0
