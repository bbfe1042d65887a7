"""The demo services' telemetry clients, speaking the wire protocols real agents speak.

- :class:`ForwardClient`: Fluent Forward over TCP as Fluent Bit's ``forward`` output with
  ``Require_ack_response`` sends it: one Forward-mode frame ``[tag, [[EventTime, record], ...],
  {"chunk": id, "size": n}]`` per flush, then waits for ``{"ack": id}``. A refused or unanswered
  chunk is re-sent once on a fresh connection (at-least-once, as Fluent Bit retries), then dropped
  and counted.
- :class:`OtlpHttpClient`: OTLP/HTTP protobuf ``POST /v1/traces`` as the OpenTelemetry SDKs' exporter
  sends it; 429/502/503/504 are retried once after ``Retry-After`` (bounded), other answers counted
  as failures with the server's message logged once per status.

Neither ever raises to its caller: the generator keeps playing its services whatever burnline says.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import struct
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgpack

from collector.core.retry_after import parse_retry_after

log = logging.getLogger("burnline.demo")

ACK_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0
RETRYABLE = {429, 502, 503, 504}
MAX_RETRY_AFTER = 2.0
_EVENT_TIME = struct.Struct(">II")


def event_time(time_ns: int) -> msgpack.ExtType:
    """Fluent's EventTime (msgpack ext type 0: big-endian seconds and nanoseconds)."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return msgpack.ExtType(0, _EVENT_TIME.pack(seconds, nanos))


@dataclass
class Delivery:
    """What a client delivered: records acknowledged, records dropped, requests retried."""

    delivered: int = 0
    dropped: int = 0
    retries: int = 0


class ForwardClient:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.stats = Delivery()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._unpacker = msgpack.Unpacker(raw=False)
        self._last_problem = ""
        # One chunk at a time on the connection: its ack must be read before the next goes out.
        self._lock = asyncio.Lock()

    async def send(self, tag: str, entries: list[tuple[int, dict[str, Any]]]) -> bool:
        """Sends one chunk of (time in ns, record) entries; True once burnline acknowledged it."""
        if not entries:
            return True
        chunk = base64.b64encode(os.urandom(16)).decode()
        frame = msgpack.packb(
            [tag, [[event_time(t), record] for t, record in entries], {"chunk": chunk, "size": len(entries)}]
        )
        for attempt in range(2):
            try:
                async with self._lock:
                    await self._send_once(frame, chunk)
            except (OSError, TimeoutError, ValueError, msgpack.UnpackException) as exc:
                await self.close()
                self._problem(f"Forward {self.host}:{self.port}: {type(exc).__name__}: {exc}")
                if attempt == 0:
                    self.stats.retries += 1
                continue
            self.stats.delivered += len(entries)
            self._last_problem = ""
            return True
        self.stats.dropped += len(entries)
        return False

    async def _send_once(self, frame: bytes, chunk: str) -> None:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT
            )
            self._unpacker = msgpack.Unpacker(raw=False)
        assert self._reader is not None and self._writer is not None
        self._writer.write(frame)
        await asyncio.wait_for(self._writer.drain(), ACK_TIMEOUT)
        async with asyncio.timeout(ACK_TIMEOUT):
            while True:
                for reply in self._unpacker:
                    if isinstance(reply, dict) and reply.get("ack") == chunk:
                        return
                    raise ValueError(f"unexpected reply {reply!r:.80} (waiting for ack {chunk})")
                data = await self._reader.read(4096)
                if not data:
                    raise ConnectionError("burnline closed the connection before acknowledging the chunk")
                self._unpacker.feed(data)

    def _problem(self, text: str) -> None:
        if text != self._last_problem:  # once per distinct problem, not once per chunk
            log.warning("%s", text)
            self._last_problem = text

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass


class OtlpHttpClient:
    def __init__(self, url: str) -> None:
        """``url``: the OTLP/HTTP base (``http://127.0.0.1:4318``); traces go to ``/v1/traces``."""
        self.traces_url = url.rstrip("/") + "/v1/traces"
        self.stats = Delivery()
        self._session: aiohttp.ClientSession | None = None
        self._logged: set[int | str] = set()

    async def send_traces(self, body: bytes, spans: int) -> bool:
        """POSTs one ExportTraceServiceRequest; True on 200."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ACK_TIMEOUT))
        headers = {"Content-Type": "application/x-protobuf"}
        for attempt in range(2):
            try:
                async with self._session.post(self.traces_url, data=body, headers=headers) as response:
                    text = await response.text(errors="replace")
                    if response.status == 200:
                        self.stats.delivered += spans
                        return True
                    self._problem(response.status, f"OTLP {self.traces_url}: {response.status} {text:.200}")
                    if response.status not in RETRYABLE or attempt:
                        break
                    delay = _retry_after(response.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._problem(type(exc).__name__, f"OTLP {self.traces_url}: {type(exc).__name__}: {exc}")
                if attempt:
                    break
                delay = 0.2
            self.stats.retries += 1
            await asyncio.sleep(delay)
        self.stats.dropped += spans
        return False

    def _problem(self, key: int | str, text: str) -> None:
        if key not in self._logged:
            log.warning("%s", text)
            self._logged.add(key)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _retry_after(value: str | None) -> float:
    seconds = parse_retry_after(value, maximum=MAX_RETRY_AFTER)
    return 0.5 if seconds is None else seconds
