"""Reloading the config in a running service (what SIGHUP does): unchanged components keep running
with their queues, changed ones are swapped under load without losing what was accepted, removed
exporters drain, a bad file leaves the old config running, the SLO engine keeps unchanged SLOs' counts."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.config import ConfigError, load_config, parse_config
from collector.core.component import Refused
from collector.core.model import LogRecord, Signal
from collector.core.reload import check_fixed_settings
from collector.core.service import Service
from tests.forward_frames import ForwardClient, event_time, forward
from tests.support import free_port, metric_value, running_service, wait_until


def records(start: int, n: int, **resource: Any) -> list[LogRecord]:
    now = time.time_ns()
    return [
        LogRecord(
            time_unix_nano=now,
            body=f"r{i}",
            severity_number=17 if i % 2 else 9,  # ERROR, INFO
            severity_text="error" if i % 2 else "info",
            resource=resource,
        )
        for i in range(start, start + n)
    ]


def base(**exporters: Any) -> dict[str, Any]:
    exporters = exporters or {"capture": {"batch": {"flush_interval": 0}}}
    return {
        "receivers": {"inject": {}},
        "exporters": exporters,
        "service": {"pipelines": {"logs": {"receivers": ["inject"], "exporters": list(exporters)}}},
    }


def reparse(svc: Service, data: dict[str, Any]) -> Any:
    """``data`` as the running service's config would read it (same data_dir and admin endpoint)."""
    data = dict(data)
    data["service"] = {
        **data["service"],
        "data_dir": svc.config.service.data_dir,
        "admin": {"endpoint": svc.config.service.admin.endpoint},
    }
    return parse_config(data, source="<test>", env={})


def bodies(*exporters: Any) -> list[str]:
    return sorted(str(r.body) for e in exporters for r in e.items)


async def test_changed_exporter_is_swapped_others_keep_running(tmp_path: Path) -> None:
    cfg = base(
        capture={"batch": {"flush_interval": 0}},
        **{"capture/gone": {"batch": {"flush_interval": "30s", "max_records": 10000}}},
    )
    async with running_service(cfg, str(tmp_path)) as svc:
        receiver, kept_consumer = svc.receivers["inject"], svc.consumers["inject"][Signal.LOGS]
        await receiver.push(records(0, 10))  # type: ignore[attr-defined]
        old_capture, gone = svc.exporters["capture"], svc.exporters["capture/gone"]
        assert gone.items == []  # type: ignore[attr-defined]  # lingering for a fuller batch

        new = base(capture={"batch": {"flush_interval": 0, "max_records": 7}}, **{"capture/new": {}})
        assert await svc.reload(reparse(svc, new))

        assert svc.receivers["inject"] is receiver  # kept, with its consumer (and so its clients)
        assert svc.consumers["inject"][Signal.LOGS] is kept_consumer
        assert svc.exporters["capture"] is not old_capture  # changed: a new instance ...
        assert svc.exporters["capture"].config.batch.max_records == 7
        assert "capture/gone" not in svc.exporters and "capture/new" in svc.exporters
        assert bodies(gone) == bodies(old_capture)  # ... the removed one drained like at stop
        await receiver.push(records(10, 5))  # type: ignore[attr-defined]
        await svc.senders["capture"].queue.join()
        await svc.senders["capture/new"].queue.join()
        assert bodies(old_capture, svc.exporters["capture"]) == sorted(f"r{i}" for i in range(15))
        assert bodies(svc.exporters["capture/new"]) == sorted(f"r{i}" for i in range(10, 15))
        assert metric_value(svc, "burnline_config_last_reload_successful") == 1
        assert (
            metric_value(svc, "burnline_component_up", {"component": "capture/gone", "kind": "exporter"}) == 0
        )


@pytest.mark.parametrize("storage", ["disk", "memory"])
async def test_swap_under_load_loses_nothing_accepted(tmp_path: Path, storage: str) -> None:
    cfg = base(capture={"queue": {"storage": storage}, "batch": {"flush_interval": "20ms"}})
    async with running_service(cfg, str(tmp_path)) as svc:
        receiver = svc.receivers["inject"]
        accepted: list[str] = []
        refused = 0
        stop = asyncio.Event()

        async def load() -> None:
            nonlocal refused
            i = 0
            while not stop.is_set() and i < 100_000:
                batch = records(i, 20)
                try:
                    await receiver.push(batch)  # type: ignore[attr-defined]
                    accepted.extend(str(r.body) for r in batch)
                except Refused:
                    refused += 1
                i += 20
                await asyncio.sleep(0.002)

        task = asyncio.create_task(load())
        instances = [svc.exporters["capture"]]
        for n in range(3):
            await wait_until(lambda: len(accepted) >= 200 * (len(instances)), timeout=30)
            new = base(capture={"queue": {"storage": storage}, "batch": {"flush_interval": f"{21 + n}ms"}})
            assert await svc.reload(reparse(svc, new))
            instances.append(svc.exporters["capture"])
        stop.set()
        await asyncio.wait_for(task, 60)
        await svc.senders["capture"].queue.join()
        delivered = bodies(*instances)
        assert sorted(accepted) == delivered  # every accepted record, once
        assert len({id(e) for e in instances}) == 4 and refused == 0


