"""The ``forward`` receiver: Fluent Forward protocol v1, as Fluentd's and Fluent Bit's in_forward speak it.

A connection (TCP, optionally TLS) carries msgpack arrays ("frames") in four modes:

- Message: ``[tag, time, record(, option)]``
- Forward: ``[tag, [entry, ...](, option)]``
- PackedForward: ``[tag, entries(, option)]``, entries being a msgpack stream of entries in a bin or str
- CompressedPackedForward: PackedForward with ``option.compressed == "gzip"`` (one or more gzip members)

An entry is ``[time, record]`` or Fluent Bit's ``[[time, metadata], record]``; a time is an EventTime
(msgpack ext type 0: big-endian uint32 seconds and nanoseconds) or integer or float seconds. Each frame
becomes one batch. When the frame carries ``option.chunk`` the reply ``{"ack": chunk}`` goes out only
once the pipeline has accepted the batch. With ``security`` clients must first pass the spec's
HELO/PING/PONG handshake (shared key, optionally user names and passwords). UDP datagrams on the same
port get Fluentd's one-byte heartbeat reply, which out_forward's ``heartbeat_type udp`` waits for.

Odd input never blocks a chunk: map keys of any type are accepted (normalization turns them into
strings; keys Python cannot hash, lists and maps, are decoded on a slower path), and entries of a
sound frame that are no records (not ``[time, record]``, a record that is not a map, a time that is
no time, packed entries that are not msgpack or gzip) go to ``<data_dir>/deadletter/<id>.ndjson``
(:mod:`collector.receivers.rejected_records`) while the rest of the frame is accepted and acked. A
frame that is itself broken (not an array, no tag) names no chunk and closes the connection. The
first bytes of each connection are checked first (:mod:`collector.receivers.protocol_sniff`): HTTP,
HTTP/2 or TLS on a plain port, plain data on a TLS port are closed with one line and a count.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import os
import reprlib
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, cast

import msgpack
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from collector.config.types import ByteSize, Duration, Endpoint, ServerTLS, split_endpoint
from collector.core.component import ComponentConfig, ComponentContext, Consumer, Receiver, Refused, register
from collector.core.model import Batch, LogRecord, Signal
from collector.normalize.fluent import FluentNormalizeConfig, normalize_fluent
from collector.normalize.record_time import EventTime
from collector.normalize.values import map_from_pairs
from collector.receivers.protocol_sniff import ProtocolGuard, WrongProtocolLog
from collector.receivers.rejected_records import RejectedRecords

READ_SIZE = 64 * 1024
# A client must finish the TLS handshake, and read HELO and send PING, within this time.
HANDSHAKE_TIMEOUT = 30.0
# PING is six short strings; anything this big is not a PING.
MAX_PING_SIZE = 64 * 1024
# A client that stops reading its acks must not hold a connection (and a batch) forever.
WRITE_TIMEOUT = 30.0
# stop(): in-flight batches end within the queues' block_timeout; this only guards against the unforeseen.
STOP_TIMEOUT = 30.0
# Fluent Bit's ``fluent_signal`` option: 0 is logs; metrics (1) and traces (2) carry cmetrics/ctraces.
FLUENT_SIGNALS = {1: "metrics", 2: "traces"}

_EVENT_TIME = struct.Struct(">II")
_NO_CHUNK: Any = object()
_brief = reprlib.Repr()
_brief.maxstring = 60
_brief.maxother = 60


class ForwardUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1)
    password: SecretStr


class ForwardSecurity(BaseModel):
    """Fluentd's ``<security>``: the shared-key handshake, optionally with user names and passwords."""

    model_config = ConfigDict(extra="forbid")

    shared_key: SecretStr
    # Sent in PONG; a client announcing the same name is refused (a forwarding loop to ourselves).
    self_hostname: str = Field(default_factory=socket.gethostname, min_length=1)
    # Also require a user name and password from ``users`` (HELO then carries the password salt).
    user_auth: bool = False
    users: list[ForwardUser] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> ForwardSecurity:
        if not self.shared_key.get_secret_value():
            raise ValueError("shared_key must not be empty")
        if self.user_auth and not self.users:
            raise ValueError("user_auth is on but users is empty: list at least one username and password")
        names = [u.username for u in self.users]
        if len(set(names)) != len(names):
            raise ValueError("users lists a username twice")
        return self


