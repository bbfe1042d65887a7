"""Fluent Bit / Fluentd records -> LogRecord: resources, bodies, JSON, severity, trace ids, time."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from collector.core.model import LogRecord
from collector.normalize.fluent import normalize_fluent
from collector.normalize.fluent_config import FluentNormalizeConfig
from collector.normalize.record_time import EventTime
from collector.normalize.values import MAX_NESTING, clean_map, clean_value

TAG = "kube.var.log.containers.checkout-7d4b9c8f6d-x2x9z_shop_app-0123.log"
T0 = 1_714_557_600_123_456_789  # 2024-05-01T10:00:00.123456789Z
OBSERVED = 1_714_557_601_000_000_000
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
CONTAINER_ID = "3f1e7c0a" * 8
DIGEST = "sha256:" + "9b" * 32
DEFAULT = FluentNormalizeConfig()


def kube_map(**changes: Any) -> dict[str, Any]:
    """The ``kubernetes`` map Fluent Bit's kubernetes filter adds (Labels On, Annotations On)."""
    kube: dict[str, Any] = {
        "pod_name": "checkout-7d4b9c8f6d-x2x9z",
        "namespace_name": "shop",
        "pod_id": "2b6f0f1a-5c1d-4e0b-9a43-7e1b2c3d4e5f",
        "labels": {
            "app.kubernetes.io/name": "checkout",
            "app.kubernetes.io/version": "1.4.2",
            "pod-template-hash": "7d4b9c8f6d",
        },
        "annotations": {
            "prometheus.io/scrape": "true",
            "kubectl.kubernetes.io/restartedAt": "2024-04-30T08:00:00Z",
        },
        "host": "node-a1",
        "pod_ip": "10.244.1.17",
        "container_name": "app",
        "docker_id": CONTAINER_ID,
        "container_hash": "registry.example.com/shop/checkout@" + DIGEST,
        "container_image": "registry.example.com/shop/checkout:1.4.2",
    }
    kube.update(changes)
    return kube


def normalize_one(
    record: dict[str, Any], config: FluentNormalizeConfig = DEFAULT, time_ns: int = T0
) -> LogRecord:
    records = normalize_fluent(TAG, [(time_ns, record)], config, OBSERVED)
    assert len(records) == 1
    return records[0]


# ---- a realistic record ------------------------------------------------------------------------


def test_fluent_bit_kubernetes_record_with_cri_fields_and_a_json_app_log() -> None:
    record = {
        "time": "2024-05-01T10:00:00.123456789Z",
        "stream": "stdout",
        "logtag": "F",
        "log": (
            '{"ts":"2024-05-01T10:00:00.122Z","level":"error","msg":"payment declined",'
            f'"trace_id":"{TRACE.upper()}","span_id":"{SPAN}","order":{{"id":42,"total":19.99}},'
            '"retryable":false}\n'
        ),
        "kubernetes": kube_map(),
    }
    original = copy.deepcopy(record)

    out = normalize_one(record)

    assert record == original  # the receiver's record is not modified
    # The application's own time (its JSON "ts") wins over the runtime's; both are consumed.
    assert out.time_unix_nano == 1_714_557_600_122_000_000
    assert out.observed_time_unix_nano == OBSERVED
    assert out.body == "payment declined"
    assert (out.severity_number, out.severity_text) == (17, "error")
    assert (out.trace_id, out.span_id) == (TRACE, SPAN)
    assert out.attributes == {
        "order": {"id": 42, "total": 19.99},
        "retryable": False,
        "log.iostream": "stdout",
        "fluent.tag": TAG,
    }
    assert out.resource == {
        "k8s.namespace.name": "shop",
        "k8s.pod.name": "checkout-7d4b9c8f6d-x2x9z",
        "k8s.pod.uid": "2b6f0f1a-5c1d-4e0b-9a43-7e1b2c3d4e5f",
        "k8s.container.name": "app",
        "k8s.node.name": "node-a1",
        "k8s.pod.ip": "10.244.1.17",
        "container.id": CONTAINER_ID,
        "container.image.name": "registry.example.com/shop/checkout",
        "container.image.tags": ["1.4.2"],
        "container.image.repo_digests": ["registry.example.com/shop/checkout@" + DIGEST],
        "k8s.pod.label.app.kubernetes.io/name": "checkout",
        "k8s.pod.label.app.kubernetes.io/version": "1.4.2",
        "k8s.pod.label.pod-template-hash": "7d4b9c8f6d",
        "service.name": "checkout",
        "service.namespace": "shop",
        "service.version": "1.4.2",
    }


def test_plain_text_record_from_fluent_bit_tail_with_docker_parser() -> None:
    record = {
        "log": "2024-05-01 10:00:00,123 WARN [pool-1] c.e.Cache - eviction storm\n",
        "stream": "stderr",
        "time": "2024-05-01T10:00:00.123456789Z",
        "kubernetes": kube_map(),
    }
    out = normalize_one(record)
    assert out.body == "2024-05-01 10:00:00,123 WARN [pool-1] c.e.Cache - eviction storm"
    assert (out.severity_number, out.severity_text) == (13, "WARN")
    assert out.attributes == {"log.iostream": "stderr", "fluent.tag": TAG}


