"""gzip bodies (collector/core/gzip_body.py): standard members, ISA-L at level 1, zlib above."""

from __future__ import annotations

import gzip
import threading
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.core import gzip_body as module
from collector.core.gzip_body import INLINE_GZIP_BYTES, gzip_body, gzip_compress

NDJSON = b"".join(
    b'{"create":{"_index":"logs-generic-default","_id":"%d"}}\n{"message":"GET %d","status":200}\n' % (i, i)
    for i in range(2000)
)


@pytest.mark.parametrize("level", range(1, 10))
def test_every_level_writes_a_member_any_gzip_reader_takes(level: int) -> None:
    body = gzip_compress(NDJSON, level)
    assert body[:2] == b"\x1f\x8b"  # a gzip member, not a zlib stream
    assert gzip.decompress(body) == NDJSON
    assert zlib.decompress(body, wbits=31) == NDJSON
    assert len(body) < len(NDJSON) // 4


def test_level_one_is_isa_l_and_the_others_are_zlib() -> None:
    assert gzip_compress(NDJSON, 1) != zlib.compress(NDJSON, 1, wbits=31)
    for level in range(2, 10):
        assert gzip_compress(NDJSON, level) == zlib.compress(NDJSON, level, wbits=31)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=5000), st.integers(1, 9))
def test_any_bytes_come_back(data: bytes, level: int) -> None:
    assert gzip.decompress(gzip_compress(data, level)) == data


@pytest.mark.parametrize(
    ("level", "size", "inline"),
    [(1, 1000, True), (1, INLINE_GZIP_BYTES, True), (1, INLINE_GZIP_BYTES + 1, False), (6, 1000, False)],
)
async def test_gzip_body_compresses_small_level_one_bodies_on_the_loop(
    monkeypatch: pytest.MonkeyPatch, level: int, size: int, inline: bool
) -> None:
    """ISA-L's level 1 inline up to the bound; larger bodies and zlib's levels in a worker thread."""
    compressed_on: list[int] = []

    def recording(data: bytes, at: int) -> bytes:
        compressed_on.append(threading.get_ident())
        return gzip_compress(data, at)

    monkeypatch.setattr(module, "gzip_compress", recording)
    data = bytes(size)
    body = await gzip_body(data, level)
    assert gzip.decompress(body) == data
    [compressed_by] = compressed_on
    assert (compressed_by == threading.get_ident()) is inline
