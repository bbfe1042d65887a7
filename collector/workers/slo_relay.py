"""SLO counting split between workers and their supervisor, so that every event counts exactly once.

Each worker matches the records of the batches its pipelines accepted against the SLOs and sends
the supervisor the counts per SLO and 10-second bucket (``RecordRelay``); the supervisor's engine
adds them, evaluates the burn rates, alerts and persists, as a single process's engine does. Counts
are sent before the receiver acknowledges the batch (the pipeline observes it first), so a batch
counted is a batch accepted: a refused one is not counted, and its retry is counted once.

Metric SLIs count increases of cumulative series, which needs the previous point of the series:
with several workers the points of one series may reach different workers (remote_write spreads
its shards over connections). So workers send the wanted points themselves, and the supervisor's
delta tracker computes the increases in one place (a point older than the newest one it saw of its
series is ignored, as in one process).

SLOs are named in the messages, not numbered: during a reload a worker and the supervisor may
briefly hold different SLO sets, and a count for an SLO the supervisor does not have is dropped
with a debug line rather than added to another.
"""

from __future__ import annotations

import logging
from typing import Any

from collector.core.model import Batch, Signal
from collector.exporterhelper import batch_codec
from collector.slo.engine import SloEngine
from collector.workers.channel import COUNTS, POINTS, Channel

log = logging.getLogger("burnline.workers.slo")


class RecordRelay:
    """A worker's pipeline observer: counts what the SLOs match and sends it to the supervisor."""

    def __init__(self, channel: Channel, engine: SloEngine | None = None) -> None:
        self.channel = channel
        # The worker's engine matches records only: no windows it fills, no evaluation, no alerts.
        self.engine = engine

    def observe(self, batch: Batch) -> None:
        engine = self.engine
        if engine is None:
            return
        if batch.signal == Signal.METRICS:
            wanted = engine.wanted_points(batch)
            if wanted:
                self.channel.send({"t": POINTS, "b": batch_codec.encode(Batch(Signal.METRICS, wanted))})
            return
        now = engine.clock()
        counts = engine.record_counts(batch, now)
        if not counts:
            return
        states = engine.states
        rows = [[states[slot].spec.name, bucket, cell[0], cell[1]] for (slot, bucket), cell in counts.items()]
        self.channel.send({"t": COUNTS, "now": now, "c": rows})


def apply(engine: SloEngine, message: dict[str, Any]) -> int:
    """Adds a worker's message to the supervisor's engine; returns the counts it dropped (an SLO the
    engine does not have)."""
    if message.get("t") == POINTS:
        engine.observe(batch_codec.decode(message["b"]))
        return 0
    slos = engine.slos
    counts: dict[tuple[int, int], list[float]] = {}
    dropped = 0
    for name, bucket, total, second in message["c"]:
        state = slos.get(name)
        if state is None:
            dropped += 1
            continue
        cell = counts.setdefault((state.slot, int(bucket)), [0.0, 0.0])
        cell[0] += total
        cell[1] += second
    if dropped:
        log.debug("counts of %d SLO bucket(s) for SLOs this engine does not have", dropped)
    if counts:
        engine.add_counts(counts, float(message["now"]))
    return dropped