# ---- body --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "body", "attributes"),
    [
        ({"log": "plain line\n"}, "plain line", {}),
        ({"log": "windows line\r\n"}, "windows line", {}),
        ({"log": "two\n\n"}, "two", {}),
        ({"log": "  indented  "}, "  indented  ", {}),
        ({"message": "from message"}, "from message", {}),
        ({"msg": "from msg"}, "from msg", {}),
        (
            {"MESSAGE": "from journald", "_SYSTEMD_UNIT": "kubelet.service"},
            "from journald",
            {"_SYSTEMD_UNIT": "kubelet.service"},
        ),
        ({"log": "log wins", "message": "kept"}, "log wins", {"message": "kept"}),
        ({"message": "message wins", "msg": "kept"}, "message wins", {"msg": "kept"}),
        ({"log": None, "message": "null log is skipped"}, "null log is skipped", {}),
        ({"other": 1, "nested": {"a": [1, 2]}}, None, {"other": 1, "nested": {"a": [1, 2]}}),
        ({}, None, {}),
        # non-string bodies stay what they are
        ({"log": 42}, 42, {}),
        ({"log": 1.5}, 1.5, {}),
        ({"log": True}, True, {}),
        ({"log": ["a", "b"]}, ["a", "b"], {}),
        ({"log": {"k": "v"}}, {"k": "v"}, {}),
        ({"log": b"raw bytes\n"}, "raw bytes", {}),
        ({"log": b"\xffbad utf-8"}, "\ufffdbad utf-8", {}),
        # a Fluentd map body with a message field is spread like a JSON body
        ({"log": {"message": "m", "k": "v"}}, "m", {"k": "v"}),
    ],
)
def test_body_selection(record: dict[str, Any], body: Any, attributes: dict[str, Any]) -> None:
    out = normalize_one(record)
    assert out.body == body
    assert out.attributes == {**attributes, "fluent.tag": TAG}


@pytest.mark.parametrize(
    ("log", "body", "attributes"),
    [
        ('{"message":"hi","user":"u1"}', "hi", {"user": "u1"}),
        ('{"msg":"hi","user":"u1"}', "hi", {"user": "u1"}),
        ('{"log":"hi","user":"u1"}', "hi", {"user": "u1"}),
        ('{"message":"first","msg":"second"}', "first", {"msg": "second"}),
        ('{"message":"line\\n","a":1}', "line", {"a": 1}),
        (
            '{"msg":"x","http":{"method":"GET","status":200},"tags":["a"]}',
            "x",
            {"http": {"method": "GET", "status": 200}, "tags": ["a"]},
        ),
        ('{"msg":"x","dotted.key":1}', "x", {"dotted.key": 1}),
        ('{"message":{"structured":true}}', {"structured": True}, {}),
        ('{"message":null,"a":1}', None, {"a": 1}),
        # no message field: the JSON text stays the body, its fields are still searchable
        ('{"status":200,"path":"/"}', '{"status":200,"path":"/"}', {"status": 200, "path": "/"}),
        ("{}", "{}", {}),
        # not a JSON object: left as it is
        ("{not json}", "{not json}", {}),
        ('{"a":1} trailing', '{"a":1} trailing', {}),
        ('{"a":1', '{"a":1', {}),
        ("[1,2]", "[1,2]", {}),
        (' {"msg":"leading space"}', ' {"msg":"leading space"}', {}),
        # integers beyond 64 bits become floats, as JavaScript and Elasticsearch read them
        ('{"msg":"x","n":123456789012345678901234567890}', "x", {"n": 1.2345678901234568e29}),
    ],
)
def test_json_bodies(log: str, body: Any, attributes: dict[str, Any]) -> None:
    out = normalize_one({"log": log + "\n"})
    assert out.body == body
    assert out.attributes == {**attributes, "fluent.tag": TAG}


def test_json_parsing_can_be_turned_off() -> None:
    config = FluentNormalizeConfig(parse_json_body=False)
    out = normalize_one({"log": '{"level":"error","msg":"x"}'}, config)
    assert out.body == '{"level":"error","msg":"x"}'
    assert out.attributes == {"fluent.tag": TAG}
    assert out.severity_number == 0


def test_merge_log_with_keep_log_does_not_duplicate_consumed_fields() -> None:
    # Fluent Bit Merge_Log On + Keep_Log On: the parsed fields sit beside the raw line.
    record = {
        "log": f'{{"level":"info","msg":"hi","user":"u1","trace_id":"{TRACE}"}}',
        "level": "info",
        "msg": "hi",
        "user": "u1",
        "trace_id": TRACE,
        "stream": "stdout",
    }
    out = normalize_one(record)
    assert out.body == "hi"
    assert (out.severity_number, out.trace_id) == (9, TRACE)
    assert out.attributes == {"user": "u1", "log.iostream": "stdout", "fluent.tag": TAG}


def test_merge_log_without_keep_log_reads_the_top_level_fields() -> None:
    record = {"level": "warn", "msg": "slow", "latency_ms": 812, "stream": "stderr", "logtag": "F"}
    out = normalize_one(record)
    assert out.body == "slow"
    assert (out.severity_number, out.severity_text) == (13, "warn")
    assert out.attributes == {"latency_ms": 812, "log.iostream": "stderr", "fluent.tag": TAG}


def test_parsed_fields_override_top_level_keys_of_the_same_name() -> None:
    out = normalize_one({"log": '{"msg":"x","env":"from-app"}', "env": "from-fluent-bit"})
    assert out.attributes["env"] == "from-app"


def test_a_top_level_field_differing_from_the_consumed_one_is_kept() -> None:
    out = normalize_one({"log": '{"level":"error","msg":"x"}', "level": "info"})
    assert out.severity_number == 17
    assert out.attributes["level"] == "info"


# ---- attributes --------------------------------------------------------------------------------


def test_consumed_top_level_keys() -> None:
    record = {
        "log": "x",
        "stream": "stdout",
        "logtag": "P",
        "_p": "F",
        "time": "2024-05-01T10:00:00.123456789+00:00",
        "kubernetes": kube_map(),
        "kubernetes_namespace": {"name": "shop", "labels": {"team": "pay"}},
        "file": "/var/log/containers/x.log",
    }
    out = normalize_one(record)
    assert out.attributes == {
        "file": "/var/log/containers/x.log",
        "log.iostream": "stdout",
        "fluent.tag": TAG,
    }


