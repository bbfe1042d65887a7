"""Decoding what Fluent Bit's ``http`` output POSTs: bytes -> (time_unix_nano | None, record) entries.

Fluent Bit's ``[OUTPUT] Name http`` sends one request per chunk flush, in one of these formats:

- ``format json``: a JSON array of objects, each with the record time under ``json_date_key``
  (default ``date``) as a double, an epoch (s or ms) or an ISO 8601 / java_sql_timestamp string.
- ``format json_lines`` (``application/x-ndjson``) and ``json_stream``: the same objects one per
  line, or concatenated.
- ``format msgpack`` (the default): the raw chunk, concatenated ``[time, record]`` or
  ``[[time, metadata], record]`` events, time as EventTime (ext type 0) or an int/float.

Pure functions, run in a worker thread for large bodies.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
import orjson

from collector.httpserver.answers import Rejected
from collector.httpserver.body import inflate
from collector.normalize.values import map_from_pairs

# Fluent Bit marks the start and end of a group of records (OpenTelemetry resource/scope) with
# events whose seconds are -1 and -2; as EventTime's unsigned 32-bit seconds they are these.
_GROUP_START, _GROUP_END = -1, -2
_EVENTTIME = struct.Struct(">II")  # big-endian seconds and nanoseconds
_EVENTTIME_MARKERS = {0xFFFFFFFF: _GROUP_START, 0xFFFFFFFE: _GROUP_END}

# GELF levels are syslog severities 0-7; records carry them as the keywords Fluent Bit's GELF
# encoder accepts, which severity mapping understands better than a bare number.
_SYSLOG_LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_DATETIME = re.compile(
    r"\s*(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?\s*"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2})?)?\s*"
)
_NUMBER = re.compile(r"\s*(\d+)(?:\.(\d*))?\s*")


def bad(reason: str, detail: str) -> Rejected:
    """A 400 answer: the body is not what Fluent Bit sends (``reason`` labels the counter)."""
    return Rejected(400, reason, detail)


def _first_byte(body: bytes) -> int | None:
    """The first byte that is not JSON whitespace (None for a blank body)."""
    for byte in body:
        if byte not in b" \t\r\n":
            return byte
    return None


def sniff(body: bytes) -> str | None:
    """``json``, ``msgpack`` or None, from the first significant byte."""
    byte = _first_byte(body)
    if byte is None:
        return None
    if byte in b"[{":
        return "json"
    # A Fluent Bit msgpack chunk is a run of 2-element arrays: fixarray, array16 or array32.
    if 0x90 <= byte <= 0x9F or byte in (0xDC, 0xDD):
        return "msgpack"
    return None


def _scaled_ns(value: int) -> int:
    """Epoch integers by magnitude: seconds, milliseconds (``epoch_ms``), micro- or nanoseconds."""
    if value < 100_000_000_000:  # 1e11 s is the year 5138; 1e11 ms is 1973
        return value * 1_000_000_000
    if value < 100_000_000_000_000:
        return value * 1_000_000
    if value < 100_000_000_000_000_000:
        return value * 1_000
    return value


def _datetime_ns(text: str) -> int | None:
    """ISO 8601 (``2018-05-30T09:39:52.000681Z``) or java_sql_timestamp (``2018-05-30
    09:39:52.000681``, UTC as Fluent Bit writes it) to Unix ns; None if it is neither."""
    m = _DATETIME.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    try:
        # A leap second (:60) is the next second, as Unix time counts it.
        moment = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
    except ValueError:
        return None
    seconds = (moment - _EPOCH) // _SECOND + (second == 60)
    if m.group(9):  # a numeric offset: local time = UTC + offset
        offset = int(m.group(10)) * 3600 + int(m.group(11) or 0) * 60
        seconds -= offset if m.group(9) == "+" else -offset
    fraction = (m.group(7) or "")[:9].ljust(9, "0")
    ns = seconds * 1_000_000_000 + int(fraction)
    return ns if ns >= 0 else None


def json_time_ns(value: Any) -> int | None:
    """A JSON record's date value (any of Fluent Bit's ``json_date_format``\\s) to Unix ns."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _scaled_ns(value) if value >= 0 else None
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            return None
        if value < 1e11:
            # Fluent Bit's doubles carry microseconds; a double cannot hold epoch nanoseconds anyway.
            return round(value * 1e6) * 1000
        return _scaled_ns(round(value))
    if isinstance(value, str):
        number = _NUMBER.fullmatch(value)
        if number is None:
            return _datetime_ns(value)
        whole, fraction = int(number.group(1)), number.group(2)
        if fraction is None or whole >= 100_000_000_000:
            return _scaled_ns(whole)
        return whole * 1_000_000_000 + int(fraction[:9].ljust(9, "0"))
    return None


