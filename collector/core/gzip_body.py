"""gzip for the bodies burnline sends: level 1 by ISA-L's igzip, levels 2 to 9 by zlib.

At zlib's level 1, compressing the ``_bulk`` bodies of the Forward -> Elasticsearch path took about
a tenth of its CPU. ISA-L (python-isal, the binding of Intel's library) writes the same format, an
RFC 1952 member that every gzip reader takes. On those bodies its level 1 compresses 5 times faster
than zlib's level 1 to the same size (bench/RESULTS.md). Its other levels gain nothing there (its
level 3 is slower than zlib's and larger), so a level above 1, asked by whoever trades CPU for bytes
on a slow link, is zlib's.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Final

from isal import isal_zlib

# wbits for a gzip member (header and CRC-32 trailer) rather than a zlib stream.
_GZIP_WBITS: Final = 31

# Bodies up to this size are gzipped at level 1 on the event loop (a few milliseconds with ISA-L).
INLINE_GZIP_BYTES: Final = 8 * 1024 * 1024


def gzip_compress(data: bytes, level: int) -> bytes:
    """``data`` as one gzip member at ``level`` (1-9). Both libraries release the GIL meanwhile."""
    if level == 1:
        return isal_zlib.compress(data, 1, wbits=_GZIP_WBITS)
    return zlib.compress(data, level, wbits=_GZIP_WBITS)


async def gzip_body(data: bytes, level: int) -> bytes:
    """``gzip_compress`` for a sender on the event loop. At level 1 ISA-L compresses the bench's
    bodies at about 2 GB/s, so one of up to ``INLINE_GZIP_BYTES`` is compressed inline: less than
    its trip through a worker thread, whose result waits for a turn of a loop kept busy by the
    receivers (bench/RESULTS.md, "gzip on the event loop"). Larger bodies, and zlib's levels 2-9
    (ten to twenty times slower), go to a worker thread, where they run beside the loop on another
    core: both libraries release the GIL."""
    if level == 1 and len(data) <= INLINE_GZIP_BYTES:
        return gzip_compress(data, 1)
    return await asyncio.to_thread(gzip_compress, data, level)
