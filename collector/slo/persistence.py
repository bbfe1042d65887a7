"""SLO counts on disk, so that a restart keeps the error budget: SQLite under ``data_dir/slo/``.

One row per SLO holds its bucket rings (the raw doubles), each tier's newest bucket index, its
lifetime counts and late count. Rows are keyed by SLO name and carry a fingerprint of what was
counted (SLI and period): when a spec changes what it counts, the old counts mean something else and
are dropped, with a log line, instead of being mixed in.

Writes happen every ``persist_interval`` and at shutdown, for the SLOs counted since the last write
only, in a worker thread (the snapshot is taken on the event loop, so it is consistent, and costs a
memory copy). A SIGKILL so loses at most one interval's counts. WAL mode and one transaction per write
keep a crash from leaving a half-written file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import threading
from pathlib import Path

from collector.slo.engine import SloEngine, SloState

log = logging.getLogger("burnline.slo.persistence")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS slo_counts (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    currents TEXT NOT NULL,
    ring0 BLOB NOT NULL,
    ring1 BLOB NOT NULL,
    ring2 BLOB NOT NULL,
    total REAL NOT NULL,
    second REAL NOT NULL,
    late REAL NOT NULL,
    saved_at REAL NOT NULL
)
"""

Row = tuple[str, str, str, bytes, bytes, bytes, float, float, float, float]


def fingerprint(state: SloState) -> str:
    """What the counts mean: the SLI (kind and conditions) and the period."""
    spec = state.spec
    described = {"sli": spec.sli.model_dump(mode="json", exclude_none=True), "period": spec.period}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]


class SloStore:
    """The SQLite file of one engine. Its methods block: call them from a worker thread."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "counts.sqlite"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def load(self) -> dict[str, Row]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM slo_counts").fetchall()
        return {row[0]: row for row in rows}

    def save(self, rows: list[Row]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO slo_counts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()


def restore(engine: SloEngine, store: SloStore, now: float) -> int:
    """Loads saved counts into the engine's SLOs; returns how many SLOs got counts back."""
    rows = store.load()
    restored = 0
    for name, state in engine.slos.items():
        row = rows.get(name)
        if row is None:
            continue
        _, saved_fingerprint, currents, ring0, ring1, ring2, total, second, late, _saved_at = row
        if saved_fingerprint != fingerprint(state):
            log.warning(
                "SLO %s: its SLI or period changed since its counts were saved; starting afresh", name
            )
            continue
        if not state.windows.restore(json.loads(currents), [ring0, ring1, ring2], now):
            log.warning("SLO %s: saved counts do not fit its period's layout; starting afresh", name)
            continue
        state.windows.total, state.windows.second, state.late = total, second, late
        restored += 1
    return restored


def snapshot(engine: SloEngine, now: float, everything: bool = False) -> list[Row]:
    """Rows of the SLOs counted since the last snapshot (all with counts when ``everything``)."""
    rows: list[Row] = []
    for name, state in engine.slos.items():
        if not state.windows.allocated or not (state.dirty or everything):
            continue
        currents, rings = state.windows.snapshot()
        rows.append(
            (
                name,
                fingerprint(state),
                json.dumps(currents),
                rings[0],
                rings[1],
                rings[2],
                state.windows.total,
                state.windows.second,
                state.late,
                now,
            )
        )
        state.dirty = False
    return rows


class Persister:
    """Restores at start, then writes every ``interval`` seconds and once more at stop."""

    def __init__(self, engine: SloEngine, directory: Path, interval: float) -> None:
        self.engine = engine
        self.directory = directory
        self.interval = interval
        self.store: SloStore | None = None
        self.failures = 0
        self._task: asyncio.Task[None] | None = None
        self._flushing: asyncio.Future[None] | None = None

    async def start(self) -> None:
        self.store = await asyncio.to_thread(SloStore, self.directory)
        restored = await asyncio.to_thread(restore, self.engine, self.store, self.engine.clock())
        if restored:
            log.info("restored the counts of %d SLO(s) from %s", restored, self.store.path)
        self._task = asyncio.create_task(self._run(), name="slo-persistence")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            # Shielded: stop() cancels this task. A save it cut short would go on in its thread,
            # its SLOs no longer dirty, and race the final flush and the close in other threads:
            # had the close taken the store first, those counts were lost. stop() waits for it.
            self._flushing = asyncio.ensure_future(self.flush())
            await asyncio.shield(self._flushing)

    async def flush(self, everything: bool = False) -> None:
        store = self.store
        if store is None:
            return
        rows = snapshot(self.engine, self.engine.clock(), everything)
        if not rows:
            return
        try:
            await asyncio.to_thread(store.save, rows)
        except (sqlite3.Error, OSError) as exc:
            self.failures += 1
            for row in rows:  # try them again next time
                state = self.engine.slos.get(row[0])
                if state is not None:
                    state.dirty = True
            log.error("cannot save SLO counts to %s: %s", store.path, exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)  # a save under way ends first
            self._flushing = None
        await self.flush()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
            self.store = None