def _from_gelf(obj: dict[str, Any]) -> tuple[int | None, dict[str, Any]]:
    """A GELF 1.1 object back to a Fluent record: ``short_message`` -> ``message``, additional
    ``_field``\\s lose their underscore, ``level`` becomes its syslog keyword."""
    record: dict[str, Any] = {}
    for key, value in obj.items():
        if key in ("version", "timestamp"):
            continue
        if key == "short_message":
            record["message"] = value
        elif key == "level" and isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 7:
            record["level"] = _SYSLOG_LEVELS[value]
        elif key.startswith("_") and len(key) > 1:
            record[key[1:]] = value
        else:
            record[key] = value
    return json_time_ns(obj.get("timestamp")), record


def _json_documents(body: bytes) -> Iterator[Any]:
    """The top-level JSON values of a body: one document (``json``), one per line (``json_lines``,
    ``gelf``) or concatenated (``json_stream``)."""
    if _first_byte(body) == ord("["):
        try:
            yield orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise bad("invalid_json", f"invalid JSON: {exc}") from None
        return
    lines = body.split(b"\n")
    parsed: list[Any] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            parsed.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            break  # not one object per line: concatenated or pretty-printed; scan the whole body
    else:
        yield from parsed
        return
    yield from _concatenated_json(body)


