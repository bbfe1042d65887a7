"""The ``fluentbit_http`` receiver: what Fluent Bit's ``http`` output plugin POSTs.

Fluent Bit's ``[OUTPUT] Name http`` sends one request per chunk flush, in one of these formats:

- ``format json``: a JSON array of objects, each with the record time under ``json_date_key``
  (default ``date``) as a double, an epoch (s or ms) or an ISO 8601 / java_sql_timestamp string.
- ``format json_lines`` (``application/x-ndjson``) and ``json_stream``: the same objects one per
  line, or concatenated.
- ``format msgpack`` (the default): the raw chunk, concatenated ``[time, record]`` or
  ``[[time, metadata], record]`` events, time as EventTime (ext type 0) or an int/float.
- ``format gelf``: GELF 1.1 objects, one per line.

``compress gzip`` arrives as ``Content-Encoding: gzip``; ``http_User``/``http_Passwd`` as Basic auth;
``header_tag X-Fluent-Tag`` sends the tag in that header. Without the header, the tag comes from the
URI path (``uri /app.log`` -> ``app.log``) exactly as Fluent Bit's own ``http`` input derives it.

One request is one batch: decoded whole, normalized once, handed to the pipeline once, and answered
201 (like Fluent Bit's ``http`` input) only when the pipeline took it. Fluent Bit retries 5xx, 408 and
429 and drops the chunk on any other 4xx, so bad input gets a 4xx naming the problem and backpressure
gets 503 + Retry-After. In the msgpack format, map keys of any type are accepted, and an event that
is no ``[time, record]`` is dead-lettered (``<data_dir>/deadletter/<id>.ndjson``) while the rest of
the request is taken. A gRPC client (HTTP/2 preface) or a TLS client on a plain port, or a plain
client on a TLS port, is closed with one line and a count (:mod:`collector.receivers.protocol_sniff`).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import struct
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgpack
import orjson
from aiohttp import web
from pydantic import Field, SecretStr, model_validator

from collector.config.types import ByteSize, Endpoint, ServerTLS, split_endpoint
from collector.core.component import ComponentConfig, ComponentContext, Consumer, Receiver, Refused, register
from collector.core.model import Batch, LogRecord, Signal
from collector.httpserver.receiving import (
    CONTENT_ENCODINGS,
    HTTPAuth,
    ProblemLog,
    Rejected,
    inflate,
    read_body,
    rejection_response,
)
from collector.httpserver.server import start_server
from collector.normalize.fluent import FluentNormalizeConfig, normalize_fluent
from collector.normalize.values import map_from_pairs
from collector.receivers.protocol_sniff import ProtocolGuard, WrongProtocolLog
from collector.receivers.rejected_records import RejectedRecords

MiB = 1024 * 1024

# Bodies at least this big (or compressed) are decoded in a worker thread so that one large flush
# does not stall every other connection's I/O for the whole decode.
_THREAD_DECODE_BYTES = 256 * 1024

# In-flight requests get this long to finish (their pipeline answer) when the receiver stops.
_SHUTDOWN_TIMEOUT = 10.0


_JSON_TYPES = frozenset(
    {
        "application/json",
        "text/json",
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonlines",
        "application/json-lines",
        "application/x-jsonlines",
        "application/jsonl",
        "application/x-json-stream",
        "application/json-seq",
        "application/stream+json",
    }
)
_MSGPACK_TYPES = frozenset(
    {
        "application/msgpack",
        "application/x-msgpack",
        "application/vnd.msgpack",
        "application/x-fluent-msgpack",
    }
)
# Content types that say nothing about the payload: sniffed like a missing one.
_GENERIC_TYPES = frozenset({"", "application/octet-stream", "text/plain", "binary/octet-stream"})


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
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.]")
_DATETIME = re.compile(
    r"\s*(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?\s*"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2})?)?\s*"
)
_NUMBER = re.compile(r"\s*(\d+)(?:\.(\d*))?\s*")


class FluentBitHTTPConfig(ComponentConfig):
    """Where to listen and how to read what Fluent Bit's ``http`` output sends."""

    endpoint: Endpoint = "0.0.0.0:9880"
    tls: ServerTLS | None = None
    # The request body as sent (compressed, if it is); larger requests get 413.
    max_body_size: ByteSize = 16 * MiB
    # A compressed body may inflate to at most this much; a larger one (a "zip bomb") gets 413.
    max_decompressed_size: ByteSize = 64 * MiB
    # Set Fluent Bit's ``header_tag`` to this name to send the tag in it; it wins over the URI path.
    # Empty: only the path names the tag.
    tag_header: str = "X-Fluent-Tag"
    # The tag of requests to ``/`` without a tag header; by default this receiver's id.
    default_tag: str | None = None
    # Fluent Bit's ``json_date_key``: the record key holding the time in the JSON formats. Its
    # ``json_date_format`` is recognised from the value (double, epoch, epoch_ms, iso8601,
    # java_sql_timestamp). None: records carry no time and get the time they arrived.
    time_key: str | None = "date"
    # Basic auth (Fluent Bit's ``http_User``/``http_Passwd``) and/or a bearer token (``header
    # Authorization Bearer ...``). When both are set, either is accepted.
    username: str | None = None
    password: SecretStr | None = None
    bearer_token: SecretStr | None = None
    # Fluent Bit counts 200-205 as delivered; 201 is what its own ``http`` input answers.
    success_code: Literal[200, 201, 204] = 201
    normalize: FluentNormalizeConfig = Field(default_factory=FluentNormalizeConfig)

    @model_validator(mode="after")
    def _check(self) -> FluentBitHTTPConfig:
        if self.password is not None and not self.username:
            raise ValueError("password needs a username (Fluent Bit's http_User)")
        if self.bearer_token is not None and not self.bearer_token.get_secret_value():
            raise ValueError("bearer_token must not be empty")
        if self.max_body_size < 1 or self.max_decompressed_size < 1:
            raise ValueError("max_body_size and max_decompressed_size must be at least 1 byte")
        return self


