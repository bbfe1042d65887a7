"""The ``forward`` receiver: Fluent Forward protocol v1, as Fluentd's and Fluent Bit's in_forward speak it.

A connection (TCP, optionally TLS) carries msgpack frames in the four modes of the protocol
(:mod:`collector.receivers.forward.protocol`). Each frame becomes one batch. When the frame carries
``option.chunk`` the reply ``{"ack": chunk}`` goes out only once the pipeline has accepted the batch.
With ``security`` clients must first pass the spec's HELO/PING/PONG handshake (shared key, optionally
user names and passwords). UDP datagrams on the same port get Fluentd's one-byte heartbeat reply,
which out_forward's ``heartbeat_type udp`` waits for.

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
import os
import time
from dataclasses import dataclass
from typing import Any

import msgpack

from collector.config.types import split_endpoint
from collector.core.component import ComponentContext, Consumer, Receiver, Refused, register
from collector.core.in_flight import Turn
from collector.core.model import Batch, LogRecord, Signal
from collector.normalize.fluent import normalize_fluent
from collector.receivers.forward.config import ForwardConfig
from collector.receivers.forward.protocol import (
    NO_CHUNK,
    READ_SIZE,
    FrameStream,
    Message,
    ProtocolError,
    Rejected,
    decode_frame,
    describe,
)
from collector.receivers.forward.server import Connection, HeartbeatProtocol, keepalive, peer_name
from collector.receivers.protocol_sniff import ProtocolGuard, WrongProtocolLog
from collector.receivers.rejected_records import RejectedRecords

# A client must finish the TLS handshake, and read HELO and send PING, within this time.
HANDSHAKE_TIMEOUT = 30.0
# PING is six short strings; anything this big is not a PING.
MAX_PING_SIZE = 64 * 1024
# stop(): in-flight batches end within the queues' block_timeout; this only guards against the unforeseen.
STOP_TIMEOUT = 30.0
# Fluent Bit's ``fluent_signal`` option: 0 is logs; metrics (1) and traces (2) carry cmetrics/ctraces.
FLUENT_SIGNALS = {1: "metrics", 2: "traces"}


class _Close(Exception):
    """Close the connection; the reason was already logged and counted."""


@dataclass(slots=True)
class _Received:
    """What is left of a frame once mapped: all that its delivery and its ack need."""

    tag: str
    chunk: Any  # NO_CHUNK when the client wants no ack
    records: list[LogRecord]
    rejected: Rejected
    size: int  # the frame's bytes on the wire


def _hexdigest(*parts: bytes) -> bytes:
    return hashlib.sha512(b"".join(parts)).hexdigest().encode()


@register
class ForwardReceiver(Receiver[ForwardConfig]):
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
        shared = self.ctx.worker.shared

        def stream_protocol() -> asyncio.StreamReaderProtocol:
            # What asyncio.start_server builds per connection; the guard sits in front of it.
            reader = asyncio.StreamReader(limit=READ_SIZE, loop=loop)
            return asyncio.StreamReaderProtocol(reader, self._accept, loop=loop)

        for attempt in range(1, attempts + 1):
            # With several workers each binds the port and the kernel spreads the connections.
            server = await loop.create_server(
                self._guard.wrap(stream_protocol), host, port, reuse_port=shared or None
            )
            bound = int(server.sockets[0].getsockname()[1])
            if cfg.heartbeat:
                try:
                    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                        HeartbeatProtocol, local_addr=(host, bound), reuse_port=shared or None
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
        peer = peer_name(writer)
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
        keepalive(writer)
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
        turn = Turn(self.ctx.in_flight)
        try:
            await self._frames(conn, stream, turn)
        finally:
            turn.give_back()

    async def _frames(self, conn: Connection, stream: FrameStream, turn: Turn) -> None:
        idle = self.config.idle_timeout or None
        frame_timeout = self.config.frame_timeout or None
        frame_deadline: float | None = None
        while True:
            while not self._stopping and (got := stream.next_frame()) is not None:
                received = self._map_frame(conn, stream, *got)
                # The decoded frame is let go before the pipeline is awaited: under load every
                # connection waits there at once, and a decoded frame of Kubernetes records is about
                # four times the size of the records mapped from it (and seven times its bytes).
                got = None
                stream.release()
                if received is not None:
                    await self._deliver(conn, received)
                frame_deadline = None  # the next frame gets its own frame_timeout
            if self._stopping:
                return
            timeout = idle
            if not stream.partial():
                turn.give_back()  # nothing held until the next frame's bytes arrive
                frame_deadline = None
            elif frame_timeout is not None:
                if frame_deadline is None:
                    frame_deadline = time.monotonic() + frame_timeout
                left = max(frame_deadline - time.monotonic(), 0.0)
                timeout = left if timeout is None else min(timeout, left)
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
            # Past max_in_flight, wait here with at most one read in hand: the rest of the frame
            # stays in the socket, and the client sees TCP backpressure.
            await turn.take()
            stream.feed(data)

    def _map_frame(self, conn: Connection, stream: FrameStream, frame: Any, size: int) -> _Received | None:
        """Decodes a frame and maps its entries to records (no await: nothing else runs meanwhile,
        and the frame is not kept once this returns)."""
        conn.frames += 1
        if frame is None:
            return None  # Fluentd's in_forward ignores a nil frame (reserved for TCP heartbeats)
        now = time.time_ns()
        msg = decode_frame(frame, stream, self.config.max_decompressed_size, now)
        records: list[LogRecord] = []
        if msg.signal:
            self._drop_signal(conn, msg)
        elif msg.entries:
            try:
                records = normalize_fluent(msg.tag, msg.entries, self.config.normalize, now, msg.rejected)
            except Exception:
                self._errors.labels(self.id, "unprocessable").inc()
                self.log.exception(
                    "cannot map the records of tag %r from %s; closing the connection", msg.tag, conn.peer
                )
                raise _Close from None
        return _Received(msg.tag, msg.chunk, records, msg.rejected, size)

    async def _deliver(self, conn: Connection, received: _Received) -> None:
        """Hands a frame's records to the pipeline, dead-letters its rejected entries, then acks."""
        records = received.records
        if records:
            try:
                await self._consumer.consume(Batch(Signal.LOGS, records, received.size))
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
        if received.rejected:
            # After the pipeline took the rest (a refused frame is resent whole) and before the ack.
            await self._dead_letter.write(received.tag, conn.peer, received.rejected)
        if received.chunk is not NO_CHUNK:
            await conn.send(
                msgpack.packb({"ack": received.chunk}, use_bin_type=True, unicode_errors="surrogateescape")
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
                f'expected ["PING", hostname, salt, digest, username, password digest], got {describe(ping)}',
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
