"""LogRecord -> ECS document, data stream names and deterministic ``_id``s (exporters/ecs.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.model import LogRecord, Severity
from exporters import ecs

T0 = 1_714_564_800_123_456_789  # 2024-05-01T12:00:00.123456789Z

K8S_RESOURCE = {
    "service.name": "checkout",
    "host.name": "node-a",
    "k8s.namespace.name": "shop",
    "k8s.pod.name": "checkout-7d9f-abcde",
    "k8s.pod.uid": "2f1c9a1e-0000-4000-8000-000000000001",
    "k8s.container.name": "app",
    "k8s.node.name": "node-a",
    "k8s.pod.label.app": "checkout",
    "k8s.pod.label.app.kubernetes.io/name": "checkout-svc",
    "k8s.pod.annotation.prometheus.io/scrape": "true",
    "k8s.pod.ip": "10.0.0.7",
    "k8s.namespace.label.team": "payments",
    "k8s.namespace.annotation.owner.io/contact": "ops",
}


def doc(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("time_unix_nano", T0)
    return ecs.log_document(LogRecord(**kwargs), "generic", "default", now_unix_nano=1)


def leaf_count(value: Any) -> int:
    """Leaves of a JSON-like tree (a list is one leaf, an empty map none)."""
    if isinstance(value, dict):
        return sum(leaf_count(v) for v in value.values())
    return 0 if value is None else 1


# -- timestamps ---------------------------------------------------------------------------------------


def test_timestamp_keeps_nanoseconds() -> None:
    assert ecs.format_timestamp(T0) == "2024-05-01T12:00:00.123456789Z"
    assert ecs.format_timestamp(0) == "1970-01-01T00:00:00.000000000Z"
    assert ecs.format_timestamp(1_000_000_001) == "1970-01-01T00:00:01.000000001Z"


def test_timestamp_falls_back_to_observed_time_then_to_now() -> None:
    observed = T0 + 5_000_000_000
    d = ecs.log_document(LogRecord(time_unix_nano=0, observed_time_unix_nano=observed), "generic", "default")
    assert d["@timestamp"] == ecs.format_timestamp(observed)
    assert d["event"]["created"] == ecs.format_timestamp(observed)
    d = ecs.log_document(LogRecord(time_unix_nano=-5), "generic", "default", now_unix_nano=T0)
    assert d["@timestamp"] == ecs.format_timestamp(T0)
    assert "created" not in d.get("event", {})


# -- fields of the record itself ----------------------------------------------------------------------


def test_core_fields() -> None:
    d = doc(
        body="payment accepted",
        severity_number=Severity.WARN,
        severity_text="Warning",
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        span_id="00f067aa0ba902b7",
        scope_name="payments.logger",
        resource={"service.name": "checkout"},
    )
    assert d["@timestamp"] == "2024-05-01T12:00:00.123456789Z"
    assert d["message"] == "payment accepted"
    assert d["log"] == {"level": "Warning", "logger": "payments.logger"}
    assert d["event"] == {"severity": 13, "dataset": "generic"}
    assert d["trace"] == {"id": "4bf92f3577b34da6a3ce929d0e0e4736"}
    assert d["span"] == {"id": "00f067aa0ba902b7"}
    assert d["service"] == {"name": "checkout"}
    assert d["data_stream"] == {"type": "logs", "dataset": "generic", "namespace": "default"}


def test_log_level_from_severity_number_when_there_is_no_text() -> None:
    assert doc(severity_number=Severity.ERROR + 2)["log"]["level"] == "error"
    assert "log" not in doc(severity_number=0)
    assert "severity" not in doc()["event"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("plain line", "plain line"),
        ({"msg": "structured", "n": 1}, '{"msg":"structured","n":1}'),
        (["a", 1], '["a",1]'),
        (b"bytes \xc3\xa9", "bytes é"),
        (b"\xff\xfe", "\\xff\\xfe"),
        (42, "42"),
    ],
)
def test_message_from_every_kind_of_body(body: Any, message: str) -> None:
    assert doc(body=body)["message"] == message


def test_no_body_no_message() -> None:
    assert "message" not in doc(body=None)


# -- semantic conventions -> ECS ----------------------------------------------------------------------


def test_kubernetes_fields_from_resource_attributes() -> None:
    d = doc(resource=K8S_RESOURCE)
    assert d["kubernetes"] == {
        "namespace": "shop",
        "pod": {
            "name": "checkout-7d9f-abcde",
            "uid": "2f1c9a1e-0000-4000-8000-000000000001",
            "ip": "10.0.0.7",
        },
        "container": {"name": "app"},
        "node": {"name": "node-a"},
        # Dots in label keys become "_" (as Filebeat does): "app" and "app.kubernetes.io/name" coexist.
        "labels": {"app": "checkout", "app_kubernetes_io/name": "checkout-svc"},
        "annotations": {"prometheus_io/scrape": "true"},
        "namespace_labels": {"team": "payments"},
        "namespace_annotations": {"owner_io/contact": "ops"},
    }
    assert d["host"] == {"name": "node-a"}
    assert "k8s" not in d


def test_semantic_convention_renames() -> None:
    d = doc(
        resource={
            "service.instance.id": "i-1",
            "deployment.environment": "prod",
            "k8s.cluster.name": "eu-1",
            "host.arch": "amd64",
            "service.version": "1.2.3",
        }
    )
    assert d["service"] == {"node": {"name": "i-1"}, "environment": "prod", "version": "1.2.3"}
    assert d["orchestrator"] == {"cluster": {"name": "eu-1"}}
    assert d["host"] == {"architecture": "amd64"}


def test_record_attribute_wins_over_resource_attribute_and_keeps_both() -> None:
    d = doc(attributes={"host.name": "pod-host"}, resource={"host.name": "node-host", "k8s.pod.name": "p1"})
    assert d["host"] == {"name": "pod-host"}
    assert d["resource"] == {"attributes": {"host": {"name": "node-host"}}}
    d = doc(attributes={"k8s.pod.name": "from-record"}, resource={"k8s.pod.name": "from-resource"})
    assert d["kubernetes"]["pod"]["name"] == "from-record"
    assert d["resource"]["attributes"]["k8s"]["pod"]["name"] == "from-resource"


# -- other attributes ---------------------------------------------------------------------------------


def test_other_attributes_keep_their_names_nested() -> None:
    d = doc(
        attributes={"http": {"request": {"method": "GET"}}, "http.response.status_code": 200, "order_id": 7}
    )
    assert d["http"] == {"request": {"method": "GET"}, "response": {"status_code": 200}}
    assert d["order_id"] == 7


@pytest.mark.parametrize(
    ("attributes", "where"),
    [
        ({"host": "web-1"}, ("attributes", "host")),  # ECS field set used as a value
        ({"error": "boom"}, ("attributes", "error")),
        ({"message": "dup"}, ("attributes", "message")),  # ECS field already set
        ({"message.extra": 1}, ("attributes", "message", "extra")),  # object under an ECS value
        ({"@timestamp": "yesterday"}, ("attributes", "@timestamp")),
        ({"trace": "x"}, ("attributes", "trace")),
        ({"log.level": "shouting"}, ("attributes", "log", "level")),
        ({"event.dataset": "mine"}, ("attributes", "event", "dataset")),
    ],
)
def test_attribute_clashing_with_ecs_moves_under_attributes(
    attributes: dict[str, Any], where: tuple[str, ...]
) -> None:
    d = doc(
        body="m",
        severity_number=Severity.INFO,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        attributes=attributes,
    )
    node: Any = d
    for part in where:
        node = node[part]
    assert node == next(iter(attributes.values()))
    assert d["message"] == "m"
    assert d["log"]["level"] == "info"
    assert d["trace"]["id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert d["event"]["dataset"] == "generic"


def test_resource_attribute_clashing_moves_under_resource_attributes() -> None:
    d = doc(attributes={"region": "a"}, resource={"region": "b", "user": "svc"})
    assert d["region"] == "a"
    assert d["resource"]["attributes"] == {"region": "b", "user": "svc"}


def test_attributes_conflicting_with_each_other_keep_both_values() -> None:
    d = doc(attributes={"a": 1, "a.b": 2, "x.y": 3, "x": {"y": {"z": 4}}})
    assert d["a"] == {"value": 1, "b": 2}
    # x.y is both a value (3) and the object holding z.
    assert d["x"]["y"] == {"value": 3, "z": 4}


def test_attribute_values_are_made_indexable() -> None:
    d = doc(
        attributes={
            "raw": b"\x00\x01",
            "huge": 2**70,
            "negative_huge": -(2**64),
            "gone": None,
            "tags": {"b", "a"},
            "list": [1, b"\x02", {"k": None}],
            "a..b.": "dots",
            "": "empty",
            3: "int key",
        }
    )
    assert d["raw"] == "AAE="
    assert d["huge"] == str(2**70)
    assert d["negative_huge"] == str(-(2**64))
    assert "gone" not in d
    assert d["tags"] == ["a", "b"]
    assert d["list"] == [1, "Ag==", {}]
    assert d["a"] == {"b": "dots"}
    assert d["_"] == "empty"
    assert d["3"] == "int key"
    orjson.dumps(d)


def test_routing_attributes_are_not_copied() -> None:
    d = ecs.log_document(
        LogRecord(T0, attributes={"data_stream.dataset": "nginx", "data_stream": {"namespace": "prod"}}),
        "nginx",
        "prod",
    )
    assert d["data_stream"] == {"type": "logs", "dataset": "nginx", "namespace": "prod"}
    assert "attributes" not in d


_keys = st.sampled_from(
    [
        "a",
        "b",
        "a.b",
        "a.b.c",
        "host",
        "host.name",
        "message",
        "message.x",
        "log",
        "log.level",
        "x..y",
        "data_stream",
        "service.name",
        "k8s.pod.name",
        "k8s.pod.label.app",
        "attributes",
        "attributes.a",
        "value",
        "a.value",
    ]
)
_values = st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.none(), st.binary(max_size=3))
_trees = st.recursive(_values, lambda inner: st.dictionaries(_keys, inner, max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(
    attributes=st.dictionaries(_keys, _trees, max_size=6), resource=st.dictionaries(_keys, _trees, max_size=6)
)
def test_every_attribute_lands_exactly_once_and_no_path_is_both_value_and_object(
    attributes: dict[str, Any], resource: dict[str, Any]
) -> None:
    bare = ecs.log_document(LogRecord(T0, body="m", severity_number=9), "generic", "default", 1)
    full = ecs.log_document(
        LogRecord(T0, body="m", severity_number=9, attributes=attributes, resource=resource),
        "generic",
        "default",
        1,
    )
    # Nesting never overwrote anything: every input leaf is somewhere, the ECS fields are untouched.
    assert leaf_count(full) == leaf_count(bare) + leaf_count(attributes) + leaf_count(resource)
    for key in ("@timestamp", "message"):
        assert full[key] == bare[key]
    assert full["log"]["level"] == "info"
    assert full["data_stream"] == bare["data_stream"]

    def no_dotted_or_empty_keys(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                assert k and "." not in k
                no_dotted_or_empty_keys(v)

    no_dotted_or_empty_keys(full)
    orjson.dumps(full)


# -- data stream names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "dataset", "namespace"),
    [
        ("Nginx.Access", "nginx.access", "nginx.access"),
        ("my-app", "my_app", "my-app"),  # "-" separates the name's parts: never in a dataset
        ('a\\b/c*d?e"f<g>h|i j,k#l:m', "a_b_c_d_e_f_g_h_i_j_k_l_m", "a_b_c_d_e_f_g_h_i_j_k_l_m"),
        ("x" * 150, "x" * 100, "x" * 100),
        ("", "", ""),
    ],
)
def test_sanitizing_follows_elasticsearch(raw: str, dataset: str, namespace: str) -> None:
    assert ecs.sanitize_dataset(raw) == dataset
    assert ecs.sanitize_namespace(raw) == namespace


def test_sanitized_parts_fit_the_index_name_limit_in_bytes() -> None:
    part = ecs.sanitize_dataset("é" * 100)
    assert len(part.encode()) <= 100 and part == "é" * 50
    assert len(ecs.data_stream_name("logs", part, ecs.sanitize_namespace("ü" * 99)).encode()) <= 255
    assert ecs.sanitize_dataset("bad\ud800surrogate") == "bad_surrogate"  # "?" is then replaced too


def test_route_prefers_record_then_resource_then_defaults() -> None:
    assert ecs.route({}, {}, "generic", "default") == ("generic", "default")
    assert ecs.route({"data_stream.dataset": "App-Logs"}, {}, "generic", "default") == ("app_logs", "default")
    assert ecs.route(
        {"data_stream.namespace": "Prod"},
        {"data_stream.dataset": "svc", "data_stream.namespace": "dev"},
        "g",
        "d",
    ) == ("svc", "prod")
    assert ecs.route({"data_stream": {"dataset": "nested"}}, {}, "g", "d") == ("nested", "d")
    assert ecs.route({"data_stream.dataset": "***"}, {}, "g", "d") == ("___", "d")
    assert ecs.route({"data_stream.dataset": ""}, {"data_stream.dataset": 7}, "g", "d") == ("7", "d")
    assert ecs.data_stream_name("logs", "nginx.access", "prod") == "logs-nginx.access-prod"


# -- ids ----------------------------------------------------------------------------------------------


def record(**overrides: Any) -> LogRecord:
    base: dict[str, Any] = {
        "time_unix_nano": T0,
        "body": "GET /cart 200",
        "severity_number": 9,
        "severity_text": "INFO",
        "attributes": {"http": {"status": 200}, "path": "/cart"},
        "resource": {"service.name": "checkout", "k8s.pod.name": "p1"},
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
        "observed_time_unix_nano": T0 + 1000,
        "scope_name": "access",
    }
    base.update(overrides)
    return LogRecord(**base)


def test_id_is_deterministic_and_url_safe() -> None:
    [first] = ecs.document_ids([record()])
    [again] = ecs.document_ids([record()])
    assert first == again
    assert len(first) == 22 and all(c.isalnum() or c in "-_" for c in first)
    # Key order does not matter, only content.
    reordered = record(
        attributes={"path": "/cart", "http": {"status": 200}},
        resource={"k8s.pod.name": "p1", "service.name": "checkout"},
    )
    assert ecs.document_ids([reordered]) == [first]


@pytest.mark.parametrize(
    "change",
    [
        {"time_unix_nano": T0 + 1},
        {"observed_time_unix_nano": T0 + 2000},
        {"body": "GET /cart 500"},
        {"severity_number": 17},
        {"severity_text": "WARN"},
        {"attributes": {"http": {"status": 201}, "path": "/cart"}},
        {"resource": {"service.name": "checkout", "k8s.pod.name": "p2"}},
        {"trace_id": "0" * 32},
        {"span_id": "1" * 16},
        {"scope_name": "other"},
        {"body": b"GET /cart 200"},
    ],
)
def test_id_changes_with_any_part_of_the_record(change: dict[str, Any]) -> None:
    assert ecs.document_ids([record(**change)]) != ecs.document_ids([record()])


def test_an_id_depends_on_its_record_alone() -> None:
    """A retry resends a subset of a bulk request: each record must keep the id it had in it."""
    a, b = record(), record(body="other")
    ids = ecs.document_ids([a, b, record(observed_time_unix_nano=a.observed_time_unix_nano + 1)])
    assert len(set(ids)) == 3  # equal lines received apart (receivers number them) stay apart
    assert ecs.document_ids([b]) == [ids[1]]
    assert ecs.document_ids([record(), b]) == ids[:2]


def test_ids_of_odd_values_are_deterministic() -> None:
    odd = {"big": 2**80, "raw": b"\x00", "set": {3, 1, 2}, "bad": "\ud800", 5: "int key"}
    assert ecs.document_ids([record(attributes=odd)]) == ecs.document_ids([record(attributes=dict(odd))])
    assert ecs.document_ids([record(attributes={"v": b"AA=="})]) != ecs.document_ids(
        [record(attributes={"v": "AA=="})]
    )
