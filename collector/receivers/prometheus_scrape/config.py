"""The configuration of the ``prometheus_scrape`` receiver (Prometheus' scrape_config names where
there is one; the example is in :mod:`collector.receivers.prometheus_scrape.receiver`)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from collector.config.types import ByteSize, ClientTLS, Duration, Endpoint, ReadableFile
from collector.core.component import ComponentConfig
from collector.discovery.kubernetes_config import PodDiscoveryConfig

MiB = 1024 * 1024

DEFAULT_SCRAPE_TIMEOUT = 10.0
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1)
    password: SecretStr | None = None
    password_file: ReadableFile | None = None

    @model_validator(mode="after")
    def _one_password(self) -> BasicAuth:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        return self


class ScrapeSettings(BaseModel):
    """How the targets of one job are scraped (Prometheus' scrape_config settings)."""

    model_config = ConfigDict(extra="forbid")

    scheme: Literal["http", "https"] = "http"
    metrics_path: str = "/metrics"
    # URL parameters, e.g. {module: [if_mib]} for the SNMP exporter.
    params: dict[str, list[str]] = Field(default_factory=dict)
    # Unset: the receiver's scrape_interval / scrape_timeout (a timeout never longer than the interval).
    scrape_interval: Duration | None = None
    scrape_timeout: Duration | None = None
    # On a label conflict keep the exposed label (true) or the target's, the exposed one renamed
    # ``exported_<name>`` (false, Prometheus' default).
    honor_labels: bool = False
    # Use the timestamps the target exposes (Prometheus' default) or the scrape time.
    honor_timestamps: bool = True
    # A larger (uncompressed) body fails the scrape; read no further. 0: no limit (Prometheus' default,
    # not ours: one runaway target must not take the collector's memory).
    body_size_limit: ByteSize = 16 * MiB
    # More samples than this fails the scrape, as in Prometheus. 0: no limit.
    sample_limit: int = Field(0, ge=0)
    basic_auth: BasicAuth | None = None
    bearer_token: SecretStr | None = None
    bearer_token_file: ReadableFile | None = None
    tls: ClientTLS | None = None
    follow_redirects: bool = True

    @field_validator("params", mode="before")
    @classmethod
    def _param_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str | int | float) else v for k, v in value.items()}
        return value

    @field_validator("metrics_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"metrics_path {value!r} must start with /")
        return value

    @field_validator("scrape_interval", "scrape_timeout")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be longer than 0s")
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> ScrapeSettings:
        chosen = [
            self.basic_auth is not None,
            self.bearer_token is not None,
            self.bearer_token_file is not None,
        ]
        if sum(chosen) > 1:
            raise ValueError("set at most one of basic_auth, bearer_token and bearer_token_file")
        return self


class StaticConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    targets: list[Endpoint] = Field(min_length=1)
    # Labels for every series of these targets (they may also set ``instance`` or ``job``).
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _LABEL_NAME.match(name) or name.startswith("__"):
                raise ValueError(
                    f"{name!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
                )
        return value


class ScrapeJob(ScrapeSettings):
    job_name: str = Field(min_length=1)
    static_configs: list[StaticConfig] = Field(min_length=1)


class KubernetesPodsConfig(ScrapeSettings, PodDiscoveryConfig):
    """Pods annotated ``prometheus.io/scrape: "true"``: where to find them and how to scrape them."""

    enabled: bool = True
    job_name: str = Field("kubernetes-pods", min_length=1)


class PrometheusScrapeConfig(ComponentConfig):
    # Defaults for every job that does not set its own (Prometheus' ``global`` section).
    scrape_interval: Duration = 15.0
    # Unset: 10s, or the interval if that is shorter (as Prometheus defaults it).
    scrape_timeout: Duration | None = None
    max_concurrent_scrapes: int = Field(64, ge=1)
    jobs: list[ScrapeJob] = Field(default_factory=list)
    # ``true`` is short for ``{enabled: true}`` with every default.
    kubernetes_pods: KubernetesPodsConfig | None = None

    @field_validator("kubernetes_pods", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False:
            return None
        return value

    @model_validator(mode="after")
    def _check(self) -> PrometheusScrapeConfig:
        if self.scrape_interval <= 0:
            raise ValueError("scrape_interval must be longer than 0s")
        if self.scrape_timeout is not None and not 0 < self.scrape_timeout <= self.scrape_interval:
            raise ValueError("scrape_timeout must be longer than 0s and not longer than scrape_interval")
        names = [job.job_name for job in self.jobs]
        if self.kubernetes_pods is not None and self.kubernetes_pods.enabled:
            names.append(self.kubernetes_pods.job_name)
        if not names:
            raise ValueError("nothing to scrape: add jobs, or enable kubernetes_pods")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"job names must be unique: {', '.join(duplicates)} appear more than once")
        for job in self.scraped_jobs():
            interval, timeout = self.timing(job)
            if timeout > interval:
                raise ValueError(
                    f"job {job.job_name!r}: scrape_timeout {timeout:g}s is longer than "
                    f"scrape_interval {interval:g}s"
                )
        return self

    def scraped_jobs(self) -> list[ScrapeJob | KubernetesPodsConfig]:
        jobs: list[ScrapeJob | KubernetesPodsConfig] = list(self.jobs)
        if self.kubernetes_pods is not None and self.kubernetes_pods.enabled:
            jobs.append(self.kubernetes_pods)
        return jobs

    def timing(self, job: ScrapeSettings) -> tuple[float, float]:
        """(interval, timeout) of a job; an inherited timeout shrinks to a shorter job interval."""
        interval = job.scrape_interval if job.scrape_interval is not None else self.scrape_interval
        if job.scrape_timeout is not None:
            return interval, job.scrape_timeout
        default = self.scrape_timeout if self.scrape_timeout is not None else DEFAULT_SCRAPE_TIMEOUT
        return interval, min(default, interval)
