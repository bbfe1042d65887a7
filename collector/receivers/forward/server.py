"""One Forward connection (reads, acks and writes with a timeout), TCP keepalive and the UDP heartbeat."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, cast

from collector.receivers.forward.protocol import READ_SIZE
from collector.receivers.protocol_sniff import peer_address

# A client that stops reading its acks must not hold a connection (and a batch) forever.
WRITE_TIMEOUT = 30.0


class Connection:
    def __init__(self, peer: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peer = peer
        self.reader = reader
        self.writer = writer
        self.task = asyncio.current_task()
        # True while waiting for the client: stop() may end it there, never mid-batch.
        self.reading = False
        self.frames = 0
        self.warned_signal = False

    async def read(self, timeout: float | None) -> bytes:
        self.reading = True
        try:
            return await asyncio.wait_for(self.reader.read(READ_SIZE), timeout)
        finally:
            self.reading = False

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT)


def peer_name(writer: asyncio.StreamWriter) -> str:
    return peer_address(writer.get_extra_info("peername"), "unknown peer")


def keepalive(writer: asyncio.StreamWriter) -> None:
    """TCP keepalive finds peers that vanished without closing (Fluentd's send_keepalive_packet)."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6)):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    except OSError:
        pass


class HeartbeatProtocol(asyncio.DatagramProtocol):
    """Answers each datagram with one NUL byte, as Fluentd's in_forward does: out_forward's UDP
    heartbeat only needs a reply to consider the node alive."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(b"\0", addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a client that went away: nothing to do.
        pass
