"""Request bodies of the HTTP receivers: read within a limit, decoded within a limit.

Every decoder bounds what it produces (:mod:`collector.receivers.bounded_inflate` for gzip and
deflate, snappy's announced length for snappy), so that a small compressed body never becomes a
large one in memory.
"""

from __future__ import annotations

from typing import Final

import cramjam
from aiohttp import web

from collector.httpserver.answers import Rejected
from collector.receivers.bounded_inflate import (
    DEFLATE_WBITS,
    GZIP_WBITS,
    BoundedInflater,
    InflateError,
    InflateTooLarge,
)

CONTENT_ENCODINGS: Final = {"gzip": GZIP_WBITS, "x-gzip": GZIP_WBITS, "deflate": DEFLATE_WBITS}


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to pass ``limit`` bytes."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise Rejected(413, "too_large", f"the body of {declared} bytes is over the {limit}-byte limit")
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise Rejected(413, "too_large", f"the body is over the {limit}-byte limit")
    return bytes(body)


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """Decompresses ``body`` (gzip, possibly several members, or zlib deflate) to at most ``limit``
    bytes, never holding more than ``limit + 1`` bytes of output whatever the input claims."""
    wbits = CONTENT_ENCODINGS[encoding]
    inflater = BoundedInflater(wbits, limit, members=wbits == GZIP_WBITS)
    try:
        inflater.feed(body)
    except InflateTooLarge:
        raise Rejected(
            413, "too_large", f"the {encoding} body inflates past the {limit}-byte limit"
        ) from None
    except InflateError as exc:
        raise Rejected(400, "bad_encoding", f"invalid {encoding} data: {exc}") from None
    if inflater.trailing:
        detail = f"{inflater.trailing} bytes of trailing data after the {encoding} stream"
        raise Rejected(400, "bad_encoding", detail)
    if not inflater.complete:
        raise Rejected(400, "bad_encoding", f"the {encoding} stream is truncated")
    return bytes(inflater.out)


def decompress_snappy(body: bytes, max_size: int) -> bytes:
    """Snappy block format, its announced length checked against ``max_size`` before inflating."""
    try:
        announced = int(cramjam.snappy.decompress_raw_len(body))
    except cramjam.DecompressionError as exc:
        raise Rejected(400, "invalid_snappy", f"the body is not snappy block-compressed: {exc}") from None
    if announced > max_size:
        raise Rejected(
            413, "too_large", f"the body inflates to {announced} bytes, over the {max_size}-byte limit"
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise Rejected(400, "invalid_snappy", f"the body is not snappy block-compressed: {exc}") from None
