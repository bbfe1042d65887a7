"""SLO specs: the issue's config shape loads; every kind of mistake is reported as file: key.path: problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.config import ConfigError, parse_config
from collector.slo.conditions import parse_comparison, parse_severity
from collector.slo.selector import SelectorError, parse_selector
from collector.slo.spec import load_slos

ISSUE_SLOS: list[dict[str, Any]] = yaml.safe_load(
    """
- name: checkout-availability
  service: checkout
  objective: 99.9
  period: 30d
  description: Checkout requests that succeed
  labels: {team: shop}
  sli:
    traces:
      match: {service.name: checkout, span.kind: server}
      bad: {status: error}
  alerting:
    name: CheckoutAvailability
    labels: {category: availability}
    annotations: {runbook_url: https://runbooks.example/checkout}
    page: {labels: {severity: page}}
    ticket: {labels: {severity: ticket}}
- name: checkout-log-errors
  service: checkout
  objective: 99.5
  sli:
    logs:
      match: {service.name: checkout, k8s.namespace.name: shop}
      bad: {severity: ">=error"}
- name: api-latency
  service: api
  objective: 99
  period: 28d
  sli:
    metrics:
      total: 'http_request_duration_seconds_count{job="api"}'
      good: 'http_request_duration_seconds_bucket{job="api",le="0.3"}'
"""
)


def config(slos: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {}},
        "exporters": {"local": {}},
        "service": {"pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["local"]}}},
        "slos": ISSUE_SLOS if slos is None else slos,
        **extra,
    }


def problems(slo_overrides: dict[str, Any]) -> str:
    slo = {**ISSUE_SLOS[0], **slo_overrides}
    with pytest.raises(ConfigError) as caught:
        parse_config(config([slo]), source="burnline.yaml")
    return str(caught.value)


def test_the_issue_shape_loads_with_defaults() -> None:
    cfg = parse_config(
        config(alerting={"alertmanagers": [{"url": "http://am:9093"}], "evaluation_interval": "5s"}),
        source="burnline.yaml",
    )
    slos = load_slos(cfg)
    assert [s.name for s in slos] == ["checkout-availability", "checkout-log-errors", "api-latency"]
    first, logs, latency = slos
    assert first.sli.kind == "traces" and logs.sli.kind == "logs" and latency.sli.kind == "metrics"
    assert first.objective_ratio == pytest.approx(0.999)
    assert first.error_budget_ratio == pytest.approx(0.001)
    assert first.period == 30 * 86400 and latency.period == 28 * 86400
    assert logs.period == 30 * 86400  # the default
    assert first.alert_name == "CheckoutAvailability"
    assert logs.alert_name == "CheckoutLogErrors"  # CamelCase of the name
    assert logs.alerting.page.enabled and logs.alerting.ticket.enabled
    assert first.source == "burnline.yaml"
    assert cfg.alerting.evaluation_interval == 5.0
    assert cfg.alerting.resend_delay == 60.0
    assert cfg.alerting.lateness == 300.0


def test_slos_without_an_alerting_section_share_one_default() -> None:
    base = {k: v for k, v in ISSUE_SLOS[1].items() if k != "alerting"}
    named = {**base, "name": "named", "alerting": {"name": "OwnName", "page": {"enabled": False}}}
    one, two, own = load_slos(
        parse_config(config([{**base, "name": "one"}, {**base, "name": "two"}, named]), source="x")
    )
    assert one.alerting is two.alerting  # not a copy each: ten thousand SLOs kept 16MiB of them
    assert (one.alert_name, two.alert_name) == ("One", "Two")
    assert one.alerting.name == ""  # the shared default is never written to
    assert own.alerting is not one.alerting
    assert own.alert_name == "OwnName" and not own.alerting.page.enabled and one.alerting.page.enabled


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"objective": 100}, "slos[0].objective: objective is a percentage strictly between 0 and 100"),
        ({"objective": 0}, "slos[0].objective: objective is a percentage strictly between 0 and 100"),
        ({"period": "1d"}, "slos[0].period: an SLO period must be at least 3d"),
        ({"sli": {"spans": {"bad": {"status": "error"}}}}, "slos[0].sli: unknown SLI kind 'spans'"),
        ({"sli": {}}, "slos[0].sli: an SLI has exactly one of traces, logs, metrics, prometheus"),
        (
            {"sli": {"metrics": {"total": "http_requests_total{job=}", "bad": "x_total"}}},
            "slos[0].sli.metrics.total: selector 'http_requests_total{job=}': expected a quoted string",
        ),
        (
            {"sli": {"metrics": {"total": "rate(x_total[5m])", "bad": "y_total"}}},
            "only a series selector is allowed here",
        ),
        ({"sli": {"metrics": {"total": "x_total"}}}, "give exactly one of good and bad"),
        (
            {"sli": {"traces": {"bad": {"status": "broken"}}}},
            "status: 'broken' is not one of error, ok, unset",
        ),
        ({"sli": {"traces": {"bad": {"latency_over": "fast"}}}}, "'fast' is not a duration"),
        ({"sli": {"logs": {"bad": {"severity": ">=loud"}}}}, "'loud' is not a level"),
        ({"sli": {"logs": {"bad": {"body": {"regex": "("}}}}}, "body.regex: invalid regex"),
        ({"sli": {"logs": {"bad": {"http.response.status_code": ">=abc"}}}}, ">= needs a number"),
        ({"sli": {"logs": {"bad": {}}}}, "slos[0].sli.logs.bad"),
        ({"name": "has space"}, "slos[0].name: 'has space' is not a valid SLO name"),
        ({"labels": {"bad-label": "x"}}, "slos[0].labels: 'bad-label' is not a Prometheus label name"),
        ({"colour": "red"}, "slos[0].colour: unknown key"),
    ],
)
def test_invalid_specs_name_file_path_and_problem(override: dict[str, Any], expected: str) -> None:
    message = problems(override)
    assert message.startswith("burnline.yaml: ")
    assert expected in message


def test_duplicate_names_inline_and_across_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"slos: duplicate SLO name 'checkout-log-errors'"):
        parse_config(config([ISSUE_SLOS[1], ISSUE_SLOS[1]]), source="burnline.yaml")
    (tmp_path / "slos").mkdir()
    (tmp_path / "slos" / "more.yaml").write_text(yaml.safe_dump({"slos": [ISSUE_SLOS[1]]}))
    cfg_file = tmp_path / "burnline.yaml"
    cfg = parse_config(config(slo_files=["slos/*.yaml"]), source=str(cfg_file))
    cfg_file.write_text("# present so that globs are relative to it\n")
    with pytest.raises(ConfigError) as caught:
        load_slos(cfg)
    assert f"{tmp_path / 'slos' / 'more.yaml'}: duplicate SLO name 'checkout-log-errors'" in str(caught.value)


def test_slo_files_relative_to_the_config_and_their_errors(tmp_path: Path) -> None:
    (tmp_path / "slos").mkdir()
    (tmp_path / "slos" / "a.yaml").write_text(yaml.safe_dump([{**ISSUE_SLOS[2], "name": "from-file"}]))
    (tmp_path / "slos" / "b.yaml").write_text(
        yaml.safe_dump({"slos": [{**ISSUE_SLOS[2], "name": "broken", "objective": 120}]})
    )
    cfg_file = tmp_path / "burnline.yaml"
    cfg_file.write_text("# placeholder\n")
    cfg = parse_config(config([], slo_files=["slos/a.yaml"]), source=str(cfg_file))
    assert [s.name for s in load_slos(cfg)] == ["from-file"]
    assert load_slos(cfg)[0].source == str(tmp_path / "slos" / "a.yaml")
    cfg = parse_config(config([], slo_files=["slos/*.yaml", "missing.yaml"]), source=str(cfg_file))
    with pytest.raises(ConfigError) as caught:
        load_slos(cfg)
    message = str(caught.value)
    assert f"{tmp_path / 'slos' / 'b.yaml'}: slos[0].objective: objective is a percentage" in message
    assert f"{cfg_file}: slo_files[1]: file 'missing.yaml' does not exist" in message
    (tmp_path / "slos" / "b.yaml").write_text("slos: [unclosed\n")
    cfg = parse_config(config([], slo_files=["slos/b.yaml"]), source=str(cfg_file))
    with pytest.raises(ConfigError, match=r"b\.yaml: line \d+, column \d+: YAML syntax error"):
        load_slos(cfg)


def test_alerting_config_validation() -> None:
    with pytest.raises(ConfigError, match=r"alerting\.alertmanagers\[0\]: Value error|must start with http"):
        parse_config(config(alerting={"alertmanagers": [{"url": "am:9093"}]}), source="burnline.yaml")
    with pytest.raises(ConfigError, match=r"alerting\.evaluation_interval"):
        parse_config(config(alerting={"evaluation_interval": 0}), source="burnline.yaml")


def test_selector_grammar() -> None:
    selector = parse_selector('http_request_duration_seconds_bucket{job="api", le="0.3", code!~"5..",}')
    assert selector.metric == "http_request_duration_seconds_bucket"
    assert selector.matches({"job": "api", "le": "0.3", "code": "200"})
    assert not selector.matches({"job": "api", "le": "0.3", "code": "503"})
    assert not selector.matches({"job": "web", "le": "0.3"})
    assert parse_selector('{__name__="up", job=~"a|b"}').metric == "up"
    assert parse_selector('{"http.server.duration", x="y"}').metric == "http.server.duration"
    assert parse_selector("x{a='it\\'s'}").matchers[0].value == "it's"
    assert parse_selector("x{a!=``}").matches({"a": "z"})
    for bad in ("", "x{", "x{a}", 'x{a="b" c="d"}', 'x{a=~"("}', "{a='b'}", "x offset 5m", 'x{__name__="y"}'):
        with pytest.raises(SelectorError):
            parse_selector(bad)


def test_conditions() -> None:
    assert parse_comparison(">=500").test(503) and parse_comparison(">=500").test("500")
    assert not parse_comparison(">=500").test(499) and not parse_comparison(">=500").test("n/a")
    assert parse_comparison("<0.3").test(0.25)
    assert parse_comparison("==GET").test("GET") and parse_comparison("!=GET").test("POST")
    assert parse_comparison(500).test(500) and parse_comparison(500).test("500")
    assert parse_comparison(True).test(True) and not parse_comparison(True).test(False)
    assert parse_comparison("=~5..").test(503) and parse_comparison("!~5..").test(200)
    assert parse_comparison("!=x").test(None) and not parse_comparison("==x").test(None)
    error = parse_severity(">=error")
    assert [error.test(n) for n in (0, 9, 13, 16, 17, 20, 21, 24)] == [False] * 4 + [True] * 4
    warn = parse_severity("warning")  # plain: the WARN range
    assert [warn.test(n) for n in (12, 13, 16, 17)] == [False, True, True, False]
    assert parse_severity("<info").test(5) and not parse_severity("<info").test(9)
    assert parse_severity(">warn").test(17) and not parse_severity(">warn").test(16)
