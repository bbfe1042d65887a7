"""An answer written in parts (collector/httpserver/streamed.py): whole for a client that reads it,
and for one that leaves half way no error, no traceback, and the rest never made."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from collector.httpserver.server import start_server
from collector.httpserver.streamed import streamed

PART = b"x" * 65536
PARTS = 400  # 26 MB: more than any socket buffer holds, so the server is still writing when we leave


class Source:
    def __init__(self) -> None:
        self.made = 0
        self.closed = asyncio.Event()

    async def parts(self) -> AsyncGenerator[bytes, None]:
        try:
            for _ in range(PARTS):
                self.made += 1
                yield PART
                await asyncio.sleep(0)
        finally:
            self.closed.set()


def app_for(source: Source) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await streamed(request, source.parts(), "text/plain")

    app = web.Application()
    app.router.add_get("/", handler)
    return app


async def test_a_reader_gets_every_part() -> None:
    source = Source()
    async with TestClient(TestServer(app_for(source))) as client:
        response = await client.get("/")
        assert response.status == 200 and response.headers["Transfer-Encoding"] == "chunked"
        assert await response.read() == PART * PARTS
    assert source.closed.is_set()


async def test_a_client_that_leaves_ends_it_quietly(caplog: pytest.LogCaptureFixture) -> None:
    source = Source()
    # Served as the admin server is (start_server), which lets a handler finish when its client goes.
    runner, port = await start_server(app_for(source), "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        with caplog.at_level(logging.DEBUG):
            assert (await reader.read(1024)).startswith(b"HTTP/1.1 200 OK")
            writer.transport.abort()
            await asyncio.wait_for(source.closed.wait(), 10)
            await asyncio.sleep(0.1)  # aiohttp's own handling of the ended request
    finally:
        await runner.cleanup()
    assert source.made < PARTS  # the rest was never made
    assert "GET /: the client left before the answer was complete" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
