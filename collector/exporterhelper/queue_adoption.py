"""Durable queues of workers that no longer exist are adopted, so that changing ``service.workers``
loses no acknowledged batch.

Each worker keeps its exporter queues under ``worker.directory(<data_dir>/queue)``: with one worker
``queue/<cid>.db``, with N ``queue/worker-<i>/<cid>.db``. When N changes between runs some of those
databases belong to nobody (1→2: ``queue/<cid>.db``; 3→2: ``queue/worker-2/``; 2→1: ``worker-0/`` and
``worker-1/``). ``orphan_databases`` says which of them a worker takes over (each orphan goes to
exactly one live worker, the same one in every worker's view), and ``adopt`` moves their rows into
the worker's own database before its queue opens, in their original order, after its own backlog.

Crash safety: SQLite commits a transaction over several ATTACHed databases atomically only in a
rollback-journal mode, where a super-journal ties the files' journals together; in WAL mode each
file commits on its own, and a crash between them would either lose the batches (orphan emptied,
target not) or duplicate them. So, for the adoption only, both the orphan and the target leave WAL
for ``journal_mode=DELETE`` with ``synchronous=FULL``, and one transaction per orphan both copies its
rows into the target and deletes them from the orphan. Either both files have the change after a
crash or neither does (the hot journals roll back at the next open). The target goes back to WAL
afterwards (the queue sets it at every open anyway). The orphan's files are deleted only after the
commit; if the process dies in between, the next start finds an orphan with no rows, adopts nothing
and deletes it: nothing is delivered twice, and no deterministic-id idempotence is relied on.

An orphan that cannot be adopted (not a database, corrupt, another schema version, locked) is left
where it is with an error naming it, and nothing is counted: its data stays for an operator, and
the queue opens without it.

An exporter whose queue is in memory adopts nothing, but a disk queue of an earlier run (its
``queue.storage`` was ``disk``, the default before the ``prometheus`` exporter's became ``memory``)
may still hold batches: ``queued_on_disk`` counts them, and the service names the file and its
records in a warning instead of leaving them unmentioned.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from collector.exporterhelper.durable_queue import BATCHES_TABLE, PAGE_SIZE, SCHEMA_VERSION
from collector.workers.identity import WorkerIdentity

log = logging.getLogger("burnline.queue")

_WORKER_DIR = re.compile(r"worker-(0|[1-9][0-9]*)")
_COLUMNS = {"seq", "records", "size", "crc", "payload"}
_SUFFIXES = ("", "-wal", "-shm", "-journal")


class _NotAdoptable(Exception):
    """The orphan is readable but not a queue this version can take over."""


def orphan_databases(queue_root: Path, file_name: str, worker: WorkerIdentity) -> list[Path]:
    """The databases named ``file_name`` under ``queue_root`` that no live worker owns and that
    ``worker`` takes over: the single-worker one (``queue_root/file_name``) goes to worker 0 when
    there are several; ``worker-<j>/`` with ``j >= count`` goes to worker ``j % count``; with one
    worker, every ``worker-<j>/``. Never the worker's own database."""
    own = worker.directory(queue_root) / file_name
    found: list[Path] = []
    top = queue_root / file_name
    if worker.count > 1 and worker.index == 0 and top.is_file():
        found.append(top)
    for index, directory in _worker_directories(queue_root):
        # With one worker no worker-<j>/ is live; with several, worker-<j>/ for j < count are.
        if worker.count > 1 and index < worker.count:
            continue
        candidate = directory / file_name
        if index % worker.count == worker.index and candidate.is_file():
            found.append(candidate)
    return [path for path in found if path != own]


def queued_on_disk(database: Path) -> int:
    """The records a queue database still holds, read-only (0 for a file that is no queue of this
    schema). Blocking: call it from a thread; sqlite3.Error when the file cannot be read."""
    db = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        if not _has_batches_table(db):
            return 0
        (records,) = db.execute("SELECT COALESCE(SUM(records), 0) FROM batches").fetchone()
        return int(records)
    finally:
        db.close()


def _has_batches_table(db: sqlite3.Connection) -> bool:
    return _COLUMNS.issubset(row[1] for row in db.execute("PRAGMA table_info(batches)"))


