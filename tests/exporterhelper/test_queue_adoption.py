"""Queue adoption: when the worker count changes, the durable queues of workers that no longer exist
are moved into live ones, once, in order, even when the process dies in the middle."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from collector.core.model import Batch, LogRecord, Signal
from collector.core.telemetry import Telemetry
from collector.exporterhelper.durable_queue import DurableQueue, database_file
from collector.exporterhelper.queue import QueueConfig
from collector.exporterhelper.queue_adoption import adopt, orphan_databases, queued_on_disk
from collector.workers.identity import WorkerIdentity

CID = "elasticsearch/logs"
FILE = database_file(CID)  # elasticsearch_logs.db


def batch(tag: str, n: int = 2, size: int = 100) -> Batch:
    return Batch(Signal.LOGS, [LogRecord(time_unix_nano=i, body=f"{tag}-{i}") for i in range(n)], size)


def bodies(batches: list[Batch] | None) -> list[str]:
    return [r.body for b in batches or [] for r in b.items]


async def open_queue(
    directory: Path, adopt: list[Path] | None = None, telemetry: Telemetry | None = None
) -> DurableQueue:
    q = DurableQueue(CID, QueueConfig(), telemetry or Telemetry(), directory, adopt=adopt or [])
    await q.open()
    return q


async def fill(directory: Path, *tags: str, n: int = 2) -> Path:
    """A queue left with batches, as a worker that stopped before delivering them leaves it."""
    q = await open_queue(directory)
    for tag in tags:
        await q.put(batch(tag, n))
    await q.close()
    await q.shutdown()
    return q.path


async def drain(q: DurableQueue) -> list[str]:
    """Everything the queue holds, in the order it hands it out (bounded: one take per batch)."""
    out: list[str] = []
    for _ in range(1000):
        if q.records == 0:
            break
        taken = await q.take(1000, 10_000_000, 0)
        out.extend(bodies(taken))
        await q.release(taken or [])
    assert q.records == 0
    return out


def row_count(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT COUNT(*) FROM batches").fetchone()[0])


def gone(path: Path) -> bool:
    return not any(Path(f"{path}{suffix}").exists() for suffix in ("", "-wal", "-shm", "-journal"))


# -- which orphans a worker takes -----------------------------------------------------------------


def make(root: Path, *relative: str) -> None:
    for rel in relative:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_one_to_two_workers_worker_0_takes_the_single_worker_queue(tmp_path: Path) -> None:
    make(tmp_path, FILE, "other.db")
    assert orphan_databases(tmp_path, FILE, WorkerIdentity(0, 2)) == [tmp_path / FILE]
    assert orphan_databases(tmp_path, FILE, WorkerIdentity(1, 2)) == []


def test_three_to_two_workers_worker_2_goes_to_worker_0(tmp_path: Path) -> None:
    make(tmp_path, *(f"worker-{i}/{FILE}" for i in range(3)))
    assert orphan_databases(tmp_path, FILE, WorkerIdentity(0, 2)) == [tmp_path / "worker-2" / FILE]
    assert orphan_databases(tmp_path, FILE, WorkerIdentity(1, 2)) == []


def test_five_to_two_workers_spread_the_orphans(tmp_path: Path) -> None:
    make(tmp_path, *(f"worker-{i}/{FILE}" for i in range(5)))
    assert orphan_databases(tmp_path, FILE, WorkerIdentity(0, 2)) == [
        tmp_path / "worker-2" / FILE,
        tmp_path / "worker-4" / FILE,
    ]
    assert orphan_databases(tmp_path, FILE, WorkerIdentity(1, 2)) == [tmp_path / "worker-3" / FILE]


def test_two_to_one_worker_takes_every_worker_queue(tmp_path: Path) -> None:
    # worker-10 sorts by number, after worker-1; names the workers never make are nobody's.
    make(tmp_path, FILE, f"worker-0/{FILE}", f"worker-1/{FILE}", f"worker-10/{FILE}")
    make(tmp_path, f"worker-01/{FILE}", f"workers-2/{FILE}", "worker-3/other.db")
    assert orphan_databases(tmp_path, FILE, WorkerIdentity()) == [
        tmp_path / "worker-0" / FILE,
        tmp_path / "worker-1" / FILE,
        tmp_path / "worker-10" / FILE,
    ]


def test_an_unchanged_worker_count_has_no_orphans(tmp_path: Path) -> None:
    make(tmp_path, f"worker-0/{FILE}", f"worker-1/{FILE}")
    assert orphan_databases(tmp_path, FILE, WorkerIdentity(0, 2)) == []
    assert orphan_databases(tmp_path, FILE, WorkerIdentity(1, 2)) == []
    assert orphan_databases(tmp_path / "missing", FILE, WorkerIdentity()) == []


# -- moving the rows ---------------------------------------------------------------------------------


async def test_adopted_batches_follow_the_own_backlog_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", "burnline.queue")
    # 2 -> 1 worker: worker-0 and worker-1 left batches; the single worker's queue has its own.
    orphan_a = await fill(tmp_path / "worker-0", "a1", "a2", "a3")
    orphan_b = await fill(tmp_path / "worker-1", "b1", n=3)
    await fill(tmp_path, "own")
    orphans = orphan_databases(tmp_path, FILE, WorkerIdentity())
    assert orphans == [orphan_a, orphan_b]

    t = Telemetry()
    q = await open_queue(tmp_path, orphans, t)
    assert q.records == 2 + 6 + 3  # counted as any leftover backlog: bounds and metrics see it
    assert t.registry.get_sample_value("burnline_queue_records", {"component": CID}) == 11
    assert gone(orphan_a) and gone(orphan_b)
    assert not (tmp_path / "worker-0").exists()  # empty worker directories go too
    assert f"adopted queue database {orphan_a} of a worker that no longer runs: 3 batch(es), 6 record(s)" in (
        caplog.text
    )
    assert f"{orphan_b} of a worker that no longer runs: 1 batch(es), 3 record(s)" in caplog.text
    await q.put(batch("new"))  # after what was adopted
    assert await drain(q) == [
        "own-0", "own-1",
        "a1-0", "a1-1", "a2-0", "a2-1", "a3-0", "a3-1",
        "b1-0", "b1-1", "b1-2",
        "new-0", "new-1",
    ]  # fmt: skip
    await q.shutdown()
    assert row_count(q.path) == 0


async def test_adopt_into_a_new_database_keeps_crc_and_counts(tmp_path: Path) -> None:
    orphan = await fill(tmp_path / "queue", "x", "y")
    with closing(sqlite3.connect(orphan)) as db:
        before = db.execute("SELECT records, size, crc, payload FROM batches ORDER BY seq").fetchall()
    target = tmp_path / "queue" / "worker-0" / FILE  # 1 -> 2 workers: the target does not exist yet
    assert adopt(target, [orphan]) == (2, 4)
    assert gone(orphan)
    with closing(sqlite3.connect(target)) as db:
        after = db.execute("SELECT records, size, crc, payload FROM batches ORDER BY seq").fetchall()
        (mode,) = db.execute("PRAGMA journal_mode").fetchone()
    assert after == before
    assert mode == "wal"  # back in the queue's mode
    q = await open_queue(target.parent)
    assert await drain(q) == ["x-0", "x-1", "y-0", "y-1"]
    await q.shutdown()


async def test_an_orphan_a_killed_worker_left_in_its_wal_is_adopted(tmp_path: Path) -> None:
    dead = await open_queue(tmp_path / "worker-1")
    await dead.put(batch("w"))
    # No shutdown and no checkpoint, as after a SIGKILL: the rows are only in the WAL...
    wal = Path(f"{dead.path}-wal")
    assert wal.exists() and wal.stat().st_size > 0
    assert dead._db is not None
    dead._db.close()  # ...and the dead process holds no connection
    dead._io.shutdown(wait=True)
    q = await open_queue(tmp_path, [dead.path])
    assert await drain(q) == ["w-0", "w-1"]
    await q.shutdown()


# -- orphans that cannot be adopted --------------------------------------------------------------------


async def test_a_corrupt_orphan_is_left_in_place_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = b"this is not an SQLite database" * 100
    corrupt = tmp_path / "worker-2" / FILE
    corrupt.parent.mkdir()
    corrupt.write_bytes(garbage)
    good = await fill(tmp_path / "worker-3", "g")
    await fill(tmp_path, "own")
    q = await open_queue(tmp_path, [corrupt, good])
    assert q.records == 4  # own + the good orphan; nothing counted for the corrupt one
    assert corrupt.read_bytes() == garbage
    assert f"queue database {corrupt} of a worker that no longer runs cannot be adopted" in caplog.text
    assert gone(good)
    assert await drain(q) == ["own-0", "own-1", "g-0", "g-1"]
    await q.shutdown()
    assert corrupt.read_bytes() == garbage  # the queue's own database was never confused with it


async def test_an_orphan_of_another_schema_version_is_left(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    orphan = await fill(tmp_path / "worker-1", "v")
    with closing(sqlite3.connect(orphan)) as db:
        db.execute("PRAGMA user_version=2")  # written by a newer burnline (autocommitted: a PRAGMA)
    q = await open_queue(tmp_path, [orphan])
    assert q.records == 0
    assert "schema version 2" in caplog.text and str(orphan) in caplog.text
    assert row_count(orphan) == 1
    await q.shutdown()


async def test_a_corrupt_target_is_set_aside_before_adopting(tmp_path: Path) -> None:
    orphan = await fill(tmp_path / "worker-1", "o")
    (tmp_path / FILE).write_bytes(b"garbage" * 1000)
    q = await open_queue(tmp_path, [orphan])
    assert list(tmp_path.glob(f"{FILE}.corrupt-*"))
    assert await drain(q) == ["o-0", "o-1"]
    await q.shutdown()


# -- a process that dies while adopting ------------------------------------------------------------------

# Runs adopt() in a child process that dies (os._exit: no cleanup, no close) at a chosen point.
_CRASH = """
import os, sys
from pathlib import Path
from collector.exporterhelper import queue_adoption as qa

