"""alerts/: burnline's own alerting rules load in Prometheus, fire on the synthetic series of their unit
tests (promtool test rules), and each carries a severity, an explanation and a runbook link.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.config.types import parse_duration
from tests.project.test_dashboards import exposed_metrics, label_problems, metric_names

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "alerts"
RULE_FILES = sorted(ALERTS.glob("*.yaml"))
UNIT_TESTS = sorted((ALERTS / "tests").glob("*.yaml"))
RUNBOOK = "https://github.com/burnline/burnline/blob/main/README.md#runbook-{}"
SEVERITIES = {"critical", "warning", "info"}
# Series that Prometheus itself writes for every target, besides burnline's own.
PROMETHEUS_SERIES = {"up"}

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (Debian: prometheus; `make system-deps`)"
)


def alert_rules() -> list[dict[str, Any]]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text("utf-8"))["groups"]:
            rules += [rule for rule in group["rules"] if "alert" in rule]
    return rules


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], check=False, capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_there_are_rule_files_and_unit_tests() -> None:
    assert ALERTS / "burnline.rules.yaml" in RULE_FILES
    assert UNIT_TESTS, "alerts/tests/ has no promtool unit test"


@needs_promtool
def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", *map(str, UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_a_wrong_expectation_fails_the_unit_tests(tmp_path: Path) -> None:
    """The unit tests compare exactly what fires, so a changed alert cannot slip through them."""
    source = ALERTS / "tests" / "burnline.rules.test.yaml"
    text = source.read_text("utf-8").replace("severity: critical", "severity: info", 1)
    broken = tmp_path / source.name
    broken.write_text(text.replace("../burnline.rules.yaml", str(ALERTS / "burnline.rules.yaml")))
    result = promtool("test", "rules", str(broken))
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_every_alert_is_proven_to_fire_by_a_unit_test() -> None:
    fired = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text("utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert len(fired & names) >= 2
    assert not names - fired, f"alerts no unit test shows firing: {sorted(names - fired)}"


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))


def test_every_alert_has_severity_annotations_runbook_and_for() -> None:
    problems = []
    for rule in alert_rules():
        name = rule["alert"]
        if not re.fullmatch(r"Burnline[A-Z][A-Za-z]+", name):
            problems.append(f"{name}: alert names are Burnline<CamelCase>")
        if rule.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity label must be one of {sorted(SEVERITIES)}")
        annotations = rule.get("annotations", {})
        for key in ("summary", "description"):
            if not str(annotations.get(key, "")).strip():
                problems.append(f"{name}: no {key} annotation")
        if annotations.get("runbook_url") != RUNBOOK.format(name.lower()):
            problems.append(f"{name}: runbook_url must be {RUNBOOK.format(name.lower())}")
        # A "for" rides out one failed scrape or a rollout's blip before anyone is paged.
        if parse_duration(rule.get("for", "0s")) < 60:
            problems.append(f"{name}: 'for' must be at least 1m")
    assert not problems, "\n".join(problems)


def test_every_metric_and_label_exists_in_burnline_telemetry() -> None:
    exposed = exposed_metrics()
    known = exposed.keys() | PROMETHEUS_SERIES
    problems = []
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        if not names:
            problems.append(f"{rule['alert']}: selects no metric")
        problems += [f"{rule['alert']}: unknown metric {n}" for n in sorted(names - known)]
        problems += [f"{rule['alert']}: {p}" for p in label_problems(rule["expr"], exposed)]
    assert not problems, "\n".join(problems)


def test_the_required_conditions_are_covered() -> None:
    """Down instances and components, dead letters and drops, full queues, refusals, bad input, and
    records accepted but never exported: each is read by some alert."""
    used = {name for rule in alert_rules() for name in metric_names(rule["expr"])}
    for series in (
        "up",
        "burnline_component_up",
        "burnline_records_failed_total",
        "burnline_records_dropped_total",
        "burnline_queue_capacity_bytes",
        "burnline_records_refused_total",
        "burnline_receiver_errors_total",
        "burnline_records_exported_total",
    ):
        assert series in used, f"no alert reads {series}"