class ForwardConfig(ComponentConfig):
    endpoint: Endpoint = "0.0.0.0:24224"
    tls: ServerTLS | None = None
    security: ForwardSecurity | None = None
    # A frame (one message on the wire) larger than this closes its connection.
    max_frame_size: ByteSize = 16 * 1024 * 1024
    # CompressedPackedForward: the bound on one frame's inflated entries (a gzip bomb stops here).
    max_decompressed_size: ByteSize = 64 * 1024 * 1024
    # Close connections silent for this long; 0 keeps them (dead peers are found by TCP keepalive).
    # Fluentd and Fluent Bit keep idle connections open, and clients without acks cannot tell a
    # connection closed while idle from a working one on their next write.
    idle_timeout: Duration = 0.0
    # A frame that has begun must be complete within this time, or the connection is closed: a
    # client stalled mid-frame (or a slowloris) does not hold a connection and its buffer forever.
    frame_timeout: Duration = 60.0
    max_connections: int = Field(default=1000, ge=1)
    # Answer UDP heartbeats on the same port (Fluentd out_forward's heartbeat_type udp).
    heartbeat: bool = True
    normalize: FluentNormalizeConfig = Field(default_factory=FluentNormalizeConfig)

    @model_validator(mode="after")
    def _sizes(self) -> ForwardConfig:
        if self.max_frame_size < 1024:
            raise ValueError("max_frame_size must be at least 1KiB")
        return self


