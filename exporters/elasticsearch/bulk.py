"""The Elasticsearch exporter's export request: records encoded once as ``_bulk`` items (bulk_items.py).

The sender makes the request: on the event loop, or in a worker thread for a large batch
(``INLINE_ENCODE_RECORDS`` in exporter.py). A retry sends the items that failed as they were
encoded: a record keeps its ``_id`` (and its data stream) however often it is retried.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Self

import orjson

from collector.core.model import Signal
from collector.exporterhelper.request import ExportRequest
from exporters.elasticsearch.bulk_items import BulkItem, encode_logs, encode_spans
from exporters.elasticsearch.config import DataStreamConfig

__all__ = ["ENCODERS", "BulkItem", "BulkRequest", "encode_request", "item_view"]


def item_view(item: BulkItem, error_type: str | None = None, reason: str = "") -> dict[str, Any]:
    """A bulk item as the dead-letter file keeps it: its document and ``_id`` (and the error, if any)."""
    view: dict[str, Any] = {"index": item.index, "id": item.doc_id}
    if error_type is not None:
        view["error"] = {"type": error_type, "reason": reason}
    view["document"] = orjson.loads(item.source)
    view["record"] = item.record
    return view


class BulkRequest(ExportRequest):
    """The Elasticsearch exporter's request: records encoded as bulk items once, in order."""

    def __init__(self, signal: Signal, items: list[BulkItem]) -> None:
        self.signal = signal
        self._items = items
        self._size = sum(len(item.action) + len(item.source) for item in items)

    @property
    def items(self) -> list[BulkItem]:
        return self._items

    @property
    def size_bytes(self) -> int:
        return self._size

    def split(self, max_items: int) -> list[Self]:
        if len(self._items) <= max_items:
            return [self]
        return [
            type(self)(self.signal, self._items[i : i + max_items])
            for i in range(0, len(self._items), max_items)
        ]

    def subset(self, items: list[BulkItem]) -> Self:
        """A request of some of these items, as they were encoded (what is left to retry)."""
        return type(self)(self.signal, items)

    def dead_letter_records(self) -> list[Any]:
        """Records the sender gives up on (retries exhausted) keep their document and ``_id``."""
        return [item_view(item) for item in self._items]


def encode_request(
    signal: Signal, records: Sequence[Any], data_stream: DataStreamConfig
) -> tuple[BulkRequest, list[tuple[Any, str]]]:
    """A batch's records -> its bulk request, and the records that cannot be encoded with the reason.
    Runs inline or in a worker thread."""
    items, failed = ENCODERS[signal](records, data_stream)
    return BulkRequest(signal, items), failed


# One encoder per signal; each routes into its own data stream type.
ENCODERS: dict[
    Signal, Callable[[Sequence[Any], DataStreamConfig], tuple[list[BulkItem], list[tuple[Any, str]]]]
] = {
    Signal.LOGS: encode_logs,
    Signal.TRACES: encode_spans,
}
