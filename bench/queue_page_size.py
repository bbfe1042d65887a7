"""What SQLite's page size costs the durable queue: CPU per commit for batches of a few sizes.

Each commit is what DurableQueue's writer does (collector/exporterhelper/durable_queue.py): one
transaction that deletes a delivered row and inserts a new batch's row, in WAL mode with
``synchronous=NORMAL`` (the fsync, when ``queue.fsync`` asks for it, is waiting, not CPU). The
process's CPU time is measured, so the figure includes SQLite's checkpoints. 230 KB is the queue row
of the bench's Forward frames (1,000 Kubernetes log records, their pods' resources stored once);
700 KB one of larger records; 2 KB a batch of a few records.

Run: .venv/bin/python bench/queue_page_size.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.exporterhelper.durable_queue import BATCHES_TABLE, PAGE_SIZE

PAGE_SIZES = (4096, 8192, 16384, 32768, 65536)
# (row bytes, commits): fewer commits for the large rows, so that each case takes about a second.
BATCHES = ((700_000, 200), (230_000, 500), (60_000, 1_000), (2_000, 3_000))
KEPT_ROWS = 5  # rows queued at once: each commit deletes the oldest beyond these


def commit_cpu(page_size: int, row_bytes: int, commits: int) -> tuple[float, int]:
    """(CPU ms per commit, the WAL's largest size in MiB)."""
    payload = os.urandom(row_bytes)
    with tempfile.TemporaryDirectory(prefix="burnline-pages-") as directory:
        path = Path(directory) / "q.db"
        db = sqlite3.connect(path, isolation_level=None)
        db.execute(f"PRAGMA page_size={page_size}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(BATCHES_TABLE)
        queued: list[int] = []
        wal_peak = 0
        started = time.process_time()
        for _ in range(commits):
            db.execute("BEGIN IMMEDIATE")
            if len(queued) >= KEPT_ROWS:
                db.execute("DELETE FROM batches WHERE seq = ?", (queued.pop(0),))
            cursor = db.execute(
                "INSERT INTO batches (records, size, crc, payload) VALUES (?, ?, ?, ?)",
                (1000, row_bytes, 0, payload),
            )
            queued.append(int(cursor.lastrowid or 0))
            db.execute("COMMIT")
            wal_peak = max(wal_peak, path.with_name("q.db-wal").stat().st_size)
        cpu = time.process_time() - started
        db.close()
    return cpu / commits * 1e3, wal_peak >> 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="times each case runs (each row printed)")
    args = parser.parse_args()
    print(f"burnline's queue databases use {PAGE_SIZE}-byte pages; CPU ms per commit (WAL peak MiB)")
    print(f"{'row bytes':>10} " + " ".join(f"{size:>14}" for size in PAGE_SIZES))
    for row_bytes, commits in BATCHES:
        for _ in range(args.rounds):
            cells = []
            for size in PAGE_SIZES:
                cpu, wal = commit_cpu(size, row_bytes, commits)
                cells.append(f"{cpu:8.3f} ({wal:3d})")
            print(f"{row_bytes:>10,} " + " ".join(f"{cell:>14}" for cell in cells))


if __name__ == "__main__":
    main()
