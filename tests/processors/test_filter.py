"""The ``filter`` processor on its own: severity floor, attribute patterns, the drop count."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from collector.core.component import ComponentContext
from collector.core.model import Batch, LogRecord, Signal
from collector.core.telemetry import Telemetry
from collector.processors.filter import FilterConfig, FilterProcessor

NOW = 1_795_993_008_000_000_000


def processor(telemetry: Telemetry | None = None, **settings: object) -> FilterProcessor:
    ctx = ComponentContext("filter", telemetry or Telemetry(), "", logging.getLogger("test.filter"))
    return FilterProcessor(FilterConfig.model_validate(settings), ctx)


def record(severity: int = 0, body: str = "", **attributes: object) -> LogRecord:
    return LogRecord(NOW, body, severity, attributes=dict(attributes), resource={"service.name": "checkout"})


def batch(*records: LogRecord) -> Batch:
    return Batch(Signal.LOGS, list(records), 100 * len(records))


def dropped(telemetry: Telemetry) -> float:
    value = telemetry.registry.get_sample_value(
        "burnline_records_dropped_total", {"component": "filter", "signal": "logs", "reason": "filtered"}
    )
    return 0.0 if value is None else value


def test_records_below_the_floor_are_dropped_and_counted_unspecified_kept() -> None:
    telemetry = Telemetry()
    kept = processor(telemetry, min_severity="warn").process(
        batch(record(9, "info"), record(13, "warn"), record(0, "unspecified"), record(18, "crit"))
    )
    assert kept is not None
    assert [r.body for r in kept.items] == ["warn", "unspecified", "crit"]
    assert kept.size_bytes == 300  # in proportion to the records kept (3 of 4, of 400 bytes)
    assert dropped(telemetry) == 1


def test_a_pattern_matches_record_attributes_then_resource_attributes() -> None:
    kept = processor(drop_if_matches={"http.route": "^/health", "service.name": "^checkout$"}).process(
        batch(
            record(body="health", **{"http.route": "/healthz"}),
            record(body="other", **{"http.route": "/pay"}),
        )
    )
    assert kept is None  # the resource's service.name matches every record

    kept = processor(drop_if_matches={"http.route": "^/health"}).process(
        batch(
            record(body="health", **{"http.route": "/healthz"}),
            record(body="other", **{"http.route": "/pay"}),
        )
    )
    assert kept is not None and [r.body for r in kept.items] == ["other"]


def test_nothing_dropped_is_the_same_records_and_no_count() -> None:
    telemetry = Telemetry()
    records = [record(17, "error")]
    kept = processor(telemetry, min_severity=5).process(batch(*records))
    assert kept is not None and kept.items == records
    assert dropped(telemetry) == 0


def test_min_severity_is_written_back_as_a_name_that_reads_back_the_same() -> None:
    assert FilterConfig.model_validate({"min_severity": "WARNING"}).model_dump()["min_severity"] == "warn"
    # crit is 18, inside ERROR's range: only the number says it exactly.
    assert FilterConfig.model_validate({"min_severity": "crit"}).model_dump()["min_severity"] == 18
    assert FilterConfig.model_validate({"min_severity": 18}).min_severity == 18


@pytest.mark.parametrize(
    "settings", [{"min_severity": "loud"}, {"min_severity": 25}, {"drop_if_matches": {"k": "("}}]
)
def test_bad_settings_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        FilterConfig.model_validate(settings)


def test_a_batch_with_nothing_to_drop_goes_on_as_it_came() -> None:
    """Its received request (``Batch.wire``) still holds exactly its records: the otlp exporter may
    send it as it is. A batch with a record dropped is a new batch, without it."""
    whole = Batch(Signal.LOGS, [record(13, "warn"), record(18, "crit")], 200, wire=b"request")
    assert processor(min_severity="warn").process(whole) is whole
    kept = processor(min_severity="error").process(whole)
    assert kept is not None and [r.body for r in kept.items] == ["crit"] and kept.wire is None
