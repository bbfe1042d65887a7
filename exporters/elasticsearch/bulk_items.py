"""Log records and spans -> ``_bulk`` items: each record's ``create`` action (its data stream and
deterministic ``_id``) and its ECS document as JSON, encoded once per batch.

Compiled by mypyc with the document layouts it calls (collector/compiled.py): this is the loop that
runs once per record on its way to Elasticsearch. The request they make is bulk.py's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from collector.core.model import LogRecord, Span
from exporters.elasticsearch import ecs
from exporters.elasticsearch.config import DataStreamConfig
from exporters.elasticsearch.ecs_fields import AttributeFields, attribute_fields, utf8_safe
from exporters.elasticsearch.log_source import ResourcePart, log_source
from exporters.elasticsearch.span_source import SpanResource, span_document_id, span_source


@dataclass(slots=True, eq=False)
class BulkItem:
    """A record ready for ``_bulk``: its action and source lines. Retries resend these bytes, so a
    record keeps its ``_id`` (and its data stream) however often it is retried."""

    record: Any
    index: str
    doc_id: str
    action: bytes
    source: bytes


# Index name -> the start of its create action (a handful of data streams; bounded all the same).
_MAX_ACTION_PREFIXES = 1024
_action_prefixes: dict[str, bytes] = {}


def _action_prefix(index: str) -> bytes:
    prefix = _action_prefixes.get(index)
    if prefix is None:
        if len(_action_prefixes) >= _MAX_ACTION_PREFIXES:
            _action_prefixes.clear()
        prefix = _action_prefixes[index] = b'{"create":{"_index":' + orjson.dumps(index) + b',"_id":"'
    return prefix


class _Encoding:
    """What encoding one batch shares: the time, and each resource's digest, fields, log document
    part and data stream computed once."""

    def __init__(self) -> None:
        self.now = time.time_ns()
        self._resources: dict[int, tuple[Any, bytes, ResourcePart]] = {}
        self._span_resources: dict[int, tuple[Any, SpanResource]] = {}

    def resource(self, resource: Any) -> tuple[bytes, ResourcePart]:
        """The resource's digest (for ``_id``s) and its part of every log document."""
        held = self._resources.get(id(resource))
        if held is None or held[0] is not resource:
            digest = ecs.resource_digest(resource)
            held = self._resources[id(resource)] = (resource, digest, _shared_part(digest, resource))
        return held[1], held[2]

    def resource_part(self, resource: Any) -> ResourcePart:
        return self.resource(resource)[1]

    def resource_fields(self, resource: Any) -> AttributeFields:
        return self.resource_part(resource).fields

    def span_resource(self, resource: Any) -> SpanResource:
        held = self._span_resources.get(id(resource))
        if held is None or held[0] is not resource:
            held = self._span_resources[id(resource)] = (
                resource,
                SpanResource(self.resource_fields(resource)),
            )
        return held[1]

    def route(
        self, attributes: Any, resource: Any, dataset: str, namespace: str, part: ResourcePart | None = None
    ) -> tuple[str, str]:
        """``ecs.route``, once per resource for records whose own attributes choose no data stream
        (``part``: the resource's, when the caller has it already)."""
        if _ROUTING_KEYS.isdisjoint(attributes):
            routes = (part or self.resource_part(resource)).route
            chosen = routes.get((dataset, namespace))
            if chosen is None:
                chosen = routes[dataset, namespace] = ecs.route(attributes, resource, dataset, namespace)
            return chosen
        return ecs.route(attributes, resource, dataset, namespace)


# Resource digest -> (resource, its ResourcePart), shared by every batch: a batch read back from the
# queue holds new resource objects, while a cluster's pods (and their parts) stay the same for hours.
_MAX_SHARED_PARTS = 1024
_shared_parts: dict[bytes, tuple[Any, ResourcePart]] = {}