async def test_bad_file_keeps_the_old_config(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "burnline.yaml"
    data = base()
    data["service"]["data_dir"] = str(tmp_path / "data")
    data["service"]["admin"] = {"endpoint": f"127.0.0.1:{free_port()}"}
    path.write_text(yaml.safe_dump(data))
    svc = Service(load_config(path, env={}))
    await svc.start()
    try:
        capture = svc.exporters["capture"]
        path.write_text(
            yaml.safe_dump({**data, "exporters": {"capture": {"batch": {"max_records": "many"}}}})
        )
        assert not await svc.reload()
        assert metric_value(svc, "burnline_config_last_reload_successful") == 0
        line = next(r.getMessage() for r in caplog.records if "reload failed" in r.getMessage())
        assert str(path) in line and "exporters.capture.batch.max_records" in line
        assert svc.exporters["capture"] is capture
        await svc.receivers["inject"].push(records(0, 3))  # type: ignore[attr-defined]
        await svc.senders["capture"].queue.join()
        assert len(capture.items) == 3  # type: ignore[attr-defined]

        moved = {**data, "service": {**data["service"], "data_dir": str(tmp_path / "elsewhere")}}
        path.write_text(yaml.safe_dump(moved))
        assert not await svc.reload()
        assert "service.data_dir: cannot change while burnline runs" in caplog.text

        stamp = metric_value(svc, "burnline_config_last_reload_success_timestamp_seconds")
        path.write_text(yaml.safe_dump(data))
        assert await svc.reload()
        assert metric_value(svc, "burnline_config_last_reload_successful") == 1
        assert metric_value(svc, "burnline_config_last_reload_success_timestamp_seconds") >= stamp
        assert svc.exporters["capture"] is capture  # nothing changed: nothing restarted
    finally:
        await svc.stop(grace=5)


async def test_receiver_in_a_new_signal_is_restarted(tmp_path: Path) -> None:
    async with running_service(base(), str(tmp_path)) as svc:
        receiver = svc.receivers["inject"]
        new = base()
        new["service"]["pipelines"]["traces"] = {"receivers": ["inject"], "exporters": ["capture"]}
        assert await svc.reload(reparse(svc, new))
        assert svc.receivers["inject"] is not receiver
        assert set(svc.consumers["inject"]) == {Signal.LOGS, Signal.TRACES}
        assert svc.not_ready() == []


SLO_LOGS = {"logs": {"match": {"service.name": "checkout"}, "bad": {"severity": ">=error"}}}


def with_slos(*slos: dict[str, Any]) -> dict[str, Any]:
    return {**base(), "slos": list(slos)}


async def test_slo_counts_survive_a_reload_when_their_sli_is_unchanged(tmp_path: Path) -> None:
    first = with_slos(
        {"name": "kept", "service": "checkout", "objective": 99, "sli": SLO_LOGS},
        {"name": "changed", "service": "checkout", "objective": 99, "sli": SLO_LOGS},
    )
    async with running_service(first, str(tmp_path)) as svc:
        await svc.receivers["inject"].push(records(0, 10, **{"service.name": "checkout"}))  # type: ignore[attr-defined]
        engine = svc.slo_engine
        assert engine is not None
        assert engine.slos["kept"].lifetime() == (5, 5)
        other_sli = {"logs": {"match": {"service.name": "checkout"}, "bad": {"severity": ">=warn"}}}
        second = with_slos(
            {
                "name": "kept",
                "service": "checkout",
                "objective": 95,
                "sli": SLO_LOGS,
            },  # objective only: counts still mean the same
            {"name": "changed", "service": "checkout", "objective": 99, "sli": other_sli},
            {"name": "added", "service": "checkout", "objective": 99, "sli": SLO_LOGS},
        )
        assert await svc.reload(reparse(svc, second))
        engine = svc.slo_engine
        assert engine is not None and set(engine.slos) == {"kept", "changed", "added"}
        assert engine.slos["kept"].lifetime() == (5, 5)
        assert engine.slos["changed"].lifetime() == (0, 0)
        assert engine.slos["added"].lifetime() == (0, 0)
        await svc.receivers["inject"].push(records(0, 2, **{"service.name": "checkout"}))  # type: ignore[attr-defined]
        assert engine.slos["kept"].lifetime() == (6, 6)  # the new pipelines count into the new engine
        assert engine.slos["added"].lifetime() == (1, 1)
        exposition = (await svc.telemetry.full_exposition()).decode()
        assert 'slo="added"' in exposition
        assert await svc.reload(reparse(svc, base()))  # no SLOs any more
        assert svc.slo_engine is None
        assert 'slo="kept"' not in (await svc.telemetry.full_exposition()).decode()


async def test_memory_limiter_settings_apply_to_running_receivers(tmp_path: Path) -> None:
    async with running_service(base(), str(tmp_path)) as svc:
        before = svc.memory_limiter
        new = base()
        new["service"]["memory_limiter"] = {"limit_percentage": 90}
        assert await svc.reload(reparse(svc, new))
        assert svc.memory_limiter is not before
        assert svc.consumers["inject"][Signal.LOGS].limiter is svc.memory_limiter


async def test_max_in_flight_changes_for_running_receivers(tmp_path: Path) -> None:
    async with running_service(base(), str(tmp_path)) as svc:
        in_flight = svc.receivers["inject"].ctx.in_flight
        assert in_flight is svc.in_flight and in_flight.limit == 32
        new = base()
        new["service"]["memory_limiter"] = {"max_in_flight": 2, "in_flight_timeout": "250ms"}
        assert await svc.reload(reparse(svc, new))
        # The receivers keep the object they were given: it is changed in place.
        assert svc.receivers["inject"].ctx.in_flight is in_flight
        assert (in_flight.limit, in_flight.timeout) == (2, 0.25)


async def test_changed_receiver_whose_new_port_is_taken_runs_on_as_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old_port = free_port()
    first = base()
    first["receivers"] = {"forward": {"endpoint": f"127.0.0.1:{old_port}"}}
    first["service"]["pipelines"]["logs"]["receivers"] = ["forward"]
    async with running_service(first, str(tmp_path)) as svc:
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            taken = other.getsockname()[1]
            new = base()
            new["receivers"] = {"forward": {"endpoint": f"127.0.0.1:{taken}"}}
            new["service"]["pipelines"]["logs"]["receivers"] = ["forward"]
            assert not await svc.reload(reparse(svc, new))
        assert f"receivers.forward: 127.0.0.1:{taken} is in use (receivers.forward.endpoint)" in caplog.text
        assert metric_value(svc, "burnline_config_last_reload_successful") == 0
        assert svc.running["receivers"]["forward"].endpoint == f"127.0.0.1:{old_port}"
        await wait_until(lambda: svc.not_ready() == [], timeout=30)
        client = await ForwardClient.connect(old_port)  # the previous port serves again
        try:
            entries = [[event_time(int(time.time())), {"log": "still here"}]]
            await client.send(forward("app", entries, {"chunk": "c"}))
            assert await client.receive(timeout=30) == {"ack": "c"}
        finally:
            await client.close()


def test_check_fixed_settings_names_a_changed_worker_count() -> None:
    running = parse_config({**base(), "service": {**base()["service"], "workers": 1}}, source="<a>", env={})
    for workers, shown in ((2, "'1' -> '2'"), ("auto", "'1' -> 'auto'")):
        changed = parse_config(
            {**base(), "service": {**base()["service"], "workers": workers}}, source="<b>", env={}
        )
        with pytest.raises(ConfigError) as caught:
            check_fixed_settings(running, changed)
        assert caught.value.problems == [
            f"service.workers: cannot change while burnline runs ({shown}); restart burnline"
        ]
    check_fixed_settings(running, parse_config(base(), source="<c>", env={}))  # 1 is the default


async def test_a_reload_changing_the_worker_count_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_service(base(), str(tmp_path)) as svc:
        capture = svc.exporters["capture"]
        new = base()
        new["service"]["workers"] = 2
        new["exporters"] = {"capture": {"batch": {"flush_interval": 0, "max_records": 7}}}
        assert not await svc.reload(reparse(svc, new))
        line = next(r.getMessage() for r in caplog.records if "reload failed" in r.getMessage())
        assert "service.workers: cannot change while burnline runs ('1' -> '2')" in line
        assert metric_value(svc, "burnline_config_last_reload_successful") == 0
        assert svc.config.service.workers == 1
        assert svc.exporters["capture"] is capture  # nothing else of the new config was applied
        new["service"]["workers"] = 1
        assert await svc.reload(reparse(svc, new))  # the same change with the count kept applies
        assert svc.exporters["capture"] is not capture
