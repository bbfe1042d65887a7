"""From batches to per-SLO good/bad counts: SLO specs compiled into matchers, indexed so that a
record meets only the SLOs that can match it.

Logs and spans: a batch is grouped by resource (the records of one source share one resource dict),
so the resource half of every ``match`` is decided once per source and batch, and the SLOs looked
at are only those indexed under the resource's ``service.name`` (plus those whose ``match`` names no
service). Metric points are looked up by metric name. The cost per record so depends on how many SLOs
watch its service or metric, never on how many SLOs exist.

Counts come out aggregated per SLO and 10-second event-time bucket (the finest resolution the
windows keep), so the engine touches each SLO's windows once per bucket, not once per record.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from collector.config.types import parse_duration
from collector.core.model import LogRecord, MetricKind, MetricPoint, Span, SpanKind, StatusCode
from collector.metrics.delta import Delta
from collector.slo.conditions import Comparison, parse_comparison, parse_severity
from collector.slo.selector import Selector, parse_selector
from collector.slo.spec import LogSLI, MetricSLI, SLOSpec, TraceSLI

BUCKET_SECONDS = 10
WILDCARD = "\x00*"  # index key of SLOs whose match names no single service

# (slot, bucket start in Unix seconds) -> [total, second]; see windows.py for ``second``.
Counts = dict[tuple[int, int], list[float]]

Predicate = Callable[[Any], bool]

_SPAN_KINDS = {k.name.lower(): int(k) for k in SpanKind}
_STATUSES = {"error": int(StatusCode.ERROR), "ok": int(StatusCode.OK), "unset": int(StatusCode.UNSET)}


def _lookup(item: Any, key: str) -> Any:
    value = item.attributes.get(key)
    return item.resource.get(key) if value is None else value


def _attribute_predicate(key: str, comparison: Comparison) -> Predicate:
    def test(item: Any) -> bool:
        return comparison.test(_lookup(item, key))

    return test


def _body_text(body: Any) -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    return "" if body is None else str(body)


def _log_bad(key: str, value: Any) -> Predicate:
    if key == "severity":
        severity = parse_severity(value)
        return lambda record: severity.test(record.severity_number)
    if key == "body":
        if "regex" in value:
            pattern = re.compile(str(value["regex"]))
            return lambda record: pattern.search(_body_text(record.body)) is not None
        needle = str(value["contains"])
        return lambda record: needle in _body_text(record.body)
    return _attribute_predicate(key, parse_comparison(value))


def _span_bad(key: str, value: Any) -> Predicate:
    if key == "status":
        status = _STATUSES[str(value).lower()]
        return lambda span: span.status_code == status
    if key == "latency_over":
        limit_ns = parse_duration(value) * 1e9
        return lambda span: span.duration_ns > limit_ns
    if key == "http_status":
        comparison = parse_comparison(value)
        return lambda span: comparison.test(span.http_status_code)
    return _attribute_predicate(key, parse_comparison(value))


def _span_match(key: str, value: Any) -> Predicate | None:
    """Match conditions on the span itself (not on an attribute)."""
    if key == "span.kind":
        kind = _SPAN_KINDS[str(value).lower()]
        return lambda span: span.kind == kind
    if key == "span.name":
        comparison = parse_comparison(value)
        return lambda span: comparison.test(span.name)
    return None


@dataclass(slots=True)
class RecordSLI:
    """One logs or traces SLO, compiled."""

    slot: int
    match: list[tuple[str, Comparison]]  # attribute conditions, resource first
    item_match: list[Predicate]  # conditions on the record itself
    bad: list[Predicate]  # any one makes the record bad

    def resource_checks(self, resource: dict[str, Any]) -> list[Predicate] | None:
        """What is left to check per record once the resource is known; None when it cannot match."""
        left: list[Predicate] = list(self.item_match)
        for key, comparison in self.match:
            value = resource.get(key)
            if value is not None:
                if not comparison.test(value):
                    return None
            else:
                left.append(_attribute_only(key, comparison))
        return left


def _attribute_only(key: str, comparison: Comparison) -> Predicate:
    return lambda item: comparison.test(item.attributes.get(key))


def _service_key(match: dict[str, Any]) -> str:
    value = match.get("service.name")
    if value is None:
        return WILDCARD
    comparison = parse_comparison(value)
    return comparison.operand if comparison.op == "==" else WILDCARD


def compile_record_sli(slot: int, sli: LogSLI | TraceSLI) -> RecordSLI:
    item_match: list[Predicate] = []
    match: list[tuple[str, Comparison]] = []
    spans = isinstance(sli, TraceSLI)
    for key, value in sli.match.items():
        special = _span_match(key, value) if spans else None
        if special is not None:
            item_match.append(special)
        else:
            match.append((key, parse_comparison(value)))
    make_bad = _span_bad if spans else _log_bad
    return RecordSLI(slot, match, item_match, [make_bad(k, v) for k, v in sli.bad.items()])


def _event_seconds(item: Any, fallback_ns: int) -> int:
    """Event time as a 10 s bucket start: a log's time (or observed time), a span's end."""
    if isinstance(item, Span):
        ns = item.end_time_unix_nano or item.start_time_unix_nano
    else:
        ns = item.time_unix_nano or item.observed_time_unix_nano
    ns = ns or fallback_ns
    return (ns // 1_000_000_000) // BUCKET_SECONDS * BUCKET_SECONDS


@dataclass(slots=True)
class RecordIndex:
    """Logs or traces SLOs by the service they watch."""

    by_service: dict[str, list[RecordSLI]] = field(default_factory=dict)

    def add(self, slot: int, sli: LogSLI | TraceSLI, service: str) -> None:
        """Indexes an SLO under the service it watches. A ``match`` that does not name
        ``service.name`` means the SLO's own ``service``: its SLI counts that service's records only
        (``service.name: "=~.+"`` in ``match`` opts out, watching every service)."""
        if "service.name" not in sli.match:
            sli = sli.model_copy(update={"match": {"service.name": service, **sli.match}})
        self.by_service.setdefault(_service_key(sli.match), []).append(compile_record_sli(slot, sli))

    def __bool__(self) -> bool:
        return bool(self.by_service)

    def count(self, items: Iterable[LogRecord | Span], now_ns: int, out: Counts) -> int:
        """Adds the batch's events to ``out``; returns how many records met an SLO."""
        groups: dict[int, tuple[dict[str, Any], list[Any]]] = {}
        for item in items:
            resource = item.resource
            group = groups.get(id(resource))
            if group is None or group[0] is not resource:
                group = groups[id(resource)] = (resource, [])
            group[1].append(item)
        wildcard = self.by_service.get(WILDCARD, [])
        matched = 0
        for resource, records in groups.values():
            service = resource.get("service.name")
            candidates = self.by_service.get(service, []) if isinstance(service, str) else []
            for sli in (*candidates, *wildcard) if wildcard else candidates:
                checks = sli.resource_checks(resource)
                if checks is None:
                    continue
                bad_tests = sli.bad
                slot = sli.slot
                for record in records:
                    if checks and not all(check(record) for check in checks):
                        continue
                    matched += 1
                    key = (slot, _event_seconds(record, now_ns))
                    cell = out.get(key)
                    if cell is None:
                        cell = out[key] = [0.0, 0.0]
                    cell[0] += 1.0
                    if any(test(record) for test in bad_tests):
                        cell[1] += 1.0
        return matched


