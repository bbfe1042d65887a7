"""The ``normalize:`` settings of the Fluent receivers (forward, fluentbit_http): how
:func:`collector.normalize.fluent.normalize_fluent` maps their records.

A module of its own: the mapping is compiled by mypyc (collector/compiled.py), and a pydantic model's
class body is not something mypyc compiles.
"""

from __future__ import annotations

from typing import Final

from pydantic import Field

from collector.core.component import ComponentConfig

DEFAULT_TIME_KEYS: Final = ("time", "timestamp", "@timestamp", "ts")


class FluentNormalizeConfig(ComponentConfig):
    """How a receiver of Fluent records maps them (the ``normalize:`` key of forward/fluentbit_http)."""

    # service.name is the first of these pod labels that is set, else the workload or container name.
    service_name_from: list[str] = Field(default_factory=lambda: ["app.kubernetes.io/name", "app", "k8s-app"])
    # Pod and namespace labels -> k8s.pod.label.<key> / k8s.namespace.label.<key>.
    kubernetes_labels: bool = True
    # Pod and namespace annotations -> k8s.pod.annotation.<key> / k8s.namespace.annotation.<key>.
    kubernetes_annotations: bool = False
    # A body that is a JSON object: its message field becomes the body, the rest attributes.
    parse_json_body: bool = True
    # Without a level field, read a level stated at the start of a text body ("ERROR ...").
    severity_from_body: bool = True
    # Record fields holding the event's own time, the first readable one winning (JSON body fields
    # before top-level ones); it becomes the record time, the arrival stays the observed time.
    # [] turns this off: the time the Fluent client sent is kept.
    time_keys: list[str] = Field(default_factory=lambda: list(DEFAULT_TIME_KEYS))
    # Keep the field that gave the time among the attributes (Fluent Bit's Time_Keep).
    keep_time_key: bool = False
