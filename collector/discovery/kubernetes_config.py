"""Kubernetes pod discovery's settings: which API server to ask, and which pods."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from collector.config.types import ClientTLS, ReadableFile

PodLabels = Literal["all", "none"] | list[str]


class PodDiscoveryConfig(BaseModel):
    """Which API server to ask, and which pods."""

    model_config = ConfigDict(extra="forbid")

    # An explicit API server URL (https://host:6443). Unset: the kubeconfig if ``kubeconfig`` is set,
    # else the in-cluster service account when running in a pod, else $KUBECONFIG or ~/.kube/config.
    api_server: str | None = None
    api_tls: ClientTLS | None = None
    # A bearer token for ``api_server``, re-read every minute (so a rotated token is picked up).
    api_bearer_token_file: ReadableFile | None = None
    kubeconfig: str | None = None
    kube_context: str | None = None
    # Empty: every namespace (one list/watch); else one list/watch per namespace.
    namespaces: list[str] = Field(default_factory=list)
    label_selector: str | None = None
    field_selector: str | None = None
    # Pod labels copied to target labels: "all", "none", or a list of label keys.
    pod_labels: PodLabels = "all"

    @field_validator("api_server")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("namespaces")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if any(not ns for ns in value):
            raise ValueError("a namespace name cannot be empty")
        if len(set(value)) != len(value):
            raise ValueError("namespaces are listed twice")
        return value
