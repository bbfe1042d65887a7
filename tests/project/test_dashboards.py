"""dashboards/: every panel is titled, explained, has a unit and reads the ``${datasource}`` variable, and
every expression is valid PromQL over metrics that burnline really exposes, with labels they really have.

The pipeline dashboard reads burnline's Telemetry and follows an ``instance`` variable. The SLO dashboards
(tag ``slo``: overview and detail) read the SLO series of issue 11: ``burnline_slo_*`` from the admin
/metrics, summed or maxed over replicas, and the Sloth-named recording rules of ``burnline slo rules``
(``slo:*`` with ``sloth_service``/``sloth_slo``); they follow ``service`` and ``slo`` variables instead.
Every SLO dashboard query runs against a real Prometheus that scrapes two replicas (synthetic servers,
then real burnline Services fed through their receivers) and evaluates the generated rules, and must
return data.

The PromQL helpers here (metric names and the labels an expression uses) are shared with test_alerts.py.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
import yaml
from aiohttp import web
from fluent import sender

from collector.config import parse_config
from collector.core.telemetry import Telemetry
from collector.slo import policy
from collector.slo.metrics import SloMetrics
from collector.slo.rules import generate_rules
from collector.slo.spec import load_slos
from collector.workers.metrics_merge import WORKER_LABEL
from tests.real_services import RealPrometheus, needs_prometheus, real_prometheus
from tests.support import free_port, running_service

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
DATASOURCE_UID = "${datasource}"
INSTANCE_MATCHER = 'instance=~"$instance"'
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"instance", "job"})

# ---- what burnline exposes ------------------------------------------------------------------------


def exposed_metrics() -> dict[str, frozenset[str]]:
    """Every series name burnline's /metrics can carry, with its label names.

    Read from a fresh Telemetry's registry (the standard process_* series included), so a renamed
    metric or label breaks the dashboards' and alerts' tests rather than their panels and rules in
    production. Counters are exposed with ``_total``; a histogram as ``_bucket`` (with ``le``),
    ``_sum`` and ``_count``.
    """
    telemetry = Telemetry()
    labels_by_family: dict[str, frozenset[str]] = {}
    for attribute in vars(telemetry).values():
        name = getattr(attribute, "_name", None)
        if name is not None:
            labels_by_family[name] = frozenset(attribute._labelnames)
    exposed: dict[str, frozenset[str]] = {}
    for family in telemetry.registry.collect():
        # Families of a collector (the standard process_* series) carry their labels on the samples.
        own = labels_by_family.get(family.name)
        if own is None:
            own = frozenset(label for sample in family.samples for label in sample.labels)
        # With service.workers, the supervisor's /metrics labels every worker's sample with its index.
        labels = own | TARGET_LABELS | {WORKER_LABEL}
        if family.type == "counter":
            exposed[f"{family.name}_total"] = labels
        elif family.type == "histogram":
            exposed[f"{family.name}_bucket"] = labels | {"le"}
            exposed[f"{family.name}_sum"] = labels
            exposed[f"{family.name}_count"] = labels
        else:
            exposed[family.name] = labels
    return exposed


# ---- the SLO series of issue 11 ---------------------------------------------------------------------

# What burnline's SLO engine exports on the admin /metrics (names and labels fixed by issue 11).
SLO_METRICS: dict[str, frozenset[str]] = {
    "burnline_slo_events_total": frozenset({"slo", "service", "outcome"}),
    "burnline_slo_burn_rate": frozenset({"slo", "window"}),
    "burnline_slo_error_budget_remaining": frozenset({"slo"}),
    "burnline_slo_objective": frozenset({"slo"}),
    "burnline_slo_alert_firing": frozenset({"slo", "severity"}),
    "burnline_slo_late_events_total": frozenset({"slo"}),
}
# What `burnline slo rules` records, with Sloth's names and labels; the SLO's own labels come on top.
SLOTH_LABELS = frozenset({"sloth_id", "sloth_service", "sloth_slo"})
RECORDED: dict[str, frozenset[str]] = {
    **{f"slo:sli_error:ratio_rate{w}": SLOTH_LABELS | {"sloth_window"} for w in policy.WINDOWS},
    **{
        name: SLOTH_LABELS
        for name in (
            "slo:objective:ratio",
            "slo:error_budget:ratio",
            "slo:time_period:days",
            "slo:current_burn_rate:ratio",
            "slo:period_burn_rate:ratio",
            "slo:period_error_budget_remaining:ratio",
        )
    },
}
# Prometheus' own series of pending and firing alerts: the rule's labels, Sloth's sloth_severity among them.
ALERTS_LABELS = SLOTH_LABELS | {"alertname", "alertstate", "severity", "sloth_severity"}


def slo_series() -> dict[str, frozenset[str]]:
    """Every series an SLO dashboard may read, with its label names."""
    return {
        **exposed_metrics(),
        **{name: labels | TARGET_LABELS for name, labels in SLO_METRICS.items()},
        **RECORDED,
        "ALERTS": ALERTS_LABELS,
    }


# ---- reading PromQL -------------------------------------------------------------------------------

_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "inf",
        "nan",
        "atan2",
    }
)
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)")
_SELECTOR = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"(?:\\.|[^"\\])*"')
_BY = re.compile(r"\b(by|without)\s*\(([^)]*)\)\s*\(")
# label_replace(v, "dst", "replacement", "src", "regex"): the label it creates.
_LABEL_REPLACE_DST = re.compile(r',\s*"([a-zA-Z_]\w*)"\s*,\s*"[^"]*"\s*,\s*"\w*"\s*,\s*"[^"]*"\s*\)')


def _blank(pattern: re.Pattern[str], text: str) -> str:
    """Replaces matches with spaces of the same length, so positions stay comparable."""
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, keywords, labels and durations left out)."""
    text = _blank(_STRING, expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group(1)
        following = text[match.end() :].lstrip()
        if following.startswith("(") or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def selectors(expr: str) -> Iterator[tuple[str, str]]:
    """(metric name, label matchers text) for each metric selector of the expression."""
    names = metric_names(expr)
    for match in _SELECTOR.finditer(_blank(_STRING, expr)):
        if match.group(1) in names:
            start, end = match.span(2) if match.group(2) else (match.end(), match.end())
            yield match.group(1), expr[start:end]


def _argument(expr: str, open_paren: int) -> str:
    """The text inside the parentheses opening at ``open_paren``."""
    depth = 0
    for i in range(open_paren, len(expr)):
        if expr[i] == "(":
            depth += 1
        elif expr[i] == ")":
            depth -= 1
            if depth == 0:
                return expr[open_paren + 1 : i]
    raise ValueError(f"unbalanced parentheses in {expr!r}")


def label_problems(expr: str, exposed: dict[str, frozenset[str]]) -> list[str]:
    """Labels an expression matches or groups by that its metrics do not have."""
    problems = []
    for name, matchers in selectors(expr):
        if name not in exposed:
            continue
        for label in _MATCHER.findall(matchers):
            if label[0] not in exposed[name]:
                problems.append(f"{name} has no label {label[0]!r}")
    text = _blank(_STRING, expr)
    for match in _BY.finditer(text):
        inner = _argument(expr, match.end() - 1)
        inner_names = [n for n in metric_names(inner) if n in exposed]
        created = set(_LABEL_REPLACE_DST.findall(inner))
        for label in (part.strip() for part in match.group(2).split(",")):
            for name in inner_names:
                if label and label not in exposed[name] and label not in created:
                    problems.append(f"{match.group(1)} ({label}) over {name}, which has no label {label!r}")
    return problems


# Grafana's built-in variables, as it would fill them for a query (a 1h range, 15s scrapes).
GRAFANA_BUILTINS = {"__rate_interval": "2m", "__interval": "1m", "__range": "1h"}
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def grafana_to_promql(expr: str, values: dict[str, str] | None = None) -> str:
    """Substitutes Grafana's variables the way Grafana would, so that Prometheus can parse the result.

    ``values`` fills the dashboard's own variables (``.+``, their "All", by default); a ``$1`` of
    label_replace is no variable and stays, as Grafana leaves unknown names alone.
    """
    filled = {**GRAFANA_BUILTINS, "instance": ".+", "service": ".+", "slo": ".+", **(values or {})}

    def fill(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return filled.get(name, match.group(0))

    return _VARIABLE.sub(fill, expr)


# ---- the dashboards -------------------------------------------------------------------------------


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


SLO_DASHBOARDS = [p for p in DASHBOARDS if "slo" in load(p).get("tags", [])]
INSTANCE_DASHBOARDS = [p for p in DASHBOARDS if p not in SLO_DASHBOARDS]
OVERVIEW = ROOT / "dashboards" / "burnline-slo-overview.json"
DETAIL = ROOT / "dashboards" / "burnline-slo-detail.json"


def variable_query(variable: dict[str, Any]) -> str:
    query = variable["query"]
    return str(query["query"] if isinstance(query, dict) else query)


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and query variable."""
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} target {target.get('refId')}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            text = variable_query(variable)
            inner = re.fullmatch(r"label_values\((.+),\s*\w+\)", text) or re.fullmatch(
                r"query_result\((.+)\)", text
            )
            yield f"variable {variable['name']}", inner.group(1) if inner else text


@pytest.fixture(scope="module")
def exposed() -> dict[str, frozenset[str]]:
    return exposed_metrics()


def test_there_is_a_pipeline_dashboard() -> None:
    assert ROOT / "dashboards" / "burnline-pipeline.json" in DASHBOARDS


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_dashboard_metadata_and_variables(path: Path) -> None:
    dashboard = load(path)
    assert dashboard["uid"] and dashboard["title"] and dashboard["description"]
    assert 36 <= dashboard["schemaVersion"] <= 41, "schemaVersion of a current Grafana (10-12)"
    assert dashboard.get("id") is None, "a provisioned dashboard must not pin a database id"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == DATASOURCE_UID, variable["name"]
    if path in INSTANCE_DASHBOARDS:
        instance = variables["instance"]
        assert instance["type"] == "query" and instance["multi"] and instance["includeAll"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_every_panel_has_title_description_unit_and_the_datasource_variable(path: Path) -> None:
    problems = []
    for panel in all_panels(load(path)["panels"]):
        title = panel.get("title", "")
        if not title.strip():
            problems.append(f"panel {panel.get('id')}: no title")
        if not panel.get("description", "").strip():
            problems.append(f"{title}: no description")
        if panel["type"] == "row":
            continue
        if panel.get("datasource", {}).get("uid") != DATASOURCE_UID:
            problems.append(f"{title}: datasource is not {DATASOURCE_UID}")
        if not panel.get("targets"):
            problems.append(f"{title}: no query")
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("uid") != DATASOURCE_UID:
                problems.append(f"{title} target {target.get('refId')}: datasource is not {DATASOURCE_UID}")
        if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            problems.append(f"{title}: no unit")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_panels_have_unique_ids_and_do_not_overlap(path: Path) -> None:
    panels = list(all_panels(load(path)["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, f"{panel['title']} is wider than the grid"
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_every_metric_and_label_exists_in_burnline_telemetry(
    path: Path, exposed: dict[str, frozenset[str]]
) -> None:
    """The pipeline dashboard reads burnline's Telemetry only; the SLO dashboards also the SLO series."""
    if path in SLO_DASHBOARDS:
        exposed = slo_series()
    problems = []
    for where, expr in expressions(load(path)):
        names = metric_names(expr)
        if not names:
            problems.append(f"{where}: selects no metric: {expr}")
        problems += [f"{where}: unknown metric {name}" for name in sorted(names - exposed.keys())]
        problems += [f"{where}: {p}" for p in label_problems(expr, exposed)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", INSTANCE_DASHBOARDS, ids=[p.stem for p in INSTANCE_DASHBOARDS])
def test_every_selector_follows_the_instance_variable(path: Path) -> None:
    problems = []
    for panel in all_panels(load(path)["panels"]):
        for target in panel.get("targets", []):
            for name, matchers in selectors(target["expr"]):
                if INSTANCE_MATCHER not in matchers:
                    problems.append(f"{panel['title']}: {name} ignores {INSTANCE_MATCHER}")
    assert not problems, "\n".join(problems)


def test_pipeline_dashboard_shows_every_record_flow_metric(exposed: dict[str, frozenset[str]]) -> None:
    used = set()
    for _, expr in expressions(load(ROOT / "dashboards" / "burnline-pipeline.json")):
        used |= metric_names(expr)
    flow = {
        name
        for name in exposed
        if name.startswith(("burnline_records_", "burnline_queue_", "burnline_export", "burnline_receiver_"))
        or name == "burnline_component_up"
    }
    assert not flow - used, f"metrics no panel shows: {sorted(flow - used)}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian: prometheus)")
@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_every_expression_is_valid_promql(path: Path, tmp_path: Path) -> None:
    # promtool parses rule expressions: wrap each query in a recording rule.
    rules = [
        {"record": f"dashboard:query:{i}", "expr": grafana_to_promql(expr)}
        for i, (_, expr) in enumerate(expressions(load(path)))
    ]
    rule_file = tmp_path / "dashboard-queries.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": path.stem, "rules": rules}]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(rule_file)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---- the SLO dashboards ---------------------------------------------------------------------------

