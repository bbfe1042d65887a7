"""glibc's allocator, set for a process that allocates and frees buffers of a few hundred KiB to a few
MiB for every batch.

Each Forward frame, Fluent Bit HTTP body, OTLP request, queue row and bulk body passes through
buffers of that size (a frame's bytes, its entries, the copy the decoder reads, the encoded bulk
body), and each is freed once its batch moves on. glibc serves a request above its mmap threshold
(128 KiB at start) with a mapping of its own, and gives free memory above its trim threshold at the
top of the heap back to the kernel. Both thresholds move by themselves ("dynamic"), after the
largest mapping freed so far, so whether a process keeps returning pages only to fault them in
again for the next batch (each fault zeroing 4 KiB) depends on the order its buffers came and went.
In `bench/stages.py`, seven runs of ten did: 71,700 minor faults against 19,400 in the other three
and 18,400-18,800 with the thresholds below, and a Forward record's decoding took 4.6-5.4 µs
against 2.5-3.1 and 2.8-3.5. A burnline process under load faulted less, 7,500 and 20,000 times in
8 s (about 1 with the thresholds below); a process that only decodes and encodes (the bench's
Forward floor) spent about a third of its time on it (bench/RESULTS.md, "glibc's allocator").

So burnline sets both thresholds once, at start (``tune_allocator``):

* ``M_MMAP_THRESHOLD`` ``MMAP_THRESHOLD`` (32 MiB, the most the dynamic threshold itself would
  reach): a batch's buffers come from the heap and are reused there;
* ``M_TRIM_THRESHOLD`` ``TRIM_THRESHOLD`` (32 MiB): free memory at the top of the heap is kept up to
  that much before it goes back to the kernel, so a process that just freed a batch does not give
  the pages back only to fault them in again for the next.

Setting either turns the dynamic adjustment off. An operator's own choice wins: when any of glibc's
``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_`` or ``GLIBC_TUNABLES``
is set, nothing is changed. On another C library (musl, macOS) nothing is changed either.
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Final

MMAP_THRESHOLD: Final = 32 * 1024 * 1024
TRIM_THRESHOLD: Final = 32 * 1024 * 1024

# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3

# What an operator sets to choose glibc's thresholds: burnline then leaves them alone.
OPERATOR_SETTINGS: Final = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "GLIBC_TUNABLES",
)


def tune_allocator() -> str:
    """Sets glibc's mmap and trim thresholds (process-wide); returns what was done, for the log."""
    if platform.libc_ver()[0] != "glibc":
        return "not glibc: the C library's allocator is left as it is"
    chosen = [name for name in OPERATOR_SETTINGS if os.environ.get(name)]
    if chosen:
        return f"left as {', '.join(chosen)} set it"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "glibc's mallopt is not reachable: the allocator is left as it is"
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    mib = 1024 * 1024
    # mallopt answers 1 when it took the value, 0 when it refused it.
    if not mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD):
        return "glibc refused the mmap threshold: the allocator is left as it is"
    if not mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD):
        return f"mmap threshold {MMAP_THRESHOLD // mib} MiB; glibc refused the trim threshold"
    return f"mmap threshold {MMAP_THRESHOLD // mib} MiB, trim threshold {TRIM_THRESHOLD // mib} MiB"