def _bad(reason: str, detail: str) -> Rejected:
    return Rejected(400, reason, detail)


# ---------------------------------------------------------------------------------------------
# Body decoding: bytes -> (time_unix_nano | None, record) entries. Pure functions, run in a thread
# for large bodies.


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
            raise _bad("invalid_json", f"invalid JSON: {exc}") from None
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
        raise _bad("invalid_json", f"invalid JSON: not UTF-8 at byte {exc.start}") from None
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
            raise _bad("invalid_json", "invalid JSON: nested too deeply") from None
        except json.JSONDecodeError as exc:
            raise _bad(
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
                raise _bad("bad_shape", f"record {index} is a JSON {type(obj).__name__}, expected an object")
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
            raise _bad(
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
        raise _bad(
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
        raise _bad("invalid_msgpack", f"invalid msgpack after {index} events") from None
    except (ValueError, msgpack.UnpackException) as exc:
        raise _bad("invalid_msgpack", f"invalid msgpack after {index} events: {exc}") from None
    left = len(body) - consumed
    if left:
        raise _bad("invalid_msgpack", f"msgpack is truncated: the last {left} bytes are an incomplete event")
    return entries


def _event(event: Any, index: int) -> tuple[int | None, Any, Any]:
    """An event's (time_ns, record, metadata); raises Rejected naming what is wrong with it."""
    if not isinstance(event, list) or len(event) != 2:
        what = f"array of {len(event)}" if isinstance(event, list) else type(event).__name__
        raise _bad("bad_shape", f"event {index} is {what}, expected [time, record]")
    head, record = event
    metadata: Any = None
    if isinstance(head, list):
        if len(head) != 2 or not isinstance(head[1], dict):
            raise _bad("bad_shape", f"event {index}: header is not [time, metadata]")
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


# ---------------------------------------------------------------------------------------------


@register
class FluentBitHTTPReceiver(Receiver):
    """Receives Fluent Bit ``http`` output requests (json, json_lines, json_stream, msgpack, gelf)."""

    type_name = "fluentbit_http"
    config_model = FluentBitHTTPConfig
    signals = frozenset({Signal.LOGS})

    config: FluentBitHTTPConfig

    def __init__(self, config: FluentBitHTTPConfig, ctx: ComponentContext, consumers: dict[Signal, Consumer]):
        super().__init__(config, ctx, consumers)
        self.host, self.port = split_endpoint(config.endpoint)
        self._runner: web.AppRunner | None = None
        self._serving = False
        self._problems = ProblemLog(self.log)
        self._default_tag = config.default_tag or self.id
        self._auth = HTTPAuth(config.username, config.password, config.bearer_token)
        self._dead_letter = RejectedRecords(ctx)

    async def start(self) -> None:
        app = web.Application(client_max_size=self.config.max_body_size)
        app.router.add_route("*", "/{path:.*}", self._handle)
        ssl_context = self.config.tls.context() if self.config.tls else None
        guard = ProtocolGuard(
            WrongProtocolLog(self.id, self.log, self.ctx.telemetry.protocol_errors),
            "http1",
            f"the Fluent Bit HTTP port :{self.port}",
            tls=ssl_context,
            advice={
                "http2": "Fluent Bit's http output speaks HTTP/1.1; send OTLP/gRPC to the OTLP port (:4317)"
            },
        )
        self._runner, self.port = await start_server(
            app,
            self.host,
            self.port,
            guard=guard,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
            auto_decompress=False,
            connections=self.ctx.telemetry.connections.labels(self.id),
        )
        guard.port_name = f"the Fluent Bit HTTP port :{self.port}"
        self._serving = True
        tls = " with TLS" if ssl_context else ""
        self.log.info("listening for Fluent Bit http output on %s:%d%s", self.host, self.port, tls)

    async def stop(self) -> None:
        self._serving = False
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.ctx.telemetry.connections.labels(self.id).set_function(lambda: 0)

    def ready(self) -> bool:
        return self._serving

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            if request.method in ("POST", "PUT"):  # Fluent Bit's http_method is POST or PUT
                return await self._ingest(request)
            if request.method in ("GET", "HEAD") and request.path in ("/", "/health"):
                return web.Response(text="ok\n")
            raise Rejected(405, "method_not_allowed", f"method {request.method} is not allowed; POST records")
        except Rejected as exc:
            return self._reject(request, exc)
        except Exception:
            # A bug, not the client's fault: 500 makes Fluent Bit retry the chunk rather than drop it.
            self.log.exception("failed to handle a request from %s", request.remote)
            return web.Response(status=500, text="internal error\n")

    def _reject(self, request: web.Request, exc: Rejected) -> web.Response:
        self.ctx.telemetry.protocol_errors.labels(self.id, exc.reason).inc()
        self._problems.warn_request(request, exc.reason, exc.status, exc.detail)
        return rejection_response(exc, self._auth.challenge, allow="POST, PUT, GET, HEAD")

    async def _ingest(self, request: web.Request) -> web.Response:
        observed_ns = time.time_ns()
        self._auth.check(request.headers.get("Authorization", ""))
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower() or "identity"
        if encoding != "identity" and encoding not in CONTENT_ENCODINGS:
            raise Rejected(
                415,
                "unsupported_encoding",
                f"Content-Encoding {encoding!r} is not supported (use gzip, deflate or none)",
            )
        content_type = request.content_type.lower()
        declared = None
        if content_type in _JSON_TYPES:
            declared = "json"
        elif content_type in _MSGPACK_TYPES:
            declared = "msgpack"
        tag = self._tag(request)
        body = await read_body(request, self.config.max_body_size)
        if not body:
            raise _bad("empty_body", "the request has no body")
        if content_type not in _GENERIC_TYPES and declared is None:
            self.log.debug("unknown Content-Type %r from %s; sniffing the body", content_type, request.remote)
        rejected: list[tuple[Any, str]] = []
        if encoding != "identity" or len(body) >= _THREAD_DECODE_BYTES:
            records = await asyncio.to_thread(
                self._decode, tag, observed_ns, body, encoding, declared, rejected=rejected
            )
        else:
            records = self._decode(tag, observed_ns, body, encoding, declared, rejected=rejected)
        if records:
            try:
                await self.consumers[Signal.LOGS].consume(Batch(Signal.LOGS, records, len(body)))
            except Refused as exc:
                retry_after = max(1, math.ceil(exc.retry_after))
                detail = f"the pipeline refused {len(records)} records: {exc.reason}"
                self._problems.warn_request(request, "refused", 503, detail)
                return web.Response(
                    status=503,
                    text=f"not accepted now: {exc.reason}; retry later\n",
                    headers={"Retry-After": str(retry_after)},
                )
        if rejected:
            # After the pipeline took the rest (a refused request is resent whole), before the answer.
            await self._dead_letter.write(tag, request.remote or "an unknown peer", rejected)
        return web.Response(status=self.config.success_code)

    def _decode(
        self,
        tag: str,
        observed_ns: int,
        body: bytes,
        encoding: str,
        declared: str | None,
        *,
        rejected: list[tuple[Any, str]],
    ) -> list[LogRecord]:
        entries = decode_body(
            body,
            encoding=encoding,
            declared=declared,
            time_key=self.config.time_key or None,
            max_inflated=self.config.max_decompressed_size,
            rejected=rejected,
        )
        if not entries:
            return []
        timed = ((observed_ns if t is None else t, record) for t, record in entries)
        return normalize_fluent(tag, timed, self.config.normalize, observed_ns, rejected)

    def _tag(self, request: web.Request) -> str:
        if self.config.tag_header:
            header = request.headers.get(self.config.tag_header, "").strip()
            if header:
                return header
        path = request.path[1:]
        # Fluent Bit's http input keeps letters, digits, '_' and '.' of the path and turns the rest to '_'.
        return _TAG_UNSAFE.sub("_", path) if path else self._default_tag
