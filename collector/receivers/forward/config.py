"""The configuration of the ``forward`` receiver: endpoint, TLS, the shared-key handshake and limits."""

from __future__ import annotations

import socket

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from collector.config.types import ByteSize, Duration, Endpoint, ServerTLS
from collector.core.component import ComponentConfig
from collector.normalize.fluent_config import FluentNormalizeConfig


class ForwardUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1)
    password: SecretStr


class ForwardSecurity(BaseModel):
    """Fluentd's ``<security>``: the shared-key handshake, optionally with user names and passwords."""

    model_config = ConfigDict(extra="forbid")

    shared_key: SecretStr
    # Sent in PONG; a client announcing the same name is refused (a forwarding loop to ourselves).
    self_hostname: str = Field(default_factory=socket.gethostname, min_length=1)
    # Also require a user name and password from ``users`` (HELO then carries the password salt).
    user_auth: bool = False
    users: list[ForwardUser] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> ForwardSecurity:
        if not self.shared_key.get_secret_value():
            raise ValueError("shared_key must not be empty")
        if self.user_auth and not self.users:
            raise ValueError("user_auth is on but users is empty: list at least one username and password")
        names = [u.username for u in self.users]
        if len(set(names)) != len(names):
            raise ValueError("users lists a username twice")
        return self


class ForwardConfig(ComponentConfig):
    endpoint: Endpoint = "0.0.0.0:24224"
    tls: ServerTLS | None = None
    security: ForwardSecurity | None = None
    # A frame (one message on the wire) larger than this closes its connection.
    max_frame_size: ByteSize = 16 * 1024 * 1024
    # CompressedPackedForward: the bound on one frame's inflated entries (a gzip bomb stops here).
    max_decompressed_size: ByteSize = 64 * 1024 * 1024
    # Close connections silent for this long; 0 keeps them (dead peers are found by TCP keepalive).
    # Fluentd and Fluent Bit keep idle connections open, and clients without acks cannot tell a
    # connection closed while idle from a working one on their next write.
    idle_timeout: Duration = 0.0
    # A frame that has begun must be complete within this time, or the connection is closed: a
    # client stalled mid-frame (or a slowloris) does not hold a connection and its buffer forever.
    frame_timeout: Duration = 60.0
    max_connections: int = Field(default=1000, ge=1)
    # Answer UDP heartbeats on the same port (Fluentd out_forward's heartbeat_type udp).
    heartbeat: bool = True
    normalize: FluentNormalizeConfig = Field(default_factory=FluentNormalizeConfig)

    @model_validator(mode="after")
    def _sizes(self) -> ForwardConfig:
        if self.max_frame_size < 1024:
            raise ValueError("max_frame_size must be at least 1KiB")
        return self
