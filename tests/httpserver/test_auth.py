"""HTTPAuth: Basic and bearer credentials as every HTTP receiver checks them."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr

from collector.httpserver.answers import Rejected
from collector.httpserver.auth import HTTPAuth


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def detail(auth: HTTPAuth, header: str) -> str:
    with pytest.raises(Rejected) as info:
        auth.check(header)
    assert (info.value.status, info.value.reason) == (401, "unauthorized")
    return info.value.detail


def test_no_credentials_configured_lets_everything_in() -> None:
    HTTPAuth(None, None, None).check("")
    HTTPAuth(None, None, None).check("Bearer whatever")


def test_basic_and_bearer_are_both_accepted_when_both_are_set() -> None:
    auth = HTTPAuth("fluent", SecretStr("s3cret"), SecretStr("tok"))
    auth.check(basic("fluent", "s3cret"))
    auth.check("Bearer tok")
    auth.check("  bearer   tok  ")  # scheme case and spacing do not matter
    assert detail(auth, basic("fluent", "wrong")) == "wrong username or password"
    assert detail(auth, basic("other", "s3cret")) == "wrong username or password"
    assert detail(auth, "Basic !!!") == "malformed Basic credentials"
    assert detail(auth, "Bearer nope") == "wrong bearer token"
    assert detail(auth, "") == "authentication required"
    assert detail(auth, "Digest x") == "authentication required"
    assert auth.challenge.getall("WWW-Authenticate") == [
        'Basic realm="burnline", charset="UTF-8"',
        'Bearer realm="burnline"',
    ]


def test_a_scheme_that_is_not_configured_gets_the_other_scheme_detail() -> None:
    auth = HTTPAuth(None, None, SecretStr("tok"), other_scheme="use Authorization: Bearer <token>")
    assert detail(auth, "") == "authentication required"
    assert detail(auth, basic("a", "b")) == "use Authorization: Bearer <token>"
    assert detail(auth, "Bearer") == "wrong bearer token"
    assert auth.challenge.getall("WWW-Authenticate") == ['Bearer realm="burnline"']
