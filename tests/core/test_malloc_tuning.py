"""collector/core/malloc_tuning.py. glibc's thresholds are process-wide, so the tuning itself runs
in processes of their own; the cases that leave the allocator alone run here."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from collector.core import malloc_tuning
from tests.process import BurnlineProcess
from tests.support import built_in_endpoints

# Where a 4 MiB allocation lands: glibc serves it from the heap (below the program break) or from a
# mapping of its own (above it, where the shared libraries are).
_PROGRAM = """
import ctypes, sys
from collector.core.malloc_tuning import tune_allocator
said = tune_allocator() if sys.argv[1] == "tune" else "untuned"
libc = ctypes.CDLL(None)
libc.sbrk.restype = ctypes.c_void_p
libc.sbrk.argtypes = (ctypes.c_ssize_t,)
block = bytes(4 * 1024 * 1024)
place = "heap" if id(block) < libc.sbrk(0) else "mapping"
del block
print(place)
print(said)
"""

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")


def _run(mode: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in malloc_tuning.OPERATOR_SETTINGS}
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM, mode],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@glibc_only
def test_a_batch_sized_buffer_comes_from_the_heap_once_tuned() -> None:
    # glibc's default maps it on its own (the mapping its next free gives back to the kernel) ...
    assert _run("untuned") == ["mapping", "untuned"]
    # ... and after tune_allocator the heap serves it, and keeps it for the next batch.
    assert _run("tune") == ["heap", "mmap threshold 32 MiB, trim threshold 32 MiB"]


@glibc_only
def test_an_operators_own_setting_is_left_alone() -> None:
    place, said = _run("tune", MALLOC_TRIM_THRESHOLD_="1048576")
    assert said == "left as MALLOC_TRIM_THRESHOLD_ set it"
    assert place == "mapping"  # glibc's own mmap threshold, not burnline's


def test_another_c_library_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    assert malloc_tuning.tune_allocator() == "not glibc: the C library's allocator is left as it is"


def test_glibc_tunables_count_as_the_operators_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1048576")
    assert malloc_tuning.tune_allocator() == "left as GLIBC_TUNABLES set it"


@glibc_only
async def test_the_service_tunes_its_allocator_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = built_in_endpoints()
    env["BURNLINE_DATA_DIR"] = str(tmp_path / "data")
    for name in malloc_tuning.OPERATOR_SETTINGS:
        monkeypatch.delenv(name, raising=False)  # the child inherits the rest of this environment
    proc = BurnlineProcess(Path("-"), tmp_path, env)
    await proc.start()
    try:
        assert "allocator: mmap threshold 32 MiB, trim threshold 32 MiB" in proc.log()
        await proc.signal(signal.SIGTERM)
        assert await proc.wait() == 0, proc.log()
    finally:
        await proc.stop()
