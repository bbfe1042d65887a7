"""LogRecord and Span -> ECS documents, data stream names and deterministic ``_id``s (exporters/ecs.py)."""

from __future__ import annotations

import datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.core.model import LogRecord, Scope, Severity, Span, SpanEvent, SpanKind, SpanLink, StatusCode
from exporters.elasticsearch import ecs

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


def test_non_finite_floats_and_bytes_keys_stay_valid_json() -> None:
    # Normalizers already clean these; the exporter edge must not write NaN (invalid JSON) either.
    d = doc(attributes={"nan": float("nan"), "nested": {"inf": float("-inf"), b"bin": 1}})
    assert d["nan"] == "NaN"
    assert d["nested"] == {"inf": "-Infinity", "bin": 1}
    assert b"NaN" in orjson.dumps(d) and orjson.loads(orjson.dumps(d)) == d


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


def test_ids_stay_the_same_across_versions() -> None:
    """Batches queued before an upgrade are sent after it: their ids must not change, or a record
    that landed before the restart would land twice. These were computed by burnline 6ed2526."""
    full = LogRecord(
        1733400000123456789,
        "GET /cart 200",
        9,
        "INFO",
        {"http": {"status": 200}, "path": "/cart", "b": b"\x00\xff", "n": [1, 2.5, None, True]},
        {"service.name": "checkout", "k8s.pod.name": "p1"},
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        1733400000123457789,
        "access",
    )
    odd_keys = LogRecord(1, "x", attributes={"k": {1: "int key", "a": 2**70}})  # type: ignore[dict-item]
    assert ecs.document_ids([full, odd_keys]) == ["VwAfdMdp_qpdAu72K9-BmQ", "yCNRjrENSwjzeJfgf_ZqjQ"]


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


# -- spans --------------------------------------------------------------------------------------------

TRACE = "01020304050607080807060504030201"
SPAN = "1920212223242526"


def span(**kwargs: Any) -> Span:
    kwargs.setdefault("trace_id", TRACE)
    kwargs.setdefault("span_id", SPAN)
    kwargs.setdefault("name", "client span")
    kwargs.setdefault("start_time_unix_nano", T0)
    kwargs.setdefault("end_time_unix_nano", T0 + 1_000_000_000)
    return Span(**kwargs)


def span_doc(**kwargs: Any) -> dict[str, Any]:
    return ecs.span_document(span(**kwargs), "generic", "default", now_unix_nano=1)


def test_span_document_follows_the_collectors_ecs_mode() -> None:
    """The OpenTelemetry Collector's TestEncodeSpanECSMode, plus what burnline adds (duration, events,
    the framework, the data stream)."""
    resource = {
        "cloud.provider": "aws",
        "deployment.environment.name": "BETA",
        "service.instance.id": "23",
        "service.name": "some-service",
        "service.version": "env-version-1234",
        "k8s.pod.name": "pod-1",
    }
    d = span_doc(
        parent_span_id="0102030405060708",
        kind=SpanKind.CLIENT,
        status_code=StatusCode.ERROR,
        status_message="Test",
        attributes={
            "db.system": "sql",
            "db.namespace": "users",
            "db.query.text": "SELECT * FROM users WHERE user_id=?",
            "http.response.body.size": 312,
        },
        links=[
            SpanLink(TRACE, "1112131415161718"),
            SpanLink("21222324252627282827262524232221", "3132333435363738", attributes={"why": "batch"}),
        ],
        events=[SpanEvent(T0 + 5, "exception", {"exception.type": "IOError", "exception.message": "eof"})],
        resource=resource,
        scope=Scope("io.opentelemetry.jdbc", "2.1.0"),
    )
    assert d == {
        "@timestamp": "2024-05-01T12:00:00.123456789Z",
        "trace": {"id": TRACE},
        "span": {
            "id": SPAN,
            "name": "client span",
            "kind": "CLIENT",
            "db": {"type": "sql", "instance": "users", "statement": "SELECT * FROM users WHERE user_id=?"},
            "status": {"message": "Test"},
            "events": [
                {
                    "time": "2024-05-01T12:00:00.123456794Z",
                    "name": "exception",
                    "attributes": {"exception.type": "IOError", "exception.message": "eof"},
                }
            ],
            "links": [
                {"trace": {"id": TRACE}, "span": {"id": "1112131415161718"}},
                {
                    "trace": {"id": "21222324252627282827262524232221"},
                    "span": {"id": "3132333435363738"},
                    "attributes": {"why": "batch"},
                },
            ],
        },
        "parent": {"id": "0102030405060708"},
        "event": {"duration": 1_000_000_000, "outcome": "failure"},
        "service": {
            "name": "some-service",
            "version": "env-version-1234",
            "environment": "BETA",
            "node": {"name": "23"},
            "framework": {"name": "io.opentelemetry.jdbc", "version": "2.1.0"},
        },
        "cloud": {"provider": "aws"},
        "kubernetes": {"pod": {"name": "pod-1"}},
        "http": {"response": {"encoded_body_size": 312}},
        "data_stream": {"type": "traces", "dataset": "generic", "namespace": "default"},
    }


