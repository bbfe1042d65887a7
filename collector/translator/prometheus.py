"""Prometheus <-> OpenTelemetry: units and the resource of a scrape target.

One table, read in both directions, as the OpenTelemetry Collector's
``pkg/translator/prometheus`` has it, so that a unit that goes out through the Prometheus exporters
comes back in through remote_write or a scrape as the same UCUM unit.
"""

from __future__ import annotations

from typing import Any, Final

# UCUM (OpenTelemetry's units) -> the Prometheus unit word.
UCUM_TO_WORD: Final = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "%": "percent",
}
# The "per" part of a unit (``By/s`` -> ``bytes_per_second``). Several UCUM spellings map to one word;
# the inverse takes the canonical one listed first.
UCUM_TO_PER_WORD: Final = {
    "s": "second",
    "min": "minute",
    "m": "minute",
    "h": "hour",
    "d": "day",
    "wk": "week",
    "w": "week",
    "mo": "month",
    "a": "year",
    "y": "year",
}

WORD_TO_UCUM: Final = {word: ucum for ucum, word in UCUM_TO_WORD.items()} | {"ratio": "1"}
PER_WORD_TO_UCUM: Final = {word: ucum for ucum, word in reversed(UCUM_TO_PER_WORD.items())}


def prometheus_unit_to_ucum(unit: str) -> str:
    """``seconds`` -> ``s``, ``bytes_per_second`` -> ``By/s``, ``ratio`` -> ``1``; others unchanged."""
    if not unit:
        return ""
    main, sep, per = unit.partition("_per_")
    out = WORD_TO_UCUM.get(main, main)
    if sep and per:
        out += "/" + PER_WORD_TO_UCUM.get(per, per)
    return out


def target_resource(job: str, instance: str) -> dict[str, Any]:
    """The resource of a scrape target or remote-write series: job -> service.name, instance ->
    service.instance.id (the OpenTelemetry compatibility spec); an empty label adds nothing."""
    resource: dict[str, Any] = {}
    if job:
        resource["service.name"] = job
    if instance:
        resource["service.instance.id"] = instance
    return resource
