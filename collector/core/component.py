"""Components and their registry.

A component is a pydantic config model plus an implementation with ``start()`` and ``stop()``,
registered under its type name, as the OpenTelemetry Collector's factories are. A config key is
``type`` or ``type/name`` (``otlp/jaeger``): the part before the slash picks the registered type.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from collector.core.in_flight import InFlight
from collector.core.model import Batch, Signal
from collector.core.telemetry import Telemetry
from collector.exporterhelper.request import BatchRequest, ExportRequest
from collector.workers.identity import WorkerIdentity

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
    """What the service gives each component: its id, the self-telemetry, a logger, and which worker
    process runs it (with several workers, state of its own goes under ``worker.directory()``)."""

    id: str
    telemetry: Telemetry
    data_dir: str
    logger: logging.Logger
    worker: WorkerIdentity = field(default_factory=WorkerIdentity)
    # Shared by the receivers of the process: how many frames and request bodies they hold at once.
    in_flight: InFlight = field(default_factory=InFlight)


# A component's config type: ``class ForwardReceiver(Receiver[ForwardConfig])`` types ``self.config``
# without re-declaring it. A bare ``Receiver`` (the registry, tests) means any config.
ConfigT = TypeVar("ConfigT", bound=ComponentConfig)


class Component(Generic[ConfigT]):
    kind: ClassVar[str] = ""
    type_name: ClassVar[str] = ""
    config_model: ClassVar[type[ComponentConfig]] = ComponentConfig
    signals: ClassVar[frozenset[Signal]] = frozenset()

    def __init__(self, config: ConfigT, ctx: ComponentContext) -> None:
        self.config: ConfigT = config
        self.ctx = ctx
        self.id = ctx.id
        self.log = ctx.logger

    async def start(self) -> None:
        """Acquire resources (sockets, clients, files). Must not return before ready to work."""

    async def stop(self) -> None:
        """Release everything start() acquired. Called once, in reverse start order."""


class Receiver(Component[ConfigT]):
    """Accepts data from clients and hands batches to one consumer per signal."""

    kind = "receiver"

    def __init__(self, config: ConfigT, ctx: ComponentContext, consumers: dict[Signal, Consumer]) -> None:
        super().__init__(config, ctx)
        self.consumers = consumers

    def ready(self) -> bool:
        """True while every listener is accepting; drives /readyz."""
        return True


class Processor(Component[ConfigT]):
    """Transforms whole batches in a pipeline, synchronously (no I/O on the hot path)."""

    kind = "processor"

    def process(self, batch: Batch) -> Batch | None:
        """Returns the batch to pass on (possibly changed or smaller), or None to drop it all."""
        return batch


class ExportError(Exception):
    """Base of the errors an exporter raises from export() or export_request()."""


class RetryableExportError(ExportError):
    """The backend did not take (part of) the request but may later.

    ``remaining`` is the part still to deliver (None: the whole request): a request of the same type
    as the one exported (an exporter that exports batches may name a Batch, which its default request
    wraps). ``delivered`` is how many records of the request did land (and ``rejected`` how many
    were dead-lettered) in this attempt; ``retry_after`` is the backend's hint in seconds, if it gave
    one. ``reason`` is a short label (``http_429``, ``connection``) used in metrics.
    """

    def __init__(
        self,
        reason: str,
        remaining: ExportRequest | Batch | None = None,
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
    """The backend will never take this request; it goes to the dead-letter file."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Exporter(Component[ConfigT]):
    """Delivers batches to a backend. The service feeds it through a queue and a sender.

    The sender turns each batch into the exporter's request once (``to_request``), then splits,
    retries and dead-letters requests (``export_request``). ``export_request()`` delivers the request
    and returns how many records landed; records the backend rejects for good it hands to
    ``self.dead_letter`` (set by the service), so returned + rejected = len(request). It raises
    RetryableExportError naming what is left to retry, or PermanentExportError when the whole request
    can never be delivered.

    An exporter that exports whole batches implements ``export(batch)`` only, with the same contract:
    its default request wraps the batch.
    """

    kind = "exporter"
    dead_letter: DeadLetter
    # Whether ``to_request`` uses a batch's received request (``Batch.wire``); the queue of an
    # exporter that does not drops it rather than hold its bytes.
    sends_wire: ClassVar[bool] = False

    async def to_request(self, batch: Batch) -> ExportRequest:
        """The batch as this exporter sends it; called once per batch, before the first attempt."""
        return BatchRequest(batch, self.dead_letter_view)

    async def export_request(self, request: ExportRequest) -> int:
        """Delivers a request made by ``to_request`` (or the ``remaining`` of an earlier attempt)."""
        if not isinstance(request, BatchRequest) or type(self).export is Exporter.export:
            raise NotImplementedError(
                f"{type(self).__name__} implements neither export() nor export_request()"
            )
        try:
            return await self.export(request.batch)
        except RetryableExportError as exc:
            if isinstance(exc.remaining, Batch):
                exc.remaining = request.with_batch(exc.remaining)
            raise

    async def export(self, batch: Batch) -> int:
        """Delivers one batch now: ``to_request`` then ``export_request``, unless overridden."""
        return await self.export_request(await self.to_request(batch))

    def dead_letter_view(self, item: Any) -> Any:
        """How a record is written to the dead-letter file (JSON-able)."""
        return item


C = TypeVar("C", bound=type[Component[Any]])

_REGISTRY: dict[str, dict[str, type[Component[Any]]]] = {"receiver": {}, "processor": {}, "exporter": {}}


def register(cls: C) -> C:
    """Class decorator: registers a component class under its kind and type name."""
    if not cls.kind or not cls.type_name:
        raise TypeError(f"{cls.__name__} needs kind and type_name to be registered")
    known = _REGISTRY[cls.kind]
    if cls.type_name in known and known[cls.type_name] is not cls:
        raise TypeError(f"{cls.kind} type {cls.type_name!r} is registered twice")
    known[cls.type_name] = cls
    return cls


def registered(kind: str) -> dict[str, type[Component[Any]]]:
    """Every component of ``kind``, the built-in ones imported (all of them: for listings)."""
    # The list of built-in components lives outside the core (collector/components.py); the core
    # only learns of it here, when somebody asks what is registered.
    from collector.components import load_builtin_components

    load_builtin_components()
    return _REGISTRY[kind]


def component_class(kind: str, type_name: str) -> type[Component[Any]] | None:
    """The class registered as ``type_name``, importing only its own module; None if unknown."""
    known = _REGISTRY[kind]
    if type_name not in known:
        from collector.components import load_component

        load_component(kind, type_name)
    return known.get(type_name)


def component_types(kind: str) -> frozenset[str]:
    """The type names of ``kind`` a configuration may use, importing none of them."""
    from collector.components import builtin_types

    return builtin_types(kind) | frozenset(_REGISTRY[kind])


def type_of(component_id: str) -> str:
    """``otlp/jaeger`` -> ``otlp``."""
    return component_id.split("/", 1)[0]
