"""An answer written in parts as they are made (the admin /metrics and SLO list with thousands of
SLOs), so that it is never held whole; a client that leaves half way ends it quietly."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator

from aiohttp import web

log = logging.getLogger("burnline.admin")


async def streamed(
    request: web.Request, parts: AsyncGenerator[bytes, None], content_type: str
) -> web.StreamResponse:
    """Sends ``parts`` as one chunked answer. A client gone before the end is no error of the
    server's: the rest is not made (the generator is closed) and one debug line says so."""
    response = web.StreamResponse(headers={"Content-Type": content_type})
    async with contextlib.aclosing(parts):
        try:
            await response.prepare(request)
            async for part in parts:
                await response.write(part)
            await response.write_eof()
        except ConnectionResetError:
            log.debug("%s %s: the client left before the answer was complete", request.method, request.path)
    return response
