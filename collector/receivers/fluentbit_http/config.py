"""The configuration of the ``fluentbit_http`` receiver: where it listens, limits, tags, credentials."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from collector.config.types import ByteSize, Endpoint, ServerTLS
from collector.core.component import ComponentConfig
from collector.normalize.fluent_config import FluentNormalizeConfig

MiB = 1024 * 1024


class FluentBitHTTPConfig(ComponentConfig):
    """Where to listen and how to read what Fluent Bit's ``http`` output sends."""

    endpoint: Endpoint = "0.0.0.0:9880"
    tls: ServerTLS | None = None
    # The request body as sent (compressed, if it is); larger requests get 413.
    max_body_size: ByteSize = 16 * MiB
    # A compressed body may inflate to at most this much; a larger one (a "zip bomb") gets 413.
    max_decompressed_size: ByteSize = 64 * MiB
    # Set Fluent Bit's ``header_tag`` to this name to send the tag in it; it wins over the URI path.
    # Empty: only the path names the tag.
    tag_header: str = "X-Fluent-Tag"
    # The tag of requests to ``/`` without a tag header; by default this receiver's id.
    default_tag: str | None = None
    # Fluent Bit's ``json_date_key``: the record key holding the time in the JSON formats. Its
    # ``json_date_format`` is recognised from the value (double, epoch, epoch_ms, iso8601,
    # java_sql_timestamp). None: records carry no time and get the time they arrived.
    time_key: str | None = "date"
    # Basic auth (Fluent Bit's ``http_User``/``http_Passwd``) and/or a bearer token (``header
    # Authorization Bearer ...``). When both are set, either is accepted.
    username: str | None = None
    password: SecretStr | None = None
    bearer_token: SecretStr | None = None
    # Fluent Bit counts 200-205 as delivered; 201 is what its own ``http`` input answers.
    success_code: Literal[200, 201, 204] = 201
    normalize: FluentNormalizeConfig = Field(default_factory=FluentNormalizeConfig)

    @model_validator(mode="after")
    def _check(self) -> FluentBitHTTPConfig:
        if self.password is not None and not self.username:
            raise ValueError("password needs a username (Fluent Bit's http_User)")
        if self.bearer_token is not None and not self.bearer_token.get_secret_value():
            raise ValueError("bearer_token must not be empty")
        if self.max_body_size < 1 or self.max_decompressed_size < 1:
            raise ValueError("max_body_size and max_decompressed_size must be at least 1 byte")
        return self
