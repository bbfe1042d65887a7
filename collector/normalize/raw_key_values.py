"""Serialized OTLP KeyValues (a span's attributes in otlp_raw_attributes.py's twin) -> a dict.

Compiled by mypyc (collector/compiled.py): it runs once per attribute of every span received.

The two commonest shapes are read straight from the bytes: a key, then an AnyValue holding a
string or an int, and nothing else (``0x0A`` key, ``0x12`` AnyValue holding ``0x0A``
string or ``0x18`` varint, every length adding up to the whole). Anything else (bool, double,
bytes, arrays, maps, an empty value, unknown fields, fields in another order, text that is not
valid UTF-8) is parsed by protobuf (``otlp_values.key_value``), so every value is what
``otlp_values.attributes`` makes of the parsed KeyValue, and what protobuf refuses raises its
DecodeError. A repeated key keeps its last value, as there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from collector.normalize.otlp_values import key_value

_KEY: Final = 0x0A  # KeyValue.key: field 1, length-delimited
_VALUE: Final = 0x12  # KeyValue.value: field 2, length-delimited
_STRING: Final = 0x0A  # AnyValue.string_value: field 1, length-delimited
_INT: Final = 0x18  # AnyValue.int_value: field 3, varint
_TWO_TO_63: Final = 1 << 63
_TWO_TO_64: Final = 1 << 64


def _varint(raw: bytes, at: int, end: int) -> tuple[int, int]:
    """The varint at ``at`` and where it ends; (-1, -1) when it runs past ``end`` or 64 bits."""
    result = 0
    shift = 0
    while at < end and shift < 64:
        byte = raw[at]
        at += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result, at) if result < _TWO_TO_64 else (-1, -1)
        shift += 7
    return -1, -1


def _read(raw: bytes, out: dict[str, Any]) -> bool:
    """Puts a KeyValue of the two shapes above in ``out``; False (nothing put) for anything else."""
    end = len(raw)
    if end < 5 or raw[0] != _KEY:
        return False
    key_length, key_start = _varint(raw, 1, end)
    key_end = key_start + key_length
    if key_length < 0 or key_end + 2 >= end or raw[key_end] != _VALUE:
        return False
    value_length, value_start = _varint(raw, key_end + 1, end)
    if value_length <= 0 or value_start + value_length != end:
        return False
    tag = raw[value_start]
    value: Any
    if tag == _STRING:
        text_length, text_start = _varint(raw, value_start + 1, end)
        if text_length < 0 or text_start + text_length != end:
            return False
        value = raw[text_start:end]
    elif tag == _INT:
        number, number_end = _varint(raw, value_start + 1, end)
        if number < 0 or number_end != end:
            return False
        # int64 on the wire: two's complement in 64 bits.
        value = number - _TWO_TO_64 if number >= _TWO_TO_63 else number
    else:
        return False
    try:
        out[raw[key_start:key_end].decode()] = value.decode() if tag == _STRING else value
    except UnicodeDecodeError:
        return False  # protobuf's own check decides, and says why
    return True


def raw_attributes(items: Iterable[bytes]) -> dict[str, Any]:
    """Serialized KeyValues as a dict (DecodeError for one protobuf cannot parse)."""
    out: dict[str, Any] = {}
    for item in items:
        raw: bytes = item
        if not _read(raw, out):
            key, value = key_value(raw)
            out[key] = value
    return out
