"""Bulk items from records (exporters/elasticsearch/bulk.py): resource parts shared across batches."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from collector.core.model import LogRecord, Signal
from exporters.elasticsearch import bulk, ecs
from exporters.elasticsearch.config import DataStreamConfig
from exporters.elasticsearch.ecs_fields import attribute_fields

NOW = 1_733_400_000_000_000_000
POD = {
    "k8s.namespace.name": "shop",
    "k8s.pod.name": "payment-7d9f8c6b5-x2x9q",
    "k8s.container.name": "payment",
    "k8s.pod.label.app.kubernetes.io/name": "payment",
    "service.name": "payment",
}


@pytest.fixture(autouse=True)
def _no_parts_from_other_tests() -> Iterator[None]:
    bulk._shared_parts.clear()
    yield
    bulk._shared_parts.clear()


def _record(resource: dict[str, Any], line: str = "GET /items 200") -> LogRecord:
    return LogRecord(NOW, line, 9, "info", {"http.route": "/items", "status": 200}, resource)


def _encode(records: list[LogRecord]) -> list[bulk.BulkItem]:
    request, failed = bulk.encode_request(Signal.LOGS, records, DataStreamConfig())
    assert failed == []
    return request.items


def _parts_built(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    built: list[Any] = []
    real = bulk.ResourcePart

    def counting(fields: Any) -> Any:
        built.append(fields)
        return real(fields)

    monkeypatch.setattr(bulk, "ResourcePart", counting)
    return built


def test_a_resource_read_back_as_a_new_object_reuses_its_part(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each batch the queue gives back holds new resource dicts: the part is placed and encoded once."""
    built = _parts_built(monkeypatch)
    first = _encode([_record(POD), _record(POD, "second line")])
    again = _encode([_record(copy.deepcopy(POD))])
    assert len(built) == 1
    assert first[0].source == again[0].source
    assert first[0].doc_id == again[0].doc_id == ecs.document_ids([_record(POD)])[0]


def test_a_changed_resource_gets_its_own_part(monkeypatch: pytest.MonkeyPatch) -> None:
    built = _parts_built(monkeypatch)
    _encode([_record(POD)])
    (item,) = _encode([_record({**POD, "k8s.pod.label.app.kubernetes.io/name": "billing"})])
    assert len(built) == 2
    assert orjson.loads(item.source)["kubernetes"]["labels"] == {"app_kubernetes_io/name": "billing"}


def test_equal_digests_of_unequal_resources_do_not_share_a_part(monkeypatch: pytest.MonkeyPatch) -> None:
    """The canonical form behind the digest can merge values it sanitizes; the resources are compared."""
    monkeypatch.setattr(ecs, "resource_digest", lambda resource: b"\x00" * 16)
    other = {**POD, "k8s.pod.name": "payment-7d9f8c6b5-zzzzz"}
    _encode([_record(POD)])
    (item,) = _encode([_record(other)])
    expected = ecs.log_document(_record(other), "generic", "default", NOW, attribute_fields(other))
    assert orjson.loads(item.source)["kubernetes"] == expected["kubernetes"]


def test_the_shared_parts_stay_bounded() -> None:
    for i in range(bulk._MAX_SHARED_PARTS + 10):
        _encode([_record({**POD, "k8s.pod.name": f"pod-{i}"})])
    assert 0 < len(bulk._shared_parts) <= bulk._MAX_SHARED_PARTS


def test_a_resource_changed_in_place_after_its_part_was_built_gets_a_new_part() -> None:
    resource = dict(POD)
    _encode([_record(resource)])
    resource["k8s.pod.name"] = "payment-7d9f8c6b5-moved"
    (item,) = _encode([_record(resource)])
    assert orjson.loads(item.source)["kubernetes"]["pod"]["name"] == "payment-7d9f8c6b5-moved"
