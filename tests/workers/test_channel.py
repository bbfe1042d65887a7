"""The supervisor-worker channel over a real socket pair: length-prefixed msgpack maps, in order; what
cannot be a frame of ours is a ChannelError; the worker's death ends the stream without losing what it
had already sent."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest

from collector.workers.channel import (
    COUNTS,
    HEADER,
    MAX_FRAME,
    SEND_BUFFER,
    Channel,
    ChannelError,
    encode,
    pair,
)

TIMEOUT = 30.0


async def collect(channel: Channel, limit: int = 100_000) -> list[dict[str, Any]]:
    """Every message until the stream ends (bounded by ``limit`` and a timeout)."""

    async def read() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        async for message in channel.messages():
            out.append(message)
            assert len(out) <= limit, "more messages than were sent"
        return out

    return await asyncio.wait_for(read(), TIMEOUT)


def message(i: int) -> dict[Any, Any]:
    return {
        "t": COUNTS,
        "i": i,
        "now": 1_700_000_000.5 + i,
        "c": [[f"slo-{i % 7}", 1_700_000_000 + 10 * i, i, i // 2]],
        "b": bytes([i % 256]) * (i % 50),  # bytes stay bytes (bin, not str)
        "s": "ü" * (i % 5),
        7: None,  # a map key that is not a string
    }


async def test_messages_round_trip_in_order() -> None:
    ours, theirs = pair()
    supervisor = await Channel.open(ours)
    worker = await Channel.open(theirs)
    try:
        sent = [message(i) for i in range(2000)]
        reading = asyncio.create_task(collect(supervisor))
        for m in sent:
            worker.send(m)
        await asyncio.wait_for(worker.drain(), TIMEOUT)
        await worker.close()
        received = await reading
    finally:
        await supervisor.close()
    assert received == sent
    assert all(isinstance(m["b"], bytes) for m in received)


def test_the_workers_end_is_inherited_and_buffers_are_large() -> None:
    ours, theirs = pair()
    try:
        assert theirs.get_inheritable() and not ours.get_inheritable()
        default, other = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with default, other:
            small = default.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        # Linux caps the request at net.core.[wr]mem_max and doubles it.
        expected = {
            option: 2 * min(SEND_BUFFER, _sysctl(name))
            for option, name in ((socket.SO_SNDBUF, "wmem_max"), (socket.SO_RCVBUF, "rmem_max"))
        }
        for end in (ours, theirs):
            for option, size in expected.items():
                got = end.getsockopt(socket.SOL_SOCKET, option)
                assert got == size if size else got > small
    finally:
        ours.close()
        theirs.close()


def _sysctl(name: str) -> int:
    try:
        return int(Path(f"/proc/sys/net/core/{name}").read_text())
    except OSError:
        return 0


async def _read_raw(raw: bytes) -> list[dict[str, Any]]:
    """What the supervisor's end makes of ``raw`` bytes written by the other end, then EOF."""
    ours, theirs = pair()
    channel = await Channel.open(ours)
    try:
        with theirs:
            theirs.sendall(raw)
            theirs.shutdown(socket.SHUT_WR)
            return await collect(channel)
    finally:
        await channel.close()


async def test_a_frame_over_the_limit_is_an_error() -> None:
    good = encode({"t": COUNTS, "c": []})
    with pytest.raises(ChannelError, match=f"a frame of {MAX_FRAME + 1} bytes"):
        await _read_raw(good + HEADER.pack(MAX_FRAME + 1) + b"x" * 64)


async def test_a_frame_of_exactly_the_limit_header_is_not_refused_for_its_size() -> None:
    # The size check is "over MAX_FRAME": a header of MAX_FRAME with a short body is a cut frame.
    assert await _read_raw(HEADER.pack(MAX_FRAME) + b"\x80") == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\xc1", id="never-used-byte"),
        pytest.param(b"\x92\x01", id="incomplete"),
        pytest.param(bytes(msgpack.packb({"t": 1})) + b"\x00", id="extra-data"),
        pytest.param(b"\x81\xd9\x02\xff\xfe\x01", id="invalid-utf8-key"),
        pytest.param(bytes(msgpack.packb([1, 2, 3])), id="not-a-map"),
        pytest.param(bytes(msgpack.packb("counts")), id="a-string"),
        pytest.param(b"\x81\x91\x01\x02", id="map-with-an-array-key"),
    ],
)
async def test_a_frame_that_is_not_a_msgpack_map_is_an_error(body: bytes) -> None:
    before = encode({"t": COUNTS, "c": [["a", 0, 1, 0]]})
    with pytest.raises(ChannelError):
        await _read_raw(before + HEADER.pack(len(body)) + body)


@pytest.mark.parametrize("cut", [1, 3, 4, 5, 20])
async def test_eof_mid_frame_ends_the_stream_quietly(cut: int) -> None:
    whole = [message(i) for i in range(3)]
    last = encode(message(99))
    assert len(last) > 20
    received = await _read_raw(b"".join(encode(m) for m in whole) + last[:cut])
    assert received == whole


async def test_counts_sent_before_the_worker_end_is_aborted_are_all_read() -> None:
    ours, theirs = pair()
    supervisor = await Channel.open(ours)
    worker = await Channel.open(theirs)
    try:
        sent = [message(i) for i in range(500)]
        for m in sent:
            worker.send(m)  # no drain: as a worker's observer sends before the ack
        worker._writer.transport.abort()  # dies at once: nothing asyncio still holds is written
        received = await collect(supervisor)
    finally:
        await supervisor.close()
    assert received == sent


_DYING_WORKER = """
import asyncio, os, signal, socket, sys
from collector.workers.channel import Channel, COUNTS

async def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    channel = await Channel.open(sock)
    for i in range(int(sys.argv[2])):
        channel.send({"t": COUNTS, "i": i, "c": [["slo", 1700000000, i, 0]], "now": 1.0})
    os.kill(os.getpid(), signal.SIGKILL)  # no drain, no close, no atexit

asyncio.run(main())
"""


async def test_counts_survive_the_death_of_a_worker_process() -> None:
    ours, theirs = pair()
    supervisor = await Channel.open(ours)
    count = 3000
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _DYING_WORKER,
            str(theirs.fileno()),
            str(count),
            pass_fds=(theirs.fileno(),),
            cwd=Path(__file__).resolve().parents[2],
        )
        theirs.close()  # the child holds the only other copy: its death is our EOF
        received = await collect(supervisor)
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == -signal.SIGKILL
    finally:
        await supervisor.close()
    assert [m["i"] for m in received] == list(range(count))


async def test_send_after_close_is_ignored() -> None:
    ours, theirs = pair()
    supervisor = await Channel.open(ours)
    worker = await Channel.open(theirs)
    try:
        worker.send({"t": COUNTS, "i": 1})
        await worker.close()
        worker.send({"t": COUNTS, "i": 2})  # no error, nothing written
        assert await collect(supervisor) == [{"t": COUNTS, "i": 1}]
    finally:
        await supervisor.close()


def test_frames_are_a_big_endian_length_and_a_msgpack_map() -> None:
    body = msgpack.packb({"t": "x", "b": b"\x00"}, use_bin_type=True)
    assert encode({"t": "x", "b": b"\x00"}) == b"\x00\x00\x00" + bytes([len(body)]) + body
