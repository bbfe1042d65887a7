"""The Elasticsearch exporter's settings: endpoints and credentials, data stream routing, index templates."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from collector.config.types import ClientTLS, Duration
from collector.core.component import ComponentConfig
from collector.exporterhelper.sender import ExporterConfig
from exporters.elasticsearch import ecs


class DataStreamConfig(ComponentConfig):
    # Log records go to logs-<dataset>-<namespace>.
    dataset: str = ecs.DEFAULT_DATASET
    # Spans go to traces-<traces_dataset>-<namespace>.
    traces_dataset: str = ecs.DEFAULT_DATASET
    namespace: str = ecs.DEFAULT_NAMESPACE
    # Route by the data_stream.dataset / data_stream.namespace attributes of a record or span (or of
    # its resource) when present, sanitized as Elasticsearch's reroute processor does.
    dynamic: bool = True

    @field_validator("dataset", "traces_dataset")
    @classmethod
    def _valid_dataset(cls, value: str) -> str:
        if not value or ecs.sanitize_dataset(value) != value:
            raise ValueError(
                f"{value!r} is not a valid data stream dataset: use lower case, at most 100 bytes and none "
                f'of \\ / * ? " < > | , # : - or spaces (e.g. {ecs.sanitize_dataset(value) or "generic"!r})'
            )
        return value

    @field_validator("namespace")
    @classmethod
    def _valid_namespace(cls, value: str) -> str:
        if not value or ecs.sanitize_namespace(value) != value:
            raise ValueError(
                f"{value!r} is not a valid data stream namespace: use lower case, at most 100 bytes and "
                f'none of \\ / * ? " < > | , # : or spaces '
                f"(e.g. {ecs.sanitize_namespace(value) or 'default'!r})"
            )
        return value


class TemplateConfig(ComponentConfig):
    # Install (overwrite) composable index templates: @timestamp as date_nanos and the fields this
    # exporter writes typed as ECS says, on top of Elasticsearch's own logs@ / traces@ components.
    # The logs template goes in at start, the traces template before the first span is sent.
    install: bool = False
    name: str = Field(default="burnline-logs", min_length=1)
    index_patterns: list[str] = Field(default_factory=lambda: ["logs-*-*"], min_length=1)
    traces_name: str = Field(default="burnline-traces", min_length=1)
    traces_index_patterns: list[str] = Field(default_factory=lambda: ["traces-*-*"], min_length=1)
    # Above Elasticsearch's built-in "logs" and "traces" templates (100), below Elastic integrations'
    # (200 and up), which must keep winning for their own datasets.
    priority: int = Field(default=150, ge=0)

    @model_validator(mode="after")
    def _distinct(self) -> TemplateConfig:
        if self.name == self.traces_name:
            raise ValueError(f"name and traces_name are both {self.name!r}: each template needs its own")
        return self


class ElasticsearchConfig(ExporterConfig):
    endpoints: list[str] = Field(min_length=1)
    # An encoded API key (as Kibana shows it) or "id:api_key".
    api_key: str | None = None
    user: str | None = None
    password: str | None = None
    tls: ClientTLS | None = None
    compression: Literal["gzip", "none"] = "gzip"
    # Level 1 already shrinks log NDJSON about ten times, and is ISA-L's: 5x faster than zlib's level
    # 1 at the same size. 2-9 are zlib's (collector/core/gzip_body.py).
    compression_level: int = Field(default=1, ge=1, le=9)
    request_timeout: Duration = 30.0
    data_stream: DataStreamConfig = DataStreamConfig()
    # An ingest pipeline every document goes through (the data stream's default pipeline still
    # applies when this is unset).
    pipeline: str | None = None
    template: TemplateConfig = TemplateConfig()

    @field_validator("endpoints")
    @classmethod
    def _valid_endpoints(cls, values: list[str]) -> list[str]:
        out = []
        for value in values:
            url = urlsplit(value)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ValueError(f"{value!r} is not an Elasticsearch URL (e.g. https://es.example:9200)")
            if url.username or url.password:
                raise ValueError(f"{value!r}: put credentials in api_key or user/password, not in the URL")
            if url.query or url.fragment:
                raise ValueError(f"{value!r}: an endpoint URL takes no query or fragment")
            out.append(value.rstrip("/"))
        return out

    @field_validator("request_timeout")
    @classmethod
    def _positive_timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("request_timeout must be more than 0")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ElasticsearchConfig:
        if self.api_key is not None and (self.user is not None or self.password is not None):
            raise ValueError("set either api_key or user and password, not both")
        if (self.user is None) != (self.password is None):
            raise ValueError("user and password go together")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key is empty")
        if self.tls is not None:
            if any(not e.startswith("https://") for e in self.endpoints):
                raise ValueError("tls is set but an endpoint is not https://")
            if self.tls.server_name:
                raise ValueError("tls.server_name is not supported by the elasticsearch exporter")
        return self
