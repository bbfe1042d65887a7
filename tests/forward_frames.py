"""Fluent Forward from the client side, built by hand: frames of every mode and a small asyncio client.

The frames follow the Forward protocol v1 spec, so the tests do not depend on the receiver's own code.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import ssl
import struct
from typing import Any

import msgpack

Entry = list[Any]


def event_time(seconds: int, nanos: int = 0) -> msgpack.ExtType:
    """The spec's EventTime: ext type 0, big-endian uint32 seconds and uint32 nanoseconds."""
    return msgpack.ExtType(0, struct.pack(">II", seconds, nanos))


def pack(obj: Any) -> bytes:
    return bytes(msgpack.packb(obj, use_bin_type=True))


def pack_str_raw(data: bytes) -> bytes:
    """``data`` as a msgpack str (whatever its bytes are), as some clients send binary content."""
    return bytes(msgpack.packb(data, use_bin_type=False))


def message(tag: str, when: Any, record: dict[str, Any], options: dict[str, Any] | None = None) -> bytes:
    return pack([tag, when, record] if options is None else [tag, when, record, options])


def forward(tag: str, entries: list[Entry], options: dict[str, Any] | None = None) -> bytes:
    return pack([tag, entries] if options is None else [tag, entries, options])


def entry_stream(entries: list[Entry]) -> bytes:
    return b"".join(pack(e) for e in entries)


def packed_forward(
    tag: str, entries: list[Entry], options: dict[str, Any] | None = None, *, as_str: bool = False
) -> bytes:
    """PackedForward; ``as_str`` packs the entry stream as a msgpack str instead of bin."""
    stream = entry_stream(entries)
    body = pack_str_raw(stream) if as_str else pack(stream)
    return _frame(tag, body, options)


def compressed_packed_forward(
    tag: str, entries: list[Entry], options: dict[str, Any] | None = None, *, members: int = 1
) -> bytes:
    """CompressedPackedForward with the entries split over ``members`` concatenated gzip members."""
    per = max(1, -(-len(entries) // members))
    parts = [entries[i : i + per] for i in range(0, len(entries), per)] or [[]]
    payload = b"".join(gzip.compress(entry_stream(p)) for p in parts)
    return compressed_payload(tag, payload, options)


def compressed_payload(tag: str, payload: bytes, options: dict[str, Any] | None = None) -> bytes:
    return _frame(tag, pack(payload), {**(options or {}), "compressed": "gzip"})


def _frame(tag: str, body: bytes, options: dict[str, Any] | None) -> bytes:
    """A [tag, <pre-packed body>(, option)] array, so the body keeps the exact msgpack type given."""
    head = bytes([0x92 if options is None else 0x93]) + pack(tag)
    return head + body + (b"" if options is None else pack(options))


def sha512_hex(*parts: bytes) -> str:
    return hashlib.sha512(b"".join(parts)).hexdigest()


class ForwardClient:
    """One connection to a Forward server: send frames, read replies, run the handshake."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape")
        self._raw = bytearray()  # received bytes not yet returned
        self._returned = 0  # stream offset of _raw[0]

    @classmethod
    async def connect(cls, port: int, tls: ssl.SSLContext | None = None) -> ForwardClient:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=tls, server_hostname="127.0.0.1" if tls else None),
            5.0,
        )
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive_raw(self, timeout: float = 5.0) -> tuple[Any, bytes]:
        """The next msgpack object from the server and its exact bytes; EOFError once closed."""
        while True:
            try:
                obj = self._unpacker.unpack()
            except msgpack.OutOfData:
                pass
            else:
                end = self._unpacker.tell()  # offset in the stream of everything unpacked so far
                size = end - self._returned
                raw = bytes(self._raw[:size])
                del self._raw[:size]
                self._returned = end
                return obj, raw
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise EOFError("the server closed the connection")
            self._raw += data
            self._unpacker.feed(data)

    async def receive(self, timeout: float = 5.0) -> Any:
        return (await self.receive_raw(timeout))[0]

    async def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within ``timeout`` (any bytes before are skipped)."""
        try:
            while True:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
                if not data:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    async def handshake(
        self, shared_key: str, hostname: str = "client-host", username: str = "", password: str = ""
    ) -> tuple[list[Any], list[Any], bytes]:
        """HELO -> PING -> PONG as a client; returns (HELO, PONG, shared key salt)."""
        helo = await self.receive()
        assert helo[0] == "HELO", helo
        options = helo[1]
        nonce = _as_bytes(options["nonce"])
        auth_salt = _as_bytes(options.get("auth", b""))
        salt = os.urandom(16)
        key_digest = sha512_hex(salt, hostname.encode(), nonce, shared_key.encode())
        password_digest = sha512_hex(auth_salt, username.encode(), password.encode()) if username else ""
        await self.send(pack(["PING", hostname, salt, key_digest, username, password_digest]))
        pong = await self.receive()
        return helo, pong, salt

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 5.0)
        except (OSError, TimeoutError, ssl.SSLError):
            pass


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")