# Grafana's own names that may appear as $name in a query, besides the dashboard's variables.
_BUILTIN_VARIABLES = frozenset(GRAFANA_BUILTINS) | {"__range_s", "__interval_ms", "__timeFilter"}
_RAW_SLO = re.compile(r"^burnline_slo_")


def targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield panel, target


def test_the_slo_series_are_what_burnline_exports() -> None:
    """SLO_METRICS (issue 11's names) against the SLO engine's collector, so a renamed metric or label
    breaks this test rather than the dashboards."""
    exported = {}
    for family in SloMetrics(cast(Any, None)).describe():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        exported[name] = frozenset(getattr(family, "_labelnames", ()))
    assert exported == SLO_METRICS


def test_slo_dashboards_read_what_the_generated_rules_record() -> None:
    """Every slo:* series the dashboards read is recorded by the rules generated for the example SLOs
    (alerts/slos/), with the sloth labels they filter on; their alerts carry sloth_severity."""
    recorded: dict[str, set[str]] = {}
    alert_labels: list[set[str]] = []
    for path in sorted((ROOT / "alerts").rglob("*.yaml")):
        document = yaml.safe_load(path.read_text("utf-8"))
        for group in document.get("groups", []) if isinstance(document, dict) else []:
            for rule in group["rules"]:
                labels = set(rule.get("labels", {}))
                if "record" in rule:
                    recorded.setdefault(rule["record"], set()).update(labels)
                elif "sloth_slo" in rule["expr"]:
                    alert_labels.append(labels)
    assert alert_labels, "no SLO alert rules in alerts/"
    assert all({"severity", "sloth_severity"} <= labels for labels in alert_labels)
    used = {
        name for path in SLO_DASHBOARDS for _, expr in expressions(load(path)) for name in metric_names(expr)
    }
    for name in sorted(n for n in used if n.startswith("slo:")):
        assert name in recorded, f"{name} is not recorded by the generated rules"
        assert {"sloth_service", "sloth_slo"} <= recorded[name], name


