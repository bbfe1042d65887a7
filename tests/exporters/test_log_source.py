"""The spliced log documents (exporters/elasticsearch/log_source.py) against ecs.log_document."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.core.model import LogRecord
from exporters.elasticsearch import ecs
from exporters.elasticsearch.ecs_fields import attribute_fields
from exporters.elasticsearch.log_source import ResourcePart, log_source

NOW = 1_733_400_000_000_000_000
POD = {
    "k8s.namespace.name": "shop",
    "k8s.pod.name": "payment-7d9f8c6b5-x2x9q",
    "k8s.container.name": "payment",
    "container.id": "0" * 64,
    "container.image.tags": ["1.3.0"],
    "k8s.pod.label.app.kubernetes.io/name": "payment",
    "service.name": "payment",
}


def _whole(record: LogRecord) -> dict[str, Any]:
    return ecs.log_document(record, "generic", "default", NOW, attribute_fields(record.resource))


def _spliced(record: LogRecord) -> bytes | None:
    return log_source(record, "generic", "default", NOW, ResourcePart(attribute_fields(record.resource)))


def test_a_kubernetes_record_is_spliced_and_equals_the_whole_document() -> None:
    record = LogRecord(
        NOW,
        "GET /items 200",
        9,
        "info",
        {"http.route": "/items", "status": 200, "log.iostream": "stdout", "fluent.tag": "kube.var"},
        POD,
        trace_id="5b8efff798038103d269b633813fc60c",
        observed_time_unix_nano=NOW + 1,
    )
    source = _spliced(record)
    assert source is not None and source.endswith(b"}\n")
    assert orjson.loads(source) == _whole(record)


def test_a_record_sharing_a_top_level_name_with_its_resource_takes_the_whole_path() -> None:
    # The record's "kubernetes" value would clash with the resource's kubernetes.* fields.
    record = LogRecord(NOW, "x", attributes={"kubernetes": "yes"}, resource=POD)
    assert _spliced(record) is None
    assert _whole(record)["attributes"] == {"kubernetes": "yes"}


def test_map_and_none_values_and_invalid_utf8_take_the_whole_path() -> None:
    assert _spliced(LogRecord(NOW, "x", attributes={"a": {"b": 1}}, resource=POD)) is None
    assert _spliced(LogRecord(NOW, "x", attributes={"a": None}, resource=POD)) is None
    assert _spliced(LogRecord(NOW, "bad \ud800 text", resource=POD)) is None
    assert _spliced(LogRecord(NOW, "x", resource={"service.name": "bad \ud800"})) is None


_KEYS = st.sampled_from(
    [
        "a", "a.b", "a.b.c", "host", "host.name", "message", "message.x", "trace", "trace.id", "span.id",
        "log.level", "log", "event.dataset", "error", "kubernetes", "kubernetes.pod.name", "k8s.pod.name",
        "k8s.pod.label.app", "service.name", "service", "data_stream.dataset", "data_stream.namespace",
        "data_stream", "attributes", "attributes.a", "resource", "resource.attributes.a", "@timestamp",
        "container.id", "status", "http.route", "a..b", ".a", "labels",
    ]
)  # fmt: skip
_VALUES = st.one_of(
    st.text(max_size=5),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=2),
    st.dictionaries(st.sampled_from(["x", "y.z"]), st.integers(), max_size=2),
    st.binary(max_size=3),
)


@settings(max_examples=400, deadline=None)
@given(
    attributes=st.dictionaries(_KEYS, _VALUES, max_size=6),
    resource=st.dictionaries(_KEYS, _VALUES, max_size=6),
    severity=st.integers(min_value=0, max_value=24),
    text=st.sampled_from(["", "warn"]),
    scope=st.sampled_from(["", "app.logger"]),
    trace=st.sampled_from(["", "5b8efff798038103d269b633813fc60c"]),
    body=st.one_of(
        st.none(), st.text(max_size=5), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2)
    ),
)
def test_whenever_the_splice_answers_it_equals_the_whole_document(
    *,
    attributes: dict[str, Any],
    resource: dict[str, Any],
    severity: int,
    text: str,
    scope: str,
    trace: str,
    body: Any,
) -> None:
    record = LogRecord(NOW, body, severity, text, attributes, resource, trace, "", NOW + 5, scope)
    source = _spliced(record)
    if source is not None:
        assert orjson.loads(source) == _whole(record)
