"""Log records and spans -> rows of the local store, and the table each signal goes to.

- Resources are stored once, in a ``resources`` table keyed by a 64-bit hash of their canonical JSON,
  and log rows refer to them. A Kubernetes resource (pod, namespace, container, node, labels) is
  hundreds of bytes and identical for every record of a pod, so repeating it in each row would make it
  most of the file. A resource row remembers the newest record time that uses it; retention drops the
  resources older than every remaining record. (Two different resources sharing a 64-bit hash is
  astronomically unlikely at the thousands of resources a store sees.)
- Spans are unique by (trace id, span id): a span sent again (a client retrying after a lost
  acknowledgement, a replayed queue) is counted as delivered and not stored twice. Each span row has
  its error flag (``Span.is_error``: status ERROR, or a 5xx answer of a server span) so that
  ``burnline traces --errors`` reads a small partial index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from collector.core.model import LogRecord, Signal, Span
from collector.core.trace_ids import SPAN_ID_BYTES, TRACE_ID_BYTES, require_hex_id
from exporters.json_values import to_json

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _resource_key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


@dataclass(slots=True)
class Rows:
    """One batch converted: rows to insert, resources to upsert, records that cannot be stored."""

    rows: list[tuple[Any, ...]]
    records: list[Any]  # the record of each row
    resources: dict[int, list[Any]]  # id -> [attributes JSON, last_seen]
    rejected: list[tuple[Any, str]]
    # id(resource dict) -> key: each shared resource dict is serialized once per batch
    resource_ids: dict[int, int | None] = field(default_factory=dict)

    def resource_id(self, resource: dict[str, Any], time_ns: int) -> int | None:
        """The resources row of ``resource`` (None when empty), remembering ``time_ns`` as seen."""
        if id(resource) in self.resource_ids:
            rid = self.resource_ids[id(resource)]
        else:
            rid = None
            if resource:
                text = to_json(resource, sort_keys=True)
                rid = _resource_key(text)
                self.resources.setdefault(rid, [text, time_ns])
            self.resource_ids[id(resource)] = rid
        if rid is not None:
            entry = self.resources[rid]
            entry[1] = max(entry[1], time_ns)
        return rid


def _record_time(value: Any) -> int:
    if not isinstance(value, int) or not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"time {value!r} is not Unix nanoseconds")
    return value


def _log_rows(records: Sequence[LogRecord], now_ns: int) -> Rows:
    out = Rows([], [], {}, [])
    for rec in records:
        try:
            time_ns = _record_time(rec.time_unix_nano or rec.observed_time_unix_nano or now_ns)
            rid = out.resource_id(rec.resource, time_ns)
            body = rec.body
            if body is None or isinstance(body, str):
                body_is_json = 0
            elif isinstance(body, bytes | bytearray):
                body, body_is_json = bytes(body).decode("utf-8", "replace"), 0
            else:
                body, body_is_json = to_json(body), 1
            out.rows.append(
                (
                    time_ns,
                    int(rec.observed_time_unix_nano or 0),
                    rec.service_name,
                    int(rec.severity_number or 0),
                    str(rec.severity_text or ""),
                    body,
                    body_is_json,
                    to_json(rec.attributes) if rec.attributes else None,
                    rid,
                    rec.trace_id or None,
                    rec.span_id or None,
                    rec.scope_name or None,
                )
            )
            out.records.append(rec)
        except Exception as exc:  # a malformed record from a buggy producer: reject it, keep the rest
            out.rejected.append((rec, f"cannot convert: {type(exc).__name__}: {exc}"))
    return out


def _events_json(span: Span) -> str | None:
    if not span.events:
        return None
    return to_json(
        [
            {"time_unix_nano": e.time_unix_nano, "name": e.name, "attributes": e.attributes}
            | ({"dropped_attributes_count": e.dropped_attributes_count} if e.dropped_attributes_count else {})
            for e in span.events
        ]
    )


def _links_json(span: Span) -> str | None:
    if not span.links:
        return None
    out = []
    for link in span.links:
        entry: dict[str, Any] = {"trace_id": link.trace_id, "span_id": link.span_id}
        if link.trace_state:
            entry["trace_state"] = link.trace_state
        if link.attributes:
            entry["attributes"] = link.attributes
        if link.flags:
            entry["flags"] = link.flags
        out.append(entry)
    return to_json(out)


def _span_rows(spans: Sequence[Span], now_ns: int) -> Rows:
    out = Rows([], [], {}, [])
    for span in spans:
        try:
            if not isinstance(span, Span):
                raise TypeError(f"expected a Span, got {type(span).__name__}")
            trace_id = require_hex_id(span.trace_id, TRACE_ID_BYTES, "trace id")
            span_id = require_hex_id(span.span_id, SPAN_ID_BYTES, "span id")
            parent = (
                require_hex_id(span.parent_span_id, SPAN_ID_BYTES, "parent span id")
                if span.parent_span_id
                else None
            )
            start = _record_time(span.start_time_unix_nano or span.end_time_unix_nano or now_ns)
            end = _record_time(span.end_time_unix_nano or start)
            rid = out.resource_id(span.resource, start)
            scope = span.scope
            out.rows.append(
                (
                    trace_id,
                    span_id,
                    parent,
                    span.trace_state or None,
                    str(span.name or ""),
                    int(span.kind or 0),
                    start,
                    end,
                    max(0, end - start),
                    int(span.status_code or 0),
                    span.status_message or None,
                    int(span.is_error),
                    span.service_name,
                    to_json(span.attributes) if span.attributes else None,
                    _events_json(span),
                    _links_json(span),
                    rid,
                    (scope.name or None) if scope is not None else None,
                    (scope.version or None) if scope is not None else None,
                )
            )
            out.records.append(span)
        except Exception as exc:  # a malformed span from a buggy producer: reject it, keep the rest
            out.rejected.append((span, f"cannot convert: {type(exc).__name__}: {exc}"))
    return out


def bindable(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The row with text made valid UTF-8 (lone surrogates replaced); ValueError for other problems."""
    fixed: list[Any] = []
    for value in row:
        if isinstance(value, str):
            fixed.append(value.encode("utf-8", "replace").decode("utf-8"))
            continue
        if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"integer {value} does not fit in 64 bits")
        if value is not None and not isinstance(value, int | float):
            raise ValueError(f"{type(value).__name__} where a number or text is expected")
        fixed.append(value)
    return tuple(fixed)


@dataclass(frozen=True, slots=True)
class SignalTable:
    """How one signal is stored: its table, its record-time column and how items become rows."""

    name: str
    time_column: str
    insert: str
    convert: Callable[[Sequence[Any], int], Rows]


TABLES: dict[Signal, SignalTable] = {
    Signal.LOGS: SignalTable(
        "logs",
        "time_unix_nano",
        "INSERT INTO logs (time_unix_nano, observed_time_unix_nano, service, severity_number, severity_text,"
        " body, body_is_json, attributes, resource_id, trace_id, span_id, scope_name)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        _log_rows,
    ),
    Signal.TRACES: SignalTable(
        "spans",
        "start_time_unix_nano",
        "INSERT INTO spans (trace_id, span_id, parent_span_id, trace_state, name, kind, start_time_unix_nano,"
        " end_time_unix_nano, duration_ns, status_code, status_message, is_error, service, attributes,"
        " events, links, resource_id, scope_name, scope_version)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        # A span already stored (sent again after a lost acknowledgement) is delivered, not duplicated.
        " ON CONFLICT (trace_id, span_id) DO NOTHING",
        _span_rows,
    ),
}
