"""A log record's ECS document as JSON bytes, without building the whole document per record.

``ecs.log_document`` places every attribute of the record and of its resource by the rules in the
ecs module's docstring, nests the dotted names and leaves the encoding to the caller: about a dozen
Python operations per attribute, per record, while a Kubernetes pod's resource (``kubernetes.*``,
``container.*``, ``service.*``, its labels) is the same for all of its records and a workload's
records carry the same attribute names record after record. Here:

* a resource is placed, nested and encoded once (``ResourcePart``);
* a record's placement depends only on which of its own fields it has and on its attribute names
  (for scalar and list values), so it is worked out once per such shape (``_Shape``), by the same
  rules, and compiled into a function that builds the nested record part from the values in one
  expression;
* where the record part and the resource part share no top-level name, placing them together gives
  the same fields as placing each alone (every placement rule looks only at names under one
  top-level object), so the record's JSON is spliced with the resource's bytes.

Anything else (a map-valued or None attribute, a non-string attribute name, text that is not valid
UTF-8, a record and resource that share a top-level name) answers None and the caller builds the
document whole; tests compare the two paths field for field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from collector.core.model import LogRecord
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
_LEAF_TYPES: Final = frozenset({str, int, float, bool, list})
_MAX_SHAPES = 4096
# Parameters of the compiled builder: the record's own values, its attribute values.
_OWN, _ATTRIBUTE = "o", "a"


def _top(name: str) -> str:
    return name.partition(".")[0]


class ResourcePart:
    """A resource's share of its records' log documents, placed, nested and encoded once.

    ``tops`` holds every top-level name the resource's attributes touch (their own names, their ECS
    names and where they were placed); ``json`` the members of its part, without braces.
    """

    __slots__ = ("fields", "json", "route", "tops")

    def __init__(self, fields: AttributeFields) -> None:
        self.fields = fields
        # (default dataset, default namespace) -> this resource's data stream, for records whose
        # attributes do not choose one.
        self.route: dict[tuple[str, str], tuple[str, str]] = {}
        flat: dict[str, Any] = {}
        place_attributes(flat, ((ecs.RESOURCE_NAMESPACE, fields),))
        tops = {_top(name) for name in flat}
        for key, target, _value in fields:
            tops.add(_top(key))
            if target is not None:
                tops.add(_top(target))
        self.tops = frozenset(tops)
        try:
            encoded = orjson.dumps(nest(flat))
        except orjson.JSONEncodeError:
            self.json = None  # not valid UTF-8: the whole document is cleaned the slow way
        else:
            self.json = encoded[1:-1]


class _Shape:
    """How the records of one shape (own fields present, attribute names) are laid out."""

    __slots__ = ("build", "tops")

    def __init__(self, build: Callable[[list[Any], list[Any]], dict[str, Any]], tops: frozenset[str]) -> None:
        self.build = build
        self.tops = tops


_shapes: dict[tuple[tuple[str, ...], tuple[str, ...]], _Shape | None] = {}


def _make_shape(own_keys: tuple[str, ...], attribute_keys: tuple[str, ...]) -> _Shape | None:
    # Placed with markers for values: (kind, index) tells where each final name takes its value.
    flat: dict[str, Any] = {key: (_OWN, i) for i, key in enumerate(own_keys)}
    fields: AttributeFields = []
    tops: set[str] = set()
    for i, raw in enumerate(attribute_keys):
        key = clean_key(raw)
        if key in ROUTING_ATTRIBUTES:
            continue
        target = ecs_name(key)
        fields.append((key, target, (_ATTRIBUTE, i)))
        tops.add(_top(key))
        if target is not None:
            tops.add(_top(target))
    place_attributes(flat, ((ecs.RECORD_NAMESPACE, fields),))
    for name, (kind, index) in flat.items():
        if kind == _OWN and name != own_keys[index]:
            return None  # an own field moved (never seen; the whole document is built instead)
        tops.add(_top(name))
    build = compile_document(nest(flat), (_OWN, _ATTRIBUTE))
    return _Shape(build, frozenset(tops))


def _shape(own_keys: tuple[str, ...], attribute_keys: tuple[str, ...]) -> _Shape | None:
    signature = (own_keys, attribute_keys)
    try:
        return _shapes[signature]
    except KeyError:
        pass
    if len(_shapes) >= _MAX_SHAPES:
        _shapes.clear()  # a workload with ever-new attribute names: start over rather than grow
    shape = _shapes[signature] = _make_shape(own_keys, attribute_keys)
    return shape


def log_source(
    record: LogRecord, dataset: str, namespace: str, now_unix_nano: int, resource: ResourcePart
) -> bytes | None:
    """The record's ECS document as newline-terminated JSON, the same fields as
    ``ecs.log_document``; None where only that function can build it (see the module docstring)."""
    if resource.json is None:
        return None
    own = ecs.own_log_fields(record, dataset, namespace, now_unix_nano)
    attributes = record.attributes
    values: list[Any] = []
    append = values.append
    # One pass checks the names and takes the values; strings (most values) need no conversion.
    for key, value in attributes.items():
        kind = type(value)
        if type(key) is not str or kind not in _LEAF_TYPES:
            return None
        append(value if kind is str else leaf_value(value))
    shape = _shape(tuple(own), tuple(attributes))
    if shape is None or not shape.tops.isdisjoint(resource.tops):
        return None
    try:
        part = orjson.dumps(shape.build(list(own.values()), values))
    except orjson.JSONEncodeError:
        return None
    if resource.json:
        return part[:-1] + b"," + resource.json + b"}\n"
    return part + b"\n"
