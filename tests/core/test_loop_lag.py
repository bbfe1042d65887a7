"""The event loop's lag (collector/core/loop_lag.py): a loop that runs what is due on time records
next to nothing; one that is held up records how long."""

from __future__ import annotations

import asyncio
import time

from collector.core.loop_lag import LoopLagMonitor
from collector.core.telemetry import Telemetry


def _buckets(telemetry: Telemetry) -> dict[float, float]:
    (family,) = [f for f in telemetry.registry.collect() if f.name == "burnline_event_loop_lag_seconds"]
    return {float(s.labels["le"]): s.value for s in family.samples if s.name.endswith("_bucket")}


async def test_a_held_up_loop_is_recorded_and_a_free_one_is_not() -> None:
    telemetry = Telemetry()
    monitor = LoopLagMonitor(telemetry.loop_lag, interval=0.01)
    monitor.start()
    try:
        await asyncio.sleep(0.3)
        free = _buckets(telemetry)
        assert free[float("inf")] >= 5  # woke up, every 10 ms or so
        time.sleep(0.3)  # noqa: ASYNC251 (holding the loop is the point: the monitor's timer is due)
        await asyncio.sleep(0.05)
        held = _buckets(telemetry)
        # The wake-up due during the hold came at least 0.29 s late, and was recorded so.
        late_before = free[float("inf")] - free[0.25]
        assert held[float("inf")] - held[0.25] >= late_before + 1
    finally:
        await monitor.stop()
    count = _buckets(telemetry)[float("inf")]
    await asyncio.sleep(0.05)
    assert _buckets(telemetry)[float("inf")] == count  # stopped: nothing more recorded
