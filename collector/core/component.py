"""Components and their registry.

A component is a pydantic config model plus an implementation with ``start()`` and ``stop()``,
registered under its type name, as the OpenTelemetry Collector's factories are. A config key is
``type`` or ``type/name`` (``otlp/jaeger``): the part before the slash picks the registered type.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from collector.core.model import Batch, Signal
from collector.core.telemetry import Telemetry

if TYPE_CHECKING:
    from collector.exporterhelper.deadletter import DeadLetter


class ComponentConfig(BaseModel):
    """Base of every component config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class Refused(Exception):
    """The pipeline cannot take a batch now; the sender should retry later.

    Receivers map this to their protocol's retryable answer (Forward: no ack; OTLP/HTTP: 503 with
    Retry-After; gRPC: UNAVAILABLE). ``retry_after`` is a hint in seconds.
    """

    def __init__(self, reason: str, retry_after: float = 1.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Consumer(Protocol):
    """Where a receiver hands its batches. Returns once the batch is accepted; raises Refused."""

    async def consume(self, batch: Batch) -> None: ...


@dataclass(slots=True)
class ComponentContext:
    """What the service gives each component: its id, the self-telemetry and a logger."""

    id: str
    telemetry: Telemetry
    data_dir: str
    logger: logging.Logger


class Component:
    kind: ClassVar[str] = ""
    type_name: ClassVar[str] = ""
    config_model: ClassVar[type[ComponentConfig]] = ComponentConfig
    signals: ClassVar[frozenset[Signal]] = frozenset()

    def __init__(self, config: Any, ctx: ComponentContext) -> None:
        self.config = config
        self.ctx = ctx
        self.id = ctx.id
        self.log = ctx.logger

    async def start(self) -> None:
        """Acquire resources (sockets, clients, files). Must not return before ready to work."""

    async def stop(self) -> None:
        """Release everything start() acquired. Called once, in reverse start order."""


class Receiver(Component):
    """Accepts data from clients and hands batches to one consumer per signal."""

    kind = "receiver"

    def __init__(self, config: Any, ctx: ComponentContext, consumers: dict[Signal, Consumer]) -> None:
        super().__init__(config, ctx)
        self.consumers = consumers

    def ready(self) -> bool:
        """True while every listener is accepting; drives /readyz."""
        return True


class Processor(Component):
    """Transforms whole batches in a pipeline, synchronously (no I/O on the hot path)."""

    kind = "processor"

    def process(self, batch: Batch) -> Batch | None:
        """Returns the batch to pass on (possibly changed or smaller), or None to drop it all."""
        return batch


class ExportError(Exception):
    """Base of the errors an exporter raises from export()."""


class RetryableExportError(ExportError):
    """The backend did not take (part of) the batch but may later.

    ``remaining`` is the part still to deliver (None: the whole batch), ``delivered`` how many records
    of the batch did land (and ``rejected`` how many were dead-lettered) in this attempt;
    ``retry_after`` is the backend's hint in seconds, if it gave one. ``reason`` is a short label
    (``http_429``, ``connection``) used in metrics.
    """

    def __init__(
        self,
        reason: str,
        remaining: Batch | None = None,
        retry_after: float | None = None,
        delivered: int = 0,
        rejected: int = 0,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.remaining = remaining
        self.retry_after = retry_after
        self.delivered = delivered
        self.rejected = rejected


class PermanentExportError(ExportError):
    """The backend will never take this batch; it goes to the dead-letter file."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Exporter(Component):
    """Delivers batches to a backend. The service feeds it through a queue and a sender.

    ``export()`` delivers the batch and returns how many records landed; records the backend
    rejects for good it hands to ``self.dead_letter`` (set by the service), so returned + rejected
    = len(batch). It raises RetryableExportError naming what is left to retry, or
    PermanentExportError when the whole batch can never be delivered.
    """

    kind = "exporter"
    dead_letter: DeadLetter

    async def export(self, batch: Batch) -> int:
        raise NotImplementedError

    def dead_letter_view(self, item: Any) -> Any:
        """How a record is written to the dead-letter file (JSON-able)."""
        return item


C = TypeVar("C", bound=type[Component])

_REGISTRY: dict[str, dict[str, type[Component]]] = {"receiver": {}, "processor": {}, "exporter": {}}


def register(cls: C) -> C:
    """Class decorator: registers a component class under its kind and type name."""
    if not cls.kind or not cls.type_name:
        raise TypeError(f"{cls.__name__} needs kind and type_name to be registered")
    known = _REGISTRY[cls.kind]
    if cls.type_name in known and known[cls.type_name] is not cls:
        raise TypeError(f"{cls.kind} type {cls.type_name!r} is registered twice")
    known[cls.type_name] = cls
    return cls


def registered(kind: str) -> dict[str, type[Component]]:
    # The list of built-in components lives outside the core (collector/components.py); the core
    # only learns of it here, when somebody asks what is registered.
    from collector.components import load_builtin_components

    load_builtin_components()
    return _REGISTRY[kind]


def type_of(component_id: str) -> str:
    """``otlp/jaeger`` -> ``otlp``."""
    return component_id.split("/", 1)[0]
