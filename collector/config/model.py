"""The top-level configuration file's shape.

Component sections (``receivers``, ``processors``, ``exporters``) hold raw mappings here; the loader
validates each against the config model its registered type declares.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from collector.config.types import ByteSize, ClientTLS, Duration, Endpoint
from collector.slo.spec import SLOSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PipelineConfig(_Strict):
    receivers: list[str] = Field(min_length=1)
    processors: list[str] = []
    exporters: list[str] = Field(min_length=1)


class AdminConfig(_Strict):
    """The admin HTTP server: /healthz, /readyz and burnline's own /metrics."""

    endpoint: Endpoint = "0.0.0.0:8888"


class MemoryLimiterConfig(_Strict):
    """collector.memory_limiter: refuse new data above the soft limit, also GC above the hard one."""

    enabled: bool = True
    check_interval: Duration = 1.0
    # Either absolute limits ...
    hard_limit: ByteSize | None = None
    soft_limit: ByteSize | None = None
    # ... or percentages of the available memory (used when the absolute ones are not set).
    limit_percentage: float = Field(default=80.0, gt=0, le=100)
    spike_percentage: float = Field(default=20.0, ge=0, lt=100)
    # Frames (Forward) and requests (HTTP receivers, OTLP/gRPC) that the receivers of one process
    # read, decode and hold at once (collector/core/in_flight.py); the others wait unread, their
    # clients seeing TCP backpressure. Independent of ``enabled``; 0 means no bound. 32 bounds what
    # Fluent Bit's frames (up to ~2 MB each) cost to ~100 MB however many agents connect. Waiting
    # costs throughput (bench/RESULTS.md: -14 % with 40 connections, 8 of them waiting).
    max_in_flight: int = Field(default=32, ge=0)
    # How long a request waits for its turn before it is answered 503 with Retry-After (gRPC:
    # UNAVAILABLE). A Forward connection waits as long as it takes: its client waits for the ack.
    in_flight_timeout: Duration = 5.0

    @model_validator(mode="after")
    def _consistent(self) -> MemoryLimiterConfig:
        if self.soft_limit is not None and self.hard_limit is not None and self.soft_limit > self.hard_limit:
            raise ValueError("soft_limit must not exceed hard_limit")
        if self.spike_percentage >= self.limit_percentage:
            raise ValueError("spike_percentage must be below limit_percentage")
        return self


class ServiceConfig(_Strict):
    pipelines: dict[str, PipelineConfig] = Field(min_length=1)
    # Processes that share the listening ports (SO_REUSEPORT) under one supervisor; "auto": one per
    # core the cgroup allows (collector/workers/cores.py). Default 1, on purpose: a Kubernetes pod
    # is sized by its CPU limit and scaled by replicas, memory limits are split between workers,
    # and each worker keeps its own queues; more workers are a choice made with that in mind.
    workers: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = 1
    admin: AdminConfig = AdminConfig()
    memory_limiter: MemoryLimiterConfig = MemoryLimiterConfig()
    # SIGTERM: receivers stop at once, then exporters get this long to drain their queues.
    shutdown_grace_period: Duration = 30.0
    data_dir: str = "./data"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"


class BasicAuth(_Strict):
    username: str
    password: SecretStr


class AlertmanagerConfig(_Strict):
    """One Alertmanager (API v2). Several form an HA pair: every one gets every alert."""

    url: str
    basic_auth: BasicAuth | None = None
    bearer_token: SecretStr | None = None
    tls: ClientTLS | None = None
    timeout: Duration = 10.0

    @model_validator(mode="after")
    def _check(self) -> AlertmanagerConfig:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url {self.url!r} must start with http:// or https://")
        if self.basic_auth is not None and self.bearer_token is not None:
            raise ValueError("give basic_auth or bearer_token, not both")
        return self


class AlertingConfig(_Strict):
    """The SLO engine: where alerts go and how often it evaluates, re-sends and persists."""

    alertmanagers: list[AlertmanagerConfig] = []
    evaluation_interval: Duration = Field(default=5.0, gt=0)
    resend_delay: Duration = Field(default=60.0, gt=0)
    # Events this far behind the clock are still counted; older ones only in late_events_total.
    # At most 1h: the finest buckets (10 s) cover the last hour.
    lateness: Duration = Field(default=300.0, ge=0, le=3600)
    # SLO counts reach disk this often (and at shutdown): a SIGKILL loses at most this much.
    persist_interval: Duration = Field(default=10.0, gt=0)
    # The generatorURL's base; default: the admin endpoint's http://host:port.
    external_url: str = ""


class Config(_Strict):
    receivers: dict[str, Any] = Field(min_length=1)
    processors: dict[str, Any] = {}
    exporters: dict[str, Any] = Field(min_length=1)
    service: ServiceConfig
    slos: list[SLOSpec] = []
    slo_files: list[str] = []
    alerting: AlertingConfig = AlertingConfig()
    source: str = Field(default="<config>", exclude=True)

    @field_validator("slos")
    @classmethod
    def _unique_slo_names(cls, slos: list[SLOSpec]) -> list[SLOSpec]:
        seen: set[str] = set()
        for slo in slos:
            if slo.name in seen:
                raise ValueError(f"duplicate SLO name {slo.name!r}")
            seen.add(slo.name)
        return slos