# -- metrics


@dataclass(frozen=True, slots=True)
class MetricTarget:
    """One selector of one metric SLO: which channel its increases count in."""

    slot: int
    channel: int  # 0 = total, 1 = second (good or bad)
    selector: Selector
    part: str  # "" for a counter, "_count" or "_bucket" for a histogram or summary's series
    le: float | None = None  # the bucket bound a _bucket selector names (inf for "+Inf")


def _le(selector: Selector) -> float | None:
    matcher = selector.label("le")
    if matcher is None:
        return None
    try:
        return float(matcher.value)  # "+Inf" -> inf, as Prometheus writes it
    except ValueError:
        return math.nan  # matches no bound


def _labels(point: MetricPoint) -> dict[str, str]:
    labels = {k: v if isinstance(v, str) else str(v) for k, v in point.attributes.items()}
    job = point.resource.get("service.name")
    instance = point.resource.get("service.instance.id")
    if job is not None:
        labels.setdefault("job", str(job))
    if instance is not None:
        labels.setdefault("instance", str(instance))
    return labels


@dataclass(slots=True)
class MetricIndex:
    """Metric SLOs by the metric name their selectors use."""

    by_name: dict[str, list[MetricTarget]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.by_name)

    def add(self, slot: int, sli: MetricSLI) -> None:
        for channel, text in ((0, sli.total), (1, sli.good if sli.good is not None else sli.bad)):
            assert text is not None
            selector = parse_selector(text)
            metric = selector.metric
            self.by_name.setdefault(metric, []).append(MetricTarget(slot, channel, selector, ""))
            for part in ("_count", "_bucket"):
                if metric.endswith(part):
                    le = _le(selector) if part == "_bucket" else None
                    base = metric[: -len(part)]
                    self.by_name.setdefault(base, []).append(MetricTarget(slot, channel, selector, part, le))

    def wanted(self, point: MetricPoint) -> bool:
        """Points whose increases some SLO counts (the others never reach the delta tracker)."""
        return point.name in self.by_name

    def count(self, deltas: Iterable[Delta], out: Counts) -> int:
        matched = 0
        for delta in deltas:
            point = delta.point
            targets = self.by_name.get(point.name)
            if not targets:
                continue
            labels: dict[str, str] | None = None
            for target in targets:
                increase = _increase(target, point, delta)
                if increase is None:
                    continue
                if labels is None:
                    labels = _labels(point)
                if not all(
                    m.matches(labels.get(m.name, ""))
                    for m in target.selector.matchers
                    if not (target.part == "_bucket" and m.name == "le")
                ):
                    continue
                matched += 1
                if increase <= 0:
                    continue
                key = (
                    target.slot,
                    (delta.time_unix_nano // 1_000_000_000) // BUCKET_SECONDS * BUCKET_SECONDS,
                )
                cell = out.get(key)
                if cell is None:
                    cell = out[key] = [0.0, 0.0]
                cell[target.channel] += float(increase)
        return matched


def _increase(target: MetricTarget, point: MetricPoint, delta: Delta) -> float | None:
    """The increase ``target`` reads from ``delta``, None when it does not read this point."""
    kind = point.kind
    if not target.part:
        return float(delta.value) if kind == MetricKind.SUM else None
    if kind not in (MetricKind.HISTOGRAM, MetricKind.SUMMARY):
        return None
    if target.part == "_count":
        return float(delta.value)
    if kind != MetricKind.HISTOGRAM or target.le is None or math.isnan(target.le):
        return None
    if math.isinf(target.le):
        return float(delta.value)
    # Cumulative count up to the bound the selector names; a bound the histogram lacks matches
    # nothing, as a label value that no series has matches nothing in Prometheus.
    total = 0
    for bound, increase in zip(point.explicit_bounds, delta.bucket_counts, strict=False):
        total += increase
        if bound == target.le:
            return float(total)
        if bound > target.le:
            return None
    return None


@dataclass(slots=True)
class SloIndex:
    """Every in-stream SLO of an engine, by signal."""

    logs: RecordIndex = field(default_factory=RecordIndex)
    traces: RecordIndex = field(default_factory=RecordIndex)
    metrics: MetricIndex = field(default_factory=MetricIndex)

    def add(self, slot: int, slo: SLOSpec) -> bool:
        """False for a kind counted elsewhere (``prometheus`` SLIs are rules only)."""
        sli = slo.sli
        if sli.logs is not None:
            self.logs.add(slot, sli.logs, slo.service)
        elif sli.traces is not None:
            self.traces.add(slot, sli.traces, slo.service)
        elif sli.metrics is not None:
            self.metrics.add(slot, sli.metrics)
        else:
            return False
        return True
