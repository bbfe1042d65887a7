"""Bounded decompression of gzip and zlib/deflate data: a compression bomb never fully expands.

The one copy of this logic in burnline: the HTTP receivers' request bodies
(:mod:`collector.httpserver.body`), Forward's CompressedPackedForward entries and
prometheus_scrape's gzip scrape bodies all inflate through :class:`BoundedInflater`, each turning
its exceptions into its own answer (a 4xx, a closed connection, a failed scrape).
"""

from __future__ import annotations

import zlib
from typing import Final

GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
DEFLATE_WBITS: Final = zlib.MAX_WBITS
# A gzip or a zlib header, detected from the first bytes.
AUTO_WBITS: Final = 32 + zlib.MAX_WBITS


class InflateError(Exception):
    """The data is not valid compressed data; the message is zlib's."""


class InflateTooLarge(Exception):
    """The data inflates past the limit: inflating stopped one byte past it."""


class BoundedInflater:
    """Inflates data fed in chunks to at most ``limit`` bytes (None: no limit).

    Never holds more than ``limit + 1`` bytes of output whatever the input claims. With ``members``
    a gzip stream may be several concatenated members (one stream, as gzip reads them); without,
    bytes after the end of the stream are only counted in ``trailing``.
    """

    def __init__(self, wbits: int, limit: int | None, *, members: bool = False) -> None:
        self.wbits = wbits
        self.limit = limit
        self.members = members
        self.out = bytearray()
        self.trailing = 0
        self._stream = zlib.decompressobj(wbits)

    @property
    def complete(self) -> bool:
        """True when the (last) stream has ended: anything else is a truncated stream."""
        return self._stream.eof

    def feed(self, data: bytes) -> None:
        """Inflates ``data``; raises InflateTooLarge past the limit, InflateError for bad data."""
        limit = self.limit
        pending = data
        try:
            while pending:
                if self._stream.eof:
                    if not self.members:
                        self.trailing += len(pending)
                        return
                    self._stream = zlib.decompressobj(self.wbits)  # the next member
                # Asking for one byte past the limit tells "exactly at the limit" from "over it".
                room = 0 if limit is None else limit - len(self.out) + 1  # 0: unbounded
                self.out += self._stream.decompress(pending, room)
                if limit is not None and len(self.out) > limit:
                    raise InflateTooLarge
                pending = self._stream.unused_data if self._stream.eof else self._stream.unconsumed_tail
        except zlib.error as exc:
            raise InflateError(str(exc)) from None