def test_the_slo_dashboards_are_overview_and_detail() -> None:
    assert set(SLO_DASHBOARDS) == {OVERVIEW, DETAIL}
    assert len({load(p)["uid"] for p in DASHBOARDS}) == len(DASHBOARDS), "dashboard uids are unique"


@pytest.mark.parametrize("path", SLO_DASHBOARDS, ids=[p.stem for p in SLO_DASHBOARDS])
def test_slo_variables_resolve_in_order_and_extract_a_label(path: Path) -> None:
    """service, then slo (which filters on $service): each a query over the rules' slo:objective:ratio and
    burnline's own burnline_slo_events_total, whose regex picks one label out of query_result's lines."""
    variables = load(path)["templating"]["list"]
    assert [v["name"] for v in variables] == ["datasource", "service", "slo"]
    defined: set[str] = set()
    for variable in variables:
        if variable["type"] == "query":
            text = variable_query(variable)
            assert variable["definition"] == text
            used = {m.group(1) or m.group(2) for m in _VARIABLE.finditer(text)} - {"1"}
            assert used <= defined, f"{variable['name']} uses {used - defined} before it is defined"
            assert re.fullmatch(r"query_result\(.+\)", text), text
            assert "slo:objective:ratio" in metric_names(
                text
            ) and "burnline_slo_events_total" in metric_names(text)
            label = {"service": "sloth_service", "slo": "sloth_slo"}[variable["name"]]
            pattern = re.fullmatch(r"/(.+)/", variable["regex"])
            assert pattern, variable["regex"]
            line = f'{{{label}="checkout-availability"}} 1 1700000000000'
            match = re.search(pattern.group(1), line)
            assert match and match.group(1) == "checkout-availability"
            assert variable["refresh"] == 2, "refreshed with the time range, so new SLOs show up"
        defined.add(variable["name"])
    by_name = {v["name"]: v for v in variables}
    assert by_name["service"]["multi"] and by_name["service"]["includeAll"]
    if path == DETAIL:
        assert not by_name["slo"]["multi"] and not by_name["slo"]["includeAll"], "the detail shows one SLO"
    else:
        assert by_name["slo"]["multi"] and by_name["slo"]["includeAll"]
        assert by_name["slo"]["allValue"] == by_name["service"]["allValue"] == ".+"


