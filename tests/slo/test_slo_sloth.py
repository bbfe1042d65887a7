"""collector/slo/sloth.py: Sloth ``prometheus/v1`` files become SLOSpecs with ``prometheus`` SLIs, as
Sloth itself reads them (labels merged, per-alert labels, disabled alerts, events and raw SLIs), and
what burnline cannot honour is refused with the key path that says why."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.config import load_config
from collector.config.loader import ConfigError
from collector.slo.rules import generate_rules
from collector.slo.sloth import RAW_TOTAL, SlothError, read_sloth, render_window
from collector.slo.spec import load_slo_file, load_slos

ROOT = Path(__file__).resolve().parents[2]
SLOTH_EXAMPLE = ROOT / "deploy" / "slos" / "sloth-example.yaml"

SPEC: dict[str, Any] = {
    "version": "prometheus/v1",
    "service": "myservice",
    "labels": {"owner": "myteam", "tier": 2},
    "slos": [
        {
            "name": "requests-availability",
            "objective": 99.9,
            "description": "Requests without a server error.",
            "labels": {"category": "availability"},
            "sli": {
                "events": {
                    "error_query": 'sum(rate(http_requests_total{job="my",code=~"5.."}[{{.window}}]))',
                    "total_query": 'sum(rate(http_requests_total{job="my"}[{{ .window }}]))',
                }
            },
            "alerting": {
                "name": "MyServiceHighErrorRate",
                "labels": {"category": "availability"},
                "annotations": {"runbook": "https://runbooks.example/my"},
                "page_alert": {"labels": {"severity": "pageteam", "routing_key": "myteam"}},
                "ticket_alert": {"labels": {"severity": "slack"}, "annotations": {"channel": "#my"}},
            },
        },
        {
            "name": "latency",
            "objective": 99,
            "sli": {"raw": {"error_ratio_query": "my:latency_error:ratio_rate{{.window}}"}},
            "alerting": {"name": "MyServiceLatency", "ticket_alert": {"disable": True}},
        },
    ],
}


def spec(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(SPEC)
    data.update(changes)
    return data


def problems_of(data: Any) -> list[str]:
    with pytest.raises(SlothError) as caught:
        read_sloth(data, "slos/my.yaml")
    assert caught.value.source == "slos/my.yaml"
    return caught.value.problems


def test_a_sloth_file_becomes_prometheus_slis() -> None:
    availability, latency = read_sloth(spec(), "slos/my.yaml")
    assert availability.name == "requests-availability"
    assert availability.service == "myservice"
    assert availability.objective == 99.9
    assert availability.period == 30 * 86400  # Sloth's default period
    assert availability.description == "Requests without a server error."
    assert availability.source == "slos/my.yaml"
    # The file's labels merged with the SLO's, integers as Prometheus strings.
    assert availability.labels == {"owner": "myteam", "tier": "2", "category": "availability"}
    assert availability.sli.kind == "prometheus"
    assert availability.sli.prometheus is not None
    assert availability.sli.prometheus.error_query == SPEC["slos"][0]["sli"]["events"]["error_query"]
    assert availability.alert_name == "MyServiceHighErrorRate"
    assert availability.alerting.annotations == {"runbook": "https://runbooks.example/my"}
    assert availability.alerting.page.enabled and availability.alerting.ticket.enabled
    assert availability.alerting.page.labels == {"severity": "pageteam", "routing_key": "myteam"}
    assert availability.alerting.ticket.annotations == {"channel": "#my"}
    # A raw ratio: the query over 1.
    assert latency.sli.prometheus is not None
    assert latency.sli.prometheus.error_query == "my:latency_error:ratio_rate{{.window}}"
    assert latency.sli.prometheus.total_query == RAW_TOTAL
    assert latency.alerting.page.enabled and not latency.alerting.ticket.enabled


def test_the_rules_merge_alert_labels_as_sloth_does() -> None:
    groups = {g["name"]: g["rules"] for g in generate_rules(read_sloth(spec(), "x"))["groups"]}
    page, ticket = groups["sloth-slo-alerts-myservice-requests-availability"]
    assert page["labels"] == {
        "category": "availability",
        "routing_key": "myteam",
        "severity": "pageteam",
        "sloth_severity": "page",
    }
    assert ticket["labels"] == {"category": "availability", "severity": "slack", "sloth_severity": "ticket"}
    assert ticket["annotations"]["channel"] == "#my"
    assert ticket["annotations"]["runbook"] == page["annotations"]["runbook"]
    (latency_page,) = groups["sloth-slo-alerts-myservice-latency"]
    assert latency_page["labels"]["sloth_severity"] == "page"
    raw = groups["sloth-slo-sli-recordings-myservice-latency"][0]
    assert raw["expr"] == "(my:latency_error:ratio_rate5m)"
    events = groups["sloth-slo-sli-recordings-myservice-requests-availability"][1]
    assert events["expr"] == (
        '(sum(rate(http_requests_total{job="my",code=~"5.."}[30m])))\n/\n'
        '(sum(rate(http_requests_total{job="my"}[30m])))\n'
    )


def test_the_camel_case_keys_of_sloths_kubernetes_crd_are_read_too() -> None:
    data = spec()
    slo = data["slos"][0]
    slo["sli"] = {
        "events": {"errorQuery": "sum(rate(e[{{.window}}]))", "totalQuery": "sum(rate(t[{{.window}}]))"}
    }
    slo["alerting"] = {"name": "A", "pageAlert": {"disable": True}, "ticketAlert": {"labels": {"x": "y"}}}
    data["slos"][1]["sli"] = {"raw": {"errorRatioQuery": "r{{.window}}"}}
    availability, latency = read_sloth(data, "crd.yaml")
    assert availability.sli.prometheus is not None
    assert availability.sli.prometheus.total_query == "sum(rate(t[{{.window}}]))"
    assert not availability.alerting.page.enabled
    assert availability.alerting.ticket.labels == {"x": "y"}
    assert latency.sli.prometheus is not None and latency.sli.prometheus.error_query == "r{{.window}}"


def test_the_shipped_sloth_example_reads() -> None:
    slos = read_sloth(yaml.safe_load(SLOTH_EXAMPLE.read_text("utf-8")), str(SLOTH_EXAMPLE))
    assert [s.name for s in slos] == ["requests-availability", "requests-latency", "settlement-jobs"]
    assert {s.service for s in slos} == {"payments"}
    assert [(s.alerting.page.enabled, s.alerting.ticket.enabled) for s in slos] == [
        (True, True),
        (True, False),
        (False, True),
    ]


def test_load_slos_reads_sloth_files_from_slo_files(tmp_path: Path) -> None:
    (tmp_path / "slos").mkdir()
    (tmp_path / "slos" / "my.yaml").write_text(yaml.safe_dump(spec()))
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "receivers": {"otlp": {"http": {"endpoint": "127.0.0.1:0"}}},
                "exporters": {"local": {"path": str(tmp_path / "data")}},
                "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["local"]}}},
                "slo_files": ["slos/*.yaml"],
            }
        )
    )
    slos = load_slos(load_config(tmp_path / "config.yaml"))
    assert [(s.name, s.sli.kind, Path(s.source).name) for s in slos] == [
        ("requests-availability", "prometheus", "my.yaml"),
        ("latency", "prometheus", "my.yaml"),
    ]


def test_problems_in_a_sloth_file_reach_load_slos_with_the_file_and_key(tmp_path: Path) -> None:
    data = spec()
    data["slos"][0]["objective"] = 100
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    _, problems = load_slo_file(path)
    assert problems and "slos[0].objective" in problems[0]
    assert "leaves no error budget" in problems[0]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["slos"][0].update(objective=100), "slos[0].objective: objective is a percentage"),
        (lambda d: d["slos"][0].update(objective=0), "slos[0].objective: objective is a percentage"),
        (lambda d: d["slos"][0].update(objective="high"), "slos[0].objective"),
        (lambda d: d["slos"][0]["sli"].update(raw={"error_ratio_query": "r"}), "(got events and raw)"),
        (lambda d: d["slos"][0].update(sli={}), "slos[0].sli: an SLI needs exactly one of `events` or `raw`"),
        (
            lambda d: d["slos"][0].update(sli={"plugin": {"id": "sloth-common/apiserver/availability"}}),
            "SLI plugins are not supported (plugin 'sloth-common/apiserver/availability'",
        ),
        (lambda d: d["slos"][0]["alerting"].update(ticket_alerts={}), "alerting.ticket_alerts: unknown key"),
        (lambda d: d["slos"][0]["sli"]["events"].pop("total_query"), "total_query: required key is missing"),
        (lambda d: d["slos"][0]["sli"]["events"].update(error_query=""), "error_query"),
        (
            lambda d: d["slos"][0]["sli"]["events"].update(error_query="x[{{.Window}}]"),
            "unsupported template action '{{.Window}}'",
        ),
        (lambda d: d.pop("service"), "service: required key is missing"),
        (lambda d: d.update(slos=[]), "slos: must not be empty"),
        (lambda d: d.update(version="prometheus/v2"), "version"),
        (lambda d: d.update(slo_plugins={"chain": []}), "slo_plugins: Sloth SLO plugins are not supported"),
        (lambda d: d["slos"][1].update(name="requests-availability"), "slos[1].name: 'requests-avail"),
        (lambda d: d["slos"][0].update(name="bad name!"), "slos[0].name: 'bad name!' is not a valid"),
        (lambda d: d["slos"][0]["labels"].update({"bad-label": "x"}), "slos[0].labels"),
    ],
)  # fmt: skip
def test_what_burnline_cannot_honour_is_refused_by_key_path(mutate: Any, expected: str) -> None:
    data = spec()
    mutate(data)
    problems = problems_of(data)
    assert any(expected in p for p in problems), problems


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    data = spec()
    data["slos"][0]["objective"] = 120
    data["slos"][1]["sli"] = {}
    problems = problems_of(data)
    assert len(problems) == 2, problems
    assert problems[0].startswith("slos[0].objective:")
    assert problems[1].startswith("slos[1].sli:")


def test_a_document_that_is_not_a_mapping_is_refused() -> None:
    assert problems_of(["not", "a", "spec"]) == ["<top>: a Sloth file is a mapping, not list"]


def test_render_window_replaces_only_the_window() -> None:
    assert render_window("rate(x[{{.window}}]) / rate(y[{{ .window }}]) + z[{{- .window -}}]", "1h") == (
        "rate(x[1h]) / rate(y[1h]) + z[1h]"
    )
    with pytest.raises(ValueError, match="unsupported template action"):
        render_window('x{a="{{.service}}"}', "5m")


def test_config_error_is_not_what_read_sloth_raises() -> None:
    # load_slos gathers problems of every file before raising its ConfigError; read_sloth raises a
    # ValueError (SlothError) so the caller can collect rather than stop at the first file.
    assert issubclass(SlothError, ValueError)
    assert not issubclass(SlothError, ConfigError)
