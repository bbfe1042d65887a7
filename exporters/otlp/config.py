"""The otlp exporter's settings: the endpoint (gRPC target or HTTP URLs per signal), TLS, headers."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from collector.config.types import ClientTLS, Duration, split_endpoint
from collector.core.model import Signal
from collector.exporterhelper.sender import ExporterConfig

SIGNAL_PATHS = {Signal.TRACES: "v1/traces", Signal.LOGS: "v1/logs", Signal.METRICS: "v1/metrics"}

_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Set by the exporter itself: a configured value would garble the request.
_RESERVED_HEADERS = frozenset(
    {"content-type", "content-encoding", "content-length", "transfer-encoding", "host", "te", "connection"}
)


class OTLPExporterConfig(ExporterConfig):
    # grpc: host:port, http://host:port or https://host:port. http/protobuf: the base URL that
    # /v1/traces, /v1/logs and /v1/metrics are appended to.
    endpoint: str | None = None
    # http/protobuf only: a signal's full URL, used as is (overrides endpoint for that signal).
    traces_endpoint: str | None = None
    logs_endpoint: str | None = None
    metrics_endpoint: str | None = None
    protocol: Literal["grpc", "http/protobuf"] = "grpc"
    compression: Literal["gzip", "none"] = "gzip"
    # Sent with every request (gRPC metadata, HTTP headers): e.g. authorization, a tenant id.
    headers: dict[str, str] = Field(default_factory=dict)
    tls: ClientTLS | None = None
    # grpc with a host:port endpoint: plaintext instead of TLS (a local Jaeger or collector).
    insecure: bool = False
    timeout: Duration = 10.0

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("timeout must be more than 0")
        return value

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            lower = name.lower()
            if lower in _RESERVED_HEADERS or lower.startswith("grpc-"):
                raise ValueError(f"header {name!r} is set by the exporter itself and cannot be configured")
            if not all(" " <= c <= "~" for c in value):
                raise ValueError(
                    f"the value of header {name!r} must be printable ASCII (no line breaks or control "
                    "characters)"
                )
        return headers

    @model_validator(mode="after")
    def _consistent(self) -> OTLPExporterConfig:
        per_signal = [self.traces_endpoint, self.logs_endpoint, self.metrics_endpoint]
        if self.protocol == "grpc":
            if self.endpoint is None:
                raise ValueError("endpoint is required (host:port, e.g. jaeger:4317)")
            if any(url is not None for url in per_signal):
                raise ValueError(
                    "traces_endpoint, logs_endpoint and metrics_endpoint are for protocol http/protobuf; "
                    "gRPC sends every signal to endpoint"
                )
            self.grpc_target()  # raises on a bad endpoint or contradicting TLS settings
            binary = [name for name in self.headers if name.lower().endswith("-bin")]
            if binary:
                raise ValueError(f"binary gRPC metadata ({', '.join(binary)}) is not supported in headers")
            if self.tls is not None and self.tls.insecure_skip_verify:
                raise ValueError(
                    "tls.insecure_skip_verify is not supported with grpc: give tls.ca_file (the CA that "
                    "signed the endpoint's certificate) instead"
                )
        else:
            if self.endpoint is None and all(url is None for url in per_signal):
                raise ValueError("set endpoint (base URL, e.g. http://jaeger:4318) or per-signal endpoints")
            if self.insecure:
                raise ValueError("insecure applies to grpc; with http/protobuf use an http:// URL")
            urls = self.signal_urls()
            if self.tls is not None and not any(u.startswith("https://") for u in urls.values()):
                raise ValueError("tls is set but no endpoint is https://")
        return self

    def grpc_target(self) -> tuple[str, bool]:
        """(host:port, whether TLS) for protocol grpc."""
        endpoint = self.endpoint or ""
        if "://" in endpoint:
            url = urlsplit(endpoint)
            if url.scheme not in ("http", "https"):
                raise ValueError(
                    f"endpoint {endpoint!r}: use host:port, http://host:port or https://host:port"
                )
            if url.path not in ("", "/") or url.query or url.fragment or url.username:
                raise ValueError(f"endpoint {endpoint!r}: a gRPC endpoint has no path, query or credentials")
            target, secure = url.netloc, url.scheme == "https"
            if secure and self.insecure:
                raise ValueError(f"endpoint {endpoint!r} is https:// but insecure is true")
            if not secure and self.tls is not None:
                raise ValueError(f"endpoint {endpoint!r} is http:// (plaintext) but tls is set")
        else:
            target, secure = endpoint, not self.insecure
            if self.insecure and self.tls is not None:
                raise ValueError("insecure: true and tls contradict each other; set one")
        try:
            split_endpoint(target)
        except ValueError as exc:
            raise ValueError(f"endpoint {endpoint!r}: {exc}") from None
        return target, secure

    def signal_urls(self) -> dict[Signal, str]:
        """The URL of each signal that has one, for protocol http/protobuf."""
        urls: dict[Signal, str] = {}
        given = {
            Signal.TRACES: self.traces_endpoint,
            Signal.LOGS: self.logs_endpoint,
            Signal.METRICS: self.metrics_endpoint,
        }
        for signal, url in given.items():
            if url is not None:
                urls[signal] = _check_url(url, f"{signal.value}_endpoint")
            elif self.endpoint is not None:
                base = _check_url(self.endpoint, "endpoint")
                urls[signal] = f"{base.rstrip('/')}/{SIGNAL_PATHS[signal]}"
        return urls


def _check_url(value: str, name: str) -> str:
    url = urlsplit(value)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"{name} {value!r} is not an http:// or https:// URL")
    if url.username or url.password:
        raise ValueError(f"{name} {value!r}: put credentials in headers (authorization), not in the URL")
    if url.query or url.fragment:
        raise ValueError(f"{name} {value!r}: an OTLP URL takes no query or fragment")
    return value