@pytest.mark.parametrize("path", SLO_DASHBOARDS, ids=[p.stem for p in SLO_DASHBOARDS])
def test_every_slo_query_follows_the_slo_and_service_variables(path: Path) -> None:
    """Rule series filter on sloth_slo and sloth_service, burnline_slo_* on slo; only variables that
    exist (or Grafana's built-ins) are used."""
    single = path == DETAIL
    slo = '="$slo"' if single else '=~"$slo"'
    problems = []
    for panel, target in targets(load(path)):
        expr = target["expr"]
        used = {m.group(1) or m.group(2) for m in _VARIABLE.finditer(expr)} - {"1"}
        if unknown := used - {"service", "slo"} - _BUILTIN_VARIABLES:
            problems.append(f"{panel['title']}: unknown variables {unknown}")
        for name, matchers in selectors(expr):
            if name in RECORDED or name == "ALERTS":
                if f"sloth_slo{slo}" not in matchers or 'sloth_service=~"$service"' not in matchers:
                    problems.append(f"{panel['title']}: {name}{matchers} ignores $slo or $service")
            elif _RAW_SLO.match(name):
                if f"slo{slo}" not in matchers:
                    problems.append(f"{panel['title']}: {name}{matchers} ignores $slo")
            else:
                problems.append(f"{panel['title']}: {name} is not an SLO series")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", SLO_DASHBOARDS, ids=[p.stem for p in SLO_DASHBOARDS])
def test_slo_dashboards_work_with_many_replicas(path: Path) -> None:
    """burnline_slo_* come from every replica (instance): a panel aggregates them over instances (or keeps
    `instance` to show each one). The recording rules are already sums."""
    problems = []
    for panel, target in targets(load(path)):
        expr = target["expr"]
        names = metric_names(expr)
        aggregated = re.match(r"\s*\(*\s*(sum|max|min|count|avg)\b", expr)
        if any(_RAW_SLO.match(name) for name in names) and not aggregated:
            problems.append(f"{panel['title']}: burnline_slo_* not aggregated over replicas: {expr}")
        counted = any(f in expr for f in ("rate(", "increase(", "group by"))
        if "burnline_slo_events_total" in names and not counted:
            problems.append(f"{panel['title']}: a counter read without rate/increase: {expr}")
    assert not problems, "\n".join(problems)


def test_overview_shows_every_column_the_issue_asks_for() -> None:
    """Objective, SLI (error ratio 5m and 1h), budget left, burn rate over every window and the
    period, and the alerts, each in the SLOs table; the table links every row to the detail."""
    dashboard = load(OVERVIEW)
    (table,) = [p for p in all_panels(dashboard["panels"]) if p["type"] == "table" and p["title"] == "SLOs"]
    used = set()
    for target in table["targets"]:
        assert target["instant"] and target.get("format") == "table", target["refId"]
        assert re.search(r"by \(sloth_service, sloth_slo\)|by \(sloth_slo\)", target["expr"]), target["expr"]
        used |= metric_names(target["expr"])
    windows = {f"slo:sli_error:ratio_rate{w}" for w in policy.WINDOWS}
    assert windows <= used, f"windows without a column: {sorted(windows - used)}"
    assert {
        "slo:objective:ratio",
        "slo:period_burn_rate:ratio",
        "slo:period_error_budget_remaining:ratio",
        "ALERTS",
        "burnline_slo_alert_firing",
    } <= used
    assert {t["id"] for t in table["transformations"]} >= {"merge"}
    # Every value column is named and has a unit.
    renamed = {
        o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
        for o in table["fieldConfig"]["overrides"]
    }
    for target in table["targets"]:
        column = renamed[f"Value #{target['refId']}"]
        assert column["displayName"] and column["unit"], target["refId"]
    (link,) = table["fieldConfig"]["defaults"]["links"]
    assert link["url"].startswith(f"/d/{load(DETAIL)['uid']}/")
    assert "var-slo=${__data.fields.sloth_slo}" in link["url"]
    assert "${datasource:queryparam}" in link["url"] and "${__url_time_range}" in link["url"]
    kinds = {p["type"] for p in all_panels(dashboard["panels"])}
    assert {"table", "stat", "timeseries"} <= kinds


