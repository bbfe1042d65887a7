"""Metric family types, remembered across requests: what a remote-written series is (counter, gauge,
histogram part, ...), from the senders' metadata or, until it arrives, from naming conventions."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from collector.core.model import MetricKind
from collector.prompb import types_pb2
from collector.translator.prometheus import prometheus_unit_to_ucum

_METADATA_TYPES = {
    types_pb2.MetricMetadata.COUNTER: "counter",
    types_pb2.MetricMetadata.GAUGE: "gauge",
    types_pb2.MetricMetadata.HISTOGRAM: "histogram",
    types_pb2.MetricMetadata.GAUGEHISTOGRAM: "gaugehistogram",
    types_pb2.MetricMetadata.SUMMARY: "summary",
    types_pb2.MetricMetadata.INFO: "info",
    types_pb2.MetricMetadata.STATESET: "stateset",
    types_pb2.MetricMetadata.UNKNOWN: "unknown",
}
# The suffixes that join a series' name to its family's (OpenMetrics' full set).
_SUFFIXES = ("_created", "_bucket", "_gcount", "_total", "_count", "_gsum", "_info", "_sum")


@dataclass(frozen=True, slots=True)
class Family:
    """What is known of a metric family: its Prometheus type, help and unit (UCUM)."""

    type: str
    help: str = ""
    unit: str = ""
    # False when only naming conventions said so (a ``_bucket`` or ``quantile`` series was seen).
    from_metadata: bool = True


class FamilyTypes:
    """A bounded map of metric family name -> Family, safe to use from decode threads."""

    def __init__(self, max_families: int) -> None:
        self.max_families = max_families
        self._families: OrderedDict[str, Family] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._families)

    def get(self, name: str) -> Family | None:
        return self._families.get(name)

    def _put(self, name: str, family: Family) -> None:
        families = self._families
        families[name] = family
        families.move_to_end(name)
        while len(families) > self.max_families:
            families.popitem(last=False)

    def learn(self, metadata: Iterable[types_pb2.MetricMetadata]) -> int:
        """Takes a request's metadata; returns how many entries it held."""
        n = 0
        with self._lock:
            for md in metadata:
                if not md.metric_family_name:
                    continue
                family = Family(
                    _METADATA_TYPES.get(md.type, "unknown"), md.help, prometheus_unit_to_ucum(md.unit)
                )
                self._put(md.metric_family_name, family)
                n += 1
        return n

    def infer(self, name: str, type_: str) -> None:
        """Remembers a family type seen from its series' shape, unless metadata already told it."""
        known = self._families.get(name)
        if known is not None and (known.from_metadata or known.type == type_):
            return
        with self._lock:
            self._put(name, Family(type_, from_metadata=False))


# How each family type's series map to points: suffix -> (kind, monotonic); "" is the bare name.
_CUMULATIVE_COUNTER = (MetricKind.SUM, True)
_CUMULATIVE_NON_MONOTONIC = (MetricKind.SUM, False)
_GAUGE = (MetricKind.GAUGE, False)
_SERIES_KINDS: dict[str, dict[str, tuple[MetricKind, bool]]] = {
    "counter": {"": _CUMULATIVE_COUNTER, "_total": _CUMULATIVE_COUNTER, "_created": _GAUGE},
    "gauge": {"": _GAUGE},
    "histogram": {
        "_bucket": _CUMULATIVE_COUNTER,
        "_count": _CUMULATIVE_COUNTER,
        "_sum": _CUMULATIVE_NON_MONOTONIC,
        "_created": _GAUGE,
    },
    "gaugehistogram": {"_bucket": _GAUGE, "_gcount": _GAUGE, "_gsum": _GAUGE},
    "summary": {
        "": _GAUGE,
        "_count": _CUMULATIVE_COUNTER,
        "_sum": _CUMULATIVE_NON_MONOTONIC,
        "_created": _GAUGE,
    },
    "info": {"": _CUMULATIVE_NON_MONOTONIC, "_info": _CUMULATIVE_NON_MONOTONIC},
    "stateset": {"": _CUMULATIVE_NON_MONOTONIC},
    "unknown": {"": _GAUGE},
}


def family_of(name: str, families: FamilyTypes) -> tuple[Family, str] | None:
    """The known family a series name belongs to, and the suffix that joins them."""
    family = families.get(name)
    if family is not None and (family.from_metadata or family.type == "summary"):
        return family, ""
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            family = families.get(name[: -len(suffix)])
            if family is not None and suffix in _SERIES_KINDS[family.type]:
                return family, suffix
    return None


def classify(
    name: str, attributes: dict[str, Any], families: FamilyTypes, infer: bool
) -> tuple[MetricKind, bool, Family | None, str]:
    """(kind, monotonic, family or None, Prometheus type) of one series."""
    found = family_of(name, families)
    if found is not None:
        family, suffix = found
        kind, monotonic = _SERIES_KINDS[family.type].get(suffix, _GAUGE)
        return kind, monotonic, family, family.type
    if infer:
        if name.endswith("_total"):
            return MetricKind.SUM, True, None, "counter"
        if name.endswith("_bucket") and "le" in attributes:
            families.infer(name[: -len("_bucket")], "histogram")
            return MetricKind.SUM, True, None, "histogram"
        if "quantile" in attributes:
            families.infer(name, "summary")
            return MetricKind.GAUGE, False, None, "summary"
    return MetricKind.GAUGE, False, None, "unknown"