def die(*args):
    os._exit(17)

if sys.argv[3] == "after-commit":
    qa._remove_files = die
else:  # before the commit, with both files' changes spilled to disk (hot journals)
    copy = qa._copy_rows
    def copy_then_die(db):
        db.execute("PRAGMA main.cache_size=1")
        db.execute("PRAGMA orphan.cache_size=1")
        copy(db)
        die()
    qa._copy_rows = copy_then_die
qa.adopt(Path(sys.argv[1]), [Path(sys.argv[2])])
os._exit(0)
"""


def crash_adopting(target: Path, orphan: Path, when: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CRASH, str(target), str(orphan), when],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 17, done.stderr


async def test_death_between_commit_and_delete_duplicates_nothing(tmp_path: Path) -> None:
    orphan = await fill(tmp_path / "worker-1", "c1", "c2")
    await fill(tmp_path, "own")
    await asyncio.to_thread(crash_adopting, tmp_path / FILE, orphan, "after-commit")
    assert orphan.exists() and row_count(orphan) == 0  # moved out in the same transaction
    assert row_count(tmp_path / FILE) == 3

    q = await open_queue(tmp_path, orphan_databases(tmp_path, FILE, WorkerIdentity()))
    assert q.records == 6
    assert gone(orphan)
    assert await drain(q) == ["own-0", "own-1", "c1-0", "c1-1", "c2-0", "c2-1"]
    await q.shutdown()


async def test_death_before_commit_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    # Big enough that the one-page caches spill into both files before the commit.
    orphan = await fill(tmp_path / "worker-1", *(f"d{i}" for i in range(20)), n=50)
    await fill(tmp_path, "own")
    await asyncio.to_thread(crash_adopting, tmp_path / FILE, orphan, "before-commit")
    assert Path(f"{orphan}-journal").exists()  # a hot journal: the orphan's file was written

    q = await open_queue(tmp_path, orphan_databases(tmp_path, FILE, WorkerIdentity()))
    assert q.records == 2 + 20 * 50
    assert gone(orphan)
    expected = ["own-0", "own-1"] + [f"d{i}-{j}" for i in range(20) for j in range(50)]
    assert await drain(q) == expected
    await q.shutdown()


# -- a disk queue left behind by an exporter whose queue is now in memory ---------------------------


async def test_queued_on_disk_counts_the_records_a_queue_holds(tmp_path: Path) -> None:
    path = await fill(tmp_path, "a", "b", n=3)
    assert queued_on_disk(path) == 6
    assert row_count(path) == 2  # read only: nothing taken
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE t (x)")
    assert queued_on_disk(other) == 0  # a database, but no queue
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        queued_on_disk(garbage)