@pytest.mark.parametrize(
    ("source", "target"), [(OVERVIEW, DETAIL), (DETAIL, OVERVIEW)], ids=["to-detail", "back"]
)
def test_overview_and_detail_link_each_other_keeping_the_variables(source: Path, target: Path) -> None:
    links = [link for link in load(source)["links"] if link["url"].startswith(f"/d/{load(target)['uid']}/")]
    assert links, f"{source.stem} has no link to {target.stem}"
    assert all(link["includeVars"] and link["keepTime"] for link in links)


def test_detail_shows_each_alert_condition_against_its_threshold() -> None:
    """One panel per multiwindow condition of a 30-day period (page 14.4 over 1h and 5m, 6 over 6h and
    30m; ticket 3 over 1d and 2h, 1 over 3d and 6h) draws both windows' burn rates, the factor as a
    threshold line, and the factor scaled to the SLO's own period from slo:time_period:days."""
    panels = list(all_panels(load(DETAIL)["panels"]))
    for days in (30, 28, 7):
        period = days * 86400.0
        for thirty, condition in zip(policy.conditions(), policy.conditions(period), strict=True):
            long = f"slo:sli_error:ratio_rate{condition.long_window}"
            short = f"slo:sli_error:ratio_rate{condition.short_window}"
            matching = [
                p
                for p in panels
                if p["type"] == "timeseries"
                and [metric_names(t["expr"]) for t in p["targets"]]
                == [
                    {long, "slo:error_budget:ratio"},
                    {short, "slo:error_budget:ratio"},
                    {"slo:time_period:days"},
                ]
            ]
            assert len(matching) == 1, f"{condition}: {len(matching)} panels"
            (panel,) = matching
            assert condition.severity in panel["title"].lower()
            defaults = panel["fieldConfig"]["defaults"]
            steps = [s["value"] for s in defaults["thresholds"]["steps"]]
            assert any(v is not None and math.isclose(v, thirty.factor) for v in steps), (
                panel["title"],
                steps,
            )
            assert defaults["custom"]["thresholdsStyle"]["mode"] != "off", "the threshold is drawn"
            assert defaults["unit"] == "suffix:\N{MULTIPLICATION SIGN}"
            # The scaled line, evaluated for this period: only numbers and arithmetic are left.
            scaled = re.sub(r"max\(slo:time_period:days\{[^}]*\}\)", str(days), panel["targets"][2]["expr"])
            assert re.fullmatch(r"[\d.\s*/+-]+", scaled), scaled
            assert math.isclose(eval(scaled), condition.factor), (scaled, condition)


def test_detail_shows_budget_burn_down_alert_state_and_events() -> None:
    used_by_kind: dict[str, set[str]] = {}
    for panel, target in targets(load(DETAIL)):
        used_by_kind.setdefault(panel["type"], set()).update(metric_names(target["expr"]))
    assert {"slo:sli_error:ratio_rate5m", "slo:sli_error:ratio_rate1h"} <= used_by_kind["timeseries"]
    assert "slo:period_error_budget_remaining:ratio" in used_by_kind["timeseries"], "budget burn-down"
    assert {"ALERTS", "burnline_slo_alert_firing"} <= used_by_kind["state-timeline"], "alert state"
    assert "burnline_slo_events_total" in used_by_kind["timeseries"], "good and bad events"


# ---- the SLO dashboards against a real Prometheus ---------------------------------------------------

# The SLOs behind the live test, in burnline's config shape (issue 11): checkout burns its budget (5 %
# of its spans fail against a 99.9 % objective: burn rate 50, page and ticket fire), search is healthy
# (0.2 % of its log lines are errors against 99 %; a 28-day period).
LIVE_SLOS: list[dict[str, Any]] = [
    {
        "name": "checkout-availability",
        "service": "checkout",
        "objective": 99.9,
        "description": "Checkout requests that succeed",
        "labels": {"team": "shop"},
        "sli": {"traces": {"match": {"service.name": "checkout"}, "bad": {"status": "error"}}},
        "alerting": {"name": "CheckoutAvailability"},
    },
    {
        "name": "search-errors",
        "service": "search",
        "objective": 99.0,
        "period": "28d",
        "sli": {"logs": {"match": {"service.name": "search"}, "bad": {"severity": ">=error"}}},
    },
]
BURNING = LIVE_SLOS[0]
# Events per second on the first replica (the second gets twice as many), and the share that is bad.
LIVE_TRAFFIC = {"checkout-availability": (40.0, 0.05), "search-errors": (10.0, 0.002)}

# Something that serves burnline_slo_* for LIVE_SLOS from ``count`` replicas until the block ends, and
# yields the host:port of each one's /metrics. The live test runs against each; pointing it at another
# source (a burnline in a container, a cluster) means writing one more of these.
SloReplicas = Callable[[Path, int], AbstractAsyncContextManager[list[str]]]


