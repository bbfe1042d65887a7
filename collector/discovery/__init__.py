"""Service discovery: where scrape targets come from.

A discovery mechanism (Kubernetes pods, ...) keeps a current set of targets and reports the whole set
each time it changes, as Prometheus' discovery manager hands target groups to its scrape manager.
The scraper diffs consecutive sets: new targets start, vanished ones stop.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

_LABEL_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """One endpoint to scrape, as discovery found it; the scrape job supplies everything left None.

    Hashable, so that target sets compare and diff as sets.
    """

    address: str  # host:port; an IPv6 host in brackets
    # Target labels beyond job and instance (namespace, pod, ...), sorted by name.
    labels: tuple[tuple[str, str], ...] = ()
    scheme: str | None = None
    metrics_path: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    # OpenTelemetry resource attributes describing the source (k8s.pod.name, ...), sorted by name.
    resource: tuple[tuple[str, str], ...] = ()


class TargetSource(Protocol):
    """A running discovery mechanism."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def updates(self) -> AsyncIterator[list[TargetSpec]]:
        """The complete current target set each time it changes (changes close together coalesce)."""
        ...


def sanitize_label_name(name: str) -> str:
    """A Prometheus label name for an arbitrary key: ``app.kubernetes.io/name`` ->
    ``app_kubernetes_io_name``, as Prometheus' discovery sanitizes Kubernetes label names; a leading
    digit gets a ``_`` in front, which Prometheus' label name syntax needs."""
    sanitized = _LABEL_UNSAFE.sub("_", name)
    if not sanitized or sanitized[0].isdigit():
        sanitized = "_" + sanitized
    return sanitized


def join_host_port(host: str, port: int) -> str:
    """``10.0.0.1``, 8080 -> ``10.0.0.1:8080``; an IPv6 host gets brackets."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"