def _concatenated_json(body: bytes) -> Iterator[Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad("invalid_json", f"invalid JSON: not UTF-8 at byte {exc.start}") from None
    decoder = json.JSONDecoder()
    pos, end = 0, len(text)
    while True:
        while pos < end and text[pos] in " \t\r\n":
            pos += 1
        if pos >= end:
            return
        try:
            value, pos = decoder.raw_decode(text, pos)
        except RecursionError:
            raise bad("invalid_json", "invalid JSON: nested too deeply") from None
        except json.JSONDecodeError as exc:
            raise bad(
                "invalid_json", f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        yield value


def decode_json(body: bytes, time_key: str | None) -> list[tuple[int | None, dict[str, Any]]]:
    entries: list[tuple[int | None, dict[str, Any]]] = []
    index = 0
    for document in _json_documents(body):
        objects = document if isinstance(document, list) else [document]
        for obj in objects:
            if not isinstance(obj, dict):
                raise bad("bad_shape", f"record {index} is a JSON {type(obj).__name__}, expected an object")
            index += 1
            if obj.get("version") == "1.1" and "short_message" in obj:
                entries.append(_from_gelf(obj))
                continue
            time_ns = None
            if time_key is not None and time_key in obj:
                value = obj.pop(time_key)
                time_ns = json_time_ns(value)
                if time_ns is None:
                    obj[time_key] = value  # not a time we can read: keep it, use the arrival time
            entries.append((time_ns, obj))
    return entries


def _event_time(value: Any, index: int) -> int | None:
    """An event's time as Unix ns; the group markers as -1/-2; None for an unusable value."""
    if isinstance(value, msgpack.ExtType):
        if value.code != 0 or len(value.data) != 8:
            raise bad(
                "bad_shape",
                f"event {index}: time is ext type {value.code} of {len(value.data)} bytes, "
                "expected EventTime (ext 0, 8 bytes)",
            )
        seconds, nanos = _EVENTTIME.unpack(value.data)
        if seconds in _EVENTTIME_MARKERS:
            return _EVENTTIME_MARKERS[seconds]
        return int(seconds) * 1_000_000_000 + int(nanos)
    if isinstance(value, msgpack.Timestamp):
        return int(value.to_unix_nano())
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(
            "bad_shape", f"event {index}: time is {type(value).__name__}, expected EventTime, int or float"
        )
    if value in (_GROUP_START, _GROUP_END):
        return int(value)
    if isinstance(value, float):
        return round(value * 1e6) * 1000 if math.isfinite(value) and value >= 0 else None
    return value * 1_000_000_000 if value >= 0 else None


Rejected_ = list[tuple[Any, str]]


def decode_msgpack(body: bytes, rejected: Rejected_ | None = None) -> list[tuple[int | None, dict[str, Any]]]:
    """A Fluent Bit chunk: ``[time, record]`` (v1) and ``[[time, metadata], record]`` (v2) events.

    Record metadata and the attributes of an enclosing group (OpenTelemetry resource) are kept
    under ``__internal__`` exactly where Fluent Bit's own JSON formats put them, so a record reads
    the same whichever ``format`` the output uses. Map keys of any type are accepted (normalization
    turns them into strings). An event that is no ``[time, record]`` goes to ``rejected`` with the
    reason (a 400 when ``rejected`` is None); the others are still taken.
    """
    try:
        return _decode_events(body, rejected, odd_keys=False)
    except TypeError:  # a list or map as a map key: Python cannot hash it; decode again, keys as text
        return _decode_events(body, rejected, odd_keys=True)


def _decode_events(
    body: bytes, rejected: Rejected_ | None, odd_keys: bool
) -> list[tuple[int | None, dict[str, Any]]]:
    unpacker = msgpack.Unpacker(
        raw=False,
        unicode_errors="replace",
        strict_map_key=False,
        object_pairs_hook=map_from_pairs if odd_keys else None,
        max_buffer_size=max(len(body), 1),
    )
    unpacker.feed(body)
    entries: list[tuple[int | None, dict[str, Any]]] = []
    group: dict[str, Any] | None = None
    index = consumed = 0
    try:
        for event in unpacker:
            # After the last complete event tell() jumps to the end of whatever was fed, complete
            # or not: a truncated tail shows only as the gap between this and len(body).
            consumed = unpacker.tell()
            try:
                time_ns, record, metadata = _event(event, index)
            except Rejected as exc:
                if rejected is None:
                    raise
                rejected.append((event, exc.detail))
                index += 1
                continue
            index += 1
            if time_ns == _GROUP_START:
                group = record if isinstance(record, dict) else None
                continue
            if time_ns == _GROUP_END:
                group = None
                continue
            if not isinstance(record, dict):
                record = {"log": record}  # as Fluent Bit's JSON encoder nests a non-map body
            internal = {}
            if group:
                internal["group_attributes"] = group
            if metadata:
                internal["log_metadata"] = metadata
            if internal:
                record["__internal__"] = internal
            entries.append((time_ns, record))
    except TypeError:
        if not odd_keys:
            raise
        raise bad("invalid_msgpack", f"invalid msgpack after {index} events") from None
    except (ValueError, msgpack.UnpackException) as exc:
        raise bad("invalid_msgpack", f"invalid msgpack after {index} events: {exc}") from None
    left = len(body) - consumed
    if left:
        raise bad("invalid_msgpack", f"msgpack is truncated: the last {left} bytes are an incomplete event")
    return entries


def _event(event: Any, index: int) -> tuple[int | None, Any, Any]:
    """An event's (time_ns, record, metadata); raises Rejected naming what is wrong with it."""
    if not isinstance(event, list) or len(event) != 2:
        what = f"array of {len(event)}" if isinstance(event, list) else type(event).__name__
        raise bad("bad_shape", f"event {index} is {what}, expected [time, record]")
    head, record = event
    metadata: Any = None
    if isinstance(head, list):
        if len(head) != 2 or not isinstance(head[1], dict):
            raise bad("bad_shape", f"event {index}: header is not [time, metadata]")
        head, metadata = head
    return _event_time(head, index), record, metadata


def decode_body(
    body: bytes,
    *,
    encoding: str,
    declared: str | None,
    time_key: str | None,
    max_inflated: int,
    rejected: Rejected_ | None = None,
) -> list[tuple[int | None, dict[str, Any]]]:
    """Inflates and decodes a request body; ``declared`` is the format its Content-Type names.
    msgpack events that are no records go to ``rejected`` (see :func:`decode_msgpack`)."""
    if encoding != "identity":
        body = inflate(body, encoding, max_inflated)
    fmt = declared or sniff(body)
    if fmt is None:
        raise Rejected(415, "unsupported_media_type", "the body is neither JSON nor msgpack")
    if fmt == "json":
        return decode_json(body, time_key)
    return decode_msgpack(body, rejected)
