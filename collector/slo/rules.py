"""Prometheus recording and alerting rules for SLOs, named, labelled and shaped as Sloth generates them.

This is the scale-out path: every burnline replica exports ``burnline_slo_events_total{slo,outcome}``
and one Prometheus (or Thanos, Mimir) sums them across replicas and evaluates the alert policy, with
rules any Sloth user already knows (github.com/slok/sloth, internal/prometheus/*_rules.go). Per SLO,
three groups, as Sloth writes them:

- ``sloth-slo-sli-recordings-<id>``: ``slo:sli_error:ratio_rate<w>`` for each window of the policy
  (5m … 3d) and for the period, the latter averaged from the 5m series as Sloth "optimizes" it;
- ``sloth-slo-meta-recordings-<id>``: ``slo:objective:ratio``, ``slo:error_budget:ratio``,
  ``slo:time_period:days``, ``slo:current_burn_rate:ratio``, ``slo:period_burn_rate:ratio``,
  ``slo:period_error_budget_remaining:ratio`` and ``sloth_slo_info``;
- ``sloth-slo-alerts-<id>``: the multiwindow, multi-burn-rate page and ticket alerts
  (collector/slo/policy.py) over those recordings.

``<id>`` is ``<service>-<slo name>`` and every series carries ``sloth_id``, ``sloth_service``,
``sloth_slo`` (and ``sloth_window`` on the SLI ones) plus the SLO's own labels, so Sloth's Grafana
dashboards work unchanged. Numbers are printed as Go prints them, so a Sloth spec gives the same
expressions here as with Sloth itself.

Where burnline differs from Sloth, deliberately:
- burnline's own SLOs (traces, logs, metrics SLIs) read ``burnline_slo_events_total``; the ratio is
  guarded so a window without traffic records no sample instead of NaN (a NaN in the 5m series would
  poison the period's ``sum_over_time`` for the whole period) and a missing ``outcome="bad"`` series
  counts as zero errors;
- the period's SLI recording names its sloth_id/service/slo labels (Sloth leaves them implicit, which
  ``promtool check rules`` reports as duplicate rules once a file holds two SLOs);
- alerts get ``severity: page|ticket`` unless the spec's labels set one, as the alerts burnline sends
  to Alertmanager itself do, so one routing tree serves both paths;
- ``sloth_slo_info`` carries ``sloth_mode="burnline"`` and no ``sloth_version``, so the generated file
  only changes when an SLO does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import yaml

from collector.slo import policy

try:  # libyaml's emitter: same output, many times faster on the rules of thousands of SLOs
    from yaml import CSafeDumper as _SafeDumper
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeDumper as _SafeDumper  # type: ignore[assignment]

from collector.slo.sloth import RAW_TOTAL, render_window
from collector.slo.spec import SLOSpec

EVENTS_METRIC = "burnline_slo_events_total"
SLI_ERROR_METRIC = "slo:sli_error:ratio_rate{window}"

ID_LABEL = "sloth_id"
SERVICE_LABEL = "sloth_service"
SLO_LABEL = "sloth_slo"
WINDOW_LABEL = "sloth_window"
SEVERITY_LABEL = "sloth_severity"
RESERVED_LABELS = frozenset({ID_LABEL, SERVICE_LABEL, SLO_LABEL, WINDOW_LABEL, SEVERITY_LABEL})

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class RuleGenerationError(ValueError):
    """SLOs that cannot become valid Prometheus rules; one problem a line, each naming its SLO."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def go_float(value: float) -> str:
    """A float as Go's fmt prints it with %v and %g (shortest round-trip digits, exponent form below
    1e-4 and from 1e6 on, "1e+06"), which is how Sloth writes the numbers in its expressions."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    number = Decimal(repr(float(value))).normalize()
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    exp10 = len(digits) + exponent - 1
    if -4 <= exp10 < 6:
        return format(number, "f")
    mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"


def go_fixed(value: float) -> str:
    """strconv.FormatFloat(value, 'f', -1, 64): fixed notation, shortest digits ("99.9", "99")."""
    return format(Decimal(repr(float(value))).normalize(), "f")


def promql_string(value: str) -> str:
    """A PromQL double-quoted string literal (Go %q for the characters that can occur here)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def label_filter(labels: Mapping[str, str]) -> str:
    """``{a="1", b="2"}``, sorted, as Prometheus' LabelSet.String() (Sloth's labelsToPromFilter)."""
    return "{" + ", ".join(f"{name}={promql_string(labels[name])}" for name in sorted(labels)) + "}"


