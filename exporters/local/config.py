"""The ``local`` exporter's settings: where the store lives and how long it keeps records."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from collector.config.types import Duration
from collector.core.component import ComponentConfig
from collector.exporterhelper.sender import ExporterConfig

DEFAULT_FILE_NAME = "burnline.db"


class RetentionConfig(ComponentConfig):
    # Records older than this (by record time) are deleted; 0 keeps them regardless of age.
    max_age: Duration = 7 * 86400.0
    # The oldest records beyond this count are deleted, per signal (logs and spans each); 0: no limit.
    max_records: int = Field(default=5_000_000, ge=0)
    check_interval: Duration = Field(default=60.0, gt=0)
    # Rows per delete transaction: small enough that a waiting export is not held up for long.
    delete_chunk: int = Field(default=5000, ge=1)


class LocalConfig(ExporterConfig):
    # The database file; default: burnline.db in the service's data_dir (./data/burnline.db).
    path: str | None = None
    retention: RetentionConfig = RetentionConfig()


def store_path(config: LocalConfig, data_dir: str | Path) -> Path:
    """Where a local exporter with ``config`` keeps its database, in a service with ``data_dir``."""
    return Path(config.path) if config.path else Path(data_dir) / DEFAULT_FILE_NAME
