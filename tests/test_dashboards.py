"""dashboards/: every panel is titled, explained, has a unit and reads the ``${datasource}`` variable, and
every expression is valid PromQL over metrics that burnline really exposes, with labels they really have.

The PromQL helpers here (metric names and the labels an expression uses) are shared with test_alerts.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.telemetry import Telemetry

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
DATASOURCE_UID = "${datasource}"
INSTANCE_MATCHER = 'instance=~"$instance"'
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"instance", "job"})

# ---- what burnline exposes ------------------------------------------------------------------------


def exposed_metrics() -> dict[str, frozenset[str]]:
    """Every series name burnline's /metrics can carry, with its label names.

    Read from a fresh Telemetry's registry, so a renamed metric or label breaks the dashboards'
    and alerts' tests rather than their panels and rules in production. Counters are exposed with
    ``_total``; a histogram as ``_bucket`` (with ``le``), ``_sum`` and ``_count``.
    """
    telemetry = Telemetry()
    labels_by_family: dict[str, frozenset[str]] = {}
    for attribute in vars(telemetry).values():
        name = getattr(attribute, "_name", None)
        if name is not None:
            labels_by_family[name] = frozenset(attribute._labelnames)
    exposed: dict[str, frozenset[str]] = {}
    for family in telemetry.registry.collect():
        labels = labels_by_family[family.name] | TARGET_LABELS
        if family.type == "counter":
            exposed[f"{family.name}_total"] = labels
        elif family.type == "histogram":
            exposed[f"{family.name}_bucket"] = labels | {"le"}
            exposed[f"{family.name}_sum"] = labels
            exposed[f"{family.name}_count"] = labels
        else:
            exposed[family.name] = labels
    return exposed


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
        for label in (part.strip() for part in match.group(2).split(",")):
            for name in inner_names:
                if label and label not in exposed[name]:
                    problems.append(f"{match.group(1)} ({label}) over {name}, which has no label {label!r}")
    return problems


def grafana_to_promql(expr: str) -> str:
    """Substitutes Grafana's variables the way Grafana would, so that promtool can parse the result."""
    return expr.replace("$__rate_interval", "2m").replace("$__interval", "1m").replace("$instance", ".+")


# ---- the dashboards -------------------------------------------------------------------------------


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and query variable."""
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} target {target.get('refId')}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            inner = re.fullmatch(r"label_values\((.+),\s*\w+\)", text)
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
    instance = variables["instance"]
    assert instance["type"] == "query" and instance["multi"] and instance["includeAll"]
    assert instance["datasource"]["uid"] == DATASOURCE_UID


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
    problems = []
    for where, expr in expressions(load(path)):
        names = metric_names(expr)
        if not names:
            problems.append(f"{where}: selects no metric: {expr}")
        problems += [f"{where}: unknown metric {name}" for name in sorted(names - exposed.keys())]
        problems += [f"{where}: {p}" for p in label_problems(expr, exposed)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
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
