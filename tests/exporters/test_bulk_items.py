"""Bulk items from records (exporters/elasticsearch/bulk_items.py): resource parts shared across batches."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from collector.core.model import LogRecord, Signal
from exporters.elasticsearch import bulk, bulk_items, ecs
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
    bulk_items._shared_parts.clear()
    yield
    bulk_items._shared_parts.clear()


def _record(resource: dict[str, Any], line: str = "GET /items 200") -> LogRecord:
    return LogRecord(NOW, line, 9, "info", {"http.route": "/items", "status": 200}, resource)


def _encode(records: list[LogRecord]) -> list[bulk_items.BulkItem]:
    request, failed = bulk.encode_request(Signal.LOGS, records, DataStreamConfig())
    assert failed == []
    return request.items


def _parts() -> list[Any]:
    """The resource parts held for later batches (compiled, the module's calls cannot be replaced
    to count them: what the cache holds is observed instead)."""
    return [part for _resource, part in bulk_items._shared_parts.values()]


def test_a_resource_read_back_as_a_new_object_reuses_its_part() -> None:
    """Each batch the queue gives back holds new resource dicts: the part is placed and encoded once."""
    first = _encode([_record(POD), _record(POD, "second line")])
    (part,) = _parts()
    again = _encode([_record(copy.deepcopy(POD))])
    assert len(_parts()) == 1 and _parts()[0] is part
    assert first[0].source == again[0].source
    assert first[0].doc_id == again[0].doc_id == ecs.document_ids([_record(POD)])[0]


def test_a_changed_resource_gets_its_own_part() -> None:
    _encode([_record(POD)])
    (item,) = _encode([_record({**POD, "k8s.pod.label.app.kubernetes.io/name": "billing"})])
    assert len(_parts()) == 2
    assert orjson.loads(item.source)["kubernetes"]["labels"] == {"app_kubernetes_io/name": "billing"}


def test_equal_digests_of_unequal_resources_do_not_share_a_part() -> None:
    """The canonical form behind the digest can merge values it sanitizes; the resources are compared.
    The collision is made by filing POD's part under the other resource's digest."""
    other = {**POD, "k8s.pod.name": "payment-7d9f8c6b5-zzzzz"}
    _encode([_record(POD)])
    ((_, held),) = bulk_items._shared_parts.items()
    bulk_items._shared_parts[ecs.resource_digest(other)] = held
    (item,) = _encode([_record(other)])
    expected = ecs.log_document(_record(other), "generic", "default", NOW, attribute_fields(other))
    assert orjson.loads(item.source)["kubernetes"] == expected["kubernetes"]
    assert bulk_items._shared_parts[ecs.resource_digest(other)][0] == other


def test_the_shared_parts_stay_bounded() -> None:
    for i in range(bulk_items._MAX_SHARED_PARTS + 10):
        _encode([_record({**POD, "k8s.pod.name": f"pod-{i}"})])
    assert 0 < len(bulk_items._shared_parts) <= bulk_items._MAX_SHARED_PARTS


def test_a_resource_changed_in_place_after_its_part_was_built_gets_a_new_part() -> None:
    resource = dict(POD)
    _encode([_record(resource)])
    resource["k8s.pod.name"] = "payment-7d9f8c6b5-moved"
    (item,) = _encode([_record(resource)])
    assert orjson.loads(item.source)["kubernetes"]["pod"]["name"] == "payment-7d9f8c6b5-moved"
