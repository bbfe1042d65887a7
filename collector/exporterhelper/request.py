"""The export request: what an exporter sends, made once per batch, split, retried and dead-lettered.

As the OpenTelemetry Collector's exporterhelper ``Request``: an exporter turns a batch into its own
request once (``Exporter.to_request``: an Elasticsearch exporter's encoded bulk items, an OTLP
exporter's serialized protobuf payloads), and the sender works on requests from then on. A retry
sends what the request already holds, without converting the records again; ``remaining`` of a
RetryableExportError is a request of the same type, holding only what is left to deliver.

An exporter that exports whole batches needs none of this: its default request wraps the batch
(``BatchRequest``), and its ``export(batch)`` is called as before.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Self

from collector.core.model import Batch, Signal


def split_step(count: int, size_bytes: int, max_items: int, max_bytes: int) -> int:
    """Items per piece so that a piece stays within both limits (by the average item size)."""
    per_item = max(1, size_bytes // count) if count else 1
    return max(1, min(max_items, max_bytes // per_item))


class ExportRequest(ABC):
    """What one export call sends, for one signal; ``items`` are in the order they are sent."""

    signal: Signal

    @property
    @abstractmethod
    def items(self) -> Sequence[Any]:
        """The request's items (records, or the exporter's encoded form of them)."""

    @property
    def items_count(self) -> int:
        return len(self.items)

    def __len__(self) -> int:
        return self.items_count

    @property
    @abstractmethod
    def size_bytes(self) -> int:
        """An estimate of the request's size, to keep pieces within ``batch.max_bytes``."""

    @abstractmethod
    def split(self, max_items: int) -> list[Self]:
        """The request cut into pieces of at most ``max_items`` items, in order (itself if it fits)."""

    @abstractmethod
    def dead_letter_records(self) -> list[Any]:
        """What the dead-letter file gets for each item when the whole request is given up on."""

    def pieces(self, max_items: int, max_bytes: int) -> list[Self]:
        """The request cut to fit both bulk limits: at most ``max_items`` items and, by the average
        item size, ``max_bytes``."""
        if not self.items_count:
            return []
        return self.split(split_step(self.items_count, self.size_bytes, max_items, max_bytes))


class BatchRequest(ExportRequest):
    """The default request: a batch as it is, for exporters that export whole batches."""

    def __init__(self, batch: Batch, view: Callable[[Any], Any] = lambda item: item) -> None:
        self.batch = batch
        self.signal = batch.signal
        self._view = view  # how a record is written to the dead-letter file (the exporter's)

    @property
    def items(self) -> list[Any]:
        return self.batch.items

    @property
    def size_bytes(self) -> int:
        return self.batch.size_bytes

    def split(self, max_items: int) -> list[Self]:
        n = len(self.batch)
        if n <= max_items:
            return [self]
        per_item = max(1, self.batch.size_bytes // n)
        pieces = [self.batch.items[i : i + max_items] for i in range(0, n, max_items)]
        return [self.with_batch(Batch(self.signal, piece, per_item * len(piece))) for piece in pieces]

    def with_batch(self, batch: Batch) -> Self:
        """A request for ``batch`` (what is left of this one) that dead-letters as this one does."""
        return type(self)(batch, self._view)

    def dead_letter_records(self) -> list[Any]:
        return [self._view(item) for item in self.batch.items]
