"""Prometheus exposition text (0.0.4 and OpenMetrics 1.0) to MetricPoints.

prometheus-client's parsers read the text; :mod:`collector.normalize.prometheus_families` maps each
metric family to the data model as the OpenTelemetry Collector's Prometheus receiver does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families as text_families

from collector.core.model import Scope
from collector.normalize.prometheus_families import Exposition, ExpositionError, FamilyMapper
from collector.translator.prometheus import target_resource

OPENMETRICS_MEDIA_TYPE = "application/openmetrics-text"

# Prometheus' text parser reports a counter declared as ``# TYPE foo counter`` with its samples renamed
# to ``foo_total`` (the OpenMetrics convention); the TYPE lines tell which names were really exposed.
_COUNTER_TYPE_LINE = re.compile(r"^[ \t]*#[ \t]+TYPE[ \t]+(\S+)[ \t]+counter[ \t]*$", re.MULTILINE)


def is_openmetrics(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == OPENMETRICS_MEDIA_TYPE


def parse_exposition(
    text: str,
    *,
    openmetrics: bool,
    scrape_time_ns: int,
    target_labels: Mapping[str, str] | None = None,
    honor_labels: bool = False,
    honor_timestamps: bool = True,
    resource: dict[str, Any] | None = None,
    scope: Scope | None = None,
) -> Exposition:
    """Parses one scrape's body into points; raises ExpositionError if it is not an exposition.

    ``resource`` is the target's (its ``service.name`` and ``service.instance.id`` being the ``job``
    and ``instance`` of ``target_labels``), shared by every point that keeps that job and instance;
    ``scope`` is shared by every point. Both are read-only, as the model asks.
    """
    labels = dict(target_labels or {})
    if resource is None:
        resource = target_resource(labels.get("job", ""), labels.get("instance", ""))
    builder = FamilyMapper(
        scrape_time_ns=scrape_time_ns,
        target_labels=labels,
        honor_labels=honor_labels,
        honor_timestamps=honor_timestamps,
        resource=resource,
        scope=scope if scope is not None else Scope(),
        openmetrics=openmetrics,
    )
    try:
        if openmetrics:
            families: Iterable[Metric] = openmetrics_families(text)  # type: ignore[no-untyped-call]
        else:
            builder.declared_counters = frozenset(_COUNTER_TYPE_LINE.findall(text))
            families = text_families(text)
        for family in families:
            builder.add(family)
    except ExpositionError:
        raise
    except Exception as exc:  # the parsers raise ValueError, but also IndexError/KeyError on odd input
        raise ExpositionError(_parse_error(exc)) from None
    return builder.result


def _parse_error(exc: Exception) -> str:
    detail = " ".join(str(part) for part in exc.args) if exc.args else type(exc).__name__
    detail = detail.strip() or type(exc).__name__
    if len(detail) > 200:
        detail = detail[:200] + "..."
    return f"not a Prometheus exposition: {detail}"
