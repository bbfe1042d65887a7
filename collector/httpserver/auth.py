"""Credentials of an HTTP receiver: Basic and/or bearer token, checked the same on every port."""

from __future__ import annotations

import base64
import binascii
import hmac

from multidict import CIMultiDict
from pydantic import SecretStr

from collector.httpserver.answers import Rejected


class HTTPAuth:
    """Basic and/or bearer-token credentials, compared in constant time; no credentials: open.

    ``other_scheme`` is the detail of the 401 for an Authorization header of a scheme that is not
    configured (a missing header is always "authentication required").
    """

    def __init__(
        self,
        username: str | None,
        password: SecretStr | None,
        bearer_token: SecretStr | None,
        *,
        other_scheme: str = "authentication required",
    ) -> None:
        self._basic: tuple[bytes, bytes] | None = None
        if username:
            secret = password.get_secret_value() if password else ""
            self._basic = (username.encode(), secret.encode())
        self._token = bearer_token.get_secret_value().encode() if bearer_token else None
        self._other_scheme = other_scheme
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
        if not authorization:
            raise Rejected(401, "unauthorized", "authentication required")
        raise Rejected(401, "unauthorized", self._other_scheme)