def synthetic_exposition(replica: int, elapsed: float) -> str:
    """burnline_slo_* as a burnline replica exposes them after ``elapsed`` seconds of LIVE_TRAFFIC: counters
    grow with time (so rate() sees the traffic), gauges hold what those counts mean."""
    families: dict[str, list[str]] = {name: [] for name in SLO_METRICS}
    for spec in LIVE_SLOS:
        name, service = spec["name"], spec["service"]
        per_second, bad_share = LIVE_TRAFFIC[name]
        total = per_second * (replica + 1) * elapsed
        burn = bad_share / (1 - spec["objective"] / 100)
        slo = f'slo="{name}"'
        families["burnline_slo_events_total"] += [
            f'{{{slo},service="{service}",outcome="good"}} {total * (1 - bad_share)}',
            f'{{{slo},service="{service}",outcome="bad"}} {total * bad_share}',
        ]
        families["burnline_slo_burn_rate"] += [f'{{{slo},window="{w}"}} {burn}' for w in policy.WINDOWS]
        families["burnline_slo_error_budget_remaining"].append(
            f"{{{slo}}} {1 - burn * min(elapsed / 86400, 1)}"
        )
        families["burnline_slo_objective"].append(f"{{{slo}}} {spec['objective'] / 100}")
        families["burnline_slo_alert_firing"] += [
            f'{{{slo},severity="page"}} {int(burn > 14.4)}',
            f'{{{slo},severity="ticket"}} {int(burn > 3)}',
        ]
        families["burnline_slo_late_events_total"].append(f"{{{slo}}} {elapsed * 0.1}")
    lines = []
    for family, samples in families.items():
        kind = "counter" if family.endswith("_total") else "gauge"
        lines.append(f"# TYPE {family.removesuffix('_total')} {kind}")
        lines += [f"{family}{sample}" for sample in samples]
    return "\n".join(lines) + "\n"


@asynccontextmanager
async def synthetic_replicas(_: Path, count: int) -> AsyncIterator[list[str]]:
    """HTTP servers on loopback, each serving synthetic_exposition on /metrics as one replica would."""
    started = time.monotonic()
    runners = []
    try:
        for replica in range(count):

            async def metrics(_: web.Request, replica: int = replica) -> web.Response:
                text = synthetic_exposition(replica, time.monotonic() - started)
                return web.Response(text=text, content_type="text/plain", charset="utf-8")

            app = web.Application()
            app.router.add_get("/metrics", metrics)
            runner = web.AppRunner(app)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield [f"127.0.0.1:{r.addresses[0][1]}" for r in runners]
    finally:
        for runner in runners:
            await runner.cleanup()


def emit_search_logs(port: int, good: int, bad: int) -> None:
    """search's log lines through Fluent Forward, from the Python Fluent client (blocking)."""
    log = sender.FluentSender("app", host="127.0.0.1", port=port, nanosecond_precision=True)
    try:
        for i in range(good + bad):
            level = "error" if i < bad else "info"
            record = {"service.name": "search", "level": level, "message": f"GET /search {i}"}
            assert log.emit("search", record), log.last_error
    finally:
        log.close()


async def post_checkout_spans(session: aiohttp.ClientSession, port: int, ok: int, errors: int) -> None:
    """checkout's server spans through OTLP/HTTP (JSON), ``errors`` of them with an error status."""
    now = time.time_ns()
    spans = [
        {
            "traceId": os.urandom(16).hex(),
            "spanId": os.urandom(8).hex(),
            "name": "POST /checkout",
            "kind": 2,
            "startTimeUnixNano": str(now - 20_000_000),
            "endTimeUnixNano": str(now),
            "status": {"code": 2 if i < errors else 0},
        }
        for i in range(ok + errors)
    ]
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]}
    body = {
        "resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}]}]
    }
    async with session.post(f"http://127.0.0.1:{port}/v1/traces", json=body) as response:
        assert response.status == 200, await response.text()


@dataclass
class Sent:
    good: int = 0
    bad: int = 0

    def next(self, count: int, bad_share: float) -> tuple[int, int]:
        """(good, bad) for the next ``count`` events, so that the bad share overall stays ``bad_share``."""
        bad = math.floor((self.good + self.bad + count) * bad_share) - self.bad
        self.good += count - bad
        self.bad += bad
        return count - bad, bad


@asynccontextmanager
async def burnline_replicas(directory: Path, count: int) -> AsyncIterator[list[str]]:
    """Real burnline Services in this process, each counting LIVE_SLOS, fed with LIVE_TRAFFIC through
    their receivers until the block ends: checkout's spans over OTLP/HTTP, search's logs over Fluent
    Forward. Yields each one's admin endpoint, whose /metrics carries burnline_slo_*."""
    async with AsyncExitStack() as stack:
        ports = []
        for replica in range(count):
            port = {"forward": free_port(), "otlp": free_port(), "admin": free_port()}
            config = {
                "receivers": {
                    "forward": {"endpoint": f"127.0.0.1:{port['forward']}", "heartbeat": False},
                    "otlp": {"grpc": None, "http": {"endpoint": f"127.0.0.1:{port['otlp']}"}},
                },
                "exporters": {"local": {"path": str(directory / f"replica-{replica}" / "local.db")}},
                "service": {
                    "admin": {"endpoint": f"127.0.0.1:{port['admin']}"},
                    "pipelines": {
                        "logs": {"receivers": ["forward"], "exporters": ["local"]},
                        "traces": {"receivers": ["otlp"], "exporters": ["local"]},
                    },
                },
                "slos": LIVE_SLOS,
                "alerting": {"evaluation_interval": "0.5s"},
            }
            await stack.enter_async_context(running_service(config, str(directory / f"replica-{replica}")))
            ports.append(port)
        session = await stack.enter_async_context(aiohttp.ClientSession())
        sent = [{name: Sent() for name in LIVE_TRAFFIC} for _ in ports]
        interval = 0.5

        async def send_traffic() -> None:
            # Bounded: a test's Prometheus needs a minute at most; the block cancels it sooner.
            for _ in range(int(300 / interval)):
                for replica, port in enumerate(ports):
                    for name, (per_second, bad_share) in LIVE_TRAFFIC.items():
                        good, bad = sent[replica][name].next(
                            round(per_second * (replica + 1) * interval), bad_share
                        )
                        if name == "checkout-availability":
                            await post_checkout_spans(session, port["otlp"], good, bad)
                        else:
                            await asyncio.to_thread(emit_search_logs, port["forward"], good, bad)
                await asyncio.sleep(interval)

        traffic = asyncio.create_task(send_traffic())
        try:
            yield [f"127.0.0.1:{port['admin']}" for port in ports]
        finally:
            traffic.cancel()
            with suppress(asyncio.CancelledError):
                await traffic
        if traffic.done() and not traffic.cancelled() and traffic.exception():
            raise AssertionError("sending traffic failed") from traffic.exception()


