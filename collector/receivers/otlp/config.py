"""The configuration of the ``otlp`` receiver: its gRPC and HTTP servers and the bearer token."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator

from collector.config.types import ByteSize, Endpoint, ServerTLS
from collector.core.component import ComponentConfig
from collector.httpserver.cors import CORSConfig

MiB = 1024 * 1024


class GRPCServerConfig(ComponentConfig):
    endpoint: Endpoint = "0.0.0.0:4317"
    # Larger messages (after decompression) get RESOURCE_EXHAUSTED; 4 MiB is gRPC's and OTLP's default.
    max_recv_msg_size: ByteSize = 4 * MiB
    tls: ServerTLS | None = None

    @field_validator("max_recv_msg_size")
    @classmethod
    def _positive(cls, value: int) -> int:
        if not 1 <= value < 2**31:
            raise ValueError("max_recv_msg_size must be between 1 byte and 2 GiB")
        return value

    @field_validator("tls")
    @classmethod
    def _grpc_tls(cls, value: ServerTLS | None) -> ServerTLS | None:
        if value is not None and value.min_version != "1.2":
            # grpcio has no setting for it; it negotiates TLS 1.3 with clients that offer it.
            raise ValueError("grpcio cannot be limited to TLS 1.3: leave min_version at 1.2 for gRPC")
        return value


class HTTPServerConfig(ComponentConfig):
    endpoint: Endpoint = "0.0.0.0:4318"
    # The body as sent and after inflating; larger ones get 413. 20 MiB is OTLP's recommended default.
    max_request_body_size: ByteSize = 20 * MiB
    tls: ServerTLS | None = None
    cors: CORSConfig | None = None
    traces_url_path: str = "/v1/traces"
    logs_url_path: str = "/v1/logs"
    metrics_url_path: str = "/v1/metrics"

    @model_validator(mode="after")
    def _check(self) -> HTTPServerConfig:
        if self.max_request_body_size < 1:
            raise ValueError("max_request_body_size must be at least 1 byte")
        paths = [self.traces_url_path, self.logs_url_path, self.metrics_url_path]
        if any(not p.startswith("/") for p in paths):
            raise ValueError("the url paths must start with '/'")
        if len(set(paths)) != len(paths):
            raise ValueError("traces_url_path, logs_url_path and metrics_url_path must differ")
        return self


class OTLPReceiverConfig(ComponentConfig):
    # Either may be null to turn that transport off.
    grpc: GRPCServerConfig | None = Field(default_factory=GRPCServerConfig)
    http: HTTPServerConfig | None = Field(default_factory=HTTPServerConfig)
    # Clients must send ``Authorization: Bearer <token>`` (HTTP header or gRPC metadata).
    bearer_token: SecretStr | None = None

    @model_validator(mode="after")
    def _check(self) -> OTLPReceiverConfig:
        if self.grpc is None and self.http is None:
            raise ValueError("grpc and http are both off: enable at least one")
        if self.bearer_token is not None and not self.bearer_token.get_secret_value():
            raise ValueError("bearer_token must not be empty")
        return self