@pytest.mark.parametrize(
    "time_value", ["yesterday", "2024", 2024, "2024-05-01T10:00:00.5", True, None, ["x"], float("inf")]
)
def test_a_time_field_that_is_not_a_time_stays(time_value: Any) -> None:
    out = normalize_one({"log": "x", "time": time_value})
    assert out.attributes["time"] == clean_value(time_value)
    assert out.time_unix_nano == T0


def test_non_string_stream_is_kept_under_log_iostream() -> None:
    out = normalize_one({"log": "x", "stream": 1})
    assert out.attributes["log.iostream"] == 1


def test_fluent_tag_wins_over_a_field_of_the_same_name() -> None:
    out = normalize_one(
        {"log": '{"msg":"x","fluent.tag":"forged","log.iostream":"forged"}', "stream": "stdout"}
    )
    assert out.attributes["fluent.tag"] == TAG
    assert out.attributes["log.iostream"] == "stdout"


# ---- severity ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "number", "text"),
    [
        ({"log": "x", "level": "warn"}, 13, "warn"),
        ({"log": "x", "severity": "ERROR"}, 17, "ERROR"),
        ({"log": "x", "log.level": "debug"}, 5, "debug"),
        ({"log": "x", "levelname": "CRITICAL"}, 21, "CRITICAL"),
        ({"log": "x", "lvl": "eror"}, 17, "eror"),
        ({"log": "x", "loglevel": "notice"}, 10, "notice"),
        ({"log": "x", "log_level": "trace"}, 1, "trace"),
        ({"log": "x", "level": 30}, 9, "INFO"),
        ({"log": '{"level":50,"msg":"pino"}'}, 17, "ERROR"),
        ({"log": '{"severity":"WARNING","message":"gcp"}'}, 13, "WARNING"),
        ({"log": '{"severity":400,"message":"gcp number"}'}, 13, "WARN"),
        ({"log": '{"log.level":"error","message":"ecs"}'}, 17, "error"),
        ({"log": '{"level":"INFO+2","msg":"slog"}'}, 11, "INFO+2"),
        ({"MESSAGE": "journald", "PRIORITY": "3"}, 17, "ERROR"),
        ({"MESSAGE": "journald", "PRIORITY": 6}, 9, "INFO"),
        # the JSON body's level wins over the record's
        ({"log": '{"level":"error","msg":"x"}', "level": "info"}, 17, "error"),
        # body prefixes when no field says anything
        ({"log": "[warn] disk almost full"}, 13, "warn"),
        ({"log": "E0102 15:04:05.123456       1 reflector.go:138] watch failed"}, 17, "ERROR"),
        ({"log": "WARNING:root:deprecated"}, 13, "WARNING"),
        ({"log": 'time="2024-05-01T10:00:00Z" level=error msg="boom"'}, 17, "error"),
        ({"log": '{"msg":"ERROR in message text"}'}, 17, "ERROR"),
        # an unrecognized level field falls through to the body
        ({"log": "FATAL out of memory", "level": "chatty"}, 21, "FATAL"),
        # stderr alone is not an error
        ({"log": "Traceback (most recent call last):", "stream": "stderr"}, 0, ""),
        ({"log": "plain"}, 0, ""),
        ({"log": 500}, 0, ""),
    ],
)
def test_severity_sources(record: dict[str, Any], number: int, text: str) -> None:
    out = normalize_one(record)
    assert (out.severity_number, out.severity_text) == (number, text)
    assert type(out.severity_number) is int


def test_a_recognized_level_field_is_consumed_an_unrecognized_one_kept() -> None:
    assert "level" not in normalize_one({"log": "x", "level": "warn"}).attributes
    assert normalize_one({"log": "x", "level": "chatty"}).attributes["level"] == "chatty"
    # 0-9 is ambiguous (syslog vs zerolog): not read, kept
    out = normalize_one({"log": "x", "level": 3})
    assert (out.severity_number, out.attributes["level"]) == (0, 3)


def test_syslog_pri_sets_severity_and_is_kept_for_its_facility() -> None:
    out = normalize_one({"message": "x", "pri": "134", "ident": "sshd"})
    assert (out.severity_number, out.severity_text) == (9, "INFO")
    assert out.attributes == {"pri": "134", "ident": "sshd", "fluent.tag": TAG}


def test_severity_from_body_can_be_turned_off() -> None:
    config = FluentNormalizeConfig(severity_from_body=False)
    assert normalize_one({"log": "ERROR boom"}, config).severity_number == 0
    assert normalize_one({"log": "ERROR boom", "level": "warn"}, config).severity_number == 13


# ---- trace correlation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "trace_id", "span_id"),
    [
        ({"trace_id": TRACE, "span_id": SPAN}, TRACE, SPAN),
        ({"trace_id": TRACE.upper(), "span_id": SPAN.upper()}, TRACE, SPAN),
        ({"traceId": TRACE, "spanId": SPAN}, TRACE, SPAN),
        ({"traceID": TRACE, "spanID": SPAN}, TRACE, SPAN),
        ({"trace.id": TRACE, "span.id": SPAN}, TRACE, SPAN),
        ({"traceid": TRACE, "spanid": SPAN}, TRACE, SPAN),
        ({"otelTraceID": TRACE, "otelSpanID": SPAN}, TRACE, SPAN),
        ({"dd.trace_id": TRACE, "dd.span_id": SPAN}, TRACE, SPAN),
        (
            {
                "logging.googleapis.com/trace": f"projects/p1/traces/{TRACE}",
                "logging.googleapis.com/spanId": SPAN,
            },
            TRACE,
            SPAN,
        ),
        ({"trace_id": "a3ce929d0e0e4736"}, "0000000000000000a3ce929d0e0e4736", ""),  # 64-bit id
        ({"trace_id": TRACE}, TRACE, ""),
        ({"span_id": SPAN}, "", SPAN),
    ],
)
def test_trace_and_span_ids(fields: dict[str, Any], trace_id: str, span_id: str) -> None:
    for record in ({"log": "x", **fields}, {"log": _json(fields)}):
        out = normalize_one(record)
        assert (out.trace_id, out.span_id) == (trace_id, span_id)
        assert out.attributes == {"fluent.tag": TAG}  # valid ids are consumed


