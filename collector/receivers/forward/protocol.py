"""Fluent Forward protocol v1 frames and entries, decoded.

A connection carries msgpack arrays ("frames") in four modes:

- Message: ``[tag, time, record(, option)]``
- Forward: ``[tag, [entry, ...](, option)]``
- PackedForward: ``[tag, entries(, option)]``, entries being a msgpack stream of entries in a bin or str
- CompressedPackedForward: PackedForward with ``option.compressed == "gzip"`` (one or more gzip members)

An entry is ``[time, record]`` or Fluent Bit's ``[[time, metadata], record]``; a time is an EventTime
(msgpack ext type 0: big-endian uint32 seconds and nanoseconds) or integer or float seconds.
"""

from __future__ import annotations

import math
import reprlib
import struct
from dataclasses import dataclass, field
from typing import Any

import msgpack
import ormsgpack

from collector.normalize.record_time import EventTime
from collector.normalize.values import map_from_pairs
from collector.receivers.bounded_inflate import GZIP_WBITS, BoundedInflater, InflateError, InflateTooLarge

READ_SIZE = 64 * 1024

_EVENT_TIME = struct.Struct(">II")
NO_CHUNK: Any = object()
_brief = reprlib.Repr()
_brief.maxstring = 60
_brief.maxother = 60


class ProtocolError(Exception):
    """Bad input on one connection: counted under ``reason``, logged, and the connection is closed."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0 and len(data) == 8:
        seconds, nanos = _EVENT_TIME.unpack(data)
        return EventTime(seconds * 1_000_000_000 + nanos)
    return msgpack.ExtType(code, data)


def describe(value: Any) -> str:
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
        "bad_time", f"an entry time must be an EventTime or a number of seconds, not {describe(value)}"
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
                raise ProtocolError("bad_entry", f"an entry must be [time, record], not {describe(entry)}")
            when, record = entry
            if type(when) is list:
                # Fluent Bit (fwd_retain_metadata) sends [[time, metadata], record]; the metadata map
                # is Fluent Bit's internal routing data, not part of the record.
                if not when or len(when) > 2:
                    raise ProtocolError(
                        "bad_entry", f"an entry header must be [time, metadata], not {describe(when)}"
                    )
                when = when[0]
            if type(record) is not dict:
                raise ProtocolError("bad_entry", f"a record must be a map, not {describe(record)}")
            append((_time_ns(when, now), record))
        except ProtocolError as exc:
            rejected.append((entry, str(exc)))
    return out, rejected


def gunzip_members(data: bytes, limit: int) -> bytes:
    """Inflates one or more concatenated gzip members, refusing to produce more than ``limit`` bytes."""
    inflater = BoundedInflater(GZIP_WBITS, limit, members=True)
    try:
        inflater.feed(data)
    except InflateError as exc:
        raise ProtocolError("bad_gzip", f"compressed entries are not valid gzip: {exc}") from None
    except InflateTooLarge:
        raise ProtocolError(
            "decompressed_too_large",
            f"compressed entries inflate to more than max_decompressed_size ({limit} bytes)",
        ) from None
    if data and not inflater.complete:
        raise ProtocolError("bad_gzip", "compressed entries end in the middle of a gzip member")
    return bytes(inflater.out)


def _unpack_error(exc: Exception) -> str:
    if isinstance(exc, msgpack.FormatError):
        return "a byte that starts no msgpack type"
    if isinstance(exc, msgpack.StackError):
        return "nested too deeply"
    return str(exc) or type(exc).__name__


def _unpack_packed(data: bytes) -> tuple[list[Any], ProtocolError | None]:
    """The entries of a PackedForward stream (decoded like frames: UTF-8, invalid bytes replaced),
    and what ended it early, if anything: the entries before a broken one are still good."""
    fast = _unpack_entries_fast(data)
    if fast is not None:
        return fast, None
    try:
        return _unpack_entries(data, odd_keys=False)
    except TypeError:  # a map key Python cannot hash (a list or map): decode again, keys as text
        return _unpack_entries(data, odd_keys=True)


def _fast_ext_hook(code: int, data: bytes) -> Any:
    if code == -1:  # the msgpack timestamp, as msgpack-python decodes it by itself
        return msgpack.Timestamp.from_bytes(data)
    return _ext_hook(code, data)


_ARRAY32 = struct.Struct(">BI")


def _unpack_entries_fast(data: bytes) -> list[Any] | None:
    """The entries of well-formed packed entries, decoded by ormsgpack (about twice as fast as
    msgpack-python's Unpacker on Kubernetes records); None for anything else (invalid UTF-8, a map
    key that is not a string, a truncated or broken entry), which the Unpacker then decodes or
    explains exactly as before.

    ormsgpack decodes one object, so the entries are counted first (skipping is cheap: nothing is
    built) and read as one array of that many; the count covers every byte, so nothing is left out.
    """
    counter = msgpack.Unpacker(max_buffer_size=max(len(data), 1))
    counter.feed(data)
    count = end = 0
    try:
        while True:
            counter.skip()
            count += 1
            end = counter.tell()  # exact only right after a whole object
    except msgpack.OutOfData:
        pass
    except Exception:
        return None
    if end != len(data) or count == 0:
        return None
    try:
        items = ormsgpack.unpackb(_ARRAY32.pack(0xDD, count) + data, ext_hook=_fast_ext_hook)
    except Exception:  # ormsgpack.MsgpackDecodeError and what an odd input may raise besides
        return None
    return items if type(items) is list and len(items) == count else None


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

    def release(self) -> None:
        """Lets go of the bytes of the frames already decoded when nothing further is buffered.

        Both the copy kept for ``exact_frame`` and the unpacker's buffer (which keeps its capacity)
        would otherwise hold the size of the last frame for as long as the connection waits, for its
        ack or for its next frame. After this, ``exact_frame`` has no frame to give until the next.
        """
        if self._odd_keys or len(self._buf) != self._start:
            return
        self._buf = bytearray()
        self._base = self._start = 0
        self._frame = (0, 0)
        self._unpacker = self._new_unpacker()

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
    chunk: Any  # NO_CHUNK when the client wants no ack
    signal: int  # Fluent Bit's fluent_signal; 0 for logs
    declared_size: Any
    # Entries (or undecodable packed bytes) that are no record, with the reason: dead-lettered.
    rejected: Rejected = field(default_factory=list)


def _options(value: Any) -> dict[str, Any]:
    if value is None:  # Docker's fluentd log driver sends a nil option
        return {}
    if type(value) is not dict:
        raise ProtocolError("bad_options", f"the option field must be a map, not {describe(value)}")
    return value


def decode_frame(frame: Any, stream: FrameStream, max_decompressed_size: int, now: int) -> Message:
    """Decodes a frame of any of the four modes; raises ProtocolError naming what is wrong."""
    if type(frame) is not list or not 2 <= len(frame) <= 4:
        raise ProtocolError(
            "bad_message",
            "a frame must be [tag, time, record(, option)] or [tag, entries(, option)], "
            f"not {describe(frame)}",
        )
    tag = frame[0]
    if type(tag) is bytes:
        tag = tag.decode("utf-8", "replace")
    elif type(tag) is not str:
        raise ProtocolError("bad_message", f"the tag must be a string, not {describe(tag)}")
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

    chunk = options.get("chunk", NO_CHUNK)
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
