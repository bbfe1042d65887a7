"""OpenTelemetry -> Prometheus names, unit words and label values (shared with prometheus_remote_write).

How they are used is in translator.py.
"""

from __future__ import annotations

import base64
import functools
import math
import re
from typing import Any

import orjson
from prometheus_client.utils import floatToGoString as _float_to_go_string

from collector.translator.prometheus import UCUM_TO_PER_WORD, UCUM_TO_WORD

_INVALID_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_UNDERSCORES = re.compile(r"__+")
_BRACES = re.compile(r"\{[^}]*\}")


@functools.lru_cache(maxsize=16384)
def sanitize_metric_name(name: str) -> str:
    out = _UNDERSCORES.sub("_", _INVALID_METRIC_CHARS.sub("_", name))
    if not out:
        return "_"
    return "_" + out if out[0].isdigit() else out


@functools.lru_cache(maxsize=16384)
def sanitize_label_name(name: str) -> str:
    out = _UNDERSCORES.sub("_", _INVALID_LABEL_CHARS.sub("_", name))
    if not out:
        return "_"
    return "key_" + out if out[0].isdigit() else out


def go_float(value: float) -> str:
    """A float as Prometheus writes label values like ``le`` and ``quantile`` (``0.5``, ``+Inf``)."""
    text: str = _float_to_go_string(value)  # type: ignore[no-untyped-call]
    return text


def _clean_word(text: str) -> str:
    return _UNDERSCORES.sub("_", _INVALID_LABEL_CHARS.sub("_", text)).strip("_")


@functools.lru_cache(maxsize=1024)
def unit_word(unit: str, gauge: bool) -> str:
    """An OpenTelemetry unit in Prometheus words: ``ms`` -> ``milliseconds``, ``By/s`` ->
    ``bytes_per_second``, ``{request}`` -> "", ``1`` -> ``ratio`` (gauges; "" otherwise)."""
    main, _, per = unit.partition("/")
    main = _BRACES.sub("", main).strip()
    per = _BRACES.sub("", per).strip()
    if main == "1":
        # Some receivers use "1" for counts of things; a ratio only makes sense for a gauge.
        main_word = "ratio" if gauge and not per else ""
    else:
        main_word = _clean_word(UCUM_TO_WORD.get(main, main))
    per_word = _clean_word(UCUM_TO_PER_WORD.get(per, per)) if per else ""
    if per_word:
        return f"{main_word}_per_{per_word}" if main_word else f"per_{per_word}"
    return main_word


def label_value(value: Any) -> str:
    """A non-text attribute value as text, as OpenTelemetry's attribute spec renders it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else {"inf": "+Inf", "-inf": "-Inf"}.get(str(value), "NaN")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if value is None:
        return ""
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def attribute_labels(attributes: dict[str, Any]) -> dict[str, str]:
    """Attributes as labels; keys that collide once sanitized have their values joined with ';'
    in the order of the original keys. Empty values are left out (Prometheus: an absent label)."""
    labels: dict[str, str] = {}
    collided = False
    for key, raw in attributes.items():
        value = label_value(raw)
        if not value:
            continue
        name = sanitize_label_name(key)
        collided = collided or name in labels
        labels[name] = value
    if not collided:
        return labels
    grouped: dict[str, list[str]] = {}
    for key, raw in sorted(attributes.items()):
        value = label_value(raw)
        if value:
            grouped.setdefault(sanitize_label_name(key), []).append(value)
    return {name: ";".join(values) for name, values in grouped.items()}


def job_instance(resource: dict[str, Any]) -> tuple[str, str]:
    """``job`` and ``instance`` from ``service.namespace``/``service.name`` and ``service.instance.id``."""
    name = label_value(resource.get("service.name", ""))
    namespace = label_value(resource.get("service.namespace", ""))
    job = f"{namespace}/{name}" if name and namespace else name
    return job, label_value(resource.get("service.instance.id", ""))