@pytest.mark.parametrize(
    "fields",
    [
        {"trace_id": "not-a-trace-id", "span_id": "xyz"},
        {"trace_id": TRACE[:-1], "span_id": SPAN + "0"},
        {"trace_id": "0" * 32, "span_id": "0" * 16},
        {"trace_id": "0x" + TRACE[2:], "span_id": "+" + SPAN[1:]},
        {"trace_id": "g" * 32, "span_id": "g" * 16},
        {"trace_id": int(TRACE, 16), "span_id": int(SPAN, 16)},
        {"dd.trace_id": "1234567890123456789", "dd.span_id": "987654321"},  # Datadog decimal
        {"logging.googleapis.com/trace": "projects/p1/traces/", "traceparent": "garbage"},
    ],
)
def test_invalid_ids_are_ignored_and_left_in_the_attributes(fields: dict[str, Any]) -> None:
    out = normalize_one({"log": "x", **fields})
    assert (out.trace_id, out.span_id) == ("", "")
    # Integers beyond int64 (a 128-bit id as a number) become their decimal text.
    assert out.attributes == {**clean_map(fields), "fluent.tag": TAG}


def test_w3c_traceparent_fills_in_missing_ids_and_is_kept() -> None:
    traceparent = f"00-{TRACE}-{SPAN}-01"
    out = normalize_one({"log": "x", "traceparent": traceparent})
    assert (out.trace_id, out.span_id) == (TRACE, SPAN)
    assert out.attributes["traceparent"] == traceparent

    other_span = "b7ad6b7169203331"
    out = normalize_one({"log": "x", "traceparent": traceparent, "span_id": other_span})
    assert (out.trace_id, out.span_id) == (TRACE, other_span)


def test_an_invalid_id_does_not_hide_a_valid_one_under_another_key() -> None:
    out = normalize_one({"log": "x", "trace_id": "bad", "traceId": TRACE})
    assert out.trace_id == TRACE
    assert out.attributes == {"trace_id": "bad", "fluent.tag": TAG}


# ---- resources ---------------------------------------------------------------------------------


def test_records_of_one_pod_share_one_resource_object() -> None:
    kube = kube_map()
    entries = [
        (T0, {"log": "same map object", "kubernetes": kube}),
        (T0 + 1, {"log": "same map object", "kubernetes": kube}),
        # decoded from msgpack, every record has its own equal copy of the map
        (T0 + 2, {"log": "equal copy", "kubernetes": copy.deepcopy(kube)}),
        (T0 + 3, {"log": "equal copy", "kubernetes": copy.deepcopy(kube)}),
    ]
    out = normalize_fluent(TAG, entries, DEFAULT, OBSERVED)
    assert all(record.resource is out[0].resource for record in out)
    assert out[0].resource["k8s.pod.name"] == "checkout-7d4b9c8f6d-x2x9z"


def test_different_pods_and_containers_get_different_resources() -> None:
    entries = [
        (T0, {"log": "a", "kubernetes": kube_map()}),
        (T0, {"log": "b", "kubernetes": kube_map(pod_name="checkout-7d4b9c8f6d-abcde")}),
        (T0, {"log": "c", "kubernetes": kube_map(container_name="istio-proxy", docker_id="ab" * 32)}),
    ]
    a, b, c = normalize_fluent(TAG, entries, DEFAULT, OBSERVED)
    assert a.resource is not b.resource and a.resource is not c.resource
    assert b.resource["k8s.pod.name"] == "checkout-7d4b9c8f6d-abcde"
    assert c.resource["k8s.container.name"] == "istio-proxy"


def test_a_label_change_within_a_batch_is_not_hidden_by_the_cache() -> None:
    before = kube_map()
    after = kube_map(labels={**before["labels"], "app.kubernetes.io/version": "1.4.3"})
    first, second = normalize_fluent(
        TAG,
        [(T0, {"log": "a", "kubernetes": before}), (T0, {"log": "b", "kubernetes": after})],
        DEFAULT,
        OBSERVED,
    )
    assert first.resource["service.version"] == "1.4.2"
    assert second.resource["service.version"] == "1.4.3"


def test_records_without_kubernetes_share_one_empty_resource() -> None:
    out = normalize_fluent(TAG, [(T0, {"log": "a"}), (T0, {"message": "b"})], DEFAULT, OBSERVED)
    assert out[0].resource == {}
    assert out[0].resource is out[1].resource


@pytest.mark.parametrize(
    ("labels", "config", "service_name"),
    [
        ({"app.kubernetes.io/name": "n", "app": "a", "k8s-app": "k"}, DEFAULT, "n"),
        ({"app": "a", "k8s-app": "k"}, DEFAULT, "a"),
        ({"k8s-app": "k"}, DEFAULT, "k"),
        ({"app": ""}, DEFAULT, "app"),  # empty label: next in the chain (the container name)
        ({}, DEFAULT, "app"),
        ({"team": "pay", "app": "a"}, FluentNormalizeConfig(service_name_from=["team", "app"]), "pay"),
        ({"app": "a"}, FluentNormalizeConfig(service_name_from=[]), "app"),
    ],
)
def test_service_name_chain(labels: dict[str, str], config: FluentNormalizeConfig, service_name: str) -> None:
    out = normalize_one({"log": "x", "kubernetes": kube_map(labels=labels)}, config)
    assert out.resource["service.name"] == service_name


def test_service_name_falls_back_to_the_pod_name_without_a_container_name() -> None:
    kube = kube_map(labels={})
    del kube["container_name"]
    assert normalize_one({"log": "x", "kubernetes": kube}).resource["service.name"] == kube["pod_name"]


