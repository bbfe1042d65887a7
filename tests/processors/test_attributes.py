"""The ``attributes`` processor on its own: insert, update, upsert and delete, on records and on the
resources they share."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import ValidationError

from collector.core.component import ComponentContext
from collector.core.model import Batch, LogRecord, Signal
from collector.core.telemetry import Telemetry
from collector.processors.attributes import AttributesConfig, AttributesProcessor

NOW = 1_795_993_008_000_000_000


def processor(*actions: dict[str, Any]) -> AttributesProcessor:
    ctx = ComponentContext("attributes", Telemetry(), "", logging.getLogger("test.attributes"))
    return AttributesProcessor(AttributesConfig.model_validate({"actions": list(actions)}), ctx)


def run(proc: AttributesProcessor, *records: LogRecord) -> list[LogRecord]:
    out = proc.process(Batch(Signal.LOGS, list(records), 100))
    assert out is not None
    return list(out.items)


def test_insert_update_upsert_delete_on_record_attributes() -> None:
    proc = processor(
        {"key": "cluster", "action": "insert", "value": "eu-1"},
        {"key": "env", "action": "insert", "value": "never"},  # present: insert leaves it
        {"key": "region", "action": "update", "value": "never"},  # absent: update leaves it out
        {"key": "team", "action": "update", "value": "payments"},
        {"key": "tier", "action": "upsert", "value": "gold"},
        {"key": "authorization", "action": "delete"},
    )
    [rec] = run(
        proc, LogRecord(NOW, "x", attributes={"env": "prod", "team": "?", "authorization": "Bearer s"})
    )
    assert rec.attributes == {"env": "prod", "team": "payments", "cluster": "eu-1", "tier": "gold"}


def test_resource_actions_copy_a_shared_resource_once_and_leave_the_original() -> None:
    shared = {"service.name": "checkout"}
    other = {"service.name": "cart"}
    records = [
        LogRecord(NOW, "a", resource=shared),
        LogRecord(NOW, "b", resource=shared),
        LogRecord(NOW, "c", resource=other),
    ]
    out = run(
        processor({"key": "k8s.cluster.name", "action": "upsert", "value": "eu-1", "target": "resource"}),
        *records,
    )
    assert shared == {"service.name": "checkout"}  # other pipelines may hold the same dict
    assert out[0].resource == {"service.name": "checkout", "k8s.cluster.name": "eu-1"}
    assert out[0].resource is out[1].resource  # still one dict per source
    assert out[2].resource == {"service.name": "cart", "k8s.cluster.name": "eu-1"}
    assert all(rec.attributes == {} for rec in out)


def test_an_action_other_than_delete_needs_a_value() -> None:
    with pytest.raises(ValidationError, match="needs a value"):
        AttributesConfig.model_validate({"actions": [{"key": "k", "action": "upsert"}]})
    AttributesConfig.model_validate({"actions": [{"key": "k", "action": "delete"}]})
