"""OTLP's shared pieces as the data model has them: AnyValues, attributes, scopes, id checks, the
resource -> scope -> item walk every signal takes, and the count of the items rejected."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue

from collector.core.model import Scope
from collector.normalize.values import nonfinite_text

# How many rejection messages a Rejections keeps word for word; the rest are only counted.
_KEPT_MESSAGES = 5


@dataclass(slots=True)
class Rejections:
    """Items of one request rejected as invalid: a count and the first few reasons."""

    count: int = 0
    messages: list[str] = field(default_factory=list)

    def add(self, message: str, count: int = 1) -> None:
        self.count += count
        if len(self.messages) < _KEPT_MESSAGES:
            self.messages.append(message)

    def summary(self, what: str) -> str:
        """A human-readable English sentence for partial_success.error_message."""
        if not self.count:
            return ""
        more = self.count - len(self.messages)
        tail = f"; and {more} more" if more > 0 else ""
        return f"rejected {self.count} invalid {what}: " + "; ".join(self.messages) + tail


def any_value(value: AnyValue) -> Any:
    """An OTLP AnyValue as the Python value it holds (None when empty)."""
    return _value_of(value, value.WhichOneof("value"))


def _value_of(value: AnyValue, kind: str | None) -> Any:
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        number = value.double_value
        # NaN/±Inf as "NaN"/"Infinity"/"-Infinity": JSON (store, CLI, Elasticsearch) cannot hold them.
        return number if number - number == 0.0 else nonfinite_text(number)
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value
    # Empty, or string_value_strindex: a reference into a profiles dictionary, which the OTLP spec
    # tells receivers of other signals to treat as absent.
    return None


def attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    """Repeated KeyValue as a dict (a repeated key, which OTLP forbids, keeps its last value)."""
    out: dict[str, Any] = {}
    for kv in pairs:
        value = kv.value
        # A non-empty string (most attribute values) by one field read, without asking the oneof
        # which field is set: every span carries several. Empty reads as "" for any other kind, and
        # those (and the empty string) go the long way.
        text = value.string_value
        out[kv.key] = text if text else _value_of(value, value.WhichOneof("value"))
    return out


def key_value(raw: bytes) -> tuple[str, Any]:
    """A serialized KeyValue's key and value as :func:`attributes` gives them (DecodeError when it
    is not a KeyValue protobuf can parse: invalid UTF-8, a truncated field)."""
    kv = KeyValue.FromString(raw)
    return kv.key, attributes((kv,))[kv.key]  # the slow path: a dict of one, to read it as attributes does


def scope_from_proto(scope: InstrumentationScope, schema_url: str) -> Scope:
    return Scope(
        name=scope.name,
        version=scope.version,
        attributes=attributes(scope.attributes),
        dropped_attributes_count=scope.dropped_attributes_count,
        schema_url=schema_url,
    )


def id_problem(what: str, raw: bytes, size: int, *, required: bool) -> str | None:
    """Why ``raw`` is not a valid id of ``size`` bytes, or None when it is."""
    if not raw:
        return f"{what} is missing" if required else None
    if len(raw) != size:
        return f"{what} is {len(raw)} bytes, expected {size}"
    if required and not any(raw):
        return f"{what} is all zeros"
    return None


def describe(kind: str, name: str, number: int) -> str:
    return f"{kind} #{number} ({name!r})" if name else f"{kind} #{number}"


# (resource, resource schema_url, resource dropped_attributes_count, scope, the scope container's items)
ScopeGroup = tuple[dict[str, Any], str, int, Scope, Any]


def scope_groups(resource_groups: Iterable[Any], scopes_field: str, items_field: str) -> Iterator[ScopeGroup]:
    """Each scope container of a request's Resource* containers with what its items share.

    The walk of all three signals (``resource_spans``/``scope_spans``/``spans`` and the like):
    items of one Resource* container share one resource dict, items of one scope container one
    :class:`Scope`. A step per scope container, not per item, so the per-item loops stay inline.
    """
    for group in resource_groups:
        resource = attributes(group.resource.attributes)
        resource_schema_url = group.schema_url
        resource_dropped = group.resource.dropped_attributes_count
        for scope_group in getattr(group, scopes_field):
            scope = scope_from_proto(scope_group.scope, scope_group.schema_url)
            yield resource, resource_schema_url, resource_dropped, scope, getattr(scope_group, items_field)