def test_resource_annotations_declare_service_attributes_and_win() -> None:
    annotations = {
        "resource.opentelemetry.io/service.name": "payments",
        "resource.opentelemetry.io/service.namespace": "commerce",
        "resource.opentelemetry.io/service.version": "2.0.0",
        "resource.opentelemetry.io/deployment.environment.name": "prod",
        "resource.opentelemetry.io/": "ignored: empty attribute name",
    }
    out = normalize_one({"log": "x", "kubernetes": kube_map(annotations=annotations)})
    assert out.resource["service.name"] == "payments"
    assert out.resource["service.namespace"] == "commerce"
    assert out.resource["service.version"] == "2.0.0"
    assert out.resource["deployment.environment.name"] == "prod"
    assert "" not in out.resource
    assert not any(key.startswith("k8s.pod.annotation.") for key in out.resource)


@pytest.mark.parametrize(
    ("owner", "labels", "expected"),
    [
        (
            {"kind": "ReplicaSet", "name": "checkout-7d4b9c8f6d", "controller": True},
            {"pod-template-hash": "7d4b9c8f6d"},
            {
                "k8s.replicaset.name": "checkout-7d4b9c8f6d",
                "k8s.deployment.name": "checkout",
                "service.name": "checkout",
            },
        ),
        (
            {"kind": "ReplicaSet", "name": "legacy-rs", "controller": True},
            {},
            {"k8s.replicaset.name": "legacy-rs", "service.name": "app"},  # no hash label: no guess
        ),
        (
            {"kind": "StatefulSet", "name": "db", "controller": True},
            {},
            {"k8s.statefulset.name": "db", "service.name": "db"},
        ),
        (
            {"kind": "DaemonSet", "name": "agent", "controller": True},
            {},
            {"k8s.daemonset.name": "agent", "service.name": "agent"},
        ),
        (
            {"kind": "Job", "name": "nightly-report-28391234", "controller": True},
            {},
            {
                "k8s.job.name": "nightly-report-28391234",
                "k8s.cronjob.name": "nightly-report",
                "service.name": "nightly-report",
            },
        ),
        (
            {"kind": "Job", "name": "migrate-2", "controller": True},
            {},
            {"k8s.job.name": "migrate-2", "service.name": "migrate-2"},
        ),
        ({"kind": "Node", "name": "node-a1", "controller": True}, {}, {"service.name": "app"}),
    ],
)
def test_owner_references_name_the_workload(
    owner: dict[str, Any], labels: dict[str, str], expected: dict[str, str]
) -> None:
    kube = kube_map(labels=labels, ownerReferences=[{"kind": "ConfigMap", "name": "not-controller"}, owner])
    resource = normalize_one({"log": "x", "kubernetes": kube}).resource
    workload = {
        key: value
        for key, value in resource.items()
        if key.split(".")[1] in ("replicaset", "deployment", "statefulset", "daemonset", "job", "cronjob")
        or key == "service.name"
    }
    assert workload == expected


def test_labels_and_annotations_switches() -> None:
    record = {
        "log": "x",
        "kubernetes": kube_map(),
        "kubernetes_namespace": {
            "name": "shop",
            "labels": {"team": "payments"},
            "annotations": {"owner": "pay@example.com"},
        },
    }
    default = normalize_one(copy.deepcopy(record)).resource
    assert default["k8s.pod.label.app.kubernetes.io/name"] == "checkout"
    assert default["k8s.namespace.label.team"] == "payments"
    assert not any(".annotation." in key for key in default)

    config = FluentNormalizeConfig(kubernetes_labels=False, kubernetes_annotations=True)
    switched = normalize_one(copy.deepcopy(record), config).resource
    assert not any(".label." in key for key in switched)
    assert switched["k8s.pod.annotation.prometheus.io/scrape"] == "true"
    assert switched["k8s.namespace.annotation.owner"] == "pay@example.com"
    # labels feed service.name even when they are not copied
    assert switched["service.name"] == "checkout"


def test_namespace_metadata_only() -> None:
    out = normalize_one({"log": "x", "kubernetes_namespace": {"name": "shop", "labels": {"team": "pay"}}})
    assert out.resource == {
        "k8s.namespace.name": "shop",
        "k8s.namespace.label.team": "pay",
        "service.namespace": "shop",
    }
    assert out.attributes == {"fluent.tag": TAG}


@pytest.mark.parametrize(
    ("image", "container_hash", "expected"),
    [
        ("nginx", None, {"container.image.name": "nginx"}),
        (
            "docker.io/library/nginx:1.25",
            None,
            {"container.image.name": "docker.io/library/nginx", "container.image.tags": ["1.25"]},
        ),
        ("registry:5000/team/app", None, {"container.image.name": "registry:5000/team/app"}),
        (
            "registry:5000/team/app:v7",
            None,
            {"container.image.name": "registry:5000/team/app", "container.image.tags": ["v7"]},
        ),
        (
            "app:v1@" + DIGEST,
            None,
            {
                "container.image.name": "app",
                "container.image.tags": ["v1"],
                "container.image.repo_digests": ["app@" + DIGEST],
            },
        ),
        (DIGEST, None, {"container.image.id": DIGEST}),
        (
            "app:v1",
            DIGEST,
            {"container.image.name": "app", "container.image.tags": ["v1"], "container.image.id": DIGEST},
        ),
        (
            "app:v1",
            "docker.io/team/app@" + DIGEST,
            {
                "container.image.name": "app",
                "container.image.tags": ["v1"],
                "container.image.repo_digests": ["docker.io/team/app@" + DIGEST],
            },
        ),
        ("", "not-a-digest", {}),
    ],
)
def test_container_image_attributes(image: str, container_hash: str | None, expected: dict[str, Any]) -> None:
    kube = kube_map(container_image=image, container_hash=container_hash)
    resource = normalize_one({"log": "x", "kubernetes": kube}).resource
    assert {key: value for key, value in resource.items() if key.startswith("container.image.")} == expected