def generated_rules(slos: list[dict[str, Any]], directory: Path) -> Path:
    """The rules `burnline slo rules` writes for these SLOs (loaded through the config, as the CLI does)."""
    config = parse_config(
        {
            "receivers": {"otlp": {}},
            "exporters": {"local": {"path": str(directory / "local.db")}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["local"]}}},
            "slos": slos,
        },
        str(directory / "burnline.yaml"),
        env={},
    )
    path = directory / "burnline-slos.rules.yaml"
    path.write_text(yaml.safe_dump(generate_rules(load_slos(config)), sort_keys=False))
    return path


async def returns_data(prometheus: RealPrometheus, expr: str) -> bool:
    """Runs an instant query; a query Prometheus cannot parse fails the test (its bad_data error shows)."""
    return bool(await prometheus.query(expr))


@needs_prometheus
@pytest.mark.parametrize("replicas", [synthetic_replicas, burnline_replicas], ids=["synthetic", "burnline"])
async def test_every_slo_dashboard_query_returns_data_from_a_real_prometheus(
    tmp_path: Path, replicas: SloReplicas
) -> None:
    """A real Prometheus scrapes two replicas' burnline_slo_* and evaluates the rules generated for their
    SLOs; every query of both SLO dashboards and of their variables (variables filled as Grafana would,
    with the SLO that burns) parses and returns data, and the variables list every SLO and service."""
    async with AsyncExitStack() as stack:
        targets = await stack.enter_async_context(replicas(tmp_path, 2))
        rule_file = generated_rules(LIVE_SLOS, tmp_path)

        def config(_: int) -> dict[str, Any]:
            return {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rule_file)],
                "scrape_configs": [{"job_name": "burnline", "static_configs": [{"targets": targets}]}],
            }

        prometheus = await stack.enter_async_context(real_prometheus(tmp_path / "prometheus", config))
        values = {"slo": BURNING["name"], "service": BURNING["service"]}
        queries = {
            f"{path.stem}: {where}": grafana_to_promql(expr, values)
            for path in SLO_DASHBOARDS
            for where, expr in expressions(load(path))
        }
        assert len(queries) > 40
        empty = list(queries)
        for _ in range(60):  # about a minute: scrapes and rule evaluations every second
            empty = [where for where in empty if not await returns_data(prometheus, queries[where])]
            if not empty:
                break
            await asyncio.sleep(1)
        assert not empty, (
            "no data:\n" + "\n".join(f"{w}: {queries[w]}" for w in empty) + prometheus.log_tail()
        )

        # Both alerts of the burning SLO fire, in Prometheus and (max over replicas) in burnline.
        for severity in ("page", "ticket"):
            for expr in (
                f'ALERTS{{alertstate="firing", sloth_slo="{BURNING["name"]}", sloth_severity="{severity}"}}',
                f'max(burnline_slo_alert_firing{{slo="{BURNING["name"]}", severity="{severity}"}}) == 1',
            ):
                await prometheus.wait_for(expr, timeout=30)

        # The variables resolve to every SLO and service, through the regex Grafana applies.
        for path in SLO_DASHBOARDS:
            for variable in load(path)["templating"]["list"]:
                if variable["type"] != "query":
                    continue
                inner = re.fullmatch(r"query_result\((.+)\)", variable_query(variable))
                assert inner
                # One line per series, as Grafana's query_result writes them: {name="value", ...} value time.
                lines = [
                    "{" + ", ".join(f'{k}="{v}"' for k, v in series["metric"].items()) + "} 1 0"
                    for series in await prometheus.query(grafana_to_promql(inner.group(1)))
                ]
                regex = variable["regex"].strip("/")
                found = {m.group(1) for line in lines if (m := re.search(regex, line))}
                key = "service" if variable["name"] == "service" else "name"
                assert found == {s[key] for s in LIVE_SLOS}, (path.stem, variable["name"], lines)


# ---- the helpers must see what they claim to see --------------------------------------------------


