"""The one data model every receiver produces and every exporter consumes.

Semantics follow OpenTelemetry: resource attributes (``service.name``, ``k8s.pod.name``, ...) describe
the source, records carry their own attributes, times are Unix nanoseconds, trace and span ids are
lower-case hex strings ("" when absent). Exporters translate at their edge (ECS for Elasticsearch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any


class Signal(StrEnum):
    LOGS = "logs"
    TRACES = "traces"
    METRICS = "metrics"


class Severity(IntEnum):
    """The first number of each OpenTelemetry severity range (SeverityNumber)."""

    UNSPECIFIED = 0
    TRACE = 1
    DEBUG = 5
    INFO = 9
    WARN = 13
    ERROR = 17
    FATAL = 21


def severity_name(number: int) -> str:
    """The short OpenTelemetry severity text for a SeverityNumber (1-24), "" when unspecified."""
    if number <= 0:
        return ""
    for level in (Severity.FATAL, Severity.ERROR, Severity.WARN, Severity.INFO, Severity.DEBUG):
        if number >= level:
            return level.name
    return Severity.TRACE.name


@dataclass(slots=True)
class LogRecord:
    """One log record (OpenTelemetry LogRecord plus its resource).

    ``resource`` is often the same dict object for every record of one source: treat it as read-only
    and copy before changing it.
    """

    time_unix_nano: int
    body: Any = None
    severity_number: int = 0
    severity_text: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    trace_id: str = ""
    span_id: str = ""
    observed_time_unix_nano: int = 0
    scope_name: str = ""

    @property
    def service_name(self) -> str:
        value = self.resource.get("service.name", "")
        return value if isinstance(value, str) else str(value)


@dataclass(slots=True)
class Batch:
    """A batch of items of one signal, the unit that moves through pipelines.

    ``size_bytes`` is an estimate of the batch's size (usually its size on the wire), used to bound
    queues and bulk requests without serializing twice.
    """

    signal: Signal
    items: list[Any]
    size_bytes: int = 0

    def __len__(self) -> int:
        return len(self.items)
