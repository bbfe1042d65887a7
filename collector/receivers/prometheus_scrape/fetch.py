"""Reading a scrape's answer: the body, inflated within ``body_size_limit`` while it streams, and
what a failed connection was."""

from __future__ import annotations

import errno

import aiohttp

from collector.receivers.bounded_inflate import AUTO_WBITS, BoundedInflater, InflateError, InflateTooLarge
from collector.receivers.prometheus_scrape.target import ScrapeFailed

_READ_CHUNK = 64 * 1024


async def read_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The response body, inflated if gzip/deflate, failing as soon as it passes ``limit`` bytes
    (0: no limit) without reading the rest."""
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    inflater = None
    if encoding in ("gzip", "x-gzip", "deflate"):
        # Only the first gzip member (or zlib stream) is read; bytes after its end are ignored.
        inflater = BoundedInflater(AUTO_WBITS, limit or None)
    elif encoding not in ("", "identity"):
        raise ScrapeFailed("unsupported_encoding", f"the body has Content-Encoding {encoding!r}")
    too_large = ScrapeFailed("body_size_limit", f"the body is larger than the {limit}-byte body_size_limit")
    declared = response.content_length
    if limit and inflater is None and declared is not None and declared > limit:
        raise too_large
    body = bytearray()
    try:
        async for chunk in response.content.iter_chunked(_READ_CHUNK):
            if inflater is not None:
                inflater.feed(chunk)
                continue
            body += chunk
            if limit and len(body) > limit:
                raise too_large
    except InflateTooLarge:
        raise too_large from None
    except InflateError as exc:
        raise ScrapeFailed("bad_encoding", f"invalid {encoding} data: {exc}") from None
    if inflater is None:
        return bytes(body)
    if not inflater.complete:
        raise ScrapeFailed("bad_encoding", f"the {encoding} body is truncated")
    return bytes(inflater.out)


def connection_reason(exc: aiohttp.ClientConnectorError) -> str:
    os_error = exc.os_error
    if isinstance(os_error, ConnectionRefusedError) or getattr(os_error, "errno", None) == errno.ECONNREFUSED:
        return "connection_refused"
    return "connection_failed"