def test_root_span_has_no_parent_and_unspecified_kind_no_kind() -> None:
    d = span_doc()
    assert "parent" not in d
    assert "kind" not in d["span"]
    assert set(d["span"]) == {"id", "name"}
    assert d["event"] == {"duration": 1_000_000_000, "outcome": "unknown"}


@pytest.mark.parametrize(
    ("status", "kind", "attributes", "outcome"),
    [
        (StatusCode.OK, SpanKind.SERVER, {}, "success"),
        (StatusCode.ERROR, SpanKind.INTERNAL, {}, "failure"),
        (StatusCode.UNSET, SpanKind.INTERNAL, {}, "unknown"),
        (StatusCode.UNSET, SpanKind.SERVER, {"http.response.status_code": 503}, "failure"),
        (StatusCode.UNSET, SpanKind.SERVER, {"http.status_code": "500"}, "failure"),  # pre-1.21 name
        (StatusCode.UNSET, SpanKind.SERVER, {"http.response.status_code": 404}, "success"),  # the client's
        (StatusCode.UNSET, SpanKind.CLIENT, {"http.response.status_code": 503}, "success"),  # server marks it
        (StatusCode.OK, SpanKind.SERVER, {"http.response.status_code": 500}, "failure"),
        (StatusCode.UNSET, SpanKind.UNSPECIFIED, {"http.response.status_code": 502}, "failure"),
        (1, 2, {}, "success"),  # plain ints, as the OTLP receiver reads them
        (0, 0, {"http.response.status_code": 502}, "failure"),
        (2, 3, {}, "failure"),
    ],
)
def test_event_outcome_is_burnlines_error_definition(
    status: StatusCode, kind: SpanKind, attributes: dict[str, Any], outcome: str
) -> None:
    s = span(status_code=status, kind=kind, attributes=attributes)
    assert ecs.event_outcome(s) == outcome
    assert (outcome == "failure") == s.is_error
    assert ecs.span_document(s, "generic", "default")["event"]["outcome"] == outcome


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        (SpanKind.INTERNAL, "INTERNAL"),
        (SpanKind.SERVER, "SERVER"),
        (SpanKind.CLIENT, "CLIENT"),
        (SpanKind.PRODUCER, "PRODUCER"),
        (SpanKind.CONSUMER, "CONSUMER"),
    ],
)
def test_span_kind_names_are_elastic_apms(kind: SpanKind, name: str) -> None:
    assert span_doc(kind=kind)["span"]["kind"] == name


def test_span_timestamp_falls_back_to_end_then_now() -> None:
    assert span_doc(start_time_unix_nano=0)["@timestamp"] == ecs.format_timestamp(T0 + 1_000_000_000)
    d = ecs.span_document(span(start_time_unix_nano=0, end_time_unix_nano=0), "generic", "default", T0)
    assert d["@timestamp"] == ecs.format_timestamp(T0)
    assert d["event"]["duration"] == 0


def test_span_attributes_clashing_with_span_fields_move_under_attributes() -> None:
    d = span_doc(
        attributes={
            "span.name": "mine",
            "trace": "t",
            "event.outcome": "great",
            "messaging.operation.name": "x",
        },
        resource={"service.name": "svc", "span.id": "r"},
        scope=Scope("lib", attributes={"service.name": "from scope", "lib.flag": True}),
    )
    assert d["span"]["name"] == "client span" and d["span"]["id"] == SPAN
    assert d["span"]["action"] == "x"  # messaging.operation.name, as the Collector maps it
    assert d["event"]["outcome"] == "unknown"
    assert d["attributes"] == {"span": {"name": "mine"}, "trace": "t", "event": {"outcome": "great"}}
    # Scope attributes rank between the span's and the resource's.
    assert d["service"]["name"] == "from scope"
    assert d["resource"]["attributes"] == {"service": {"name": "svc"}, "span": {"id": "r"}}
    assert d["lib"] == {"flag": True}