def test_service_version_from_the_image_tag_without_a_version_label() -> None:
    kube = kube_map(labels={"app": "checkout"}, container_image="registry.example.com/checkout:2.3.1")
    assert normalize_one({"log": "x", "kubernetes": kube}).resource["service.version"] == "2.3.1"
    kube = kube_map(labels={"app": "checkout"}, container_image="registry.example.com/checkout")
    assert "service.version" not in normalize_one({"log": "x", "kubernetes": kube}).resource


def test_a_record_service_name_wins_and_is_shared() -> None:
    kube = kube_map()
    entries = [
        (T0, {"log": '{"msg":"a","service.name":"checkout-worker"}', "kubernetes": copy.deepcopy(kube)}),
        (T0, {"log": "b", "service.name": "checkout-worker", "kubernetes": copy.deepcopy(kube)}),
        (T0, {"log": '{"msg":"c","otelServiceName":"checkout-api"}', "kubernetes": copy.deepcopy(kube)}),
        (
            T0,
            {
                "log": '{"msg":"d","otelServiceName":"unknown_service:python"}',
                "kubernetes": copy.deepcopy(kube),
            },
        ),
        (T0, {"log": '{"msg":"e","service":"inventory"}', "kubernetes": copy.deepcopy(kube)}),
    ]
    a, b, c, d, e = normalize_fluent(TAG, entries, DEFAULT, OBSERVED)
    assert a.resource["service.name"] == b.resource["service.name"] == "checkout-worker"
    assert a.resource is b.resource
    assert a.resource["k8s.pod.name"] == "checkout-7d4b9c8f6d-x2x9z"
    assert c.resource["service.name"] == "checkout-api"
    assert d.resource["service.name"] == "checkout"  # the SDK default counts as unset
    assert d.attributes["otelServiceName"] == "unknown_service:python"
    assert e.resource["service.name"] == "checkout"  # a bare "service" is not read
    assert e.attributes["service"] == "inventory"
    assert d.resource is e.resource
    assert "service.name" not in a.attributes and "service.name" not in b.attributes


def test_a_record_service_name_without_kubernetes() -> None:
    out = normalize_one({"message": "x", "service.name": "batch-job"})
    assert out.resource == {"service.name": "batch-job"}
    assert out.attributes == {"fluent.tag": TAG}


def test_docker_fluentd_logging_driver_record() -> None:
    record = {
        "container_id": CONTAINER_ID,
        "container_name": "/shop-web-1",
        "source": "stderr",
        "log": "boom",
    }
    out = normalize_one(record)
    assert out.resource == {"container.id": CONTAINER_ID, "container.name": "shop-web-1"}
    assert out.attributes == {"log.iostream": "stderr", "fluent.tag": TAG}


@pytest.mark.parametrize(
    "record",
    [
        {"log": "x", "kubernetes": "not a map"},
        {"log": "x", "kubernetes": ["not", "a", "map"]},
        {"log": "x", "kubernetes_namespace": 7},
    ],
)
def test_a_malformed_kubernetes_value_stays_an_attribute(record: dict[str, Any]) -> None:
    out = normalize_one(copy.deepcopy(record))
    assert out.resource == {}
    assert out.attributes == {**{k: v for k, v in record.items() if k != "log"}, "fluent.tag": TAG}


def test_malformed_values_inside_the_kubernetes_map_do_not_break_the_batch() -> None:
    kube = kube_map(
        pod_name=["unhashable"],
        labels="not a map",
        annotations={1: "int key", "resource.opentelemetry.io/service.name": 5},
        container_image=7,
        container_hash=None,
        ownerReferences=[1, {"kind": 2}, {"kind": "ReplicaSet", "name": None}],
    )
    first, second = normalize_fluent(
        TAG,
        [(T0, {"log": "a", "kubernetes": kube}), (T0, {"log": "b", "kubernetes": copy.deepcopy(kube)})],
        DEFAULT,
        OBSERVED,
    )
    assert first.resource["k8s.pod.name"] == ["unhashable"]
    assert first.resource["service.name"] == "app"
    assert second.resource == first.resource


# ---- time --------------------------------------------------------------------------------------


E0 = 1_700_000_000_000_000_000  # an entry time unlike any record time below


@pytest.mark.parametrize(
    ("key", "value", "expected_ns"),
    [
        ("time", "2024-05-01T10:00:00.123456789Z", 1_714_557_600_123_456_789),
        ("time", "2024-05-01T12:00:00.5+02:00", 1_714_557_600_500_000_000),
        ("time", "2024-05-01T09:30:00.25-00:30", 1_714_557_600_250_000_000),
        ("time", "2024-05-01 10:00:00.123456789123Z", 1_714_557_600_123_456_789),
        ("timestamp", 1_714_557_600, 1_714_557_600_000_000_000),  # epoch seconds
        ("timestamp", 1_714_557_600.25, 1_714_557_600_250_000_000),
        ("@timestamp", 1_714_557_600_123, 1_714_557_600_123_000_000),  # epoch millis
        ("ts", 1_714_557_600_123_456, 1_714_557_600_123_456_000),  # epoch micros
        ("ts", 1_714_557_600_123_456_789, 1_714_557_600_123_456_789),  # epoch nanos
        ("ts", "1714557600.123456789", 1_714_557_600_123_456_789),  # numeric strings
        ("ts", "1714557600123", 1_714_557_600_123_000_000),
        ("time", EventTime(1_714_557_600_000_000_007), 1_714_557_600_000_000_007),  # Fluent EventTime
    ],
)
def test_a_records_own_time_becomes_its_time(key: str, value: Any, expected_ns: int) -> None:
    out = normalize_one({"log": "x", key: value}, time_ns=E0)
    assert out.time_unix_nano == expected_ns
    assert out.observed_time_unix_nano == OBSERVED
    assert key not in out.attributes


