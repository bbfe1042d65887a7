"""The ``filter`` processor: drops log records below a severity or matching attribute values.

Dropped records are counted in ``burnline_records_dropped_total{reason="filtered"}``: a filter is a
decision, never a silent loss.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, field_serializer, field_validator

from collector.core.component import ComponentConfig, Processor, register
from collector.core.model import Batch
from collector.normalize.severity import range_start_name, severity_from_text


class FilterConfig(ComponentConfig):
    # Records with a known severity below this are dropped; unspecified severity is kept.
    min_severity: int | None = Field(default=None, ge=1, le=24)
    # Drop records whose attribute (or resource attribute) matches the regular expression.
    drop_if_matches: dict[str, str] = Field(default_factory=dict)

    @field_validator("min_severity", mode="before")
    @classmethod
    def _severity_by_name(cls, value: object) -> object:
        # The names ingest reads (collector/normalize/severity.py): `warning` here is what it is in a
        # record's level field, and `crit` sits where the record's `crit` lands.
        if isinstance(value, str):
            number, _ = severity_from_text(value)
            if not number:
                raise ValueError(
                    f"unknown severity {value!r} (trace, debug, info, warn, error, fatal, or a log "
                    "level name such as warning, notice, crit, critical)"
                )
            return number
        return value

    @field_serializer("min_severity")
    def _severity_as_name(self, value: int | None) -> str | int | None:
        # A range's first number by its name (`info`), others (`crit` is 18) as the number: either
        # reads back to the same severity.
        name = range_start_name(value) if value is not None else ""
        return name.lower() if name else value

    @field_validator("drop_if_matches")
    @classmethod
    def _valid_patterns(cls, value: dict[str, str]) -> dict[str, str]:
        for key, pattern in value.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{key}: {pattern!r} is not a regular expression: {exc}") from None
        return value


@register
class FilterProcessor(Processor[FilterConfig]):
    type_name = "filter"
    config_model = FilterConfig
    mutates_data: ClassVar[bool] = False

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        cfg: FilterConfig = self.config
        self._patterns = {k: re.compile(p) for k, p in cfg.drop_if_matches.items()}
        self._min = int(cfg.min_severity) if cfg.min_severity is not None else 0

    def _keep(self, item: object) -> bool:
        severity = getattr(item, "severity_number", 0)
        if self._min and 0 < severity < self._min:
            return False
        for key, pattern in self._patterns.items():
            value = getattr(item, "attributes", {}).get(key, getattr(item, "resource", {}).get(key))
            if value is not None and pattern.search(str(value)):
                return False
        return True

    def process(self, batch: Batch) -> Batch | None:
        kept = [item for item in batch.items if self._keep(item)]
        dropped = len(batch.items) - len(kept)
        if not dropped:
            return batch  # as it came, with its received request (Batch.wire)
        self.ctx.telemetry.dropped.labels(self.id, batch.signal.value, "filtered").inc(dropped)
        if not kept:
            return None
        size = batch.size_bytes * len(kept) // max(1, len(batch.items))
        return Batch(batch.signal, kept, size)