def sloth_id(slo: SLOSpec) -> str:
    return f"{slo.service}-{slo.name}"


def id_labels(slo: SLOSpec) -> dict[str, str]:
    return {ID_LABEL: sloth_id(slo), SERVICE_LABEL: slo.service, SLO_LABEL: slo.name}


def sli_error_metric(window: str) -> str:
    return SLI_ERROR_METRIC.format(window=window)


def native_sli_error_expr(slo_name: str, window: str) -> str:
    """The error ratio of a burnline SLO over ``window``, summed across every replica's counters.

    No bad series yet (a replica exports ``outcome="bad"`` from its first bad event on) counts as 0;
    no traffic at all gives no sample rather than 0/0 = NaN."""
    slo = promql_string(slo_name)
    bad = f'sum(rate({EVENTS_METRIC}{{slo={slo},outcome="bad"}}[{window}]))'
    total = f"sum(rate({EVENTS_METRIC}{{slo={slo}}}[{window}]))"
    return f"({bad} or vector(0))\n/\n({total} > 0)\n"


def sli_error_expr(slo: SLOSpec, window: str) -> str:
    """The expression recorded as ``slo:sli_error:ratio_rate<window>``."""
    prometheus = slo.sli.prometheus
    if prometheus is None:
        return native_sli_error_expr(slo.name, window)
    if prometheus.total_query.strip() == RAW_TOTAL:
        # Sloth's raw SLI (error_ratio_query): the query is an error ratio already.
        return f"({render_window(prometheus.error_query, window)})"
    error = render_window(prometheus.error_query, window)
    total = render_window(prometheus.total_query, window)
    return f"({error})\n/\n({total})\n"


def _period_sli_expr(slo: SLOSpec, period: str) -> str:
    # Sloth's optimization: the period's ratio is the mean of the 5m ratio over the period (sum/count,
    # so missing samples are skipped rather than averaged as zeros), not a 30-day rate() over raw
    # counters that would be costly to evaluate every cycle.
    short = policy.conditions(slo.period)[0].short_window
    selector = sli_error_metric(short) + label_filter(id_labels(slo))
    return (
        f"sum_over_time({selector}[{period}])\n"
        f"/ ignoring ({WINDOW_LABEL})\n"
        f"count_over_time({selector}[{period}])\n"
    )


def _sli_recordings(slo: SLOSpec) -> list[dict[str, Any]]:
    period = policy.period_window(slo.period)
    rules: list[dict[str, Any]] = []
    for window in policy.windows(slo.period):
        if window == period and window not in policy.WINDOWS:
            rules.append(
                {
                    "record": sli_error_metric(window),
                    "expr": _period_sli_expr(slo, period),
                    # Sloth sets only sloth_window and lets the rest come from the 5m series; the id
                    # labels (same values) keep promtool's lint from seeing every SLO's period rule
                    # as one duplicate.
                    "labels": _sorted({**id_labels(slo), WINDOW_LABEL: window}),
                }
            )
            continue
        labels = {**id_labels(slo), WINDOW_LABEL: window, **slo.labels}
        rules.append(
            {
                "record": sli_error_metric(window),
                "expr": sli_error_expr(slo, window),
                "labels": _sorted(labels),
            }
        )
    return rules


def _burn_rate_expr(slo: SLOSpec, window: str) -> str:
    selector = label_filter(id_labels(slo))
    return (
        f"{sli_error_metric(window)}{selector}\n"
        f"/ on({ID_LABEL}, {SLO_LABEL}, {SERVICE_LABEL}) group_left\n"
        f"slo:error_budget:ratio{selector}\n"
    )


