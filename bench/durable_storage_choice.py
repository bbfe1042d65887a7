"""Which storage for the durable exporter queue: SQLite (WAL) or append-only segment files?

Measures the primitive the queue needs on every acknowledged batch — append one batch payload and
make it durable (fsync) — and the consumer's commit of its position, for both candidates, at a few
payload sizes. Prints appends/s and MiB/s. Run: .venv/bin/python bench/durable_storage_choice.py
"""

from __future__ import annotations

import os
import sqlite3
import struct
import tempfile
import time
import zlib

SIZES = (1024, 64 * 1024, 1024 * 1024)
SECONDS = 2.0  # per measurement, bounded


def bench_sqlite(directory: str, size: int) -> tuple[float, float]:
    db = sqlite3.connect(os.path.join(directory, f"q{size}.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")  # durable at commit, as an acknowledgement needs
    db.execute("CREATE TABLE q (seq INTEGER PRIMARY KEY, payload BLOB)")
    db.execute("CREATE TABLE pos (id INTEGER PRIMARY KEY, seq INTEGER)")
    payload = os.urandom(size)
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < SECONDS:
        db.execute("INSERT INTO q (payload) VALUES (?)", (payload,))
        n += 1
        if n % 10 == 0:  # the consumer commits its position and deletes what was delivered
            db.execute("INSERT OR REPLACE INTO pos VALUES (1, ?)", (n,))
            db.execute("DELETE FROM q WHERE seq <= ?", (n - 5,))
    elapsed = time.perf_counter() - started
    db.close()
    return n / elapsed, n * size / elapsed / 2**20


def bench_segments(directory: str, size: int) -> tuple[float, float]:
    path = os.path.join(directory, f"seg{size}.log")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    payload = os.urandom(size)
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < SECONDS:
        header = struct.pack(">IIQ", len(payload), zlib.crc32(payload), n)
        os.write(fd, header + payload)
        os.fdatasync(fd)
        n += 1
        if n % 10 == 0:  # the consumer commits its position: small file, write + fsync + rename
            tmp = path + ".pos.tmp"
            with open(tmp, "wb") as fh:
                fh.write(struct.pack(">Q", n))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path + ".pos")
    elapsed = time.perf_counter() - started
    os.close(fd)
    return n / elapsed, n * size / elapsed / 2**20


def main() -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", ".")) as tmp:
        print(f"{'payload':>9}  {'sqlite appends/s':>17} {'MiB/s':>7}", end="")
        print(f"  {'segment appends/s':>18} {'MiB/s':>7}")
        for size in SIZES:
            s_rate, s_mib = bench_sqlite(tmp, size)
            g_rate, g_mib = bench_segments(tmp, size)
            print(f"{size // 1024:>6}KiB  {s_rate:>17,.0f} {s_mib:>7.1f}  {g_rate:>18,.0f} {g_mib:>7.1f}")


if __name__ == "__main__":
    main()
