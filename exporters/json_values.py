"""JSON text for any attribute value, shared by the exporters that write records as JSON (the local
store's columns, the dead-letter views of the otlp exporter): values JSON cannot hold become strings,
never an error.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from collector.normalize.values import clean_value


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def to_json(value: Any, sort_keys: bool = False) -> str:
    """JSON text for any attribute value; values JSON cannot hold become strings, never an error."""
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_SORT_KEYS if sort_keys else 0)
    try:
        return orjson.dumps(value, default=_json_default, option=option).decode()
    except TypeError:  # orjson.JSONEncodeError: lone surrogates, ints beyond 64 bits, odd keys
        # The model's clean form (collector.normalize.values): every key kept as text (a bytes key
        # must not vanish), no NaN (json.dumps would write the invalid token NaN).
        try:
            cleaned = clean_value(value)
        except RecursionError:
            cleaned = f"<value nested too deeply: {type(value).__name__}>"
        text = json.dumps(cleaned, default=_json_default, sort_keys=sort_keys, ensure_ascii=False)
        # Lone surrogates become "?": "\ud800" escapes would be JSON that strict parsers reject.
        return text.encode("utf-8", "replace").decode("utf-8")
