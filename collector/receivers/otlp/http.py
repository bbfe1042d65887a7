"""OTLP/HTTP: POST ``/v1/traces``, ``/v1/logs``, ``/v1/metrics`` on the shared HTTP server layer.

Bodies are ``application/x-protobuf`` or ``application/json``, optionally ``Content-Encoding: gzip``
(or deflate). The answer uses the request's content type. Bad data gets 400, an oversized body
(before or after inflating) 413, an unknown content type or encoding 415, a missing or wrong token
401, backpressure 503 with ``Retry-After``. Error bodies are ``google.rpc.Status`` messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from aiohttp import web
from google.protobuf.message import Message

from collector.core.component import Refused
from collector.core.model import Signal
from collector.httpserver.answers import Rejected, finish_rejection, retry_after_seconds
from collector.httpserver.body import CONTENT_ENCODINGS, read_body
from collector.httpserver.cors import CORS
from collector.receivers.otlp.config import HTTPServerConfig
from collector.receivers.otlp.messages import (
    JSON,
    KINDS,
    PROTOBUF,
    Failure,
    Format,
    Kind,
    bad_request,
    json_bytes,
    retry_info,
    status,
    too_large,
)
from collector.receivers.request_turn import request_turn

if TYPE_CHECKING:
    from collector.receivers.otlp.receiver import OTLPReceiver

# application/protobuf is the IANA-registered name (2023); some clients send it.
_PROTOBUF_TYPES = frozenset({PROTOBUF, "application/protobuf"})


class OTLPHTTP:
    """The OTLP/HTTP endpoints of one receiver."""

    def __init__(self, receiver: OTLPReceiver, config: HTTPServerConfig) -> None:
        self.receiver = receiver
        self.config = config
        self.paths: dict[str, Kind] = {
            config.traces_url_path: KINDS[Signal.TRACES],
            config.logs_url_path: KINDS[Signal.LOGS],
            config.metrics_url_path: KINDS[Signal.METRICS],
        }
        self.cors = CORS(config.cors) if config.cors is not None else None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_request_body_size)
        app.router.add_route("*", "/{path:.*}", self.handle)
        if self.cors is not None:
            self.cors.install(app)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        receiver = self.receiver
        kind = self.paths.get(request.path)
        # Error bodies follow the request's encoding when it is JSON, else protobuf (the spec's default).
        fmt: Format = "json" if request.content_type == JSON else "protobuf"
        peer = request.remote or "an unknown peer"
        where = f"{request.method} {request.path}"
        try:
            if kind is None:
                raise Failure(
                    404, grpc.StatusCode.NOT_FOUND, "not_found", f"no OTLP endpoint at {request.path}"
                )
            if request.method == "OPTIONS" and self.cors is not None:
                return self.cors.preflight(request)
            if request.method != "POST":
                raise Failure(
                    405,
                    grpc.StatusCode.UNIMPLEMENTED,
                    "method_not_allowed",
                    f"use POST, not {request.method}",
                )
            receiver.authorize(request.headers.get("Authorization"))
            receiver.consumer(kind)  # before reading the body: no work for a signal nobody takes
            fmt, encoding = self._format(request)
            limit = self.config.max_request_body_size
            async with request_turn(receiver.ctx):
                try:
                    body = await read_body(request, limit)
                except Rejected as exc:
                    raise too_large(exc.detail) from None
                outcome = await receiver.ingest(kind, body, fmt, encoding, limit)
        except Failure as exc:
            return self._failure(exc, fmt, where, peer)
        except Refused as exc:
            seconds = retry_after_seconds(exc)
            detail = f"not accepted now: {exc.reason}; retry in {seconds}s"
            receiver.problems.warn("refused", "503", where, peer, detail)
            answer = status(grpc.StatusCode.UNAVAILABLE, detail, retry_info(seconds))
            return _http_response(503, answer, fmt, {"Retry-After": str(seconds)})
        except Exception:
            receiver.log.exception("failed to handle an OTLP/HTTP request to %s from %s", request.path, peer)
            return _http_response(500, status(grpc.StatusCode.INTERNAL, "internal error"), fmt)
        receiver.partial(outcome, where, peer)
        return _http_response(200, outcome.response, fmt)

    def _failure(self, exc: Failure, fmt: Format, where: str, peer: str) -> web.Response:
        self.receiver.count(exc.reason)
        self.receiver.problems.warn(exc.reason, str(exc.http_status), where, peer, exc.detail)
        details = (bad_request(exc.detail),) if exc.http_status == 400 else ()
        response = _http_response(exc.http_status, status(exc.grpc_code, exc.detail, *details), fmt)
        allow = "POST, OPTIONS" if self.cors is not None else "POST"
        return finish_rejection(response, self.receiver.auth.challenge, allow)

    def _format(self, request: web.Request) -> tuple[Format, str]:
        content_type = request.content_type
        fmt: Format
        if content_type in _PROTOBUF_TYPES:
            fmt = "protobuf"
        elif content_type == JSON:
            fmt = "json"
        else:
            raise Failure(
                415,
                grpc.StatusCode.INVALID_ARGUMENT,
                "unsupported_media_type",
                f"Content-Type {content_type!r} is not supported: use {PROTOBUF} or {JSON}",
            )
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower() or "identity"
        if encoding != "identity" and encoding not in CONTENT_ENCODINGS:
            raise Failure(
                415,
                grpc.StatusCode.INVALID_ARGUMENT,
                "unsupported_encoding",
                f"Content-Encoding {encoding!r} is not supported: use gzip, deflate or none",
            )
        return fmt, encoding


def _http_response(
    code: int, message: Message, fmt: Format, headers: dict[str, str] | None = None
) -> web.Response:
    if fmt == "json":
        return web.Response(status=code, body=json_bytes(message), content_type=JSON, headers=headers)
    return web.Response(status=code, body=message.SerializeToString(), content_type=PROTOBUF, headers=headers)
