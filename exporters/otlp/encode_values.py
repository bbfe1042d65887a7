"""burnline's attribute values and ids -> OTLP: ``AnyValue`` of every type, attribute lists, hex trace and
span ids as bytes (see exporters/otlp/encode.py for the rules).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
TRACE_ID_HEX = 32
SPAN_ID_HEX = 16


class EncodeError(ValueError):
    """A record cannot be encoded as OTLP (bad id, a time that is not Unix nanoseconds, ...)."""


# ---------------------------------------------------------------------------------------------------
# Values


def _safe_text(text: str) -> str:
    """Text with lone surrogates as U+FFFD. Surrogates from ``surrogateescape`` decoding stand for
    the undecodable bytes: restored and replaced one for one."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")


def put_value(target: AnyValue, value: Any) -> None:
    """Sets ``target`` (an empty AnyValue) to ``value``; None leaves it empty but present."""
    kind = type(value)
    if kind is str:
        try:
            target.string_value = value
        except UnicodeEncodeError:
            target.string_value = _safe_text(value)
    elif kind is bool:
        target.bool_value = value
    elif kind is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            target.int_value = value
        else:
            target.string_value = str(value)
    elif kind is float:
        target.double_value = value
    elif value is None:
        target.SetInParent()
    else:
        _put_other_value(target, value)


def _put_other_value(target: AnyValue, value: Any) -> None:
    """Containers, bytes and subclasses of the plain types (IntEnum, StrEnum, ...)."""
    if isinstance(value, bool):
        target.bool_value = bool(value)
    elif isinstance(value, int):
        put_value(target, int(value))
    elif isinstance(value, float):
        target.double_value = float(value)
    elif isinstance(value, str):
        put_value(target, str.__str__(value))
    elif isinstance(value, bytes | bytearray | memoryview):
        target.bytes_value = bytes(value)
    elif isinstance(value, Mapping):
        kvlist = target.kvlist_value
        kvlist.SetInParent()
        put_attributes(kvlist.values, value)
    elif isinstance(value, list | tuple | set | frozenset):
        array = target.array_value
        array.SetInParent()
        add = array.values.add
        for item in value:
            put_value(add(), item)
    else:
        put_value(target, str(value))


def put_attributes(target: Any, attributes: Mapping[Any, Any]) -> None:
    """Appends ``attributes`` as KeyValues to the repeated field ``target``."""
    add = target.add
    for key, value in attributes.items():
        kv = add()
        try:
            kv.key = key
        except (TypeError, UnicodeEncodeError):
            kv.key = _safe_text(str(key))
        # The plain scalar types inline: this loop is where encoding spends most of its time.
        kind = type(value)
        if kind is str:
            try:
                kv.value.string_value = value
            except UnicodeEncodeError:
                kv.value.string_value = _safe_text(value)
        elif kind is bool:
            kv.value.bool_value = value
        elif kind is int and _INT64_MIN <= value <= _INT64_MAX:
            kv.value.int_value = value
        elif kind is float:
            kv.value.double_value = value
        else:
            put_value(kv.value, value)


def _id_bytes(hex_id: str, digits: int, what: str, required: bool) -> bytes:
    if not hex_id:
        if required:
            raise EncodeError(f"{what} is empty")
        return b""
    if len(hex_id) != digits:
        raise EncodeError(f"{what} {hex_id!r} is not {digits} hex digits")
    try:
        return bytes.fromhex(hex_id)
    except (ValueError, TypeError) as exc:
        raise EncodeError(f"{what} {hex_id!r} is not hex") from exc


def trace_id_bytes(hex_id: str, required: bool = True) -> bytes:
    return _id_bytes(hex_id, TRACE_ID_HEX, "trace_id", required)


def span_id_bytes(hex_id: str, required: bool = True) -> bytes:
    return _id_bytes(hex_id, SPAN_ID_HEX, "span_id", required)
