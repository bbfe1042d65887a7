"""The ``local`` exporter: burnline's embedded store, so ``burnline run`` works with nothing else installed.

Log records and spans go to one SQLite file (stdlib ``sqlite3``) that ``burnline logs`` and
``burnline traces`` query.

- One writer connection, used only from one dedicated worker thread: SQLite allows one writer at a
  time anyway, and the event loop never waits on disk. Each batch is one transaction (executemany).
- Retention (age and record count) runs in the background every ``retention.check_interval``, deleting
  in chunks of ``retention.delete_chunk`` rows, each its own short transaction, so that exports queued
  meanwhile get the writer between chunks.

The parts: config.py (settings), schema.py (the file, its schema and migrations), rows.py (records
and spans -> rows), writer.py (the writer thread's inserts and retention deletes).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields, is_dataclass
from typing import Any

import orjson

from collector.core.component import (
    ComponentContext,
    Exporter,
    PermanentExportError,
    RetryableExportError,
    register,
)
from collector.core.model import Batch, Signal
from exporters.json_values import to_json
from exporters.local.config import DEFAULT_FILE_NAME, LocalConfig, RetentionConfig, store_path
from exporters.local.rows import TABLES
from exporters.local.schema import SCHEMA_VERSION, StoreError, schema_problem
from exporters.local.writer import StoreWriter, WriteResult

# Imported from here by other modules (the query side, the status page).
__all__ = [
    "DEFAULT_FILE_NAME",
    "SCHEMA_VERSION",
    "LocalExporter",
    "RetentionConfig",
    "StoreWriter",
    "schema_problem",
]

# Primary SQLite result codes (sqlite3 exceptions carry the extended code; the low byte is primary).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_FULL, _SQLITE_CORRUPT, _SQLITE_NOTADB = 5, 6, 13, 11, 26


@register
class LocalExporter(Exporter[LocalConfig]):
    """Writes batches into the embedded SQLite store that ``burnline logs`` and ``burnline traces`` read."""

    type_name = "local"
    config_model = LocalConfig
    signals = frozenset(TABLES)

    def __init__(self, config: LocalConfig, ctx: ComponentContext) -> None:
        super().__init__(config, ctx)
        self.config: LocalConfig = config
        self.path = store_path(config, ctx.data_dir)
        self.writer = StoreWriter(self.path, config.retention)
        self._executor: ThreadPoolExecutor | None = None
        self._retention_task: asyncio.Task[None] | None = None
        self._retention_now = asyncio.Event()
        self._failing: str | None = None  # the reason of the last failed export, to log changes once
        self.retention_passes = 0  # completed background passes (tests wait on it)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._executor is None:
            raise StoreError(f"{self.path}: the local store is not started")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"burnline-{self.id}")
        try:
            previous = await self._run(self.writer.open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        if previous != SCHEMA_VERSION:
            how = "created" if previous == 0 else f"migrated from schema {previous}"
            self.log.info("local store %s %s (schema %d)", self.path, how, SCHEMA_VERSION)
        r = self.config.retention
        if r.max_age > 0 or r.max_records > 0:
            self._retention_task = asyncio.create_task(self._retention_loop(), name=f"{self.id}-retention")

    async def stop(self) -> None:
        if self._retention_task is not None:
            self._retention_task.cancel()
            await asyncio.gather(self._retention_task, return_exceptions=True)
            self._retention_task = None
        if self._executor is not None:
            # Runs after any write still in the thread: the single worker takes jobs in order.
            await self._run(self.writer.close)
            self._executor.shutdown(wait=False)
            self._executor = None

    async def export(self, batch: Batch) -> int:
        if batch.signal not in TABLES:
            raise PermanentExportError(f"the local store does not keep {batch.signal.value}")
        if not batch.items:
            return 0
        try:
            result: WriteResult = await self._run(self.writer.write, batch.signal, batch.items)
        except sqlite3.Error as exc:
            raise self._export_error(exc, len(batch)) from exc
        if self._failing is not None:
            self.log.info("local store %s writable again", self.path)
            self._failing = None
        if result.rejected:
            await self._dead_letter(batch.signal, result.rejected)
        return result.inserted

    async def _dead_letter(self, signal: Signal, rejected: list[tuple[Any, str]]) -> None:
        by_reason: dict[str, list[Any]] = {}
        for rec, reason in rejected:
            by_reason.setdefault(reason, []).append(self.dead_letter_view(rec))
        for reason, views in by_reason.items():
            try:
                await asyncio.to_thread(self.dead_letter.write, signal, views, "invalid_record", reason)
            except Exception:
                # The rest of the batch is committed: raising would make the sender write it again.
                self.log.exception("%d rejected record(s) could not be dead-lettered; dropped", len(views))
                self.ctx.telemetry.dropped.labels(self.id, signal.value, "dead_letter_failed").inc(len(views))

    def dead_letter_view(self, item: Any) -> Any:
        """The record as JSON that cannot fail to encode: a record is rejected for odd values."""
        view = {f.name: getattr(item, f.name) for f in fields(item)} if is_dataclass(item) else item
        return orjson.Fragment(to_json(view))

    def _export_error(self, exc: sqlite3.Error, records: int) -> Exception:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        name = getattr(exc, "sqlite_errorname", "") or type(exc).__name__
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return RetryableExportError("locked", retry_after=0.5)
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            self._log_failure(
                "corrupt",
                "local store %s is damaged (%s): %d record(s) go to the dead-letter file; "
                "move the file away and restart to start a new store",
                self.path,
                exc,
                records,
            )
            return PermanentExportError(f"corrupt store: {exc}")
        if code == _SQLITE_FULL:
            self._log_failure(
                "disk_full",
                "local store %s: disk full; %d record(s) stay queued and are retried; free "
                "space or lower exporters.%s.retention (max_age, max_records)",
                self.path,
                records,
                self.id,
            )
            self._retention_now.set()
            return RetryableExportError("disk_full", retry_after=10.0)
        self._log_failure(name, "local store %s: write failed (%s); will retry", self.path, exc)
        return RetryableExportError(f"sqlite_{name.removeprefix('SQLITE_').lower()}", retry_after=2.0)

    def _log_failure(self, reason: str, msg: str, *args: Any) -> None:
        # Once per kind of failure: the sender already logs each retry.
        if self._failing != reason:
            self.log.error(msg, *args)
            self._failing = reason

    async def enforce_retention(self) -> int:
        """Deletes what retention says must go, chunk by chunk; returns how many records."""
        deleted = 0
        chunk = self.config.retention.delete_chunk
        while True:
            # Each chunk is its own job: an export submitted meanwhile runs before the next chunk.
            n: int = await self._run(self.writer.delete_chunk, time.time_ns())
            deleted += n
            if n < chunk:
                break
        await self._run(self.writer.delete_unused_resources)
        if deleted:
            self.log.info("retention: deleted %d record(s) from %s", deleted, self.path)
        return deleted

    async def _retention_loop(self) -> None:
        interval = self.config.retention.check_interval
        while True:
            try:
                await self.enforce_retention()
            except sqlite3.Error as exc:
                self.log.warning("retention on %s failed (%s); next try in %.0fs", self.path, exc, interval)
            except StoreError:
                return
            except Exception:  # a bug here must not end retention for the life of the process
                self.log.exception("retention on %s failed; next try in %.0fs", self.path, interval)
            self.retention_passes += 1
            try:
                await asyncio.wait_for(self._retention_now.wait(), interval)
            except TimeoutError:
                pass
            self._retention_now.clear()