def test_metric_names_ignores_functions_labels_and_durations() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, component) (rate(burnline_export_duration_seconds_bucket"
        '{instance=~"$instance", reason!="x or y"}[$__rate_interval]))) / on (instance) group_left '
        "sum(up) > 0 unless vector(0) or absent(burnline_queue_bytes)"
    )
    assert metric_names(expr) == {"burnline_export_duration_seconds_bucket", "up", "burnline_queue_bytes"}


def test_label_problems_catch_missing_labels() -> None:
    exposed = exposed_metrics()
    assert (
        label_problems('sum by (component) (rate(burnline_records_received_total{job="b"}[5m]))', exposed)
        == []
    )
    assert label_problems('burnline_receiver_errors_total{signal="logs"}', exposed) == [
        "burnline_receiver_errors_total has no label 'signal'"
    ]
    assert label_problems("sum by (reason) (burnline_queue_bytes)", exposed) == [
        "by (reason) over burnline_queue_bytes, which has no label 'reason'"
    ]


def test_label_problems_accept_labels_that_label_replace_creates() -> None:
    exposed = slo_series()
    created = (
        'max by (sloth_slo) (label_replace(burnline_slo_alert_firing, "sloth_slo", "$1", "slo", "(.+)"))'
    )
    assert label_problems(created, exposed) == []
    assert label_problems("max by (sloth_slo) (burnline_slo_alert_firing)", exposed) == [
        "by (sloth_slo) over burnline_slo_alert_firing, which has no label 'sloth_slo'"
    ]


def test_grafana_to_promql_fills_variables_but_not_label_replace_references() -> None:
    expr = 'label_replace(x{slo=~"$slo"}[$__rate_interval], "a", "$1", "b", "(.+)") [${__range}]'
    assert grafana_to_promql(expr, {"slo": "checkout"}) == (
        'label_replace(x{slo=~"checkout"}[2m], "a", "$1", "b", "(.+)") [1h]'
    )


# ---- many SLOs ------------------------------------------------------------------------------------

# 25 SLOs of one service, burning at 0.5, 1.0 ... 12.5 times their budget, bad events and late events
# in the same order: the overview's drawn panels must pick the ten at the top (or bottom) of each.
MANY_SLOS: list[dict[str, Any]] = [
    {
        "name": f"many-{i:02d}",
        "service": "many",
        "objective": 99.0,
        "sli": {"logs": {"match": {"service.name": "many"}, "bad": {"severity": ">=error"}}},
    }
    for i in range(25)
]
DRAWN = {  # panel id -> (label naming the SLO, whether the top ten are the highest values)
    9: ("sloth_slo", False),
    10: ("sloth_slo", True),
    11: ("slo", True),
    13: ("slo", True),
    14: ("slo", True),
}


def many_exposition(elapsed: float) -> str:
    lines: list[str] = []
    events, burn_rates, late = [], [], []
    for i, spec in enumerate(MANY_SLOS):
        slo = f'slo="{spec["name"]}"'
        bad_share = 0.005 * (i + 1)  # burn rate (i + 1) / 2 against a 1 % budget
        total = 100.0 * elapsed
        events += [
            f'burnline_slo_events_total{{{slo},service="many",outcome="good"}} {total * (1 - bad_share)}',
            f'burnline_slo_events_total{{{slo},service="many",outcome="bad"}} {total * bad_share}',
        ]
        burn_rates += [
            f'burnline_slo_burn_rate{{{slo},window="{w}"}} {bad_share / 0.01}' for w in policy.WINDOWS
        ]
        late.append(f"burnline_slo_late_events_total{{{slo}}} {elapsed * (i + 1)}")
    lines += ["# TYPE burnline_slo_events counter", *events]
    lines += ["# TYPE burnline_slo_burn_rate gauge", *burn_rates]
    lines += ["# TYPE burnline_slo_late_events counter", *late]
    return "\n".join(lines) + "\n"


def _names_all(label: str, result: list[dict[str, Any]]) -> bool:
    return len({series["metric"][label] for series in result}) == len(MANY_SLOS)


@needs_prometheus
async def test_the_overviews_drawn_panels_keep_to_the_ten_slos_at_the_top(tmp_path: Path) -> None:
    """With every SLO selected, each time-series panel of the overview draws ten SLOs, not every one:
    the ten with the least budget, the fastest burn, the most bad or late events. A real Prometheus
    scrapes 25 SLOs' series and evaluates their generated rules."""
    started = time.monotonic()

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=many_exposition(time.monotonic() - started), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        target = f"127.0.0.1:{runner.addresses[0][1]}"
        rule_file = generated_rules(MANY_SLOS, tmp_path)

        def config(_: int) -> dict[str, Any]:
            return {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rule_file)],
                "scrape_configs": [{"job_name": "burnline", "static_configs": [{"targets": [target]}]}],
            }

        async with real_prometheus(tmp_path / "prometheus", config) as prometheus:
            panels = {p["id"]: p for p in all_panels(load(OVERVIEW)["panels"])}
            for panel_id, (label, highest) in DRAWN.items():
                (target_query,) = panels[panel_id]["targets"]
                expr = grafana_to_promql(target_query["expr"])
                # Every SLO has data once the rules ran over a few scrapes; then ten are drawn.
                everything = re.sub(r" and on \(.*", "", expr)
                await prometheus.wait_for(everything, functools.partial(_names_all, label), 60)
                drawn = {s["metric"][label] for s in await prometheus.query(expr)}
                order = sorted(s["name"] for s in MANY_SLOS)
                expected = set(order[-10:] if highest else order[:10])
                # Budgets fall fastest for the highest burners: the least budget is the same ten.
                if panel_id == 9:
                    expected = set(order[-10:])
                assert drawn == expected, (panels[panel_id]["title"], sorted(drawn))
    finally:
        await runner.cleanup()