@pytest.mark.parametrize(
    "value", ["2024-05-01T10:00:01.5Zjunk", "2024-13-01T10:00:00.5Z", "soon", -5, 12, float("nan")]
)
def test_an_unreadable_time_keeps_the_entry_time_and_the_raw_value(value: Any) -> None:
    out = normalize_one({"log": "x", "time": value}, time_ns=E0)
    assert out.time_unix_nano == E0
    assert out.attributes["time"] == clean_value(value)


def test_time_keys_order_json_body_first_and_keep_time_key() -> None:
    record = {"log": '{"msg":"m","ts":1714557600}', "time": "2024-05-01T11:00:00Z"}
    out = normalize_one(record, time_ns=E0)
    assert out.time_unix_nano == 1_714_557_600_000_000_000
    assert "ts" not in out.attributes and "time" not in out.attributes

    kept = normalize_one(record, FluentNormalizeConfig(keep_time_key=True), time_ns=E0)
    assert kept.time_unix_nano == 1_714_557_600_000_000_000
    assert kept.attributes["ts"] == 1714557600 and kept.attributes["time"] == "2024-05-01T11:00:00Z"

    off = normalize_one(record, FluentNormalizeConfig(time_keys=[]), time_ns=E0)
    assert off.time_unix_nano == E0 and off.attributes["ts"] == 1714557600

    custom = normalize_one(
        {"log": "x", "when": 1714557600}, FluentNormalizeConfig(time_keys=["when"]), time_ns=E0
    )
    assert custom.time_unix_nano == 1_714_557_600_000_000_000


# ---- odd keys and values -----------------------------------------------------------------------


def test_keys_become_strings_and_non_finite_floats_strings() -> None:
    record = {
        1: "int key",
        b"bin": "bin key",
        b"\xff": "bad utf-8",
        None: "nil key",
        False: "bool key",
        2.5: "float key",
        "log": "x",
        "nan": float("nan"),
        "inf": float("inf"),
        "nested": {"list": [float("-inf"), {3: 2**70}], b"k": b"v"},
    }
    out = normalize_one(record)
    assert out.attributes == {
        "1": "int key",
        "bin": "bin key",
        "\ufffd": "bad utf-8",
        "null": "nil key",
        "false": "bool key",
        "2.5": "float key",
        "nan": "NaN",
        "inf": "Infinity",
        "nested": {"list": ["-Infinity", {"3": str(2**70)}], "k": b"v"},
        "fluent.tag": TAG,
    }


def test_a_record_too_deep_to_map_is_rejected_and_the_rest_kept() -> None:
    deep: dict[str, Any] = {"log": "deep"}
    for _ in range(5000):
        deep = {"n": deep}
    rejected: list[tuple[Any, str]] = []
    out = normalize_fluent(TAG, [(T0, deep), (T0, {"log": "fine"})], DEFAULT, OBSERVED, rejected)
    assert [r.body for r in out] == ["fine"]
    assert len(rejected) == 1 and "nested too deeply" in rejected[0][1]


@pytest.mark.parametrize(
    "level",
    [lambda v: {"n": v}, lambda v: {1: v}, lambda v: [v], lambda v: (v, math.inf)],
    ids=["map", "map with an integer key", "list", "tuple to clean"],
)
def test_nesting_is_limited_at_the_same_depth_compiled_or_not(level: Callable[[Any], Any]) -> None:
    """A record nesting MAX_NESTING levels (itself included) is mapped, one more is rejected: an
    explicit limit, since compiled (collector/compiled.py) the walk is not stopped by Python's
    recursion limit."""

    def nested(levels: int) -> dict[str, Any]:
        value: Any = "leaf"
        for _ in range(levels):
            value = level(value)
        return {"log": "line", "deep": value}

    rejected: list[tuple[Any, str]] = []
    entries = [(T0, nested(MAX_NESTING - 1)), (T0, nested(MAX_NESTING))]
    out = normalize_fluent(TAG, entries, DEFAULT, OBSERVED, rejected)
    assert len(out) == 1 and out[0].body == "line"
    assert len(rejected) == 1 and rejected[0][0] is entries[1][1]


# ---- batch and config --------------------------------------------------------------------------


def test_batch_keeps_order_and_count_and_accepts_a_generator() -> None:
    entries = ((T0 + i, {"log": f"line {i}"}) for i in range(50))
    out = normalize_fluent(TAG, entries, DEFAULT, OBSERVED)
    assert [record.body for record in out] == [f"line {i}" for i in range(50)]
    assert [record.time_unix_nano for record in out] == [T0 + i for i in range(50)]


def test_a_non_map_record_is_kept_whole() -> None:
    out = normalize_fluent(TAG, [(T0, "just a string")], DEFAULT, OBSERVED)  # type: ignore[list-item]
    assert (out[0].body, out[0].attributes) == ("just a string", {"fluent.tag": TAG})


def test_config_defaults_and_unknown_keys() -> None:
    config = FluentNormalizeConfig.model_validate({})
    assert config.service_name_from == ["app.kubernetes.io/name", "app", "k8s-app"]
    assert (config.kubernetes_labels, config.kubernetes_annotations) == (True, False)
    assert (config.parse_json_body, config.severity_from_body) == (True, True)
    with pytest.raises(ValidationError):
        FluentNormalizeConfig.model_validate({"labels": True})


def _json(fields: dict[str, Any]) -> str:
    """The JSON text of ``fields``; "{}" for what JSON cannot hold (lone surrogates, huge ints)."""
    try:
        return orjson.dumps(fields).decode()
    except TypeError:
        return "{}"


def _has_nan(value: Any) -> bool:
    # NaN != NaN: an unchanged record holding NaN does not compare equal to its copy.
    return "nan" in repr(value)


