"""The configuration of the ``remote_write`` receiver: where it listens, limits, credentials, typing."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from collector.config.types import ByteSize, Endpoint, ServerTLS
from collector.core.component import ComponentConfig

MiB = 1024 * 1024


class RemoteWriteConfig(ComponentConfig):
    """Where to listen and how to read what remote-write senders POST."""

    # Not 9090, Prometheus' own port (its receiver's too): 19291 is where Thanos Receive takes
    # remote-write, so senders set up for a standalone receiver find this one at the usual place.
    endpoint: Endpoint = "0.0.0.0:19291"
    path: str = "/api/v1/write"
    tls: ServerTLS | None = None
    # The request body as sent (snappy-compressed); larger requests get 413.
    max_body_size: ByteSize = 16 * MiB
    # What the body may inflate to (snappy says so in its first bytes, checked before inflating).
    max_decompressed_size: ByteSize = 64 * MiB
    # Basic auth (Prometheus' basic_auth) and/or a bearer token (its authorization/credentials).
    # When both are set, either is accepted.
    username: str | None = None
    password: SecretStr | None = None
    bearer_token: SecretStr | None = None
    # Naming conventions type series whose family's metadata has not arrived (see the module doc).
    infer_types: bool = True
    # Metric families whose metadata (type, help, unit) is remembered, least recently told first out.
    metadata_cache_size: int = Field(default=100_000, ge=1)
    # The answer when the pipeline refuses (backpressure). 503 is retried by every sender; 429 only
    # by senders set to (Prometheus: queue_config.retry_on_http_429), others drop the request.
    refused_status: Literal[429, 503] = 503

    @model_validator(mode="after")
    def _check(self) -> RemoteWriteConfig:
        if not self.path.startswith("/"):
            raise ValueError(f"path {self.path!r} must start with '/'")
        if self.password is not None and not self.username:
            raise ValueError("password needs a username")
        if self.bearer_token is not None and not self.bearer_token.get_secret_value():
            raise ValueError("bearer_token must not be empty")
        if self.max_body_size < 1 or self.max_decompressed_size < 1:
            raise ValueError("max_body_size and max_decompressed_size must be at least 1 byte")
        return self
