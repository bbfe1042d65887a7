"""The answers every HTTP receiver gives: 4xx rejections and the retryable answer to backpressure."""

from __future__ import annotations

import logging

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from collector.core.component import Refused
from collector.core.problem_log import ProblemLog
from collector.httpserver.answers import (
    Rejected,
    refused_response,
    rejection_response,
    retry_after_seconds,
    warn_request,
)

CHALLENGE = CIMultiDict({"WWW-Authenticate": 'Bearer realm="burnline"'})


def test_refused_gets_503_with_whole_seconds_of_retry_after() -> None:
    response = refused_response(Refused("queue full", retry_after=2.2))
    assert response.status == 503
    assert response.headers["Retry-After"] == "3"
    assert response.text == "not accepted now: queue full; retry later\n"


def test_refused_status_may_be_429_and_retry_after_is_at_least_one_second() -> None:
    response = refused_response(Refused("memory limit", retry_after=0.01), 429)
    assert (response.status, response.headers["Retry-After"]) == (429, "1")
    assert retry_after_seconds(Refused("x", retry_after=0.0)) == 1


def test_rejections_carry_the_challenge_allow_or_a_closed_connection() -> None:
    unauthorized = rejection_response(Rejected(401, "unauthorized", "wrong bearer token"), CHALLENGE, "POST")
    assert unauthorized.headers["WWW-Authenticate"] == 'Bearer realm="burnline"'
    assert unauthorized.text == "wrong bearer token\n"
    not_allowed = rejection_response(Rejected(405, "method_not_allowed", "POST"), CHALLENGE, "POST, PUT")
    assert not_allowed.headers["Allow"] == "POST, PUT"
    assert "WWW-Authenticate" not in not_allowed.headers
    too_large = rejection_response(Rejected(413, "too_large", "big"), CHALLENGE, "POST")
    assert too_large.keep_alive is False
    bad = rejection_response(Rejected(400, "invalid_json", "no"), CHALLENGE, "POST")
    assert "Allow" not in bad.headers and bad.keep_alive is not False


def test_warn_request_names_method_path_and_peer_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    problems = ProblemLog(logging.getLogger("test.answers"))
    request = make_mocked_request("POST", "/api/v1/write")
    with caplog.at_level(logging.WARNING, "test.answers"):
        for _ in range(3):
            warn_request(problems, request, "too_large", 413, "the body is over the limit")
    peer = request.remote or "an unknown peer"
    assert [r.getMessage() for r in caplog.records] == [
        f"answered 413 to POST /api/v1/write from {peer}: the body is over the limit"
    ]