class ProtocolError(Exception):
    """Bad input on one connection: counted under ``reason``, logged, and the connection is closed."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class _Close(Exception):
    """Close the connection; the reason was already logged and counted."""


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0 and len(data) == 8:
        seconds, nanos = _EVENT_TIME.unpack(data)
        return EventTime(seconds * 1_000_000_000 + nanos)
    return msgpack.ExtType(code, data)


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {_brief.repr(value)}"


# A time in seconds must fit int64 nanoseconds, as every backend stores it.
_MAX_SECONDS = (2**63 - 1) // 1_000_000_000


def _time_ns(value: Any, now: int) -> int:
    """An entry's time in Unix nanoseconds; 0 or nil means "now", as Fluentd's in_forward reads it."""
    kind = type(value)
    if kind is EventTime:
        return int(value)
    if kind is int:
        if -_MAX_SECONDS <= value <= _MAX_SECONDS:
            return int(value * 1_000_000_000) if value else now
    elif kind is float:
        if -_MAX_SECONDS <= value <= _MAX_SECONDS:
            # Whole seconds and fraction apart: value * 1e9 would round to a multiple of 256 ns.
            seconds = math.floor(value)
            return seconds * 1_000_000_000 + round((value - seconds) * 1e9) if value else now
    elif value is None:
        return now
    elif kind is msgpack.Timestamp:
        return int(value.to_unix_nano())
    raise ProtocolError(
        "bad_time", f"an entry time must be an EventTime or a number of seconds, not {_describe(value)}"
    )


Rejected = list[tuple[Any, str]]


def _entries(items: list[Any], now: int) -> tuple[list[tuple[int, dict[str, Any]]], Rejected]:
    """``[time, record]`` / ``[[time, metadata], record]`` entries -> (time_unix_nano, record), and
    the entries that are none of these, each with what is wrong with it (they go to the dead-letter
    file: one odd entry must not hold back the rest of its chunk)."""
    out: list[tuple[int, dict[str, Any]]] = []
    rejected: Rejected = []
    append = out.append
    for entry in items:
        try:
            if type(entry) is not list or len(entry) != 2:
                raise ProtocolError("bad_entry", f"an entry must be [time, record], not {_describe(entry)}")
            when, record = entry
            if type(when) is list:
                # Fluent Bit (fwd_retain_metadata) sends [[time, metadata], record]; the metadata map
                # is Fluent Bit's internal routing data, not part of the record.
                if not when or len(when) > 2:
                    raise ProtocolError(
                        "bad_entry", f"an entry header must be [time, metadata], not {_describe(when)}"
                    )
                when = when[0]
            if type(record) is not dict:
                raise ProtocolError("bad_entry", f"a record must be a map, not {_describe(record)}")
            append((_time_ns(when, now), record))
        except ProtocolError as exc:
            rejected.append((entry, str(exc)))
    return out, rejected


def gunzip_members(data: bytes, limit: int) -> bytes:
    """Inflates one or more concatenated gzip members, refusing to produce more than ``limit`` bytes."""
    out = bytearray()
    rest = data
    while rest:
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        try:
            # max_length stops inflating one byte past the limit, so a bomb never fully expands.
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise ProtocolError("bad_gzip", f"compressed entries are not valid gzip: {exc}") from None
        if len(out) > limit:
            raise ProtocolError(
                "decompressed_too_large",
                f"compressed entries inflate to more than max_decompressed_size ({limit} bytes)",
            )
        if not inflater.eof:
            raise ProtocolError("bad_gzip", "compressed entries end in the middle of a gzip member")
        rest = inflater.unused_data
    return bytes(out)


def _unpack_error(exc: Exception) -> str:
    if isinstance(exc, msgpack.FormatError):
        return "a byte that starts no msgpack type"
    if isinstance(exc, msgpack.StackError):
        return "nested too deeply"
    return str(exc) or type(exc).__name__


def _unpack_packed(data: bytes) -> tuple[list[Any], ProtocolError | None]:
    """The entries of a PackedForward stream (decoded like frames: UTF-8, invalid bytes replaced),
    and what ended it early, if anything: the entries before a broken one are still good."""
    try:
        return _unpack_entries(data, odd_keys=False)
    except TypeError:  # a map key Python cannot hash (a list or map): decode again, keys as text
        return _unpack_entries(data, odd_keys=True)


def _unpack_entries(data: bytes, odd_keys: bool) -> tuple[list[Any], ProtocolError | None]:
    unpacker = msgpack.Unpacker(
        raw=False,
        unicode_errors="replace",
        ext_hook=_ext_hook,
        strict_map_key=False,
        object_pairs_hook=map_from_pairs if odd_keys else None,
        max_buffer_size=max(len(data), 1),
    )
    unpacker.feed(data)
    items: list[Any] = []
    end = 0  # tell() is exact only right after a whole object: it also counts a partial one's bytes
    try:
        for item in unpacker:
            items.append(item)
            end = unpacker.tell()
    except TypeError:
        if not odd_keys:
            raise
        return items, ProtocolError("malformed_msgpack", "invalid msgpack in packed entries")
    except (ValueError, msgpack.UnpackException) as exc:
        return items, ProtocolError(
            "malformed_msgpack", f"invalid msgpack in packed entries: {_unpack_error(exc)}"
        )
    if end != len(data):
        return items, ProtocolError("bad_entry", "packed entries end in the middle of an entry")
    return items, None


class FrameStream:
    """One connection's bytes cut into msgpack objects (frames), each with its size on the wire.

    Strings decode as UTF-8 with invalid bytes replaced, so records never carry undecodable text
    downstream. The current frame's bytes stay at hand for the two places that need them exactly:
    PackedForward entries sent as a msgpack str, and a chunk id that must be echoed byte for byte.
    """

    def __init__(self, max_frame_size: int, raw: bool = False, initial: bytes = b"") -> None:
        self.max_frame_size = max_frame_size
        self._raw = raw
        self._unpacker = self._new_unpacker()
        self._buf = bytearray()  # bytes fed and not yet dropped
        self._base = 0  # unpacker offset of _buf[0]
        self._start = 0  # where the next frame starts in _buf
        self._frame = (0, 0)  # the last frame's span in _buf
        # The current frame has a map key Python cannot hash: it is decoded from _buf, slowly.
        self._odd_keys = False
        if initial:
            self.feed(initial)

    def _new_unpacker(self, odd_keys: bool = False) -> msgpack.Unpacker:
        # Any key type is accepted (strict_map_key off): a record with an integer key is still a
        # record, and refusing the frame would make the client resend it forever.
        return msgpack.Unpacker(
            raw=self._raw,
            unicode_errors=None if self._raw else "replace",
            ext_hook=_ext_hook,
            strict_map_key=False,
            object_pairs_hook=map_from_pairs if odd_keys else None,
            # Room for a whole frame plus one read, so a frame within the limit never overflows.
            max_buffer_size=self.max_frame_size + READ_SIZE,
        )

    def feed(self, data: bytes) -> None:
        self._buf += data
        if self._odd_keys:
            if len(self._buf) - self._start > self.max_frame_size + READ_SIZE:
                raise self._too_large(len(self._buf) - self._start)
            return
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull:
            raise self._too_large(len(self._buf) - self._start) from None

    def _next_odd_frame(self) -> tuple[Any, int] | None:
        """The current frame decoded from the buffer with unhashable keys as text; then the fast
        unpacker takes over again behind it."""
        data = bytes(self._buf[self._start :])
        unpacker = self._new_unpacker(odd_keys=True)
        unpacker.feed(data)
        try:
            frame = unpacker.unpack()
        except msgpack.OutOfData:
            if len(data) > self.max_frame_size:
                raise self._too_large(len(data)) from None
            return None
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise ProtocolError("malformed_msgpack", f"invalid msgpack: {_unpack_error(exc)}") from None
        size = unpacker.tell()
        if size > self.max_frame_size:
            raise self._too_large(size)
        self._frame = (self._start, self._start + size)
        self._start += size
        self._odd_keys = False
        self._unpacker = self._new_unpacker()
        self._base = -self._start  # the new unpacker's offset 0 is the next frame's first byte
        rest = bytes(self._buf[self._start :])
        if rest:
            self._unpacker.feed(rest)
        return frame, size

    def _too_large(self, size: int) -> ProtocolError:
        return ProtocolError(
            "frame_too_large",
            f"a frame exceeds max_frame_size ({self.max_frame_size} bytes; {size} bytes received)",
        )

    def next_frame(self) -> tuple[Any, int] | None:
        """The next complete frame and its size in bytes, or None until more bytes arrive."""
        if self._odd_keys:
            return self._next_odd_frame()
        try:
            frame = self._unpacker.unpack()
        except TypeError:  # "unhashable type": a list or map as a map key
            self._odd_keys = True
            return self._next_odd_frame()
        except msgpack.OutOfData:
            del self._buf[: self._start]
            self._base += self._start
            self._start = 0
            if len(self._buf) > self.max_frame_size:
                raise self._too_large(len(self._buf)) from None
            return None
        except (ValueError, msgpack.UnpackException) as exc:
            raise ProtocolError("malformed_msgpack", f"invalid msgpack: {_unpack_error(exc)}") from None
        end = self._unpacker.tell() - self._base
        self._frame = (self._start, end)
        self._start = end
        if end - self._frame[0] > self.max_frame_size:
            raise self._too_large(end - self._frame[0])
        return frame, end - self._frame[0]

    def exact_frame(self) -> Any:
        """The last frame decoded again without losing bytes: invalid UTF-8 in a str becomes lone
        surrogates, which ``.encode("utf-8", "surrogateescape")`` turns back into the bytes sent."""
        start, end = self._frame
        return msgpack.unpackb(
            bytes(self._buf[start:end]),
            raw=False,
            unicode_errors="surrogateescape",
            ext_hook=_ext_hook,
            strict_map_key=False,
            object_pairs_hook=map_from_pairs,
        )

    def partial(self) -> bool:
        """True while bytes of an incomplete frame are buffered."""
        return len(self._buf) > self._start

    def rest(self) -> bytes:
        """Bytes received after the last frame (a client may send data right behind its PING)."""
        return bytes(self._buf[self._start :])


@dataclass(slots=True)
class Message:
    """One decoded frame."""

    tag: str
    entries: list[tuple[int, dict[str, Any]]]
    chunk: Any  # _NO_CHUNK when the client wants no ack
    signal: int  # Fluent Bit's fluent_signal; 0 for logs
    declared_size: Any
    # Entries (or undecodable packed bytes) that are no record, with the reason: dead-lettered.
    rejected: Rejected = field(default_factory=list)


def _options(value: Any) -> dict[str, Any]:
    if value is None:  # Docker's fluentd log driver sends a nil option
        return {}
    if type(value) is not dict:
        raise ProtocolError("bad_options", f"the option field must be a map, not {_describe(value)}")
    return value


def decode_frame(frame: Any, stream: FrameStream, max_decompressed_size: int, now: int) -> Message:
    """Decodes a frame of any of the four modes; raises ProtocolError naming what is wrong."""
    if type(frame) is not list or not 2 <= len(frame) <= 4:
        raise ProtocolError(
            "bad_message",
            "a frame must be [tag, time, record(, option)] or [tag, entries(, option)], "
            f"not {_describe(frame)}",
        )
    tag = frame[0]
    if type(tag) is bytes:
        tag = tag.decode("utf-8", "replace")
    elif type(tag) is not str:
        raise ProtocolError("bad_message", f"the tag must be a string, not {_describe(tag)}")
    second = frame[1]
    if type(second) is list:  # Forward
        if len(frame) > 3:
            raise ProtocolError("bad_message", "a Forward frame is [tag, entries(, option)]: too many fields")
        options = _options(frame[2] if len(frame) == 3 else None)
        items: list[Any] | None = second
    elif type(second) is bytes or type(second) is str:  # PackedForward, CompressedPackedForward
        if len(frame) > 3:
            raise ProtocolError(
                "bad_message", "a PackedForward frame is [tag, entries(, option)]: too many fields"
            )
        options = _options(frame[2] if len(frame) == 3 else None)
        items = None
    else:  # Message
        if len(frame) < 3:
            raise ProtocolError(
                "bad_message", "a Message frame is [tag, time, record(, option)]: record missing"
            )
        options = _options(frame[3] if len(frame) == 4 else None)
        items = [[second, frame[2]]]

    chunk = options.get("chunk", _NO_CHUNK)
    if type(chunk) is str and "\ufffd" in chunk:
        # Possibly invalid UTF-8 replaced while decoding: echo the chunk exactly as it was sent.
        chunk = stream.exact_frame()[-1]["chunk"]
    signal = options.get("fluent_signal", 0)
    if signal not in (0, None):
        # The payload is cmetrics/ctraces msgpack, not log entries: not decoded.
        return Message(tag, [], chunk, signal if type(signal) is int else -1, options.get("size"))

    broken: Rejected = []
    if items is None:
        packed = (
            second if type(second) is bytes else stream.exact_frame()[1].encode("utf-8", "surrogateescape")
        )
        compression = options.get("compressed")
        if compression not in (None, "text", "gzip"):
            raise ProtocolError(
                "unsupported_compression",
                f"compressed={_brief.repr(compression)} is not supported (only gzip)",
            )
        # The frame itself is sound, so its chunk can be acknowledged: entries that cannot be read
        # are dead-lettered as the bytes they were, since a resend would fail the same way forever.
        problem: ProtocolError | None = None
        items = []
        try:
            if compression == "gzip":
                packed = gunzip_members(packed, max_decompressed_size)
            items, problem = _unpack_packed(packed)
        except ProtocolError as exc:
            problem = exc
        if problem is not None:
            broken.append(({"packed_entries": packed, "entries_read": len(items)}, str(problem)))
    entries, rejected = _entries(items, now)
    return Message(tag, entries, chunk, 0, options.get("size"), broken + rejected)


def _hexdigest(*parts: bytes) -> bytes:
    return hashlib.sha512(b"".join(parts)).hexdigest().encode()


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


def _peer_name(writer: asyncio.StreamWriter) -> str:
    addr = writer.get_extra_info("peername")
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr or "unknown peer")


def _keepalive(writer: asyncio.StreamWriter) -> None:
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


@register
class ForwardReceiver(Receiver):
    type_name = "forward"
    config_model = ForwardConfig
    signals = frozenset({Signal.LOGS})

    def __init__(
        self, config: ForwardConfig, ctx: ComponentContext, consumers: dict[Signal, Consumer]
    ) -> None:
        super().__init__(config, ctx, consumers)
        self.config: ForwardConfig = config
        self.port = 0
        self._server: asyncio.Server | None = None
        self._heartbeat: asyncio.DatagramTransport | None = None
        self._guard: ProtocolGuard | None = None
        self._connections: set[Connection] = set()
        self._stopping = False
        self._open = ctx.telemetry.connections.labels(self.id)
        self._errors = ctx.telemetry.protocol_errors
        self._dropped = ctx.telemetry.dropped
        self._dead_letter = RejectedRecords(ctx)
        security = config.security
        self._shared_key = security.shared_key.get_secret_value().encode() if security else b""
        self._hostname = security.self_hostname.encode() if security else b""
        self._passwords = (
            {u.username.encode(): u.password.get_secret_value().encode() for u in security.users}
            if security
            else {}
        )

    async def start(self) -> None:
        cfg = self.config
        self._consumer = self.consumers[Signal.LOGS]
        host, port = split_endpoint(cfg.endpoint)
        ssl_context = cfg.tls.context() if cfg.tls else None
        # With port 0 the kernel picks the TCP port; should UDP be taken on that number, pick again.
        attempts = 5 if port == 0 and cfg.heartbeat else 1
        self._guard = ProtocolGuard(
            WrongProtocolLog(self.id, self.log, self._errors),
            "forward",
            f"the Fluent Forward port :{port}",
            tls=ssl_context,
            handshake_timeout=HANDSHAKE_TIMEOUT,
            advice={"plain": "enable TLS on the client (Fluent Bit: tls On)"},
        )
        loop = asyncio.get_running_loop()

        def stream_protocol() -> asyncio.StreamReaderProtocol:
            # What asyncio.start_server builds per connection; the guard sits in front of it.
            reader = asyncio.StreamReader(limit=READ_SIZE, loop=loop)
            return asyncio.StreamReaderProtocol(reader, self._accept, loop=loop)

        for attempt in range(1, attempts + 1):
            server = await loop.create_server(self._guard.wrap(stream_protocol), host, port)
            bound = int(server.sockets[0].getsockname()[1])
            if cfg.heartbeat:
                try:
                    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                        HeartbeatProtocol, local_addr=(host, bound)
                    )
                except OSError:
                    server.close()
                    await server.wait_closed()
                    if attempt == attempts:
                        raise
                    continue
                self._heartbeat = transport
            break
        self._server = server
        self.port = bound
        self._guard.port_name = f"the Fluent Forward port :{bound}"
        self.log.info(
            "listening for Fluent Forward on %s:%d (%s%s%s)",
            host,
            self.port,
            "TLS" if ssl_context else "plain TCP",
            ", shared-key authentication" if cfg.security else "",
            ", UDP heartbeat" if cfg.heartbeat else "",
        )

    def ready(self) -> bool:
        return self._server is not None and self._server.is_serving() and not self._stopping

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        if self._heartbeat is not None:
            self._heartbeat.close()
        if self._guard is not None:
            self._guard.close()
        # Connections waiting for the client close now (their read ends as if the client had
        # closed); one in the middle of a batch finishes it (accepted and acked, or refused) first.
        for conn in list(self._connections):
            if conn.reading:
                conn.reader.feed_eof()
        tasks = [c.task for c in self._connections if c.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            if pending:
                self.log.warning(
                    "%d connection(s) still busy after %.0fs; cancelling them", len(pending), STOP_TIMEOUT
                )
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=5.0)
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            except TimeoutError:
                pass

    def _protocol_error(self, peer: str, exc: ProtocolError) -> None:
        self._errors.labels(self.id, exc.reason).inc()
        self.log.warning("closing the connection from %s: %s", peer, exc)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer_name(writer)
        if self._stopping:
            writer.transport.abort()
            return
        if len(self._connections) >= self.config.max_connections:
            self._protocol_error(
                peer,
                ProtocolError(
                    "too_many_connections",
                    f"max_connections ({self.config.max_connections}) connections are already open",
                ),
            )
            writer.transport.abort()
            return
        _keepalive(writer)
        conn = Connection(peer, reader, writer)
        self._connections.add(conn)
        self._open.inc()
        try:
            await self._converse(conn)
        except ProtocolError as exc:
            self._protocol_error(peer, exc)
        except _Close:
            pass
        except (ConnectionError, TimeoutError) as exc:
            self.log.debug("connection from %s ended: %r", peer, exc)
        except Exception:
            self._errors.labels(self.id, "internal").inc()
            self.log.exception("unexpected error on the connection from %s; closing it", peer)
        except asyncio.CancelledError:
            # stop() cancels only connections stuck past its timeout; asyncio 3.11 would log a
            # cancelled connection task as an error, so end it normally then.
            if not self._stopping:
                raise
        finally:
            self._connections.discard(conn)
            self._open.dec()
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 5.0)
            except (Exception, asyncio.CancelledError):
                pass

    async def _converse(self, conn: Connection) -> None:
        if self.config.security is not None:
            stream = await self._handshake(conn)
        else:
            stream = FrameStream(self.config.max_frame_size)
        idle = self.config.idle_timeout or None
        frame_timeout = self.config.frame_timeout or None
        frame_deadline: float | None = None
        while True:
            while not self._stopping and (got := stream.next_frame()) is not None:
                await self._on_frame(conn, stream, *got)
                frame_deadline = None  # the next frame gets its own frame_timeout
            if self._stopping:
                return
            timeout = idle
            if frame_timeout is not None and stream.partial():
                if frame_deadline is None:
                    frame_deadline = time.monotonic() + frame_timeout
                left = max(frame_deadline - time.monotonic(), 0.0)
                timeout = left if timeout is None else min(timeout, left)
            else:
                frame_deadline = None
            try:
                data = await conn.read(timeout)
            except TimeoutError:
                if frame_deadline is not None and time.monotonic() >= frame_deadline:
                    raise ProtocolError(
                        "frame_timeout", f"a frame stayed incomplete for {frame_timeout:.0f}s"
                    ) from None
                self.log.debug("closing the connection from %s: idle for %.0fs", conn.peer, idle)
                return
            if not data:
                return
            stream.feed(data)

    async def _on_frame(self, conn: Connection, stream: FrameStream, frame: Any, size: int) -> None:
        conn.frames += 1
        if frame is None:
            return  # Fluentd's in_forward ignores a nil frame (reserved for TCP heartbeats)
        now = time.time_ns()
        msg = decode_frame(frame, stream, self.config.max_decompressed_size, now)
        rejected = msg.rejected
        records: list[LogRecord] = []
        if msg.signal:
            self._drop_signal(conn, msg)
        elif msg.entries:
            try:
                records = normalize_fluent(msg.tag, msg.entries, self.config.normalize, now, rejected)
            except Exception:
                self._errors.labels(self.id, "unprocessable").inc()
                self.log.exception(
                    "cannot map the records of tag %r from %s; closing the connection", msg.tag, conn.peer
                )
                raise _Close from None
        if records:
            try:
                await self._consumer.consume(Batch(Signal.LOGS, records, size))
            except Refused as exc:
                # Withholding the ack alone would leave the client waiting out its ack timeout
                # (Fluentd: 190 s) before it resends; a closed connection makes Fluent Bit and
                # Fluentd resend this chunk at once, on a new connection.
                self.log.warning(
                    "pipeline refused %d record(s) from %s (%s): no ack; closing the connection so the "
                    "client resends them",
                    len(records),
                    conn.peer,
                    exc.reason,
                )
                raise _Close from None
        if rejected:
            # After the pipeline took the rest (a refused frame is resent whole) and before the ack.
            await self._dead_letter.write(msg.tag, conn.peer, rejected)
        if msg.chunk is not _NO_CHUNK:
            await conn.send(
                msgpack.packb({"ack": msg.chunk}, use_bin_type=True, unicode_errors="surrogateescape")
            )

    def _drop_signal(self, conn: Connection, msg: Message) -> None:
        signal = FLUENT_SIGNALS.get(msg.signal, "unknown")
        count = msg.declared_size if type(msg.declared_size) is int and msg.declared_size > 0 else 1
        self._dropped.labels(self.id, signal, "unsupported_signal").inc(count)
        if not conn.warned_signal:
            conn.warned_signal = True
            self.log.warning(
                "%s sends Fluent Bit %s (fluent_signal=%s) on tag %r; this receiver takes logs only, so "
                "they are acknowledged and dropped (send them over OTLP instead)",
                conn.peer,
                signal,
                msg.signal,
                msg.tag,
            )

    async def _handshake(self, conn: Connection) -> FrameStream:
        """The spec's HELO -> PING -> PONG exchange; raises ProtocolError when the client fails it."""
        security = self.config.security
        assert security is not None
        nonce = os.urandom(16)
        auth_salt = os.urandom(16) if security.user_auth else b""
        await conn.send(
            msgpack.packb(["HELO", {"nonce": nonce, "auth": auth_salt, "keepalive": True}], use_bin_type=True)
        )
        # PING fields are hashed as sent: Fluent Bit packs its random salt as a str, so no decoding.
        stream = FrameStream(MAX_PING_SIZE, raw=True)
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        while (got := stream.next_frame()) is None:
            try:
                data = await conn.read(max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                raise ProtocolError(
                    "handshake_timeout", f"no PING within {HANDSHAKE_TIMEOUT:.0f}s of HELO"
                ) from None
            if not data:
                raise _Close
            stream.feed(data)
        ping = got[0]
        if (
            type(ping) is not list
            or len(ping) != 6
            or ping[0] != b"PING"
            or any(type(p) is not bytes for p in ping[1:])
        ):
            raise ProtocolError(
                "bad_handshake",
                'expected ["PING", hostname, salt, digest, username, password digest], '
                f"got {_describe(ping)}",
            )
        hostname, salt, key_digest, username, password_digest = ping[1:]
        failure = None
        if hostname == self._hostname:
            failure = ("auth_hostname", "same hostname between input and output: invalid configuration")
        elif not hmac.compare_digest(key_digest, _hexdigest(salt, hostname, nonce, self._shared_key)):
            failure = ("auth_shared_key", "shared_key mismatch")
        elif security.user_auth and not self._password_ok(username, password_digest, auth_salt):
            failure = ("auth_user", "username/password mismatch")
        client = hostname.decode("utf-8", "replace")
        if failure is not None:
            await conn.send(msgpack.packb(["PONG", False, failure[1], "", ""], use_bin_type=True))
            raise ProtocolError(failure[0], f"client {client!r} failed authentication: {failure[1]}")
        pong_digest = _hexdigest(salt, self._hostname, nonce, self._shared_key).decode()
        await conn.send(
            msgpack.packb(["PONG", True, "", security.self_hostname, pong_digest], use_bin_type=True)
        )
        self.log.debug("client %r at %s authenticated", client, conn.peer)
        return FrameStream(self.config.max_frame_size, initial=stream.rest())

    def _password_ok(self, username: bytes, digest: bytes, auth_salt: bytes) -> bool:
        password = self._passwords.get(username)
        if password is None:
            return False
        return hmac.compare_digest(digest, _hexdigest(auth_salt, username, password))
