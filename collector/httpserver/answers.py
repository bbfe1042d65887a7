"""What burnline's HTTP receivers answer: the 4xx for a bad request, the retryable answer to backpressure.

Used by fluentbit_http, otlp (HTTP side) and remote_write, so that a refused or rejected request is
answered, counted and logged the same on every port.
"""

from __future__ import annotations

import math

from aiohttp import web
from multidict import CIMultiDict

from collector.core.component import Refused
from collector.core.problem_log import ProblemLog


class Rejected(Exception):
    """A request answered with a 4xx: ``reason`` labels the counter, ``detail`` goes to the client."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


def rejection_response(exc: Rejected, challenge: CIMultiDict[str], allow: str) -> web.Response:
    """The 4xx answer for ``exc``, its detail as the text body (see :func:`finish_rejection`)."""
    return finish_rejection(web.Response(status=exc.status, text=exc.detail + "\n"), challenge, allow)


def finish_rejection(response: web.Response, challenge: CIMultiDict[str], allow: str) -> web.Response:
    """What a 4xx answer carries besides its body: the auth challenge on 401, ``Allow`` on 405, the
    connection closed after 413 (the rest of the body was not read, so the connection cannot be
    reused)."""
    if response.status == 401:
        response.headers.extend(challenge)
    elif response.status == 405:
        response.headers["Allow"] = allow
    if response.status == 413:
        response.force_close()
    return response


def retry_after_seconds(exc: Refused) -> int:
    """The Retry-After of a refused request: whole seconds, at least one. Retry-After has no
    fractions, and sub-second hints only make clients hammer a pipeline that is full."""
    return max(1, math.ceil(exc.retry_after))


def refused_response(exc: Refused, status: int = 503) -> web.Response:
    """The answer when the pipeline refused a request (backpressure): retry later, after Retry-After."""
    return web.Response(
        status=status,
        text=f"not accepted now: {exc.reason}; retry later\n",
        headers={"Retry-After": str(retry_after_seconds(exc))},
    )


def warn_request(problems: ProblemLog, request: web.Request, reason: str, status: int, detail: str) -> None:
    """Logs (rate-limited) the answer ``status`` to ``request``, naming the method, path and peer."""
    where = f"{request.method} {request.path}"
    problems.warn(reason, str(status), where, request.remote or "an unknown peer", detail)
