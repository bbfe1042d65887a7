"""The top-level configuration file's shape.

Component sections (``receivers``, ``processors``, ``exporters``) hold raw mappings here; the loader
validates each against the config model its registered type declares.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from collector.config.types import Duration, Endpoint


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PipelineConfig(_Strict):
    receivers: list[str] = Field(min_length=1)
    processors: list[str] = []
    exporters: list[str] = Field(min_length=1)


class AdminConfig(_Strict):
    """The admin HTTP server: /healthz, /readyz and burnline's own /metrics."""

    endpoint: Endpoint = "0.0.0.0:8888"


class ServiceConfig(_Strict):
    pipelines: dict[str, PipelineConfig] = Field(min_length=1)
    admin: AdminConfig = AdminConfig()
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
