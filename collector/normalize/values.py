"""Attribute values every exporter can carry, made so once, at normalization.

Receivers decode whatever clients send: msgpack maps with integer, binary or even map keys, NaN and
±Infinity floats, integers beyond 64 bits, extension types. The model (collector/model.py) holds only
what OTLP, JSON and Elasticsearch all represent: maps with string keys, str, bool, int64, finite
float, bytes, lists and None. Normalizers pass records and attribute values through
:func:`clean_value` / :func:`clean_map`, so the local store, ``burnline logs --json``, Elasticsearch
and OTLP exporters never meet a value they cannot write:

* a map key becomes its string form: bin keys decoded as UTF-8 (invalid bytes replaced), numbers,
  booleans and nil as their JSON text (``1``, ``true``, ``null``), other keys as the JSON of their
  cleaned value;
* NaN, +Inf and -Inf become the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (the spelling of
  JavaScript, Go's ``strconv`` and Java);
* integers outside int64 become their decimal string; msgpack timestamps RFC 3339 strings; other
  extension types ``"ext<code>:<hex>"``; tuples lists; anything else its ``str()``.

Clean values are returned as they are (the same object), so the common record costs one walk.
"""

from __future__ import annotations

import math
from typing import Any, Final

import msgpack
import orjson

# How deep a value may nest. Compiled (collector/compiled.py), the walks below run on the C stack,
# where Python's recursion limit does not stop them; so the limit is explicit, the same compiled or
# not, and a record nested deeper is rejected by its normalizer (RecursionError) like any other
# that cannot be mapped. The decoders stop at about 1,024 levels, orjson writes 254 at most, and
# walked by the interpreter a level takes two or three of its 1,000 frames.
MAX_NESTING: Final = 200
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


def nonfinite_text(value: float) -> str:
    """The string that stands for a NaN or infinite float."""
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def key_text(key: Any, depth: int = 0) -> str:
    """A map key as the string that names it."""
    kind = type(key)
    if kind is str:
        return str(key)
    if kind is bytes or kind is bytearray:
        return bytes(key).decode("utf-8", "replace")
    if key is None:
        return "null"
    if kind is bool:
        return "true" if key else "false"
    if isinstance(key, int):
        return str(int(key))
    if kind is float:
        return repr(key) if math.isfinite(key) else nonfinite_text(key)
    cleaned = clean_value(key, depth)
    if type(cleaned) is str:
        return str(cleaned)
    return orjson.dumps(cleaned, default=_bytes_text).decode()


def _bytes_text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError


def is_clean(value: Any, depth: int = 0) -> bool:
    """True when ``value`` already holds only what the model allows (``depth``: how deep it is
    nested itself; RecursionError past ``MAX_NESTING``)."""
    kind = type(value)
    if kind is dict:
        return _clean_dict(value, depth + 1)
    if kind is list:
        return _clean_list(value, depth + 1)
    return _clean_leaf(kind, value)


def _clean_leaf(kind: type, value: Any) -> bool:
    if kind is str or kind is bool or value is None or kind is bytes:
        return True
    if kind is int:
        return bool(_INT64_MIN <= value <= _INT64_MAX)
    if kind is float:
        return bool(value - value == 0.0)  # false for NaN and ±Inf
    return False


def _too_deep() -> RecursionError:
    return RecursionError(f"a value nested deeper than {MAX_NESTING} levels")


# Loops rather than all(generator): every record passes here, most of them clean.
def _clean_dict(value: dict[Any, Any], depth: int) -> bool:
    if depth > MAX_NESTING:
        raise _too_deep()
    for key, item in value.items():
        if type(key) is not str:
            return False
        kind = type(item)
        if kind is str:
            continue
        if kind is dict:
            if not _clean_dict(item, depth + 1):
                return False
        elif kind is list:
            if not _clean_list(item, depth + 1):
                return False
        elif not _clean_leaf(kind, item):
            return False
    return True


def _clean_list(value: list[Any], depth: int) -> bool:
    if depth > MAX_NESTING:
        raise _too_deep()
    for item in value:
        kind = type(item)
        if kind is str:
            continue
        if kind is dict:
            if not _clean_dict(item, depth + 1):
                return False
        elif kind is list:
            if not _clean_list(item, depth + 1):
                return False
        elif not _clean_leaf(kind, item):
            return False
    return True


def clean_map(value: dict[Any, Any], depth: int = 0) -> dict[str, Any]:
    """``value`` with string keys and clean values (``value`` itself when it already is)."""
    if is_clean(value, depth):
        return value
    depth += 1
    out: dict[str, Any] = {}
    for k, v in value.items():  # a loop, not a comprehension: one frame less per level
        out[key_text(k, depth)] = clean_value(v, depth)
    return out


def clean_value(value: Any, depth: int = 0) -> Any:
    """``value`` as the model holds it (``value`` itself when it already is); RecursionError when it
    nests deeper than ``MAX_NESTING`` (``depth``: how deep it is itself)."""
    kind = type(value)
    if kind is str or kind is bool or value is None or kind is bytes:
        return value
    if kind is int:
        return value if _INT64_MIN <= value <= _INT64_MAX else str(value)
    if kind is float:
        return value if value - value == 0.0 else nonfinite_text(value)
    if kind is dict:
        return clean_map(value, depth)
    if kind is list or kind is tuple:
        if kind is list and is_clean(value, depth):
            return value
        return _clean_items(value, depth)
    return _other(value, depth)


def _clean_items(value: Any, depth: int) -> list[Any]:
    if depth >= MAX_NESTING:
        raise _too_deep()
    out = []
    for item in value:
        out.append(clean_value(item, depth + 1))
    return out


def _other(value: Any, depth: int) -> Any:
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):  # subclasses, e.g. the Forward receiver's EventTime
        return clean_value(int(value))
    if isinstance(value, float):
        return clean_value(float(value))
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, dict):
        return clean_map(dict(value), depth)
    if isinstance(value, list | tuple | set | frozenset):
        return _clean_items(value, depth)
    if isinstance(value, msgpack.Timestamp):
        try:
            return value.to_datetime().isoformat().replace("+00:00", "Z")
        except (OverflowError, ValueError, OSError):
            return str(value.to_unix_nano())
    if isinstance(value, msgpack.ExtType):
        return f"ext{value.code}:{value.data.hex()}"
    return str(value)


def map_from_pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """msgpack's ``object_pairs_hook`` for maps whose keys Python cannot hash (lists, maps).

    Decoders try the fast path first and use this only when it raised ``unhashable type``.
    """
    out: dict[Any, Any] = {}
    for key, value in pairs:
        try:
            out[key] = value
        except TypeError:
            out[key_text(key)] = value
    return out
