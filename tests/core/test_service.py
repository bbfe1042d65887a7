"""The service: start order, pipelines and fan-out, readiness, admin endpoints, stop and drain."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from collector.core.component import Refused, register
from collector.core.model import Batch, LogRecord, Signal
from collector.core.startup_errors import StartupError
from collector.core.telemetry import Telemetry
from collector.exporterhelper.durable_queue import DurableQueue
from collector.exporterhelper.queue import QueueConfig
from collector.exporterhelper.queue_adoption import queued_on_disk
from tests.support import InjectReceiver, metric_value, running_service

EVENTS: list[str] = []


@register
class PushReceiver(InjectReceiver):
    """The inject receiver, recording its start and stop; push(n) makes n numbered records."""

    type_name = "push"

    async def start(self) -> None:
        EVENTS.append(f"start {self.id}")

    async def stop(self) -> None:
        EVENTS.append(f"stop {self.id}")

    async def push(self, n: int, signal: Signal = Signal.LOGS) -> None:  # type: ignore[override]
        await super().push(
            [LogRecord(time_unix_nano=i, body=f"line {i}", attributes={"i": i}) for i in range(n)]
        )


def config(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "receivers": {"push": {}},
        "exporters": {"capture": {"batch": {"flush_interval": 0}}},
        "service": {"pipelines": {"logs": {"receivers": ["push"], "exporters": ["capture"]}}},
    }
    base.update(overrides)
    return base


async def test_records_flow_and_are_counted(tmp_path: Path) -> None:
    async with running_service(config(), str(tmp_path)) as svc:
        await svc.receivers["push"].push(5)  # type: ignore[attr-defined]
        await svc.senders["capture"].queue.join()
        assert [r.body for r in svc.exporters["capture"].items] == [f"line {i}" for i in range(5)]  # type: ignore[attr-defined]
        labels = {"component": "push", "signal": "logs"}
        assert metric_value(svc, "burnline_records_received_total", labels) == 5
        assert metric_value(svc, "burnline_records_accepted_total", labels) == 5
        assert (
            metric_value(svc, "burnline_records_exported_total", {"component": "capture", "signal": "logs"})
            == 5
        )


async def test_start_in_dependency_order_stop_in_reverse(tmp_path: Path) -> None:
    EVENTS.clear()
    cfg = config(receivers={"push": {}, "push/b": {}})
    cfg["service"]["pipelines"]["logs"]["receivers"] = ["push", "push/b"]
    async with running_service(cfg, str(tmp_path)) as svc:
        assert list(svc.exporters) == ["capture"]
        assert EVENTS == ["start push", "start push/b"]
    assert EVENTS[2:] == ["stop push/b", "stop push"]


async def test_unused_components_are_not_started(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    EVENTS.clear()
    async with running_service(config(receivers={"push": {}, "push/idle": {}}), str(tmp_path)) as svc:
        assert "push/idle" not in svc.receivers
    assert "start push/idle" not in EVENTS
    assert "receiver 'push/idle' is defined but no pipeline uses it" in caplog.text


async def test_fan_out_to_two_pipelines_with_processors(tmp_path: Path) -> None:
    cfg = config(
        exporters={
            "capture": {"batch": {"flush_interval": 0}},
            "capture/tagged": {"batch": {"flush_interval": 0}},
        },
        processors={"attributes": {"actions": [{"key": "copy", "action": "insert", "value": "b"}]}},
    )
    cfg["service"]["pipelines"] = {
        "logs": {"receivers": ["push"], "exporters": ["capture"]},
        "logs/tagged": {"receivers": ["push"], "processors": ["attributes"], "exporters": ["capture/tagged"]},
    }
    async with running_service(cfg, str(tmp_path)) as svc:
        await svc.receivers["push"].push(3)  # type: ignore[attr-defined]
        for sender in svc.senders.values():
            await sender.queue.join()
        plain = svc.exporters["capture"].items  # type: ignore[attr-defined]
        tagged = svc.exporters["capture/tagged"].items  # type: ignore[attr-defined]
        assert len(plain) == len(tagged) == 3
        assert all("copy" not in r.attributes for r in plain)  # the processor worked on its own copy
        assert all(r.attributes["copy"] == "b" for r in tagged)


async def test_filter_processor_drops_and_counts(tmp_path: Path) -> None:
    cfg = config(processors={"filter": {"drop_if_matches": {"i": "^[02]$"}}})
    cfg["service"]["pipelines"]["logs"]["processors"] = ["filter"]
    async with running_service(cfg, str(tmp_path)) as svc:
        await svc.receivers["push"].push(4)  # type: ignore[attr-defined]
        await svc.senders["capture"].queue.join()
        assert [r.attributes["i"] for r in svc.exporters["capture"].items] == [1, 3]  # type: ignore[attr-defined]
        dropped = {"component": "filter", "signal": "logs", "reason": "filtered"}
        assert metric_value(svc, "burnline_records_dropped_total", dropped) == 2


async def test_backpressure_refuses_and_counts(tmp_path: Path) -> None:
    paused = {
        "paused": True,
        "batch": {"flush_interval": 0},
        "queue": {"max_records": 4, "block_timeout": "1s"},
    }
    cfg = config(exporters={"capture": paused})
    async with running_service(cfg, str(tmp_path)) as svc:
        push = svc.receivers["push"]
        await push.push(4)  # type: ignore[attr-defined]
        with pytest.raises(Refused):
            await push.push(2)  # type: ignore[attr-defined]  # waited block_timeout (1 s), then refused
        refused = {"component": "push", "signal": "logs", "reason": "exporter queue full"}
        assert metric_value(svc, "burnline_records_refused_total", refused) == 2
        svc.exporters["capture"].resume.set()  # type: ignore[attr-defined]
        await push.push(2)  # type: ignore[attr-defined]


async def test_admin_endpoints(tmp_path: Path) -> None:
    async with running_service(config(), str(tmp_path)) as svc:
        base = f"http://127.0.0.1:{svc.admin.port}"
        await svc.receivers["push"].push(2)  # type: ignore[attr-defined]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as resp:
                assert resp.status == 200
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 200 and (await resp.text()) == "ready\n"
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
                assert resp.headers["Content-Type"].startswith("text/plain")
        assert 'burnline_records_accepted_total{component="push",signal="logs"} 2.0' in text
        assert 'burnline_component_up{component="capture",kind="exporter"} 1.0' in text
        assert "burnline_export_duration_seconds_bucket" in text
        # Saturation: the event loop's lag (tests/core/test_loop_lag.py) and the process series.
        assert re.search(r"^burnline_event_loop_lag_seconds_count [0-9.]+$", text, re.M)
        assert re.search(r"^process_cpu_seconds_total [0-9.]+$", text, re.M)


async def test_readyz_names_what_is_not_ready(tmp_path: Path) -> None:
    async with running_service(config(), str(tmp_path)) as svc:
        svc.receivers["push"].ready = lambda: False  # type: ignore[method-assign]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{svc.admin.port}/readyz") as resp:
                assert resp.status == 503
                assert "push" in await resp.text()


async def test_stop_drains_queued_records(tmp_path: Path) -> None:
    cfg = config(exporters={"capture": {"batch": {"flush_interval": "10s", "max_records": 1000}}})
    async with running_service(cfg, str(tmp_path)) as svc:
        await svc.receivers["push"].push(50)  # type: ignore[attr-defined]
        capture = svc.exporters["capture"]
        assert capture.items == []  # type: ignore[attr-defined]  # still lingering for a fuller batch
    assert len(capture.items) == 50  # type: ignore[attr-defined]  # stop() delivered before returning


async def test_a_memory_queue_names_the_records_a_disk_queue_left(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An earlier run with the default disk queue stopped with 3 records undelivered.
    left = DurableQueue("capture", QueueConfig(), Telemetry(), tmp_path / "queue")
    await left.open()
    await left.put(Batch(Signal.LOGS, [LogRecord(time_unix_nano=i, body=f"left {i}") for i in range(3)], 30))
    await left.close()
    await left.shutdown()
    caplog.set_level(logging.WARNING, logger="burnline.service")
    cfg = config(exporters={"capture": {"batch": {"flush_interval": 0}, "queue": {"storage": "memory"}}})
    async with running_service(cfg, str(tmp_path)) as svc:
        await svc.receivers["push"].push(2)  # type: ignore[attr-defined]
        await svc.senders["capture"].queue.join()
        assert [r.body for r in svc.exporters["capture"].items] == ["line 0", "line 1"]  # type: ignore[attr-defined]
    warning = f"disk queue {left.path} of an earlier run holds 3 record(s), which are not delivered"
    assert warning in caplog.text
    assert queued_on_disk(left.path) == 3  # left as it was, for an operator


async def test_stop_refuses_new_data(tmp_path: Path) -> None:
    async with running_service(config(), str(tmp_path)) as svc:
        push = svc.receivers["push"]
    with pytest.raises(Refused, match="shutting down"):
        await push.push(1)  # type: ignore[attr-defined]


async def test_failed_start_releases_what_started(tmp_path: Path) -> None:
    EVENTS.clear()
    busy = config()
    busy["service"] = {**busy["service"], "admin": {"endpoint": "256.0.0.1:1"}}
    with pytest.raises(StartupError, match=r"^service\.admin: cannot listen on 256\.0\.0\.1:1: "):
        async with running_service(busy, str(tmp_path)):
            pass
    assert EVENTS == ["start push", "stop push"]
