"""Messages between a worker and its supervisor: msgpack maps, each behind a 4-byte length, over the
socket pair the supervisor made when it started the worker (the worker inherits its end as a file
descriptor, named by ``BURNLINE_WORKER_FD``).

A worker writes with :meth:`Channel.send`, which hands the frame to the kernel at once when the
socket has room (asyncio buffers the rest): what a worker counted before acknowledging a batch is
then in the socket buffer and reaches the supervisor even if the worker dies right after. The
buffer is made large (``SEND_BUFFER``) so that this holds while the supervisor is briefly behind.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import msgpack

HEADER = struct.Struct(">I")
MAX_FRAME = 64 << 20  # a metric batch for the SLO engine; anything larger is a bug, not data
SEND_BUFFER = 4 << 20

# What a worker says (the "t" key of each message).
HELLO = "hello"  # started; carries its admin port and pid
COUNTS = "counts"  # record SLO counts: [[slo name, bucket start, total, second], ...] at "now"
POINTS = "points"  # metric points an SLO counts, as a batch_codec batch (deltas are the supervisor's)


class ChannelError(Exception):
    """A frame that cannot be read: the peer is not a burnline of this version."""


def pair() -> tuple[socket.socket, socket.socket]:
    """(the supervisor's end, the worker's end): the worker's is inheritable, both have large buffers."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for end in (ours, theirs):
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SEND_BUFFER)
    theirs.set_inheritable(True)
    return ours, theirs


def encode(message: dict[str, Any]) -> bytes:
    body: bytes = msgpack.packb(message, use_bin_type=True)
    return HEADER.pack(len(body)) + body


class Channel:
    """One end of a worker's socket pair, on the running event loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> Channel:
        sock.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_FRAME)
        return cls(reader, writer)

    def send(self, message: dict[str, Any]) -> None:
        """Writes one message; never blocks (see the module's docstring)."""
        if not self._writer.is_closing():
            self._writer.write(encode(message))

    async def drain(self) -> None:
        await self._writer.drain()

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        """Every message until the other end closes."""
        while True:
            try:
                header = await self._reader.readexactly(HEADER.size)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            (size,) = HEADER.unpack(header)
            if size > MAX_FRAME:
                raise ChannelError(f"a frame of {size} bytes (at most {MAX_FRAME})")
            try:
                body = await self._reader.readexactly(size)
            except (asyncio.IncompleteReadError, ConnectionError):
                return  # cut short by the death of the worker: only a frame asyncio had buffered
            try:
                message = msgpack.unpackb(body, raw=False, strict_map_key=False)
            except (
                ValueError,
                TypeError,
                msgpack.ExtraData,
            ) as exc:  # TypeError: a map key msgpack cannot hash
                raise ChannelError(f"a frame that is not msgpack: {exc}") from None
            if not isinstance(message, dict):
                raise ChannelError("a frame that is not a map")
            yield message

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass
