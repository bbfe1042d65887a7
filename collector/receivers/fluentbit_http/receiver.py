"""The ``fluentbit_http`` receiver: what Fluent Bit's ``http`` output plugin POSTs.

Fluent Bit's ``[OUTPUT] Name http`` sends one request per chunk flush, in any of its formats (json,
json_lines, json_stream, msgpack, gelf: :mod:`collector.receivers.fluentbit_http.decode`).

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
import re
import time
from typing import Any

from aiohttp import web

from collector.config.types import split_endpoint
from collector.core.component import ComponentContext, Consumer, Receiver, Refused, register
from collector.core.model import Batch, LogRecord, Signal
from collector.core.problem_log import ProblemLog
from collector.httpserver.answers import Rejected, refused_response, rejection_response, warn_request
from collector.httpserver.auth import HTTPAuth
from collector.httpserver.body import CONTENT_ENCODINGS, read_body
from collector.httpserver.server import start_receiver_server
from collector.normalize.fluent import normalize_fluent
from collector.receivers.fluentbit_http.config import FluentBitHTTPConfig
from collector.receivers.fluentbit_http.decode import bad, decode_body
from collector.receivers.rejected_records import RejectedRecords
from collector.receivers.request_turn import request_turn

# Bodies at least this big (or compressed) are decoded in a worker thread so that one large flush
# does not stall every other connection's I/O for the whole decode. A smaller body is decoded on the
# loop, as the Forward receiver decodes its frames (13-16 ms for 1 MiB of Kubernetes records,
# measured alone): a thread holding the GIL runs none of it beside the loop, and its result waits
# for a turn of the loop (bench/RESULTS.md, "Fluent Bit HTTP bodies up to 1 MiB decoded on the loop").
_THREAD_DECODE_BYTES = 1024 * 1024

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

_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.]")


@register
class FluentBitHTTPReceiver(Receiver[FluentBitHTTPConfig]):
    """Receives Fluent Bit ``http`` output requests (json, json_lines, json_stream, msgpack, gelf)."""

    type_name = "fluentbit_http"
    config_model = FluentBitHTTPConfig
    signals = frozenset({Signal.LOGS})

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
        self._runner, self.port = await start_receiver_server(
            app,
            self.host,
            self.port,
            self.ctx,
            port_name="the Fluent Bit HTTP port :{port}",
            ssl_context=ssl_context,
            http2_advice="Fluent Bit's http output speaks HTTP/1.1; send OTLP/gRPC to the OTLP port (:4317)",
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
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
                try:
                    async with request_turn(self.ctx):
                        return await self._ingest(request)
                except Refused as exc:  # no turn came: the body was never read
                    warn_request(self._problems, request, "busy", 503, exc.reason)
                    return refused_response(exc)
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
        warn_request(self._problems, request, exc.reason, exc.status, exc.detail)
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
            raise bad("empty_body", "the request has no body")
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
                detail = f"the pipeline refused {len(records)} records: {exc.reason}"
                warn_request(self._problems, request, "refused", 503, detail)
                return refused_response(exc)
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
