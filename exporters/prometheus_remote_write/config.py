"""The ``prometheus_remote_write`` exporter's settings, checked against what the protocol allows."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from collector import __version__
from collector.config.types import ClientTLS, Duration
from collector.exporterhelper.sender import ExporterConfig
from exporters.prometheus.config import NamingConfig

# Headers Prometheus does not let its users set (remote-write spec: reserved headers), plus the
# hop-by-hop ones an HTTP client manages itself.
RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "host",
        "content-encoding",
        "content-length",
        "content-type",
        "x-prometheus-remote-write-version",
        "user-agent",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "www-authenticate",
        "transfer-encoding",
    }
)


class PrometheusRemoteWriteConfig(ExporterConfig, NamingConfig):
    endpoint: str
    headers: dict[str, str] = Field(default_factory=dict)
    username: str | None = None
    password: SecretStr | None = None
    bearer_token: SecretStr | None = None
    tls: ClientTLS | None = None
    timeout: Duration = 30.0
    # Prometheus' own default max_samples_per_send.
    max_samples_per_request: int = Field(default=2000, ge=1)
    send_metadata: bool = True
    exponential_histograms: Literal["drop", "native"] = "drop"
    user_agent: str = f"burnline/{__version__}"
    # One batch at a time keeps every series' samples in order across batches (see module doc).
    concurrency: int = Field(default=1, ge=1, le=64)
    # Requests of one batch in flight at once, as Prometheus' own remote-write shards: each shard
    # carries whole targets (all series with one job and instance, and their target_info), so a
    # series' samples still arrive in order.
    shards: int = Field(default=4, ge=1, le=64)

    @field_validator("endpoint")
    @classmethod
    def _valid_endpoint(cls, value: str) -> str:
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(
                f"{value!r} is not a remote-write URL (e.g. http://prometheus:9090/api/v1/write)"
            )
        if url.username or url.password:
            raise ValueError(f"{value!r}: put credentials in username/password or bearer_token, not the URL")
        return value

    @field_validator("headers")
    @classmethod
    def _no_reserved_headers(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(k for k in value if k.strip().lower() in RESERVED_HEADERS)
        if reserved:
            raise ValueError(
                f"header(s) {', '.join(reserved)} cannot be set: the protocol and the exporter own them "
                "(credentials go in username/password or bearer_token)"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PrometheusRemoteWriteConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.username is not None and self.bearer_token is not None:
            raise ValueError("set either username and password or bearer_token, not both")
        if self.timeout <= 0:
            raise ValueError("timeout must be more than 0")
        if self.tls is not None and not self.endpoint.startswith("https://"):
            raise ValueError("tls is set but the endpoint is not https://")
        return self
