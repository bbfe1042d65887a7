"""Records a receiver took from a client but cannot turn into records: kept in a dead-letter file.

A Fluent chunk is acknowledged as a whole, and a client resends an unacknowledged chunk forever
(Fluent Bit with ``Retry_Limit no_limits``), so one entry that is not a record (not a map, a time
that is no time, packed bytes that are not msgpack) must not hold back the others. Such entries go
to ``<data_dir>/deadletter/<receiver id>.ndjson`` with their reason, the tag and the peer, counted in
``burnline_records_failed_total{component=<receiver>,signal="logs",reason="invalid_record"}`` and
logged (by :class:`collector.deadletter.DeadLetter`), and the rest of the chunk goes on.
"""

from __future__ import annotations

import asyncio
import reprlib
from pathlib import Path
from typing import Any

from collector.core.component import ComponentContext
from collector.core.model import Signal
from collector.exporterhelper.deadletter import DeadLetter
from collector.normalize.values import clean_value

_brief = reprlib.Repr()
_brief.maxstring = 1000
_brief.maxother = 1000


def _json_safe(value: Any) -> Any:
    """The rejected value as JSON can hold it (the raw text when even that fails)."""
    try:
        return clean_value(value)
    except RecursionError:
        return _brief.repr(value)


class RejectedRecords:
    """One receiver's dead-letter file for entries that are not records."""

    def __init__(self, ctx: ComponentContext) -> None:
        self.log = ctx.logger
        self._telemetry = ctx.telemetry
        self._id = ctx.id
        self._file = DeadLetter(
            ctx.id, ctx.worker.directory(Path(ctx.data_dir) / "deadletter"), ctx.telemetry
        )

    @property
    def path(self) -> Path:
        return self._file.path

    async def write(self, tag: str, peer: str, rejected: list[tuple[Any, str]]) -> None:
        """Writes the rejected entries; a failure to write is logged and counted, never raised
        (the rest of the chunk was accepted, and the client must get its ack)."""
        views = [
            {"tag": tag, "peer": peer, "problem": problem, "entry": _json_safe(entry)}
            for entry, problem in rejected
        ]
        # One write (and one log line) per chunk, however many of its entries are bad.
        more = f" (and {len(rejected) - 1} more)" if len(rejected) > 1 else ""
        detail = f"from {peer}, tag {tag!r}: {rejected[0][1]}{more}"
        try:
            await asyncio.to_thread(self._file.write, Signal.LOGS, views, "invalid_record", detail)
        except Exception:
            self.log.exception("%d rejected record(s) could not be dead-lettered; dropped", len(views))
            self._telemetry.dropped.labels(self._id, Signal.LOGS.value, "dead_letter_failed").inc(len(views))
