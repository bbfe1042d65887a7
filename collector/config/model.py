"""The top-level configuration file's shape.

Component sections (``receivers``, ``processors``, ``exporters``) hold raw mappings here; the loader
validates each against the config model its registered type declares.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from collector.config.types import ByteSize, Duration, Endpoint


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

    @model_validator(mode="after")
    def _consistent(self) -> MemoryLimiterConfig:
        if self.soft_limit is not None and self.hard_limit is not None and self.soft_limit > self.hard_limit:
            raise ValueError("soft_limit must not exceed hard_limit")
        if self.spike_percentage >= self.limit_percentage:
            raise ValueError("spike_percentage must be below limit_percentage")
        return self


class ServiceConfig(_Strict):
    pipelines: dict[str, PipelineConfig] = Field(min_length=1)
    admin: AdminConfig = AdminConfig()
    memory_limiter: MemoryLimiterConfig = MemoryLimiterConfig()
    # SIGTERM: receivers stop at once, then exporters get this long to drain their queues.
    shutdown_grace_period: Duration = 30.0
    data_dir: str = "./data"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"


class Config(_Strict):
    receivers: dict[str, Any] = Field(min_length=1)
    processors: dict[str, Any] = {}
    exporters: dict[str, Any] = Field(min_length=1)
    service: ServiceConfig
    # SLO specs are validated by the SLO engine; kept here so one file configures everything.
    slos: list[dict[str, Any]] = []
    slo_files: list[str] = []
    source: str = Field(default="<config>", exclude=True)
