"""A span's ECS document as JSON bytes, without placing and nesting every field per span.

``ecs.span_document`` flattens, renames and places every attribute of the span, of its scope and of
its resource by the rules in the ecs module's docstring, then nests the dotted names: a few dozen
Python operations per attribute, per span, although a service's spans come with the same resource
and mostly the same attribute names, span after span. Here:

* a resource's fields (``attribute_fields``: flattened, renamed, JSON-able) and their names are
  worked out once per resource (``SpanResource``);
* where each field lands depends only on which of the span's own fields are present and on the
  names of the span's, its scope's and its resource's attributes (for scalar and list values), so
  the placement is done once per such shape, by the same function with markers for values
  (``place_attributes``, ``nest``), and compiled into one dict-literal expression that builds the
  nested document from the values: the same keys, in the same order, as ``ecs.span_document``.

Anything else (a map-valued or None span or scope attribute, a non-string attribute name, text that
is not valid UTF-8) answers None and the caller builds the document whole; tests compare the two.
Unlike the log splice, the resource is not encoded apart: a span document's own fields
(``service.framework.*``) share the ``service`` object with nearly every resource.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from collector.core.model import Span
from collector.core.trace_ids import SPAN_ID_BYTES, TRACE_ID_BYTES
from exporters.elasticsearch import ecs
from exporters.elasticsearch.compiled_document import compile_document
from exporters.elasticsearch.ecs_fields import (
    ROUTING_ATTRIBUTES,
    AttributeFields,
    clean_key,
    ecs_name,
    leaf_value,
    nest,
    place_attributes,
)

# Attribute value types whose placement depends on the name alone (a map is flattened, None dropped).
_LEAF_TYPES: Final = frozenset({str, int, float, bool, list, bytes})
_MAX_SHAPES = 4096

# Where a marker's value comes from: the builder's arguments, in this order.
_OWN, _SPAN, _SCOPE, _RESOURCE = "o", "a", "s", "r"

# The span's own fields in document order; the optional ones have a bit in the shape's mask.
_PARENT, _KIND, _STATUS, _EVENTS, _LINKS, _FRAMEWORK, _FRAMEWORK_VERSION = (1 << i for i in range(7))
_OWN_FIELDS: Final = (
    ("@timestamp", 0),
    ("trace.id", 0),
    ("span.id", 0),
    ("parent.id", _PARENT),
    ("span.name", 0),
    ("span.kind", _KIND),
    ("event.duration", 0),
    ("event.outcome", 0),
    ("span.status.message", _STATUS),
    ("span.events", _EVENTS),
    ("span.links", _LINKS),
    ("service.framework.name", _FRAMEWORK),
    ("service.framework.version", _FRAMEWORK_VERSION),
    ("data_stream.type", 0),
    ("data_stream.dataset", 0),
    ("data_stream.namespace", 0),
)

_ID = re.compile(r"[0-9a-f]{48}")
_ZERO_TRACE, _ZERO_SPAN = "0" * (2 * TRACE_ID_BYTES), "0" * (2 * SPAN_ID_BYTES)


def span_document_id(span: Span) -> str:
    """``ecs.span_document_id``; ids already in burnline's form (lower-case hex, what the receivers
    make) are checked with one regular expression instead of being converted."""
    trace_id, span_id = span.trace_id, span.span_id
    if (
        type(trace_id) is str
        and type(span_id) is str
        and len(trace_id) == 2 * TRACE_ID_BYTES
        and len(span_id) == 2 * SPAN_ID_BYTES
        and trace_id != _ZERO_TRACE
        and span_id != _ZERO_SPAN
    ):
        doc_id = trace_id + span_id
        if _ID.fullmatch(doc_id):
            return doc_id
    return ecs.span_document_id(span)


class SpanResource:
    """A resource's fields for span documents, worked out once, and the shapes compiled with them."""

    __slots__ = ("names", "shapes", "values")

    def __init__(self, fields: AttributeFields) -> None:
        self.names = tuple((key, target) for key, target, _value in fields)
        self.values = [value for _key, _target, value in fields]
        # (own mask, span attribute names, scope attribute names) -> the builder (None: build whole).
        self.shapes: dict[tuple[int, tuple[Any, ...], tuple[Any, ...]], _Build | None] = {}


_Build = Callable[[list[Any], list[Any], list[Any], list[Any]], dict[str, Any]]
_shapes: dict[
    tuple[int, tuple[Any, ...], tuple[Any, ...], tuple[tuple[str, str | None], ...]], _Build | None
] = {}


def _attribute_markers(
    keys: tuple[str, ...], source: str, renames: Mapping[str, str] | None = None
) -> AttributeFields:
    fields: AttributeFields = []
    for i, raw in enumerate(keys):
        key = clean_key(raw)
        if key in ROUTING_ATTRIBUTES:
            continue
        target = (renames.get(key) if renames else None) or ecs_name(key)
        fields.append((key, target, (source, i)))
    return fields


