"""gzip for the bodies burnline sends: level 1 by ISA-L's igzip, levels 2 to 9 by zlib.

At zlib's level 1, compressing the ``_bulk`` bodies of the Forward -> Elasticsearch path took about
a tenth of its CPU. ISA-L (python-isal, the binding of Intel's library) writes the same format, an
RFC 1952 member that every gzip reader takes. On those bodies its level 1 compresses 5 times faster
than zlib's level 1 to the same size (bench/RESULTS.md). Its other levels gain nothing there (its
level 3 is slower than zlib's and larger), so a level above 1, asked by whoever trades CPU for bytes
on a slow link, is zlib's.
"""

from __future__ import annotations

import zlib
from typing import Final

from isal import isal_zlib

# wbits for a gzip member (header and CRC-32 trailer) rather than a zlib stream.
_GZIP_WBITS: Final = 31


def gzip_compress(data: bytes, level: int) -> bytes:
    """``data`` as one gzip member at ``level`` (1-9). Both libraries release the GIL meanwhile."""
    if level == 1:
        return isal_zlib.compress(data, 1, wbits=_GZIP_WBITS)
    return zlib.compress(data, level, wbits=_GZIP_WBITS)
