"""The compiled span documents (exporters/elasticsearch/span_source.py) against ecs.span_document."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.core.model import Scope, Span, SpanEvent, SpanKind, SpanLink, StatusCode
from exporters.elasticsearch import bulk_items, ecs
from exporters.elasticsearch.config import DataStreamConfig
from exporters.elasticsearch.ecs_fields import attribute_fields, utf8_safe
from exporters.elasticsearch.span_source import SpanResource, span_document_id, span_source

NOW = 1_733_400_000_000_000_000
TRACE = "5b8efff798038103d269b633813fc60c"
SPAN = "eee19b7ec3c1b174"
SERVICE = {
    "service.name": "checkout",
    "service.version": "1.4.2",
    "k8s.namespace.name": "shop",
    "k8s.pod.name": "checkout-7d9f8c6b5-x2x9q",
    "telemetry.sdk.language": "python",
}


def _whole(span: Span, dataset: str = "generic", namespace: str = "default") -> bytes:
    """What encode_spans made before span_source: the whole document, encoded."""
    document = ecs.span_document(span, dataset, namespace, NOW, attribute_fields(span.resource))
    try:
        return orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return orjson.dumps(utf8_safe(document), option=orjson.OPT_APPEND_NEWLINE)


def _compiled(span: Span, dataset: str = "generic", namespace: str = "default") -> bytes | None:
    return span_source(span, dataset, namespace, NOW, SpanResource(attribute_fields(span.resource)))


def _server_span(**kwargs: Any) -> Span:
    fields: dict[str, Any] = {
        "trace_id": TRACE,
        "span_id": SPAN,
        "name": "GET /api/v1/items/{id}",
        "start_time_unix_nano": NOW,
        "end_time_unix_nano": NOW + 5_000_000,
        "parent_span_id": "1112131415161718",
        "kind": SpanKind.SERVER,
        "attributes": {
            "http.request.method": "GET",
            "http.route": "/api/v1/items/{id}",
            "http.response.status_code": 200,
            "url.path": "/api/v1/items/7",
        },
        "resource": SERVICE,
        "scope": Scope("opentelemetry.instrumentation.aiohttp_server", "0.45b0"),
    }
    fields.update(kwargs)
    return Span(**fields)


def test_an_instrumented_http_span_is_compiled_to_the_same_bytes() -> None:
    span = _server_span()
    source = _compiled(span)
    assert source is not None and source.endswith(b"}\n")
    assert source == _whole(span)
    # The same shape again (the cached builder) with other values.
    other = _server_span(name="POST /cart", attributes={**span.attributes, "url.path": "/cart"})
    assert _compiled(other) == _whole(other)


def test_events_links_and_status_are_compiled_to_the_same_bytes() -> None:
    span = _server_span(
        status_code=StatusCode.ERROR,
        status_message="upstream timed out",
        events=[
            SpanEvent(
                NOW + 1, "exception", {"exception.type": "Timeout", "a": 1, "a.b": {"c": None, "d": 2}}
            ),
            SpanEvent(NOW + 2, "retry"),
        ],
        links=[SpanLink("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", attributes={"k": [1, 2]})],
        scope=Scope("lib", "", {"lib.flag": True}),
    )
    source = _compiled(span)
    assert source is not None
    assert source == _whole(span)


def test_map_and_none_values_and_invalid_utf8_take_the_whole_path() -> None:
    assert _compiled(_server_span(attributes={"a": {"b": 1}})) is None
    assert _compiled(_server_span(attributes={"a": None})) is None
    assert _compiled(_server_span(scope=Scope("lib", "", {"a": {"b": 1}}))) is None
    assert _compiled(_server_span(name="bad \ud800 name")) is None
    assert _compiled(_server_span(resource={"service.name": "bad \ud800"})) is None


@pytest.mark.parametrize(
    ("trace_id", "span_id"),
    [
        (TRACE, SPAN),
        (TRACE.upper(), SPAN),
        (TRACE, SPAN.upper()),
        ("0" * 32, SPAN),
        (TRACE, "0" * 16),
        ("g" * 32, SPAN),
        (TRACE[:-1], SPAN + "a"),
        (" " + TRACE[1:], SPAN),
        ("", ""),
    ],
)
def test_the_document_id_fast_path_answers_as_ecs_does(trace_id: str, span_id: str) -> None:
    span = _server_span(trace_id=trace_id, span_id=span_id)
    try:
        expected = ecs.span_document_id(span)
    except ValueError as exc:
        with pytest.raises(ValueError, match="is not"):
            span_document_id(span)
        assert str(exc)
    else:
        assert span_document_id(span) == expected


_KEYS = st.sampled_from(
    [
        "a", "a.b", "a.b.c", "a..b", ".a", "host", "host.name", "message", "trace", "trace.id", "span",
        "span.id", "span.name", "span.kind.x", "span.events", "parent", "parent.id", "event", "event.outcome",
        "service", "service.name", "service.framework", "service.framework.name", "service.node.name",
        "service.instance.id", "db.system", "db.name", "db.statement", "span.db.type",
        "messaging.operation.name", "http.response.body.size", "http.response.status_code",
        "http.status_code", "k8s.pod.name", "kubernetes.pod.name", "k8s.pod.label.app.kubernetes.io/name",
        "data_stream", "data_stream.dataset", "data_stream.namespace", "data_stream.type", "attributes",
        "attributes.a", "scope", "scope.attributes.a", "resource", "resource.attributes.a", "@timestamp",
        "labels", "error",
    ]
)  # fmt: skip
_VALUES = st.one_of(
    st.text(max_size=4),
    st.sampled_from(["\ud800", "500", "200"]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=100, max_value=599),
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(st.one_of(st.integers(min_value=-5, max_value=5), st.text(max_size=2)), max_size=2),
    st.dictionaries(st.sampled_from(["x", "y.z", "name"]), st.one_of(st.integers(), st.none()), max_size=2),
    st.binary(max_size=3),
)
_ATTRIBUTES = st.dictionaries(_KEYS, _VALUES, max_size=6)
_IDS = st.sampled_from([TRACE, "0af7651916cd43dd8448eb211c80319c"])
_EVENTS = st.lists(
    st.builds(SpanEvent, st.integers(min_value=0, max_value=NOW), st.text(max_size=3), _ATTRIBUTES),
    max_size=2,
)
_LINKS = st.lists(
    st.builds(SpanLink, _IDS, st.sampled_from([SPAN, "b7ad6b7169203331"]), attributes=_ATTRIBUTES), max_size=2
)
_SCOPES = st.one_of(
    st.builds(Scope, st.sampled_from(["", "lib"]), st.sampled_from(["", "1.0"]), _ATTRIBUTES),
    st.builds(Scope, st.sampled_from(["", "io.opentelemetry.http"]), st.sampled_from(["", "2.1"])),
)


@settings(max_examples=500, deadline=None)
@given(
    attributes=_ATTRIBUTES,
    resource=_ATTRIBUTES,
    scope=_SCOPES,
    events=_EVENTS,
    links=_LINKS,
    kind=st.sampled_from(list(SpanKind)),
    status=st.sampled_from(list(StatusCode)),
    status_message=st.sampled_from(["", "boom"]),
    parent=st.sampled_from(["", "1112131415161718"]),
    start=st.sampled_from([0, NOW]),
    end=st.sampled_from([0, NOW - 1, NOW + 7]),
    name=st.text(max_size=4),
    route=st.sampled_from([("generic", "default"), ("nginx.access", "prod")]),
)
def test_whenever_the_compiled_shape_answers_it_equals_the_whole_document(
    *,
    attributes: dict[str, Any],
    resource: dict[str, Any],
    scope: Scope,
    events: list[SpanEvent],
    links: list[SpanLink],
    kind: SpanKind,
    status: StatusCode,
    status_message: str,
    parent: str,
    start: int,
    end: int,
    name: str,
    route: tuple[str, str],
) -> None:
    span = Span(
        TRACE,
        SPAN,
        name,
        start,
        end,
        parent_span_id=parent,
        kind=kind,
        attributes=attributes,
        events=events,
        links=links,
        status_code=status,
        status_message=status_message,
        resource=resource,
        scope=scope,
    )
    source = _compiled(span, *route)
    if source is not None:
        assert source == _whole(span, *route)
    # Map-valued and None span or scope attributes are the only reason besides invalid UTF-8.
    leaf = all(
        v is not None and not isinstance(v, dict) for v in (*attributes.values(), *scope.attributes.values())
    )
    try:
        orjson.dumps(ecs.span_document(span, *route, NOW))
    except orjson.JSONEncodeError:
        leaf = False  # not valid UTF-8
    if leaf:
        assert source is not None


@settings(max_examples=150, deadline=None)
@given(
    spans=st.lists(
        st.builds(
            Span,
            _IDS,
            st.sampled_from([SPAN, "b7ad6b7169203331", "0" * 16]),
            st.text(max_size=3),
            st.integers(min_value=0, max_value=NOW),
            st.integers(min_value=0, max_value=NOW),
            attributes=_ATTRIBUTES,
            resource=st.sampled_from([SERVICE, {}, {"data_stream.dataset": "web", "service": "x"}]),
            scope=_SCOPES,
            events=_EVENTS,
        ),
        max_size=6,
    ),
    dynamic=st.booleans(),
)
def test_encode_spans_answers_as_the_whole_documents_do(*, spans: list[Span], dynamic: bool) -> None:
    config = DataStreamConfig(dynamic=dynamic)
    items, failed = bulk_items.encode_spans(spans, config)
    expected_failed = []
    expected = []
    for span in spans:
        try:
            doc_id = ecs.span_document_id(span)
        except ValueError as exc:
            expected_failed.append((span, f"ValueError: {exc}"))
            continue
        dataset, namespace = (
            ecs.route(span.attributes, span.resource, config.traces_dataset, config.namespace)
            if dynamic
            else (config.traces_dataset, config.namespace)
        )
        document = ecs.span_document(span, dataset, namespace, 0, attribute_fields(span.resource))
        expected.append((f"traces-{dataset}-{namespace}", doc_id, document))
    assert failed == expected_failed
    assert len(items) == len(expected)
    for item, (index, doc_id, document) in zip(items, expected, strict=True):
        assert (item.index, item.doc_id) == (index, doc_id)
        got = orjson.loads(item.source)
        # The encoding time stands in only for spans without start and end times.
        assert {k: v for k, v in got.items() if k != "@timestamp"} == utf8_safe(
            {k: v for k, v in document.items() if k != "@timestamp"}
        )
