"""The memory limiter: over the soft limit receivers refuse new data, with their protocol's answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from collector.config.model import MemoryLimiterConfig
from collector.core.component import Refused
from collector.core.memory_limiter import MemoryLimiter, available_memory, resident_memory
from collector.core.model import LogRecord
from collector.core.telemetry import Telemetry
from tests.forward_frames import ForwardClient, event_time, forward
from tests.support import InjectReceiver, free_port, metric_value, running_service


def limiter(**settings: Any) -> MemoryLimiter:
    return MemoryLimiter(MemoryLimiterConfig.model_validate(settings), Telemetry())


def test_limits_from_percentages_of_available_memory() -> None:
    lim = limiter(limit_percentage=80, spike_percentage=20)
    total = available_memory()
    assert lim.hard == pytest.approx(total * 0.8, rel=1e-6)
    assert lim.soft == pytest.approx(total * 0.6, rel=1e-6)


def test_absolute_limits_and_validation() -> None:
    lim = limiter(hard_limit="2GiB")
    assert (lim.hard, lim.soft) == (2 * 1024**3, int(2 * 1024**3 * 0.8))
    with pytest.raises(ValueError, match="soft_limit must not exceed hard_limit"):
        MemoryLimiterConfig(soft_limit=2, hard_limit=1)
    with pytest.raises(ValueError, match="spike_percentage must be below limit_percentage"):
        MemoryLimiterConfig(limit_percentage=10, spike_percentage=10)


def test_check_switches_refusing_and_reports_rss() -> None:
    rss = resident_memory()
    assert 10 * 1024**2 < rss < 4 * 1024**3  # a real reading of this process
    low = limiter(soft_limit=1, hard_limit=rss * 10)
    assert low.check() > 0 and low.refusing
    high = limiter(soft_limit=rss * 10, hard_limit=rss * 20)
    high.check()
    assert not high.refusing
    assert high._t.registry.get_sample_value("burnline_memory_limit_bytes", {"limit": "soft"}) == rss * 10


def test_cgroup_limit_is_preferred(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_read = Path.read_text

    def fake_read(self: Path, *args: Any, **kwargs: Any) -> str:
        if str(self) == "/sys/fs/cgroup/memory.max":
            return "536870912\n"
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", fake_read)
    assert available_memory() == 512 * 1024**2


async def test_refusals_over_the_soft_limit_are_counted(tmp_path: Path) -> None:
    config = {
        "receivers": {"inject": {}},
        "exporters": {"capture": {"queue": {"storage": "memory"}}},
        "service": {
            "memory_limiter": {"soft_limit": 1, "hard_limit": "64GiB", "check_interval": "50ms"},
            "pipelines": {"logs": {"receivers": ["inject"], "exporters": ["capture"]}},
        },
    }
    async with running_service(config, str(tmp_path)) as svc:
        receiver = svc.receivers["inject"]
        assert isinstance(receiver, InjectReceiver)
        with pytest.raises(Refused, match="memory limit"):
            await receiver.push([LogRecord(time_unix_nano=1)] * 3)
        refused = {"component": "inject", "signal": "logs", "reason": "memory limit"}
        assert metric_value(svc, "burnline_records_refused_total", refused) == 3
        svc.memory_limiter.soft = svc.memory_limiter.hard  # memory freed: accepting again
        svc.memory_limiter.check()
        await receiver.push([LogRecord(time_unix_nano=1)])


async def test_forward_withholds_its_ack_over_the_limit(tmp_path: Path) -> None:
    port = free_port()
    config = {
        "receivers": {"forward": {"endpoint": f"127.0.0.1:{port}"}},
        "exporters": {"capture": {}},
        "service": {
            "memory_limiter": {"soft_limit": 1, "hard_limit": "64GiB"},
            "pipelines": {"logs": {"receivers": ["forward"], "exporters": ["capture"]}},
        },
    }
    async with running_service(config, str(tmp_path)) as svc:
        client = await ForwardClient.connect(port)
        await client.send(forward("app", [[event_time(1), {"log": "x"}]], {"chunk": "c1"}))
        assert await client.closed_by_server(timeout=5)  # no ack: Fluent Bit resends the chunk later
        await client.close()
        assert svc.exporters["capture"].items == []  # type: ignore[attr-defined]


def test_limits_are_split_between_workers() -> None:
    """``service.workers: 2``: each worker gets half of every limit, so that together they keep to it."""
    absolute = MemoryLimiterConfig.model_validate({"hard_limit": "2GiB", "soft_limit": "1GiB"})
    whole, half = MemoryLimiter(absolute, Telemetry()), MemoryLimiter(absolute, Telemetry(), share=2)
    assert (whole.hard, whole.soft) == (2 * 1024**3, 1024**3)
    assert (half.hard, half.soft) == (1024**3, 512 * 1024**2)
    hard_only = MemoryLimiter(
        MemoryLimiterConfig.model_validate({"hard_limit": "2GiB"}), Telemetry(), share=2
    )
    assert (hard_only.hard, hard_only.soft) == (1024**3, int(1024**3 * 0.8))
    percentages = MemoryLimiterConfig.model_validate({"limit_percentage": 80, "spike_percentage": 20})
    whole, half = MemoryLimiter(percentages, Telemetry()), MemoryLimiter(percentages, Telemetry(), share=2)
    total = available_memory()
    assert half.hard == pytest.approx(total / 2 * 0.8, rel=1e-6)
    assert half.soft == pytest.approx(total / 2 * 0.6, rel=1e-6)
    assert half.hard == pytest.approx(whole.hard / 2, rel=1e-6)
    assert half.soft == pytest.approx(whole.soft / 2, rel=1e-6)
    four = MemoryLimiter(absolute, Telemetry(), share=4)
    assert (four.hard, four.soft) == (512 * 1024**2, 256 * 1024**2)
