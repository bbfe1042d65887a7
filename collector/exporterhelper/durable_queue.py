"""The durable exporter queue: acknowledged batches survive a crash, and are delivered after it.

Storage is SQLite in WAL mode, one database per exporter under ``<data_dir>/queue/``. Chosen by
measurement (bench/durable_storage_choice.py): appending a batch durably costs the same as with
checksummed segment files for 1-64 KiB batches (the fsync dominates), SQLite's commit is atomic,
its WAL checksums discard a torn tail after a crash by themselves, and deleting delivered rows by
sequence number handles senders that finish out of order without a separate position file.

- ``put`` encodes the batch (a batch received as an OTLP request: that request, as it came), and a
  group commit writes every batch that arrived meanwhile in one transaction (one fsync with
  ``fsync: true``) before any of their receivers acknowledge.
- Queued batches are also kept decoded in memory while they take about ``memory_bytes`` or less;
  beyond that the backlog stays on disk and is read back in order when the exporter gets to it. What
  a decoded batch takes is estimated from its row, not from its received size (``decoded_size``).
- A batch is deleted only once its exporter delivered (or dead-lettered) it; what a hard stop
  interrupts is delivered again at the next start (the exporters' deterministic ids make that
  idempotent).
- Each row carries a CRC32 of its payload: a row that fails it, or does not decode, is skipped with
  a log line and counted in ``burnline_records_dropped_total{reason="queue_corrupt"}``. A database
  SQLite cannot open is moved aside (``*.corrupt-<time>``) and a new one started, likewise counted.
- With several workers each has its own databases; the queues of workers that no longer exist (the
  worker count changed) are passed as ``adopt`` and moved into this one as it opens
  (collector/exporterhelper/queue_adoption.py), then counted and delivered as any backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector.core.model import Batch
from collector.core.telemetry import Telemetry
from collector.exporterhelper import batch_codec
from collector.exporterhelper.queue import MemoryQueue, QueueConfig

log = logging.getLogger("burnline.queue")

SCHEMA_VERSION = 1
# SQLite's page size for queue databases. A queued batch of 1,000 log records is a row of hundreds
# of KB (230 KB for the bench's Kubernetes records, each pod's resource stored once), which SQLite
# keeps in a chain of overflow pages, each written to the WAL with its own frame header and checksum
# and later checkpointed. At 16 KiB pages committing a 230 KB row takes a third less CPU than at
# SQLite's default 4 KiB, a 700 KB row half; a row of a few KB up to a tenth more, where CPU matters
# less; larger pages cost small rows more (bench/queue_page_size.py; bench/RESULTS.md, "SQLite's
# page size"). The WAL grows to about 1,000 pages between checkpoints: about 16 MiB a queue.
PAGE_SIZE = 16384
_LOAD_ROWS = 256  # rows read back from disk per load, at most
# Decoded records take about this many times the bytes of their queue row (msgpack): 4.2 for OTLP
# spans, 4.5 for Kubernetes log records, 5.7 for remote-write samples (bench/decoded_size.py). The
# received size is no such measure: a Forward frame decodes to 1.4 times its size, a remote-write
# request (decompressed) to 6 times, so a cache bounded by it held 100 MiB of samples for "16MiB".
DECODED_PER_ROW_BYTE = 5
BATCHES_TABLE = (
    "CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " records INTEGER NOT NULL, size INTEGER NOT NULL, crc INTEGER NOT NULL, payload BLOB NOT NULL)"
)


def _repage(db: sqlite3.Connection, component_id: str) -> None:
    """An empty queue database with another page size (made by an older burnline, at SQLite's
    default) is rebuilt at ``PAGE_SIZE``. WAL mode fixes a database's page size, so VACUUM runs
    between leaving it and entering it again; with no rows that takes a few milliseconds. One that
    holds rows keeps its page size until a start finds it empty (a stop drains it)."""
    (size,) = db.execute("PRAGMA page_size").fetchone()
    if size == PAGE_SIZE or db.execute("SELECT 1 FROM batches LIMIT 1").fetchone() is not None:
        return
    try:
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        db.execute("VACUUM")
        db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError as exc:  # another connection holds it (a tool reading it)
        # Never the corrupt-database path for this: at worst the queue runs this once with a
        # rollback journal (as durable), and the next open enters WAL mode again.
        with contextlib.suppress(sqlite3.OperationalError):
            db.execute("PRAGMA journal_mode=WAL")
        log.warning("%s: queue database kept with %d-byte pages: %s", component_id, size, exc)
        return
    log.info("%s: queue database rebuilt with %d-byte pages (it had %d)", component_id, PAGE_SIZE, size)


def decoded_size(row_bytes: int) -> int:
    """About the memory a batch takes decoded, from the size of its queue row."""
    return row_bytes * DECODED_PER_ROW_BYTE


def held_size(batch: Batch, row_bytes: int) -> int:
    """About the memory a batch takes held in memory: decoded, and its received request if it keeps one."""
    return decoded_size(row_bytes) + len(batch.wire or b"")


def database_file(component_id: str) -> str:
    """The name of an exporter's queue database (in its worker's queue directory)."""
    return f"{component_id.replace('/', '_')}.db"


@dataclass
class _Pending:
    """Writes and deletes waiting for the next group commit."""

    inserts: list[tuple[bytes, int, int, asyncio.Future[int]]] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)
    delete_waiters: list[asyncio.Future[None]] = field(default_factory=list)


class DurableQueue(MemoryQueue):
    durable = True

    def __init__(
        self,
        component_id: str,
        config: QueueConfig,
        telemetry: Telemetry,
        directory: str | Path,
        adopt: Sequence[Path] = (),
    ) -> None:
        super().__init__(component_id, config, telemetry)
        self.path = Path(directory) / database_file(component_id)
        # Queue databases of workers that no longer exist, moved into this one by open()
        # (queue_adoption.orphan_databases says which).
        self._adopt = tuple(adopt)
        self._db: sqlite3.Connection | None = None
        # One thread owns the connection: SQLite calls never block the event loop.
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"queue-{component_id}")
        self._pending = _Pending()
        self._writer: asyncio.Task[None] | None = None
        self._seq_of: dict[int, int] = {}  # id(batch) -> row, for batches in memory or in flight
        self._memory_of: dict[int, int] = {}  # id(batch) -> decoded_size, for batches in _items
        self._hot_bytes = 0  # decoded_size of _items
        self._backlog = False  # some stored rows are not in _items yet
        self._loaded_upto = 0  # highest row seq moved into memory (or known not to need it)
        self._last_seq = 0  # highest committed row seq

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    # -- opening -----------------------------------------------------------------------------------

    async def open(self) -> None:
        """Opens (or creates) the database and counts what a previous run left queued."""
        records, size, last = await self._run(self._open_db)
        self._last_seq = last
        if records:
            self._account(records, size)
            self._backlog = True
            log.info("%s: %d record(s) queued before the last stop will be delivered", self.id, records)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # Takes effect only in a database not written yet; an older one keeps its size (see _repage).
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.config.fsync else 'NORMAL'}")
        db.execute(BATCHES_TABLE)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return db

    def _open_db(self) -> tuple[int, int, int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = self._connect()
            db.execute("PRAGMA quick_check").fetchall()
            _repage(db, self.id)
            counts = self._counts(db)
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error(
                "%s: queue database %s is unreadable (%s); moved to %s, starting empty",
                self.id,
                self.path,
                exc,
                aside,
            )
            self._t.dropped.labels(self.id, "unknown", "queue_corrupt").inc()
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    src.rename(f"{aside}{suffix}")
            db = self._connect()
            counts = (0, 0, 0)
        self._db = db
        if self._adopt:
            # Imported here: queue_adoption builds on this module's schema.
            from collector.exporterhelper.queue_adoption import adopt_into

            # After the checks above, so that a corrupt target is set aside before anything moves
            # into it; the rows adopted are then counted with the rest of the backlog.
            adopt_into(db, self._adopt)
            counts = self._counts(db)
        return counts

    @staticmethod
    def _counts(db: sqlite3.Connection) -> tuple[int, int, int]:
        """Records and bytes stored, and the highest seq ever assigned."""
        records, size = db.execute(
            "SELECT COALESCE(SUM(records), 0), COALESCE(SUM(size), 0) FROM batches"
        ).fetchone()
        (last,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM batches").fetchone()
        (stored_last,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence").fetchone()
        return int(records), int(size), max(int(last), int(stored_last))

    # -- storing (group commit) ---------------------------------------------------------------------

    async def _store(self, batch: Batch) -> tuple[int, int]:
        """Commits the batch; returns its row's seq and the memory it takes held (``held_size`` of
        ``_held(batch)``).

        A batch received as an OTLP request (``Batch.wire``) is stored as that request, whichever
        exporter the queue feeds, as the OpenTelemetry Collector's persistent queue stores OTLP:
        its bytes are at hand, while encoding the records into a row costs about 1 us a span, about
        a twentieth of a span's way into Elasticsearch. Read back (a backlog beyond ``memory_bytes``,
        a restart) it is parsed again, about 2.5 us a span more than a row (bench/RESULTS.md,
        "Received OTLP requests stored as they came, and two workers again")."""
        payload = batch_codec.encode(batch)
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.inserts.append((payload, len(batch), batch.size_bytes, done))
        self._kick()
        return await done, held_size(self._held(batch), len(payload))

    def _kick(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name=f"{self.id}-queue-writer")

    async def _write_pending(self) -> None:
        while self._pending.inserts or self._pending.deletes:
            work, self._pending = self._pending, _Pending()
            rows = [(p, n, s, zlib.crc32(p)) for p, n, s, _ in work.inserts]
            try:
                seqs: list[int] = await self._run(self._commit, rows, work.deletes)
            except Exception as exc:
                log.error("%s: queue write failed: %s", self.id, exc)
                for *_, fut in work.inserts:
                    if not fut.done():
                        fut.set_exception(exc)
                for waiter in work.delete_waiters:
                    if not waiter.done():
                        waiter.set_result(None)  # a lost delete only means a redelivery
                continue
            for seq, (*_, fut) in zip(seqs, work.inserts, strict=True):
                if not fut.done():
                    fut.set_result(seq)
            for waiter in work.delete_waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _commit(self, rows: list[tuple[bytes, int, int, int]], deletes: list[int]) -> list[int]:
        db = self._db
        assert db is not None
        seqs = []
        db.execute("BEGIN IMMEDIATE")
        try:
            if deletes:
                db.executemany("DELETE FROM batches WHERE seq = ?", [(s,) for s in deletes])
            for payload, records, size, crc in rows:
                cur = db.execute(
                    "INSERT INTO batches (records, size, crc, payload) VALUES (?, ?, ?, ?)",
                    (records, size, crc, payload),
                )
                seqs.append(int(cur.lastrowid or 0))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return seqs

    def _admit(self, batch: Batch, handle: Any) -> None:
        seq, memory = handle
        self._last_seq = max(self._last_seq, seq)
        over_budget = self._hot_bytes + memory > self.config.memory_bytes and bool(self._items)
        if self._backlog or over_budget:
            self._backlog = True  # stays on disk; _load reads it back in order
            return
        self._seq_of[id(batch)] = seq
        self._loaded_upto = max(self._loaded_upto, seq)
        self._hold(batch, memory)
        super()._admit(batch, handle)

    def _hold(self, batch: Batch, memory: int) -> None:
        self._memory_of[id(batch)] = memory
        self._hot_bytes += memory

    # -- reading back ---------------------------------------------------------------------------------

    def _has_unloaded(self) -> bool:
        return self._backlog

    async def _load(self) -> None:
        rows: list[tuple[int, int, int, bytes]] = await self._run(self._read_after, self._loaded_upto)
        corrupt: list[int] = []
        for seq, records, crc, payload in rows:
            self._loaded_upto = max(self._loaded_upto, seq)
            batch = None
            if zlib.crc32(payload) == crc:
                try:
                    batch = batch_codec.decode(payload)
                except batch_codec.CodecError as exc:
                    reason = str(exc)
            else:
                reason = "checksum mismatch"
            if batch is None:
                log.error(
                    "%s: queued batch %d (%d records) is corrupt (%s); skipped", self.id, seq, records, reason
                )
                self._t.dropped.labels(self.id, "unknown", "queue_corrupt").inc(records)
                corrupt.append(seq)
                continue
            batch = self._held(batch)  # a stored request: held only by an exporter that sends it
            if len(batch) != records:
                # Read back with fewer records than stored (an OTLP request holding items this
                # version rejects, batch_codec): the queue counts what it holds.
                self._account(len(batch) - records, 0)
            self._seq_of[id(batch)] = seq
            self._hold(batch, held_size(batch, len(payload)))
            self._items.append(batch)
            self._queued += len(batch)
        if corrupt:
            sizes = await self._run(self._forget, corrupt)
            self._account(-sizes[0], -sizes[1])
        if not rows or self._loaded_upto >= self._last_seq:
            self._backlog = False

    def _read_after(self, seq: int) -> list[tuple[int, int, int, bytes]]:
        assert self._db is not None
        out: list[tuple[int, int, int, bytes]] = []
        budget = max(self.config.memory_bytes - self._hot_bytes, 1)
        for row in self._db.execute(
            "SELECT seq, records, crc, payload FROM batches WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, _LOAD_ROWS),
        ):
            out.append(row)
            budget -= decoded_size(len(row[3]))
            if budget <= 0:
                break
        return out

    def _forget(self, seqs: list[int]) -> tuple[int, int]:
        assert self._db is not None
        marks = ",".join("?" * len(seqs))
        records, size = self._db.execute(
            f"SELECT COALESCE(SUM(records), 0), COALESCE(SUM(size), 0) FROM batches WHERE seq IN ({marks})",
            seqs,
        ).fetchone()
        self._db.execute(f"DELETE FROM batches WHERE seq IN ({marks})", seqs)
        return int(records), int(size)

    # -- releasing --------------------------------------------------------------------------------------

    async def take(self, max_records: int, max_bytes: int, linger: float) -> list[Batch] | None:
        taken = await super().take(max_records, max_bytes, linger)
        if taken:
            self._hot_bytes -= sum(self._memory_of.pop(id(b), 0) for b in taken)
        return taken

    def _release(self, batches: list[Batch]) -> asyncio.Future[None] | None:
        seqs = [self._seq_of.pop(id(b)) for b in batches if id(b) in self._seq_of]
        if not seqs:
            return None
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.deletes.extend(seqs)
        self._pending.delete_waiters.append(waiter)
        self._kick()
        return waiter

    def abandon(self, batches: list[Batch]) -> None:
        # Still stored and still counted: they are delivered at the next start.
        for b in batches:
            self._seq_of.pop(id(b), None)
        self._in_flight -= len(batches)

    async def shutdown(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._db is not None:
            db, self._db = self._db, None
            await self._run(db.close)
        self._io.shutdown(wait=True)