def _worker_directories(queue_root: Path) -> list[tuple[int, Path]]:
    if not queue_root.is_dir():
        return []
    found = []
    for entry in queue_root.iterdir():
        # Only the names WorkerIdentity.directory makes: "worker-01" is nobody's and is left alone.
        match = _WORKER_DIR.fullmatch(entry.name)
        if match and entry.is_dir():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def adopt(target_db: Path, orphans: Sequence[Path]) -> tuple[int, int]:
    """Moves every batch of ``orphans`` into ``target_db`` (created with the queue's schema if need
    be) and deletes the orphans; returns the (rows, records) adopted. Blocking: call it from a thread
    before the queue on ``target_db`` opens (it needs the only connection to the target)."""
    target_db.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(target_db, isolation_level=None)
    try:
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # as DurableQueue makes its databases
        db.execute(BATCHES_TABLE)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return adopt_into(db, orphans)
    finally:
        db.close()


def adopt_into(db: sqlite3.Connection, orphans: Sequence[Path]) -> tuple[int, int]:
    """``adopt`` through an open connection to the target (autocommit, no other connection to the
    target open, the batches table present): what DurableQueue calls while it opens."""
    if not orphans:
        return 0, 0
    total_rows = total_records = 0
    (synchronous,) = db.execute("PRAGMA main.synchronous").fetchone()
    _journal_mode(db, "main", "delete")
    db.execute("PRAGMA main.synchronous=FULL")
    try:
        for orphan in orphans:
            try:
                _prepare(orphan)
                rows, records = _move(db, orphan)
            except (sqlite3.Error, OSError, _NotAdoptable) as exc:
                log.error(
                    "queue database %s of a worker that no longer runs cannot be adopted (%s); left in "
                    "place, its batches are not delivered",
                    orphan,
                    exc,
                )
                continue
            _remove_files(orphan)
            log.info(
                "adopted queue database %s of a worker that no longer runs: %d batch(es), %d record(s)",
                orphan,
                rows,
                records,
            )
            total_rows += rows
            total_records += records
    finally:
        db.execute(f"PRAGMA main.synchronous={int(synchronous)}")
        _journal_mode(db, "main", "wal")
    return total_rows, total_records


def _prepare(orphan: Path) -> None:
    """Checks the orphan is a sound queue of this schema and takes it out of WAL (which folds in a
    WAL the dead worker did not checkpoint). mode=rw: a missing orphan is an error, never created."""
    db = sqlite3.connect(f"{orphan.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None)
    try:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version != SCHEMA_VERSION:
            raise _NotAdoptable(f"schema version {version}, this version reads {SCHEMA_VERSION}")
        if not _has_batches_table(db):
            raise _NotAdoptable("no batches table of the queue's schema")
        problems = [row[0] for row in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise _NotAdoptable(f"integrity check: {'; '.join(problems[:3])}")
        _journal_mode(db, "main", "delete")
    finally:
        db.close()


def _move(db: sqlite3.Connection, orphan: Path) -> tuple[int, int]:
    """One transaction over both files: the rows in the target, in their order, and gone from the
    orphan."""
    db.execute("ATTACH DATABASE ? AS orphan", (str(orphan),))
    try:
        # The orphan is in DELETE mode since _prepare: with both files out of WAL, COMMIT goes
        # through a super-journal and is atomic across them.
        _journal_mode(db, "orphan", "delete")
        db.execute("PRAGMA orphan.synchronous=FULL")
        db.execute("BEGIN IMMEDIATE")
        try:
            rows, records = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(records), 0) FROM orphan.batches"
            ).fetchone()
            _copy_rows(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # an I/O error may have rolled it back already
                db.execute("ROLLBACK")
            raise
    finally:
        db.execute("DETACH DATABASE orphan")
    return int(rows), int(records)


def _copy_rows(db: sqlite3.Connection) -> None:
    # New seqs from the target's AUTOINCREMENT, assigned in the orphan's order; CRC and the counts
    # travel as they are (a row that fails its CRC is still skipped, and counted, when read).
    db.execute(
        "INSERT INTO main.batches (records, size, crc, payload)"
        " SELECT records, size, crc, payload FROM orphan.batches ORDER BY seq"
    )
    db.execute("DELETE FROM orphan.batches")


def _journal_mode(db: sqlite3.Connection, schema: str, mode: str) -> None:
    (got,) = db.execute(f"PRAGMA {schema}.journal_mode={mode}").fetchone()
    if str(got).lower() != mode:
        # Still in another mode (another connection holds the file): the commit would not be atomic.
        raise sqlite3.OperationalError(f"cannot switch {schema} to journal_mode={mode} (still {got})")


def _remove_files(orphan: Path) -> None:
    """Deletes an adopted (now empty) orphan, and its worker directory when nothing else is left."""
    for suffix in _SUFFIXES:
        Path(f"{orphan}{suffix}").unlink(missing_ok=True)
    if _WORKER_DIR.fullmatch(orphan.parent.name):
        try:
            orphan.parent.rmdir()
        except OSError:
            pass  # other exporters' queues (or anything else) still there