def _meta_recordings(slo: SLOSpec) -> list[dict[str, Any]]:
    labels = _sorted({**id_labels(slo), **slo.labels})
    objective_ratio = slo.objective / 100
    page_quick = policy.conditions(slo.period)[0]
    info = _sorted(
        {
            **labels,
            "sloth_mode": "burnline",
            "sloth_spec": "prometheus/v1" if slo.sli.prometheus is not None else "burnline/v1",
            "sloth_objective": go_fixed(slo.objective),
        }
    )
    return [
        {"record": "slo:objective:ratio", "expr": f"vector({go_float(objective_ratio)})", "labels": labels},
        {
            "record": "slo:error_budget:ratio",
            "expr": f"vector(1-{go_float(objective_ratio)})",
            "labels": labels,
        },
        {
            "record": "slo:time_period:days",
            "expr": f"vector({go_float(slo.period / 86400)})",
            "labels": labels,
        },
        {
            "record": "slo:current_burn_rate:ratio",
            "expr": _burn_rate_expr(slo, page_quick.short_window),
            "labels": labels,
        },
        {
            "record": "slo:period_burn_rate:ratio",
            "expr": _burn_rate_expr(slo, policy.period_window(slo.period)),
            "labels": labels,
        },
        {
            "record": "slo:period_error_budget_remaining:ratio",
            "expr": f"1 - slo:period_burn_rate:ratio{label_filter(id_labels(slo))}",
            "labels": labels,
        },
        {"record": "sloth_slo_info", "expr": "vector(1)", "labels": info},
    ]


def _condition_expr(slo: SLOSpec, quick: policy.AlertCondition, slow: policy.AlertCondition) -> str:
    # Sloth computes the budget as (100 - objective) / 100, not 1 - objective / 100: the same float
    # bits as Sloth keep the expressions identical to its output.
    budget = go_float((100 - slo.objective) / 100)
    selector = label_filter(id_labels(slo))

    def over(window: str, factor: float) -> str:
        return (
            f"max({sli_error_metric(window)}{selector} > ({go_float(factor)} * {budget})) "
            f"without ({WINDOW_LABEL})"
        )

    return (
        "(\n"
        f"    {over(quick.short_window, quick.factor)}\n"
        "    and\n"
        f"    {over(quick.long_window, quick.factor)}\n"
        ")\n"
        "or\n"
        "(\n"
        f"    {over(slow.short_window, slow.factor)}\n"
        "    and\n"
        f"    {over(slow.long_window, slow.factor)}\n"
        ")\n"
    )


def _alerts(slo: SLOSpec) -> list[dict[str, Any]]:
    conditions = policy.conditions(slo.period)
    rules = []
    for severity, alert in (("page", slo.alerting.page), ("ticket", slo.alerting.ticket)):
        if not alert.enabled:
            continue
        quick, slow = (c for c in conditions if c.severity == severity)
        labels = {"severity": severity, SEVERITY_LABEL: severity, **slo.alerting.labels, **alert.labels}
        annotations = {
            "title": f"({severity}) {{{{$labels.{SERVICE_LABEL}}}}} {{{{$labels.{SLO_LABEL}}}}} "
            "SLO error budget burn rate is too fast.",
            "summary": f"{{{{$labels.{SERVICE_LABEL}}}}} {{{{$labels.{SLO_LABEL}}}}} "
            "SLO error budget burn rate is over expected.",
            **slo.alerting.annotations,
            **alert.annotations,
        }
        rules.append(
            {
                "alert": slo.alert_name,
                "expr": _condition_expr(slo, quick, slow),
                "labels": _sorted(labels),
                "annotations": _sorted(annotations),
            }
        )
    return rules


def _sorted(mapping: Mapping[str, str]) -> dict[str, str]:
    # Go's YAML encoder writes map keys sorted; so do we, so diffs against Sloth's output stay small.
    return {key: mapping[key] for key in sorted(mapping)}