def _make_shape(
    mask: int,
    span_keys: tuple[str, ...],
    scope_keys: tuple[str, ...],
    resource_names: tuple[tuple[str, str | None], ...],
) -> _Build | None:
    own_keys = [name for name, bit in _OWN_FIELDS if not bit or mask & bit]
    flat: dict[str, Any] = {key: (_OWN, i) for i, key in enumerate(own_keys)}
    sources = [(ecs.RECORD_NAMESPACE, _attribute_markers(span_keys, _SPAN, ecs.SPAN_SEMCONV_TO_ECS))]
    if scope_keys:
        sources.append((ecs.SCOPE_NAMESPACE, _attribute_markers(scope_keys, _SCOPE)))
    resource = [(key, target, (_RESOURCE, i)) for i, (key, target) in enumerate(resource_names)]
    sources.append((ecs.RESOURCE_NAMESPACE, resource))
    place_attributes(flat, sources)
    for name, (source, index) in flat.items():
        if source == _OWN and name != own_keys[index]:
            return None  # an own field moved (never seen; the whole document is built instead)
    build: _Build = compile_document(nest(flat), (_OWN, _SPAN, _SCOPE, _RESOURCE))
    return build


def _shape(
    resource: SpanResource, mask: int, span_keys: tuple[str, ...], scope_keys: tuple[str, ...]
) -> _Build | None:
    signature = (mask, span_keys, scope_keys)
    try:
        return resource.shapes[signature]
    except KeyError:
        pass
    whole = (mask, span_keys, scope_keys, resource.names)
    try:
        build = _shapes[whole]
    except KeyError:
        if len(_shapes) >= _MAX_SHAPES:
            _shapes.clear()  # a workload with ever-new attribute names: start over rather than grow
        build = _shapes[whole] = _make_shape(mask, span_keys, scope_keys, resource.names)
    resource.shapes[signature] = build
    return build


def _attribute_values(attributes: dict[Any, Any]) -> list[Any] | None:
    """The attributes' JSON-able values in order, or None when their placement needs more than names."""
    values = []
    for key, value in attributes.items():
        kind = type(value)
        if type(key) is not str or kind not in _LEAF_TYPES:
            return None
        if kind is str or kind is bool:
            values.append(value)
        else:
            values.append(leaf_value(value))
    return values


_ECS_SPAN_KINDS: Final = ecs.ECS_SPAN_KINDS
_NO_VALUES: Final[list[Any]] = []


def span_source(
    span: Span, dataset: str, namespace: str, now_unix_nano: int, resource: SpanResource
) -> bytes | None:
    """The span's ECS document as newline-terminated JSON, the same bytes as ``ecs.span_document``
    encoded; None where only that function can build it (see the module docstring)."""
    attributes = span.attributes
    span_values = _attribute_values(attributes)
    if span_values is None:
        return None
    scope = span.scope
    scope_keys: tuple[str, ...] = ()
    scope_values = _NO_VALUES
    if scope is not None and scope.attributes:
        held = _attribute_values(scope.attributes)
        if held is None:
            return None
        scope_keys, scope_values = tuple(scope.attributes), held

    ts = span.start_time_unix_nano if span.start_time_unix_nano > 0 else span.end_time_unix_nano
    if ts <= 0:
        ts = now_unix_nano
    own: list[Any] = [ecs.format_timestamp(ts), span.trace_id, span.span_id]
    mask = 0
    if span.parent_span_id:
        own.append(span.parent_span_id)
        mask |= _PARENT
    own.append(span.name)
    kind = _ECS_SPAN_KINDS.get(span.kind)
    if kind is not None:
        own.append(kind)
        mask |= _KIND
    own.append(span.duration_ns)
    own.append(ecs.event_outcome(span))
    if span.status_message:
        own.append(span.status_message)
        mask |= _STATUS
    if span.events:
        own.append(ecs.span_events(span.events))
        mask |= _EVENTS
    if span.links:
        own.append(ecs.span_links(span.links))
        mask |= _LINKS
    if scope is not None and scope.name:
        own.append(scope.name)
        mask |= _FRAMEWORK
        if scope.version:
            own.append(scope.version)
            mask |= _FRAMEWORK_VERSION
    own.append(ecs.TRACES)
    own.append(dataset)
    own.append(namespace)

    build = _shape(resource, mask, tuple(attributes), scope_keys)
    if build is None:
        return None
    try:
        return orjson.dumps(
            build(own, span_values, scope_values, resource.values), option=orjson.OPT_APPEND_NEWLINE
        )
    except orjson.JSONEncodeError:
        return None