def test_older_database_conventions_map_too_and_the_newer_wins() -> None:
    d = span_doc(attributes={"db.statement": "SELECT 1", "db.name": "shop"})
    assert d["span"]["db"] == {"statement": "SELECT 1", "instance": "shop"}
    both = span_doc(attributes={"db.query.text": "SELECT 2", "db.statement": "SELECT 1"})
    assert both["span"]["db"]["statement"] == "SELECT 2"
    assert both["attributes"] == {"db": {"statement": "SELECT 1"}}


def test_event_and_link_attributes_stay_dotted_and_conflict_free() -> None:
    d = span_doc(
        events=[
            SpanEvent(T0, "a", {"x": 1, "x.y": 2, "nested": {"k": b"\x00"}, "none": None}),
            SpanEvent(T0 + 1, "b"),
        ],
        links=[SpanLink(TRACE, SPAN, attributes={"big": 2**70})],
    )
    first, second = d["span"]["events"]
    assert first["attributes"] == {"x.value": 1, "x.y": 2, "nested.k": "AA=="}
    assert second == {"time": ecs.format_timestamp(T0 + 1), "name": "b"}
    assert d["span"]["links"][0]["attributes"] == {"big": str(2**70)}


def test_span_routing_attributes_choose_the_stream_and_are_not_copied() -> None:
    s = span(attributes={"data_stream.dataset": "Checkout"}, resource={"data_stream.namespace": "prod"})
    dataset, namespace = ecs.route(s.attributes, s.resource, "generic", "default")
    assert (dataset, namespace) == ("checkout", "prod")
    d = ecs.span_document(s, dataset, namespace)
    assert d["data_stream"] == {"type": "traces", "dataset": "checkout", "namespace": "prod"}
    assert "attributes" not in d and "resource" not in d


def test_span_document_id_is_trace_and_span_id() -> None:
    assert ecs.span_document_id(span()) == TRACE + SPAN
    assert ecs.span_document_id(span(trace_id=TRACE.upper())) == TRACE + SPAN
    # Only the identity counts: the same span resent with other content keeps its _id.
    assert ecs.span_document_id(span(name="renamed", end_time_unix_nano=T0 + 5)) == TRACE + SPAN
    assert ecs.span_document_id(span(span_id="1920212223242527")) != TRACE + SPAN


@pytest.mark.parametrize(
    "ids",
    [
        {"trace_id": ""},
        {"trace_id": "0" * 32},
        {"trace_id": "xyz" + "0" * 29},
        {"trace_id": "ab" * 8},  # 64-bit: not an OpenTelemetry trace id
        {"span_id": ""},
        {"span_id": "0" * 16},
        {"span_id": "1" * 15},
    ],
)
def test_invalid_span_ids_have_no_document_id(ids: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="hex digits"):
        ecs.span_document_id(span(**ids))


@settings(max_examples=200, deadline=None)
@given(
    attributes=st.dictionaries(_keys, _trees, max_size=6),
    resource=st.dictionaries(_keys, _trees, max_size=6),
    event_attributes=st.dictionaries(_keys, _trees, max_size=6),
)
def test_every_span_attribute_lands_once_and_no_path_is_both_value_and_object(
    attributes: dict[str, Any], resource: dict[str, Any], event_attributes: dict[str, Any]
) -> None:
    bare = span_doc(events=[SpanEvent(T0, "e")])
    full = span_doc(attributes=attributes, resource=resource, events=[SpanEvent(T0, "e", event_attributes)])
    event = full["span"].pop("events")[0]
    bare["span"].pop("events")
    assert leaf_count(full) == leaf_count(bare) + leaf_count(attributes) + leaf_count(resource)
    assert leaf_count(event.get("attributes", {})) == leaf_count(event_attributes)
    for key in ("@timestamp", "trace", "data_stream", "event"):
        assert full[key] == bare[key]
    assert full["span"]["id"] == SPAN and full["span"]["name"] == "client span"
    names = set(event.get("attributes", {}))
    assert not any(n.startswith(m + ".") for n in names for m in names)  # no value is also an object
    orjson.dumps(full)


def test_event_attributes_that_flatten_to_one_name_are_both_kept() -> None:
    """Found by the property test above: {"a.b": 0, "a": {"b": 1}} used to lose one value."""
    doc = span_doc(events=[SpanEvent(T0, "e", {"a.b": 0, "a": {"b": 1}})])
    assert doc["span"]["events"][0]["attributes"] == {"a.b": 0, "a.b_2": 1}


@given(st.integers(min_value=0, max_value=253_402_300_799_999_999_999))  # up to 9999-12-31
def test_timestamps_are_the_datetime_isoformat_with_nanoseconds(unix_nano: int) -> None:
    seconds, nanos = divmod(unix_nano, 1_000_000_000)
    whole = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert ecs.format_timestamp(unix_nano) == f"{whole}.{nanos:09d}Z"
