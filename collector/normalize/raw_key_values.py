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


def raw_attributes(items: Iterable[bytes]) -> dict[str, Any]:
    """Serialized KeyValues as a dict (DecodeError for one protobuf cannot parse)."""
    out: dict[str, Any] = {}
    for item in items:
        raw: bytes = item
        end = len(raw)
        if end > 4 and raw[0] == _KEY:
            key_length, key_start = _varint(raw, 1, end)
            key_end = key_start + key_length
            if key_length >= 0 and key_end + 2 < end and raw[key_end] == _VALUE:
                value_length, value_start = _varint(raw, key_end + 1, end)
                if value_length > 0 and value_start + value_length == end:
                    tag = raw[value_start]
                    if tag == _STRING:
                        text_length, text_start = _varint(raw, value_start + 1, end)
                        if text_length >= 0 and text_start + text_length == end:
                            try:
                                out[raw[key_start:key_end].decode()] = raw[text_start:end].decode()
                                continue
                            except UnicodeDecodeError:
                                pass  # protobuf's own check decides, and says why
                    elif tag == _INT:
                        number, number_end = _varint(raw, value_start + 1, end)
                        if number >= 0 and number_end == end:
                            try:
                                key = raw[key_start:key_end].decode()
                            except UnicodeDecodeError:
                                pass
                            else:
                                # int64 on the wire: two's complement in 64 bits.
                                out[key] = number - _TWO_TO_64 if number >= _TWO_TO_63 else number
                                continue
        key, value = key_value(raw)
        out[key] = value
    return out
