"""The dead-letter file: records a backend rejected for good, with the reason, one JSON a line.

Nothing is dropped in silence: each record written here is counted in
``burnline_records_failed_total{component,signal,reason}``, and an operator can replay the file.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import orjson

from collector.core.model import Signal
from collector.core.telemetry import Telemetry

log = logging.getLogger("burnline.deadletter")


def _default(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class DeadLetter:
    """Appends rejected records to ``<data_dir>/deadletter/<component>.ndjson``, rotated by size."""

    def __init__(
        self, component_id: str, directory: str | Path, telemetry: Telemetry, max_bytes: int = 100 * 1024**2
    ) -> None:
        self.id = component_id
        self.path = Path(directory) / f"{component_id.replace('/', '_')}.ndjson"
        self.max_bytes = max_bytes
        self._t = telemetry
        self._lock = threading.Lock()

    def write(self, signal: Signal, records: list[Any], reason: str, detail: str = "") -> None:
        """Writes records (JSON-able or dataclasses) and counts them as failed with ``reason``."""
        if not records:
            return
        now = time.time()
        lines = b"".join(
            orjson.dumps(
                {
                    "time": now,
                    "component": self.id,
                    "signal": signal.value,
                    "reason": reason,
                    "detail": detail,
                    "record": rec,
                },
                default=_default,
                option=orjson.OPT_APPEND_NEWLINE,
            )
            for rec in records
        )
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and self.path.stat().st_size + len(lines) > self.max_bytes:
                os.replace(self.path, self.path.with_suffix(".ndjson.1"))
            with self.path.open("ab") as fh:
                fh.write(lines)
        self._t.failed.labels(self.id, signal.value, reason).inc(len(records))
        log.warning(
            "%s: %d %s record(s) dead-lettered to %s: %s %s",
            self.id,
            len(records),
            signal.value,
            self.path,
            reason,
            detail,
        )
