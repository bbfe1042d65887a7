"""Wrong-protocol detection: what a connection's first bytes say it speaks, before a parser sees them.

Every TCP listener of a receiver (Forward, Fluent Bit HTTP, OTLP/HTTP, remote_write) wraps its
per-connection protocol in :class:`SniffingProtocol`. The first bytes a client sends are enough to
tell a TLS ClientHello (``0x16 0x03``), the HTTP/2 connection preface (``PRI * HTTP/2.0``, what a
gRPC client sends), an HTTP/1 request line (``GET ``, ``POST `` ...) and anything else apart. A
connection that speaks the wrong one for its port is closed with ONE rate-limited warning naming
the peer, what the bytes look like and where they belong, and is counted in
``burnline_receiver_errors_total{reason="wrong_protocol"}``; the libraries behind the port never see
it (aiohttp would log a traceback per gRPC retry, the Forward decoder a puzzling msgpack error).

On a TLS port the listener itself is plain TCP and TLS starts here once the first bytes are a
ClientHello, so plain HTTP sent to a TLS port is reported too (asyncio's own TLS listener drops such
connections without a word).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from asyncio import sslproto
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, cast

from prometheus_client import Counter

from collector.core.problem_log import LOG_INTERVAL, RateLimitedLog, not_logged

# The longest prefix needed to decide: "OPTIONS " and "CONNECT " are 8 bytes.
SNIFF_BYTES: Final = 8

Expect = Literal["http1", "forward"]
# What a connection's first bytes look like.
Looks = Literal["tls", "http2", "http1", "other"]

_HTTP2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HTTP_METHODS: Final = (
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
)
_DESCRIPTIONS: Final[dict[str, str]] = {
    "tls": "TLS (a ClientHello)",
    "http2": "HTTP/2 (gRPC)",
    "http1": "HTTP/1",
    "other": "neither TLS nor HTTP",
}


def sniff(data: bytes) -> Looks | None:
    """What ``data`` (a connection's first bytes) looks like; None until more bytes can tell."""
    if not data:
        return None
    if data[0] == 0x16:  # TLS record type "handshake", then the major version 3
        if len(data) < 2:
            return None
        return "tls" if data[1] == 0x03 else "other"
    if data.startswith(b"PRI "):
        return "http2"
    for method in _HTTP_METHODS:
        if data.startswith(method):
            return "http1"
    if len(data) < SNIFF_BYTES and any(
        method.startswith(data) for method in (*_HTTP_METHODS, _HTTP2_PREFACE[:4])
    ):
        return None
    return "other"


class WrongProtocolLog:
    """Counts every wrong-protocol connection and logs one line per kind per interval."""

    def __init__(
        self,
        component_id: str,
        logger: logging.Logger,
        errors: Counter,
        interval: float = LOG_INTERVAL,
    ) -> None:
        self._counter = errors.labels(component_id, "wrong_protocol")
        self._log = logger
        self._limit = RateLimitedLog(interval)

    def report(self, peer: str, looks: str, advice: str) -> None:
        self._counter.inc()
        due, quiet = self._limit.due(looks)
        if due:
            self._log.warning("closed a connection from %s: %s%s", peer, advice, not_logged(quiet))


class ProtocolGuard:
    """The wrong-protocol check of one listener: makes each connection's protocol and reports.

    ``expect`` is what the port speaks inside TLS (if any): HTTP/1 or Fluent Forward (msgpack).
    ``advice`` maps a look (``tls``, ``http2``, ``http1``, ``plain``) to where such a client belongs,
    e.g. ``{"http2": "send OTLP/gRPC to :4317"}``; missing entries get a generic hint.
    """

    def __init__(
        self,
        report: WrongProtocolLog,
        expect: Expect,
        port_name: str,
        *,
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float = 30.0,
        advice: Mapping[str, str] | None = None,
    ) -> None:
        self.report = report
        self.expect: Expect = expect
        self.port_name = port_name
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.advice = dict(advice or {})
        self._undecided: set[SniffingProtocol] = set()

    def wrap(self, inner_factory: Callable[[], asyncio.BaseProtocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``loop.create_server`` that sniffs before ``inner_factory``'s."""
        return lambda: SniffingProtocol(self, inner_factory)

    def close(self) -> None:
        """Closes connections still being sniffed (a listener that stops must not leave them open)."""
        for protocol in list(self._undecided):
            protocol.abort()

    def problem(self, looks: Looks) -> str | None:
        """What is wrong with a connection that looks like ``looks``; None when it may go on."""
        port = self.port_name
        if self.tls is not None:
            if looks == "tls":
                return None
            what = "plain HTTP" if looks in ("http1", "http2") else "plain (not TLS) data"
            hint = self.advice.get("plain", "enable TLS on the client (https://, tls on)")
            return f"looks like {what}, but {port} requires TLS: {hint}"
        if looks == "tls":
            hint = self.advice.get("tls", "turn TLS off on the client, or configure tls on this receiver")
            return f"looks like {_DESCRIPTIONS['tls']}, but {port} has no tls configured: {hint}"
        if looks == "http2" and self.expect == "http1":
            hint = self.advice.get("http2", "use HTTP/1.1")
            return f"looks like {_DESCRIPTIONS['http2']}, but {port} speaks HTTP/1.1: {hint}"
        if looks in ("http1", "http2") and self.expect == "forward":
            hint = self.advice.get(looks, "send HTTP to the fluentbit_http (:9880) or OTLP/HTTP (:4318) port")
            return f"looks like {_DESCRIPTIONS[looks]}, but {port} speaks Fluent Forward (msgpack): {hint}"
        return None

    def reply(self, looks: Looks, problem: str) -> bytes:
        """What a wrong client is told before the close, in its own protocol where it has one, so
        that curl or a gRPC client shows the reason (b"" for none: TLS and unknown bytes)."""
        text = problem.encode("utf-8", "replace")
        if looks == "http1":
            # As nginx answers plain HTTP on its HTTPS port.
            head = (
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(text) + 1}\r\nConnection: close\r\n\r\n"
            )
            return head.encode() + text + b"\n"
        if looks == "http2" and self.tls is None:
            # The server's connection preface (an empty SETTINGS frame), then GOAWAY with
            # HTTP_1_1_REQUIRED and the problem as debug data, which gRPC clients show.
            settings = _http2_frame(0x4, b"")
            goaway = _http2_frame(0x7, b"\x00\x00\x00\x00" + _HTTP_1_1_REQUIRED.to_bytes(4, "big") + text)
            return settings + goaway
        return b""

    def _track(self, protocol: SniffingProtocol, undecided: bool) -> None:
        if undecided:
            self._undecided.add(protocol)
        else:
            self._undecided.discard(protocol)


_HTTP_1_1_REQUIRED: Final = 0xD  # RFC 9113 error code


def _http2_frame(kind: int, payload: bytes) -> bytes:
    """An HTTP/2 frame on stream 0 without flags: 24-bit length, type, flags, stream id."""
    return len(payload).to_bytes(3, "big") + bytes((kind, 0)) + b"\x00\x00\x00\x00" + payload


def peer_address(addr: Any, unknown: str = "an unknown peer") -> str:
    """A connection's ``peername`` as host:port ([host]:port for IPv6), ``unknown`` without one."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr or unknown)


def _feed(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Hands ``data`` to a protocol as the transport would (buffered protocols ask for a buffer)."""
    if isinstance(protocol, asyncio.BufferedProtocol):
        view = memoryview(data)
        while view:
            buffer = memoryview(protocol.get_buffer(len(view)))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            protocol.buffer_updated(size)
            view = view[size:]
    else:
        cast(asyncio.Protocol, protocol).data_received(data)


def _retrieve(future: asyncio.Future[Any]) -> None:
    # A failed TLS handshake ends its connection; the error itself is the client's business.
    if not future.cancelled():
        future.exception()


class SniffingProtocol(asyncio.Protocol):
    """Sits in front of one connection's real protocol until its first bytes are judged.

    On a plain port the real protocol starts at once (a Forward server with shared keys speaks
    first: HELO) and sees the bytes only once they passed; on a TLS port it starts after the
    handshake, as with asyncio's own TLS listener. Then this object steps out of the data path.
    """

    def __init__(self, guard: ProtocolGuard, inner_factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self._guard = guard
        self._factory = inner_factory
        self._inner: asyncio.BaseProtocol | None = None
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._guard._track(self, True)
        if self._guard.tls is None:
            self._inner = self._factory()
            self._inner.connection_made(transport)
        else:
            # The inner protocol's own timeouts do not run before the handshake: bound the wait.
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._guard.handshake_timeout, self.abort)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        self._buffer += data
        looks = sniff(self._buffer)
        if looks is None:
            return
        problem = self._guard.problem(looks)
        if problem is not None:
            self._guard.report.report(peer_address(transport.get_extra_info("peername")), looks, problem)
            self._decided()
            self._buffer = b""
            self._transport = None  # what else the client sends is not read
            answer = self._guard.reply(looks, problem)
            if answer:
                transport.write(answer)
                transport.close()  # after the answer is written
            else:
                transport.abort()
            return
        self._decided()
        buffered, self._buffer = self._buffer, b""
        if self._guard.tls is not None:
            self._start_tls(transport, buffered)
            return
        assert self._inner is not None
        transport.set_protocol(self._inner)
        _feed(self._inner, buffered)

    def _start_tls(self, transport: asyncio.Transport, buffered: bytes) -> None:
        # What asyncio's TLS listener does per connection, with the bytes already read handed on.
        loop = asyncio.get_running_loop()
        assert self._guard.tls is not None
        waiter: asyncio.Future[None] = loop.create_future()
        waiter.add_done_callback(_retrieve)
        tls_protocol = sslproto.SSLProtocol(
            loop,
            self._factory(),
            self._guard.tls,
            waiter,
            server_side=True,
            ssl_handshake_timeout=self._guard.handshake_timeout,  # type: ignore[arg-type]  # a float works
        )
        transport.set_protocol(tls_protocol)
        tls_protocol.connection_made(transport)
        _feed(tls_protocol, buffered)

    def _decided(self) -> None:
        self._guard._track(self, False)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def eof_received(self) -> bool | None:
        if self._inner is not None:
            return self._inner.eof_received() if isinstance(self._inner, asyncio.Protocol) else None
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._decided()
        self._transport = None
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()
