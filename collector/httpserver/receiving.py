"""What burnline's HTTP receivers share: 4xx answers, credentials, bounded bodies, quiet problem logs.

Used by fluentbit_http, otlp (HTTP side) and remote_write, so that a limit or a credential check
behaves the same on every port.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import math
import time
import zlib

from aiohttp import web
from multidict import CIMultiDict
from pydantic import SecretStr

# A repeated problem is logged at most once per this many seconds (the counters count them all).
LOG_INTERVAL = 10.0

_GZIP_WBITS = 16 + zlib.MAX_WBITS
CONTENT_ENCODINGS = {"gzip": _GZIP_WBITS, "x-gzip": _GZIP_WBITS, "deflate": zlib.MAX_WBITS}


class Rejected(Exception):
    """A request answered with a 4xx: ``reason`` labels the counter, ``detail`` goes to the client."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


def rejection_response(exc: Rejected, challenge: CIMultiDict[str], allow: str) -> web.Response:
    """The 4xx answer for ``exc``: the auth challenge on 401, ``Allow`` on 405, the connection closed
    after 413 (the rest of the body was not read, so the connection cannot be reused)."""
    headers = CIMultiDict[str]()
    if exc.status == 401:
        headers.extend(challenge)
    elif exc.status == 405:
        headers["Allow"] = allow
    response = web.Response(status=exc.status, text=exc.detail + "\n", headers=headers)
    if exc.status == 413:
        response.force_close()
    return response


class ProblemLog:
    """Logs problems at most once per interval per reason, saying how many were not logged."""

    def __init__(self, logger: logging.Logger, interval: float = LOG_INTERVAL) -> None:
        self._log = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def warn(self, reason: str, answer: str, where: str, peer: str, detail: str) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -math.inf) < self._interval:
            self._quiet[reason] = self._quiet.get(reason, 0) + 1
            return
        self._last[reason] = now
        quiet = self._quiet.pop(reason, 0)
        more = f" ({quiet} more like it not logged)" if quiet else ""
        self._log.warning("answered %s to %s from %s: %s%s", answer, where, peer, detail, more)

    def warn_request(self, request: web.Request, reason: str, status: int, detail: str) -> None:
        where = f"{request.method} {request.path}"
        self.warn(reason, str(status), where, request.remote or "an unknown peer", detail)


class HTTPAuth:
    """Basic and/or bearer-token credentials, compared in constant time; no credentials: open."""

    def __init__(
        self, username: str | None, password: SecretStr | None, bearer_token: SecretStr | None
    ) -> None:
        self._basic: tuple[bytes, bytes] | None = None
        if username:
            secret = password.get_secret_value() if password else ""
            self._basic = (username.encode(), secret.encode())
        self._token = bearer_token.get_secret_value().encode() if bearer_token else None
        # What a 401 carries, so that clients know which scheme to use.
        self.challenge = CIMultiDict[str]()
        if self._basic:
            self.challenge.add("WWW-Authenticate", 'Basic realm="burnline", charset="UTF-8"')
        if self._token:
            self.challenge.add("WWW-Authenticate", 'Bearer realm="burnline"')

    def check(self, authorization: str) -> None:
        """Raises Rejected(401) unless the Authorization header value carries valid credentials."""
        if self._basic is None and self._token is None:
            return
        scheme, _, credentials = authorization.strip().partition(" ")
        scheme, credentials = scheme.lower(), credentials.strip()
        if scheme == "basic" and self._basic is not None:
            try:
                user, sep, password = base64.b64decode(credentials, validate=True).partition(b":")
            except (binascii.Error, ValueError):
                raise Rejected(401, "unauthorized", "malformed Basic credentials") from None
            # Both compared every time so that timing tells nothing about which part was wrong.
            user_ok = hmac.compare_digest(user, self._basic[0])
            password_ok = hmac.compare_digest(password, self._basic[1])
            if sep and user_ok and password_ok:
                return
            raise Rejected(401, "unauthorized", "wrong username or password")
        if scheme == "bearer" and self._token is not None:
            if hmac.compare_digest(credentials.encode("utf-8", "surrogateescape"), self._token):
                return
            raise Rejected(401, "unauthorized", "wrong bearer token")
        raise Rejected(401, "unauthorized", "authentication required")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to pass ``limit`` bytes."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise Rejected(413, "too_large", f"the body of {declared} bytes is over the {limit}-byte limit")
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise Rejected(413, "too_large", f"the body is over the {limit}-byte limit")
    return bytes(body)


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """Decompresses ``body`` (gzip, possibly several members, or zlib deflate) to at most ``limit``
    bytes, never holding more than ``limit + 1`` bytes of output whatever the input claims."""
    wbits = CONTENT_ENCODINGS[encoding]
    out = bytearray()
    stream = zlib.decompressobj(wbits)
    pending = body
    try:
        while pending:
            # Asking for one byte past the limit tells "exactly at the limit" from "over it".
            out += stream.decompress(pending, limit - len(out) + 1)
            if len(out) > limit:
                raise Rejected(413, "too_large", f"the {encoding} body inflates past the {limit}-byte limit")
            if stream.eof:
                pending = stream.unused_data
                if pending and wbits == _GZIP_WBITS:
                    stream = zlib.decompressobj(wbits)  # concatenated gzip members are one stream
                elif pending:
                    detail = f"{len(pending)} bytes of trailing data after the {encoding} stream"
                    raise Rejected(400, "bad_encoding", detail)
            else:
                pending = stream.unconsumed_tail
    except zlib.error as exc:
        raise Rejected(400, "bad_encoding", f"invalid {encoding} data: {exc}") from None
    if not stream.eof:
        raise Rejected(400, "bad_encoding", f"the {encoding} stream is truncated")
    return bytes(out)