def _problems(slo: SLOSpec, seen_ids: dict[str, str]) -> list[str]:
    where = f"{slo.source}: " if slo.source else ""
    name = f"{where}SLO {slo.name!r}"
    problems = []
    ident = sloth_id(slo)
    if ident in seen_ids:
        problems.append(f"{name}: sloth_id {ident!r} is also the id of an SLO from {seen_ids[ident]}")
    seen_ids[ident] = slo.source
    try:
        policy.check_period(slo.period)
    except ValueError as exc:
        problems.append(f"{name}: {exc}")
    if not 0 < slo.objective < 100:
        problems.append(f"{name}: objective must be between 0 and 100 (exclusive), not {slo.objective}")
    label_sets = {
        "labels": slo.labels,
        "alerting.labels": slo.alerting.labels,
        "alerting.page.labels": slo.alerting.page.labels,
        "alerting.ticket.labels": slo.alerting.ticket.labels,
        "alerting.annotations": slo.alerting.annotations,
        "alerting.page.annotations": slo.alerting.page.annotations,
        "alerting.ticket.annotations": slo.alerting.ticket.annotations,
    }
    for where_key, labels in label_sets.items():
        for key in labels:
            if not _LABEL_NAME.match(key) or key.startswith("__"):
                problems.append(f"{name}: {where_key}: {key!r} is not a Prometheus label name")
            elif where_key == "labels" and key in RESERVED_LABELS:
                problems.append(f"{name}: {where_key}: {key!r} is reserved for the generated rules")
    if (slo.alerting.page.enabled or slo.alerting.ticket.enabled) and not _METRIC_NAME.match(slo.alert_name):
        problems.append(f"{name}: alert name {slo.alert_name!r} is not a valid Prometheus alert name")
    try:
        sli_error_expr(slo, "5m")
    except ValueError as exc:
        problems.append(f"{name}: sli: {exc}")
    return problems


def generate_rules(slos: Iterable[SLOSpec]) -> dict[str, Any]:
    """A Prometheus rule file (``{"groups": [...]}``) for ``slos``; RuleGenerationError listing every
    SLO that cannot be expressed as valid rules (a reserved or invalid label name, a period shorter
    than the policy's longest window, two SLOs with one sloth_id …)."""
    slos = list(slos)
    problems: list[str] = []
    seen_ids: dict[str, str] = {}
    for slo in slos:
        problems += _problems(slo, seen_ids)
    if problems:
        raise RuleGenerationError(problems)
    groups: list[dict[str, Any]] = []
    for slo in slos:
        ident = sloth_id(slo)
        groups.append({"name": f"sloth-slo-sli-recordings-{ident}", "rules": _sli_recordings(slo)})
        groups.append({"name": f"sloth-slo-meta-recordings-{ident}", "rules": _meta_recordings(slo)})
        alerts = _alerts(slo)
        if alerts:
            groups.append({"name": f"sloth-slo-alerts-{ident}", "rules": alerts})
    return {"groups": groups}


class _RulesDumper(_SafeDumper):
    """Multi-line expressions as literal blocks, as in Sloth's and hand-written rule files; no
    anchors or aliases for the label maps rules share."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: _SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_RulesDumper.add_representer(str, _represent_str)


def dump_rules(rules: Mapping[str, Any], header: str = "") -> str:
    """YAML text of a rule file, with ``header`` as leading comment lines."""
    text = yaml.dump(dict(rules), Dumper=_RulesDumper, sort_keys=False, width=1_000_000, allow_unicode=True)
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    return "\n".join([*lines, text]) if lines else text


def render_rules(slos: Iterable[SLOSpec], sources: Iterable[str] = ()) -> str:
    """The rule file ``burnline slo rules`` writes: the rules as YAML under a do-not-edit header."""
    origin = ", ".join(sources)
    header = (
        "Code generated by `burnline slo rules`" + (f" from {origin}" if origin else "") + ". DO NOT EDIT.\n"
        "Sloth-compatible SLO recording and alerting rules (https://github.com/slok/sloth)."
    )
    return dump_rules(generate_rules(slos), header)
