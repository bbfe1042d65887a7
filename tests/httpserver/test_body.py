"""Request bodies: read within a limit (413 past it), inflated within a limit (a bomb is refused)."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator

import cramjam
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from collector.httpserver.answers import Rejected, rejection_response
from collector.httpserver.body import decompress_snappy, inflate, read_body
from collector.receivers.bounded_inflate import GZIP_WBITS, BoundedInflater, InflateTooLarge

LIMIT = 1024

Client = TestClient[web.Request, web.Application]


def rejected(call: object, *args: object) -> Rejected:
    with pytest.raises(Rejected) as info:
        call(*args)  # type: ignore[operator]
    return info.value


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            body = await read_body(request, LIMIT)
        except Rejected as exc:
            return rejection_response(exc, CIMultiDict(), allow="POST")
        return web.Response(text=str(len(body)))

    app = web.Application()
    app.router.add_post("/", handle)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_a_body_within_the_limit_is_read_whole(
    client: Client,
) -> None:
    response = await client.post("/", data=b"x" * LIMIT)
    assert (response.status, await response.text()) == (200, str(LIMIT))


async def test_a_declared_length_over_the_limit_gets_413_and_a_closed_connection(client: Client) -> None:
    response = await client.post("/", data=b"x" * (LIMIT + 1))
    assert response.status == 413
    assert await response.text() == f"the body of {LIMIT + 1} bytes is over the {LIMIT}-byte limit\n"
    assert response.headers.get("Connection", "").lower() == "close"


async def test_a_chunked_body_is_cut_once_it_passes_the_limit(client: Client) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 512

    response = await client.post("/", data=chunks())
    assert response.status == 413
    assert await response.text() == f"the body is over the {LIMIT}-byte limit\n"


def test_gzip_members_and_deflate_inflate_within_the_limit() -> None:
    assert inflate(gzip.compress(b"a" * 10) + gzip.compress(b"b" * 5), "gzip", LIMIT) == b"a" * 10 + b"b" * 5
    assert inflate(zlib.compress(b"c" * LIMIT), "deflate", LIMIT) == b"c" * LIMIT


def test_a_decompression_bomb_is_refused_without_expanding_it() -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))
    exc = rejected(inflate, bomb, "gzip", LIMIT)
    assert (exc.status, exc.reason) == (413, "too_large")
    assert exc.detail == f"the gzip body inflates past the {LIMIT}-byte limit"
    inflater = BoundedInflater(GZIP_WBITS, LIMIT)
    with pytest.raises(InflateTooLarge):
        inflater.feed(bomb)
    assert len(inflater.out) == LIMIT + 1  # never more than one byte past the limit


def test_bad_truncated_or_trailing_compressed_data_gets_400() -> None:
    assert rejected(inflate, b"not gzip", "gzip", LIMIT).detail.startswith("invalid gzip data: ")
    assert rejected(inflate, gzip.compress(b"x" * 100)[:-4], "gzip", LIMIT).detail == (
        "the gzip stream is truncated"
    )
    exc = rejected(inflate, zlib.compress(b"x") + b"junk", "deflate", LIMIT)
    assert (exc.status, exc.reason, exc.detail) == (
        400,
        "bad_encoding",
        "4 bytes of trailing data after the deflate stream",
    )


def test_snappy_is_refused_by_its_announced_length_before_inflating() -> None:
    assert decompress_snappy(bytes(cramjam.snappy.compress_raw(b"s" * LIMIT)), LIMIT) == b"s" * LIMIT
    exc = rejected(decompress_snappy, bytes(cramjam.snappy.compress_raw(b"s" * (LIMIT + 1))), LIMIT)
    assert (exc.status, exc.reason) == (413, "too_large")
    assert rejected(decompress_snappy, b"\xff\xff\xff\xff\xff", LIMIT).reason == "invalid_snappy"