def _shared_part(digest: bytes, resource: Any) -> ResourcePart:
    held = _shared_parts.get(digest)
    # Equal digests of unequal resources are possible only where the canonical form sanitized
    # something (lone surrogates, huge integers); the comparison keeps those apart. It also catches
    # a held dict changed in place since (a memory queue hands on the pipeline's own objects).
    if held is not None and held[0] == resource:
        return held[1]
    part = ResourcePart(attribute_fields(resource))
    if len(_shared_parts) >= _MAX_SHARED_PARTS:
        _shared_parts.clear()  # ever-new resources: start over rather than grow
    _shared_parts[digest] = (resource, part)
    return part


# The attribute names ecs.route reads ("data_stream" as a map holding dataset or namespace).
_ROUTING_KEYS = frozenset({"data_stream", "data_stream.dataset", "data_stream.namespace"})


def _source(document: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return orjson.dumps(utf8_safe(document), option=orjson.OPT_APPEND_NEWLINE)


def _bulk_item(record: Any, index: str, doc_id: str, source: bytes) -> BulkItem:
    return BulkItem(record, index, doc_id, _action_prefix(index) + doc_id.encode() + b'"}}\n', source)


# What a record that cannot be encoded raises: it is dead-lettered, the rest of the batch goes on.
_ENCODE_ERRORS = (TypeError, ValueError, RecursionError, orjson.JSONEncodeError)


def encode_logs(
    items: Sequence[Any], data_stream: DataStreamConfig
) -> tuple[list[BulkItem], list[tuple[Any, str]]]:
    """Records -> bulk items, and the records that cannot be encoded with the reason. Runs inline
    or in worker threads (several at once): it shares only the resource parts (single dict
    operations, whole values)."""
    encoding = _Encoding()
    out: list[BulkItem] = []
    failed: list[tuple[Any, str]] = []
    default_dataset, default_namespace = data_stream.dataset, data_stream.namespace
    for record in items:
        try:
            if not isinstance(record, LogRecord):
                raise TypeError(f"expected a LogRecord, got {type(record).__name__}")
            digest, part = encoding.resource(record.resource)
            if data_stream.dynamic:
                dataset, namespace = encoding.route(
                    record.attributes, record.resource, default_dataset, default_namespace, part
                )
            else:
                dataset, namespace = default_dataset, default_namespace
            index = ecs.data_stream_name(ecs.LOGS, dataset, namespace)
            doc_id = ecs.document_id(record, digest)
            source = log_source(record, dataset, namespace, encoding.now, part)
            if source is None:  # what the splice cannot do (see log_source.py): the whole document
                source = _source(ecs.log_document(record, dataset, namespace, encoding.now, part.fields))
        except _ENCODE_ERRORS as exc:
            failed.append((record, f"{type(exc).__name__}: {exc}"))
            continue
        out.append(_bulk_item(record, index, doc_id, source))
    return out, failed


def encode_spans(
    items: Sequence[Any], data_stream: DataStreamConfig
) -> tuple[list[BulkItem], list[tuple[Any, str]]]:
    """Spans -> bulk items into ``traces-<dataset>-<namespace>``, and the spans that cannot be
    encoded (an invalid trace or span id, ...) with the reason.
    Runs inline or in a worker thread: it touches nothing shared."""
    encoding = _Encoding()
    out: list[BulkItem] = []
    failed: list[tuple[Any, str]] = []
    default_dataset, default_namespace = data_stream.traces_dataset, data_stream.namespace
    for span in items:
        try:
            if not isinstance(span, Span):
                raise TypeError(f"expected a Span, got {type(span).__name__}")
            doc_id = span_document_id(span)
            if data_stream.dynamic:
                dataset, namespace = encoding.route(
                    span.attributes, span.resource, default_dataset, default_namespace
                )
            else:
                dataset, namespace = default_dataset, default_namespace
            index = ecs.data_stream_name(ecs.TRACES, dataset, namespace)
            part = encoding.span_resource(span.resource)
            source = span_source(span, dataset, namespace, encoding.now, part)
            if source is None:  # what the compiled shapes cannot do (see span_source.py): the whole document
                source = _source(
                    ecs.span_document(
                        span, dataset, namespace, encoding.now, encoding.resource_fields(span.resource)
                    )
                )
        except _ENCODE_ERRORS as exc:
            failed.append((span, f"{type(exc).__name__}: {exc}"))
            continue
        out.append(_bulk_item(span, index, doc_id, source))
    return out, failed