# ---- property ----------------------------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
_json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_interesting_keys = st.sampled_from(
    [
        "log",
        "message",
        "msg",
        "MESSAGE",
        "level",
        "severity",
        "PRIORITY",
        "pri",
        "trace_id",
        "span_id",
        "traceparent",
        "service.name",
        "stream",
        "time",
        "kubernetes",
        "kubernetes_namespace",
        "container_id",
        "container_name",
        "source",
    ]
)
_json_texts = st.dictionaries(st.text(max_size=8), _json_values, max_size=4).map(_json)
_records = st.dictionaries(
    _interesting_keys | st.text(max_size=10),
    _json_values | _json_texts | st.text().map(lambda s: "ERROR " + s),
    max_size=8,
)
_kube_maps = st.fixed_dictionaries(
    {},
    optional={
        "pod_name": _json_values,
        "namespace_name": _json_values,
        "container_name": _json_values,
        "docker_id": _json_values,
        "labels": _json_values,
        "annotations": _json_values,
        "ownerReferences": _json_values,
        "container_image": _json_values,
        "container_hash": _json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    records=st.lists(st.tuples(_records, st.none() | _kube_maps), max_size=5),
    sub_second=st.integers(min_value=1, max_value=999_999_999),
)
def test_any_json_like_record_normalizes_without_raising(
    records: list[tuple[dict[str, Any], dict[str, Any] | None]], sub_second: int
) -> None:
    time_ns = T0 - T0 % 1_000_000_000 + sub_second
    entries = []
    for fields, kube in records:
        entries.append((time_ns, fields if kube is None else {**fields, "kubernetes": kube}))
    originals = copy.deepcopy(entries)

    out = normalize_fluent(TAG, entries, DEFAULT, OBSERVED)
    # A record's own time field (``"time": 100000000000``) rightly replaces the entry's time; without
    # time_keys every record keeps the time its entry came with.
    entry_times = normalize_fluent(TAG, entries, FluentNormalizeConfig(time_keys=[]), OBSERVED)

    assert len(out) == len(entries)
    assert entries == originals or _has_nan(originals)
    assert [record.time_unix_nano for record in entry_times] == [time_ns] * len(entries)
    for i, record in enumerate(out):
        assert isinstance(record, LogRecord)
        assert record.observed_time_unix_nano == OBSERVED + i
        assert record.attributes["fluent.tag"] == TAG
        assert 0 <= record.severity_number <= 24
        assert len(record.trace_id) in (0, 32) and len(record.span_id) in (0, 16)
        assert isinstance(record.resource, dict)


def test_equal_lines_in_one_receipt_stay_distinct_records() -> None:
    """Exporters derive idempotency ids from content: each record of a receipt gets its own observed time."""
    line = {"log": "GET /healthz 200"}
    records = normalize_fluent(
        "kube.app",
        [(1_000, dict(line)), (1_000, dict(line)), (1_000, dict(line))],
        FluentNormalizeConfig(),
        5_000,
    )
    assert [r.observed_time_unix_nano for r in records] == [5_000, 5_001, 5_002]


# ---- precedence of the special fields, whatever a record holds --------------------------------

# The documented orders (module docstring): the first field whose value is recognized wins.
SEVERITY_ORDER = ("level", "severity", "log.level", "levelname", "lvl", "loglevel", "log_level")
TRACE_ORDER = ("trace_id", "traceId", "traceID", "trace.id", "traceid", "otelTraceID", "dd.trace_id")
SPAN_ORDER = ("span_id", "spanId", "spanID", "span.id", "spanid", "otelSpanID", "dd.span_id")
SPECIAL_VALUES = st.sampled_from(
    ["info", "WARN", "error", "nonsense", 17, 3.0, TRACE, TRACE.upper(), TRACE[:16], "0" * 32, SPAN, "xy", ""]
)
SPECIAL_KEYS = st.sampled_from(SEVERITY_ORDER + TRACE_ORDER + SPAN_ORDER)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(SPECIAL_KEYS, SPECIAL_VALUES, max_size=6),
    st.dictionaries(SPECIAL_KEYS, SPECIAL_VALUES, max_size=4),
)
def test_special_fields_follow_the_documented_precedence(
    in_body: dict[str, Any], on_top: dict[str, Any]
) -> None:
    """JSON body fields before the record's own, each kind in its documented order; a winner is
    consumed (with an equal top-level copy), a refused value stays an attribute."""
    from collector.core.trace_ids import hex_id
    from collector.normalize.severity import severity_from_field

    def trace(value: Any) -> str:
        if type(value) is str and len(value) == 16:
            padded = hex_id(value, 8)
            return padded.rjust(32, "0") if padded else ""
        return hex_id(value, 16)

    readers = (
        (SEVERITY_ORDER, lambda v: severity_from_field(v) if severity_from_field(v)[0] else None),
        (TRACE_ORDER, trace),
        (SPAN_ORDER, lambda v: hex_id(v, 8)),
    )
    expected: list[Any] = []
    body_left, top_left = dict(in_body), dict(on_top)
    for order, read in readers:
        winner = None
        for source in (in_body, on_top):
            for key in order:
                if key in source and read(source[key]):
                    winner = (key, source[key], source is in_body)
                    break
            if winner is not None:
                break
        expected.append(read(winner[1]) if winner else None)
        if winner is not None:
            key, value, from_body = winner
            if from_body:
                del body_left[key]
                if top_left.get(key, object()) == value:
                    del top_left[key]  # the top-level copy of the winner (a different value stays)
            else:
                del top_left[key]
    kept = {**top_left, **body_left}  # the body's remaining fields override top-level keys
    record = {"log": orjson.dumps({"msg": "hi", **in_body}).decode(), **copy.deepcopy(on_top)}
    out = normalize_one(record)
    severity, trace_id, span_id = expected
    assert (out.severity_number, out.severity_text) == (severity if severity else (0, ""))
    assert (out.trace_id, out.span_id) == (trace_id or "", span_id or "")
    attributes = {k: v for k, v in out.attributes.items() if k != "fluent.tag"}
    assert attributes == kept
