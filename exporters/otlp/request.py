"""The otlp exporter's export request: records encoded as OTLP export requests once, the bytes kept.

A batch becomes one or more payloads (several once the endpoint said a request was too large), each
the records it carries and the serialized (for HTTP, gzipped) protobuf sent for them. A retry sends
those bytes again; only a payload cut in pieces (to fit a limit) is encoded again, when next sent.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Self

import orjson

from collector.core.model import Signal
from collector.exporterhelper.request import ExportRequest
from exporters.json_values import to_json


@dataclass(slots=True, eq=False)
class Payload:
    """One OTLP export request: its records and, once encoded, the bytes sent for them."""

    items: list[Any]
    body: bytes | None = None
    size: int = 0  # len(body), or an estimate until it is encoded

    def cut(self, max_items: int) -> list[Payload]:
        """Pieces of at most ``max_items`` records (itself if it fits); a piece is encoded when sent."""
        n = len(self.items)
        if n <= max_items:
            return [self]
        per_item = self.size // n if n else 0
        return [
            Payload(self.items[i : i + max_items], None, per_item * len(self.items[i : i + max_items]))
            for i in range(0, n, max_items)
        ]


def record_view(item: Any) -> Any:
    """The record as JSON that cannot fail to encode (records are dead-lettered for odd values)."""
    view = {f.name: getattr(item, f.name) for f in fields(item)} if is_dataclass(item) else item
    return orjson.Fragment(to_json(view))


class OTLPRequest(ExportRequest):
    """The payloads of one export call, in order."""

    def __init__(self, signal: Signal, parts: list[Payload]) -> None:
        self.signal = signal
        self.parts = parts

    @property
    def items(self) -> list[Any]:
        return [item for part in self.parts for item in part.items]

    @property
    def items_count(self) -> int:
        return sum(len(part.items) for part in self.parts)

    @property
    def size_bytes(self) -> int:
        return sum(part.size for part in self.parts)

    def split(self, max_items: int) -> list[Self]:
        """Whole payloads grouped into pieces of at most ``max_items`` records; only a payload larger
        than that is cut (and encoded again)."""
        if self.items_count <= max_items:
            return [self]
        pieces: list[Self] = []
        current: list[Payload] = []
        count = 0
        for part in self.parts:
            for chunk in part.cut(max_items):
                if current and count + len(chunk.items) > max_items:
                    pieces.append(type(self)(self.signal, current))
                    current, count = [], 0
                current.append(chunk)
                count += len(chunk.items)
        if current:
            pieces.append(type(self)(self.signal, current))
        return pieces

    def dead_letter_records(self) -> list[Any]:
        return [record_view(item) for item in self.items]
